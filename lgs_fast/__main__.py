"""`lgs-fast` and `python -m lgs_fast`: the command line, with Ctrl-C answered in one line even
while it is still starting (importing the engines takes a moment)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from lgs_fast.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("lgs-fast: error: interrupted; nothing was changed\n")
        raise SystemExit(130) from None
    run()


def _terminated_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("lgs-fast: error: terminated; nothing was changed\n")
    raise SystemExit(143)


if __name__ == "__main__":
    main()
