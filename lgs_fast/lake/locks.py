"""Locks and durable files: the writers' exclusive lock on the lake directory, the readers' shared lock, fsync, and each file's SHA-256."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from lgs_fast.errors import BusyError

READER_LOCK = ".lgs_fast.readers"


PINS = ".lgs_fast.pins"  # one file per (process, version) whose frames may still be collected


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def open_lock(path: Path, *, create: bool) -> int | None:
    try:
        return os.open(path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY, 0o644)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        if create:
            raise
        return None  # a read-only lake: no writer can delete anything either


def fsync(path: Path) -> None:
    """Flush a file's or a directory's entries to disk (errors propagate: a write that cannot
    reach the disk must not be committed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exclusive_lock(path: Path, flags: int, busy: str) -> int:
    """`path` opened with `flags` and locked exclusively, not waited for: `BusyError(busy)` when
    another process holds it, or when `path` was removed (and perhaps made again) meanwhile, as
    the lock would then guard nothing. The lock lasts until the returned descriptor is closed."""
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not same_file(fd, path):
            raise BusyError(busy)
    except BlockingIOError:
        os.close(fd)
        raise BusyError(busy) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file or directory open as `fd` (not removed, not replaced)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
