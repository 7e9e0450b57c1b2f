"""`lgs-fast` and `python -m lgs_fast`: the command line, with Ctrl-C answered in one line even
while it is still starting (importing the engines takes a moment)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from lgs_fast.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("lgs-fast: error: interrupted; nothing was changed\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
