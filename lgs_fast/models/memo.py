"""A model's tables kept from an earlier run on the same inputs, so that running the analysis
again on unchanged data does not fit the same models again.

The models are deterministic: the same input tables, options and code give the same tables,
to the bit (one BLAS thread, fixed orders and seeds; `lgs_fast.models.threads`). A result is
therefore kept under a key made of all of that: the model's name, the SHA-256 of every input
table (its Arrow IPC bytes, a table in no set order sorted by its key first), the options, the source of every module of `lgs_fast.models`, and
the versions of the libraries that compute (NumPy, SciPy, statsmodels, Polars). Anything that
changes makes a new key; nothing is ever shown from another run's inputs.

Entries live in the user's cache directory (`config.cache_directory`), one directory per
result, written beside and renamed into place whole; each file's SHA-256 is in the entry's
index and checked on reading. An entry that is missing, partial or does not match is computed
again, and so is everything when the cache cannot be read or written. The newest
`_KEPT` entries of each model are kept. `LGS_MODEL_CACHE=0` turns the cache off.

Measured on the shipped data: the sales forecast takes 2.0 s (1.7 s of it importing
statsmodels) and the recommendations 1.5 s of a 6.8 s `make analyze`; read back, both take
a few milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import Final

import polars as pl

from lgs_fast.catalog import UNORDERED
from lgs_fast.config import cache_directory

_KEPT: Final = 4
_LIBRARIES: Final = ("numpy", "scipy", "statsmodels", "polars")
_INDEX: Final = "index.json"


def _ipc(frame: pl.DataFrame) -> bytes:
    """Arrow IPC bytes that depend on the values only: one chunk, and plain strings (Polars'
    string views lay the same strings out in buffers that differ from run to run)."""
    buffer = io.BytesIO()
    frame.rechunk().write_ipc(
        buffer, compression="uncompressed", compat_level=pl.CompatLevel.oldest()
    )
    return buffer.getvalue()


def _code() -> str:
    """The SHA-256 of the source of every module of `lgs_fast.models`."""
    digest = hashlib.sha256()
    package = resources.files("lgs_fast.models")
    for name in sorted(entry.name for entry in package.iterdir() if entry.name.endswith(".py")):
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()


def _versions() -> str:
    found = []
    for name in _LIBRARIES:
        try:
            found.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}=-")
    return ",".join(found)


def key(model: str, inputs: dict[str, pl.DataFrame], parameters: str) -> str:
    """The key of `model`'s result on `inputs` with `parameters` (see the module's docstring)."""
    digest = hashlib.sha256()
    for part in (model, parameters, _code(), _versions()):
        digest.update(part.encode() + b"\0")
    for name in sorted(inputs):
        frame = inputs[name]
        if name in UNORDERED:  # rows in no set order (a table the models read as a set)
            frame = frame.sort(UNORDERED[name])
        digest.update(name.encode() + b"\0" + hashlib.sha256(_ipc(frame)).digest())
    return digest.hexdigest()[:32]


def _read(entry: Path) -> dict[str, pl.DataFrame] | None:
    """The tables of a complete entry whose files match its index; None otherwise."""
    try:
        index = json.loads((entry / _INDEX).read_text())
        tables = {}
        for name, checksum in index["tables"].items():
            data = (entry / f"{name}.arrow").read_bytes()
            if hashlib.sha256(data).hexdigest() != checksum:
                return None
            tables[name] = pl.read_ipc(io.BytesIO(data))
        return tables
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
        return None


def _write(root: Path, entry: Path, tables: dict[str, pl.DataFrame]) -> None:
    """`tables` as `entry`, whole or not at all; the model's older entries beyond `_KEPT` go."""
    partial = root / f".{entry.name}.{os.getpid()}"
    try:
        partial.mkdir(parents=True)
        checksums = {}
        for name, frame in tables.items():
            data = _ipc(frame)
            (partial / f"{name}.arrow").write_bytes(data)
            checksums[name] = hashlib.sha256(data).hexdigest()
        (partial / _INDEX).write_text(json.dumps({"tables": checksums}))
        os.rename(partial, entry)  # fails if another run put the same entry first: fine
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return
    model = entry.name.split("-")[0]
    with contextlib.suppress(OSError):
        entries = sorted(root.glob(f"{model}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        # Partial entries of runs killed while writing (an hour is far longer than a write).
        stale = [p for p in root.glob(".*") if time.time() - p.stat().st_mtime > 3600]
        for old in entries[_KEPT:] + stale:
            shutil.rmtree(old, ignore_errors=True)


def memoized(
    model: str,
    inputs: dict[str, pl.DataFrame],
    parameters: str,
    compute: Callable[[], dict[str, pl.DataFrame]],
) -> dict[str, pl.DataFrame]:
    """`compute()`, or the tables it gave on an earlier run with the same `inputs` (the tables
    it reads), `parameters` (the options it reads, as text) and code."""
    if os.environ.get("LGS_MODEL_CACHE") == "0":
        return compute()
    root = cache_directory() / "models"
    entry = root / f"{model}-{key(model, inputs, parameters)}"
    kept = _read(entry)
    if kept is not None:
        with contextlib.suppress(OSError):
            os.utime(entry)  # recently used: kept longest
        return kept
    shutil.rmtree(entry, ignore_errors=True)  # a damaged or partial entry, if any
    tables = compute()
    _write(root, entry, tables)
    return tables
