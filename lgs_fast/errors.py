"""One exception family: the CLI turns any `LgsError` into a one-line message and exit code.

Exit codes (also in docs/guarantees.md): 0 done; 1 other error; 2 bad input or usage; 3 no lake, or
not a lake lgs_fast may write; 4 database source failed; 5 another writer holds the lake or
output directory; 6 the lake's files do not match its manifest (damaged); 7 the Spark engine cannot start
(no PySpark, no Java, a bad or unreachable master); 130 interrupted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class LgsError(Exception):
    """Base of every error lgs_fast raises on purpose (bad input, bad configuration)."""

    exit_code = 1


class InputError(LgsError):
    """An input file does not fit the canonical schema; the message names file, row and column."""

    exit_code = 2


class LakeError(LgsError):
    """The lake is missing or unreadable, or a path is not a lake lgs_fast may write."""

    exit_code = 3


class SourceError(LgsError):
    """A database source failed (connection, missing table or column, server gone)."""

    exit_code = 4


class BusyError(LgsError):
    """Another process is writing the same lake or output directory."""

    exit_code = 5


class DamagedError(LakeError):
    """A lake file is missing, changed or unreadable: it no longer matches the manifest."""

    exit_code = 6


class EngineError(LgsError):
    """An engine cannot run here: PySpark or Java missing, a bad or unreachable Spark master."""

    exit_code = 7


def target_error(err: OSError, target: Path, temporary: Path) -> OSError:
    """`err`, raised on `temporary` (a file or lock beside `target`), as an error of `target`.

    Polars leaves `errno` and `filename` empty and puts the code in its message
    (`… (os error 36): …path`); the reason is taken from the code, never the temporary name.
    """
    code = err.errno
    if code is None and (found := re.search(r"\(os error (\d+)\)", str(err))):
        code = int(found[1])
    reason = err.strerror or (os.strerror(code) if code else f"cannot write {temporary.name}")
    return OSError(code, reason, str(target))
