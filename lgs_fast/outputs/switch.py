"""The output directory of `analyze`: built beside OUT and switched in with one atomic rename.

OUT is always wholly one run: a run builds everything in ``.OUT.build-<run id>`` beside OUT,
then exchanges the two directories in one `renameat2(RENAME_EXCHANGE)` and removes the old
run. A kill at any moment leaves OUT as the old run or the new one, never a mix; what a killed
run left beside it is removed by the next run. One run at a time per OUT (a lock file beside
it, ``.OUT.lock``), and lgs_fast only replaces a directory that is new, empty, or holds
nothing but its own outputs (marked by ``OUT/.lgs_fast_out``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import glob
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from lgs_fast.errors import LakeError, target_error
from lgs_fast.lake import exclusive_lock, fsync

MARKER = ".lgs_fast_out"
# What a run writes inside OUT; anything else found there is somebody else's and stops a run
# (it would be removed with the previous outputs).
_OWN = frozenset(
    {MARKER, "tables", "charts", "segments", "report.html", "lgs_report.xlsx", "campaigns.json"}
)
# What lgs_fast writes in each folder of OUT, file by file (earlier versions too, unmarked).
_OUTPUT_FILES = {
    "tables": re.compile(r"^[a-z_]+\.(parquet|csv)$"),
    "charts": re.compile(r"^[a-z0-9_]+\.(vl\.json|svg|png)$"),
    "segments": re.compile(r"^[\w.-]+\.csv$"),
}
_LEGACY_LEFTOVER = re.compile(r"^(\.build-\d+|\.(tables|charts|segments|report\.html)\.old-\d+)$")
_BUILD = re.compile(r"^build-(old-)?[0-9a-f]{16}$")

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


def _written(out: Path) -> set[str] | None:
    """The files the run in OUT wrote, as its marker lists them (paths relative to OUT); None
    for a marker without the list (written before runs listed their files) or no marker."""
    try:
        files = json.loads((out / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        return None
    return set(files)


def _not_written(out: Path, written: set[str]) -> list[str]:
    """Everything below OUT that is not a file the run listed, nor a folder on the way to one:
    a file put there by someone else, a symlink, a folder of their own."""
    folders = {str(Path(f).parent) for f in written} - {"."}
    folders |= {str(p) for f in folders for p in Path(f).parents if str(p) != "."}
    foreign = []
    for root, dirs, names in os.walk(out):
        here = Path(root).relative_to(out)
        for name in sorted(dirs):
            path = (here / name).as_posix()
            if path not in folders or (Path(root) / name).is_symlink():
                foreign.append(f"{path}/")
        dirs[:] = [d for d in dirs if (here / d).as_posix() in folders]
        for name in sorted(names):
            path = (here / name).as_posix()
            full = Path(root) / name
            if path != MARKER and (path not in written or full.is_symlink()):
                foreign.append(path)
    return foreign


def _check_owned(out: Path) -> None:
    """OUT may be replaced: it is new, empty, or holds only what lgs_fast wrote there, file by
    file: the files its marker lists (anything else anywhere below OUT, a budget.csv put in
    OUT/tables say, stops the run), or for an output directory written before markers listed
    their files, what lgs_fast writes by name (kept so that upgrading does not lock users out
    of their own OUT; the next run writes the list)."""
    if out.exists() and not out.is_dir():
        raise LakeError(f"{out}: is a file, not an output directory; lgs_fast leaves it alone")
    if not out.is_dir():
        return
    written = _written(out)
    if written is not None:
        _refuse_foreign(out, _not_written(out, written))
        return
    marked = (out / MARKER).is_file()
    foreign = []
    for name in sorted(os.listdir(out)):
        path = out / name
        if name in _OUTPUT_FILES:
            pattern = _OUTPUT_FILES[name]
            if not path.is_dir():
                foreign.append(name)
                continue
            foreign += [
                f"{name}/{child.name}"
                for child in sorted(path.iterdir())
                if not (child.is_file() and pattern.match(child.name))
            ]
        elif not (marked and name in _OWN) and not _earlier_output(path):
            foreign.append(name)
    _refuse_foreign(out, foreign)


def _refuse_foreign(out: Path, foreign: list[str]) -> None:
    if foreign:
        more = f" and {len(foreign) - 3:,} more" if len(foreign) > 3 else ""
        raise LakeError(
            f"{out}: not an lgs_fast output directory: holds {', '.join(foreign[:3])}{more}, which lgs_fast did not write there and would replace; choose another --out or move it away"
        )


def _earlier_output(path: Path) -> bool:
    """What an earlier version of lgs_fast left at the top of OUT before OUT was marked."""
    if _LEGACY_LEFTOVER.match(path.name):
        return path.is_dir()
    if path.name == "report.html":  # the page says who made it
        return path.is_file() and b"Made by lgs_fast." in path.read_bytes()
    return False


def check_apart(out: Path, lake: Path) -> None:
    """OUT and the lake must not contain each other: replacing OUT would take the lake along."""
    o, k = out.resolve(), lake.resolve()
    if o == k or o in k.parents or k in o.parents:
        raise LakeError(
            f"{out}: the output directory and the lake {lake} must not contain each other"
        )
    if o == Path.cwd().resolve() or o in Path.cwd().resolve().parents:
        raise LakeError(
            f"{out}: is the current directory (or holds it); name a directory for the outputs"
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


def _empty_dir(path: Path) -> bool:
    """An empty directory: a build killed between its mkdir and its marker."""
    with contextlib.suppress(OSError):
        return path.is_dir() and not any(path.iterdir())
    return False


def _remove_build(path: Path) -> None:
    """Remove a build (or a previous run) with its marker last: a kill midway leaves a marked
    directory, or an empty one, and both are known as lgs_fast's and removed by the next run."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for child in path.iterdir():
            if child.name == MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (path / MARKER).unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


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
        lock = self.out.parent / f".{self.out.name}.lock"
        try:
            self._lock = exclusive_lock(
                lock,
                os.O_RDWR | os.O_CREAT,
                f"{self.out}: another lgs-fast analyze is writing here; try again when it ends",
            )
        except OSError as err:
            raise target_error(err, self.out, lock) from None
        # Holding the lock, every build beside OUT belongs to a run that died: remove them
        # (only lgs_fast's, by name and mark).
        prefix = f".{self.out.name}."
        for leftover in self.out.parent.glob(f"{glob.escape(prefix)}build-*"):
            if _BUILD.match(leftover.name[len(prefix) :]) and (
                (leftover / MARKER).is_file() or _empty_dir(leftover)
            ):
                _remove_build(leftover)
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
        _remove_build(self.build)
        if self._lock is not None:
            if not self.out.exists():
                # Nothing was ever written here: leave the parent directory as it was found.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.out.parent / f".{self.out.name}.lock")
            os.close(self._lock)
            self._lock = None

    def commit(self) -> None:
        """Make the build OUT in one step; the previous run is removed afterwards."""
        # The marker lists every file of the run: the next run replaces those and nothing else.
        marker = self.build / MARKER
        files = sorted(
            p.relative_to(self.build).as_posix()
            for p in self.build.rglob("*")
            if p.is_file() and p != marker
        )
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "files": files}))
        # Every file and folder of the build on disk before it becomes OUT; a failure to sync
        # (a full disk met late) stops the switch, and OUT stays the previous run.
        for path in sorted(self.build.rglob("*"), reverse=True):
            fsync(path)
        fsync(self.build)
        # Checked again: something may have been put in OUT while this run was building.
        _check_owned(self.out)
        _ATTEMPTS.append((self.out, self.run_id))
        if not self.out.exists():
            os.rename(self.build, self.out)
        elif not _exchange(self.build, self.out):
            # No renameat2 (not Linux): two renames, with a brief moment where OUT is absent.
            old = self.out.parent / f".{self.out.name}.build-old-{self.run_id}"
            os.rename(self.out, old)
            os.rename(self.build, self.out)
            self.build = old
        with contextlib.suppress(OSError):  # the switch is done; this only hastens it to disk
            fsync(self.out.parent)
        _remove_build(self.build)  # now the previous run
