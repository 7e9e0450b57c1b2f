"""The output directory of `analyze`: built beside OUT and switched in with one atomic rename.

OUT is always wholly one run: a run builds everything in ``.OUT.build-<run id>`` beside OUT,
then exchanges the two directories in one `renameat2(RENAME_EXCHANGE)` and removes the old
run. A kill at any moment leaves OUT as the old run or the new one, never a mix; what a killed
run left beside it is removed by the next run. One run at a time per OUT (a lock file beside
it, ``.OUT.lock``), and lgs_fast only replaces a directory that is new, empty, or its own
(marked by ``OUT/.lgs_fast_out``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from lgs_fast.errors import BusyError, LakeError

MARKER = ".lgs_fast_out"
# What earlier versions of lgs_fast left inside OUT: their outputs and build leftovers.
_LEGACY = re.compile(r"^(tables|charts|segments|report\.html|\.build-\d+|\.[\w.]+\.old-\d+)$")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def _check_owned(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LakeError(f"{out}: is a file, not an output directory; lgs_fast leaves it alone")
    if not out.is_dir() or (out / MARKER).is_file():
        return
    foreign = sorted(name for name in os.listdir(out) if not _LEGACY.match(name))
    if foreign:
        raise LakeError(
            f"{out}: not an lgs_fast output directory and not empty ({', '.join(foreign[:3])}); choose another --out"
        )


# Which output directories this process was switching, so an interruption can say which changed.
_ATTEMPTS: list[tuple[Path, str]] = []


def interrupted_state() -> list[str]:
    """After an interruption: for each output directory this process was writing, which run it holds."""
    said = []
    for out, run_id in _ATTEMPTS:
        try:
            current = json.loads((out / MARKER).read_text()).get("run_id")
        except (OSError, ValueError):
            current = None
        said.append(f"{out} holds {'the new' if current == run_id else 'the previous'} outputs")
    return said


class OutputSwitch:
    """One run's outputs: `build` is where to write them, `commit` switches them in.

    Leaving the block without `commit` removes the build and leaves OUT as it was.
    """

    def __init__(self, out: str | Path) -> None:
        # A link to a directory: the switch happens at the directory it names, link kept.
        self.out = Path(out).resolve() if Path(out).is_symlink() else Path(out)
        self.run_id = uuid.uuid4().hex[:16]
        self.build = self.out.parent / f".{self.out.name}.build-{self.run_id}"
        self._lock: int | None = None

    def __enter__(self) -> OutputSwitch:
        _check_owned(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out.parent / f".{self.out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusyError(
                f"{self.out}: another lgs-fast analyze is writing here; try again when it ends"
            ) from None
        self._lock = fd
        # Holding the lock, every build beside OUT belongs to a run that died: remove them.
        for leftover in self.out.parent.glob(f".{self.out.name}.build-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        self.build.mkdir()
        (self.build / MARKER).write_text(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.build, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def commit(self) -> None:
        """Make the build OUT in one step; the previous run is removed afterwards."""
        for path in sorted(self.build.rglob("*"), reverse=True):
            if path.is_file():
                _fsync(path)
        _fsync(self.build)
        _ATTEMPTS.append((self.out, self.run_id))
        if not self.out.exists():
            os.rename(self.build, self.out)
        elif not _exchange(self.build, self.out):
            # No renameat2 (not Linux): two renames, with a brief moment where OUT is absent.
            old = self.out.parent / f".{self.out.name}.build-old-{self.run_id}"
            os.rename(self.out, old)
            os.rename(self.build, self.out)
            self.build = old
        _fsync(self.out.parent)
        shutil.rmtree(self.build, ignore_errors=True)  # now the previous run


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
