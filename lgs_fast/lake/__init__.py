"""The lake: hive-partitioned Parquet of canonical invoice lines, plus `_manifest.json`.

Layout: ``LAKE/invoice_lines/year=YYYY/month=MM/part-<write id>.parquet`` (zstd), and beside
each month its derived layers (`lgs_fast.lake.layers`): ``LAKE/invoices/…`` and ``LAKE/products/…``
under the same partition and file name, and the month's quality counts in the manifest. The
manifest is the lake's one source of truth: it names the file of every month and of its layers,
with their row counts, sizes and checksums. Writes are transactions:

- one writer at a time: an exclusive lock on the lake directory itself (no lock file anyone
  could delete), not waited for (a second writer fails at once with `BusyError`);
- a writer only adds files under new names, then commits by atomically replacing the manifest:
  a crash or kill at any moment leaves the previous manifest, and so the previous lake, whole;
- readers read the manifest and exactly the files it names, under a shared lock on
  ``LAKE/.lgs_fast.readers``; files no manifest names any more are deleted by a later writer only
  when no reader holds that lock, and never the previous version's (a LazyFrame made before a
  write still reads after it), nor those of a version a running process pinned (`pin`: a
  notebook's frames read whenever it collects them);
- lgs_fast writes only into a new or empty directory or a lake whose manifest it can read, and
  deletes nothing but its own part files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lgs_fast.config import as_datetime, is_uri
from lgs_fast.errors import BusyError, DamagedError, InputError, LakeError
from lgs_fast.lake import layers
from lgs_fast.lake.layers import LAYERS, LAYERS_VERSION, Layers
from lgs_fast.schema import ARROW_SCHEMA, POLARS_SCHEMA, SCHEMA_VERSION, to_arrow

DEFAULT_LAKE = Path("data/lake")
TABLE = "invoice_lines"
MANIFEST = "_manifest.json"
CHECKSUM = "checksum"  # the manifest's key for the SHA-256 of the rest of it
READER_LOCK = ".lgs_fast.readers"
PINS = ".lgs_fast.pins"  # one file per (process, version) whose frames may still be collected
LEGACY_PART = "part-0.parquet"  # lakes written before part files were named by write
_ROW_GROUP = 128_000  # rows buffered per partition before a row group is written
_MAX_BUFFERED = 1_000_000  # rows buffered over all partitions before the largest is flushed

_KEY = re.compile(r"^year=(\d{4})/month=(0[1-9]|1[0-2])$")
_PART = re.compile(r"^part-[0-9a-f]{1,32}\.parquet$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_MANIFEST_TMP = re.compile(r"^\._manifest\.json\.[0-9a-f]{16}$")  # a commit that did not finish

Month = tuple[int, int]
Progress = Callable[[int], None]


def default_lake() -> Path:
    """`LGS_LAKE` if set, else `data/lake`."""
    return Path(os.environ.get("LGS_LAKE") or DEFAULT_LAKE)


def local_lake(lake: str | Path | None, what: str) -> Path:
    """The local directory of the lake that `what` (e.g. "import writes") works on.

    A URI is refused before it becomes a path: `Path("file:///x")` is the relative directory
    `file:/x`, which a writer would create in the working directory. Only the Spark engine reads
    lakes at URIs.
    """
    given = lake if lake is not None else os.environ.get("LGS_LAKE") or DEFAULT_LAKE
    if is_uri(given):
        raise InputError(
            f"{given}: a lake at a URI is read by the Spark engine only (analyze or clv "
            f"--engine spark); {what} a lake in a local directory"
        )
    return Path(given)


# What marks the project's root when a notebook looks for the lake from its own folder.
ROOT_MARKERS = ("pyproject.toml", str(DEFAULT_LAKE))


def project_root(start: Path) -> Path | None:
    """The nearest of `start` and its parents holding `pyproject.toml` or `data/lake`."""
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return None


@dataclass(frozen=True)
class LakeChoice:
    """The lake to read and, in words, why that one."""

    path: Path
    reason: str


def find_lake(start: str | Path | None = None, env: Mapping[str, str] | None = None) -> LakeChoice:
    """`LGS_LAKE` if set, else `data/lake` under the project root found from `start` (the
    working directory by default).

    Jupyter starts a notebook's kernel in the notebook's own folder, where the relative
    `data/lake` of the command line names nothing; walking up finds the lake `make analyze`
    built wherever the notebook sits inside the project.
    """
    env = os.environ if env is None else env
    if env.get("LGS_LAKE"):
        return LakeChoice(Path(env["LGS_LAKE"]), "from LGS_LAKE")
    here = Path(start if start is not None else Path.cwd()).resolve()
    root = project_root(here)
    if root is None:
        raise LakeError(
            f"{here}: no LGS_LAKE, and neither this folder nor any above it holds "
            f"pyproject.toml or {DEFAULT_LAKE}; set LGS_LAKE or run `make analyze`"
        )
    return LakeChoice(root / DEFAULT_LAKE, f"{DEFAULT_LAKE} of the project root {root}")


def partition_key(year: int, month: int) -> str:
    return f"year={year:04d}/month={month:02d}"


def month_of(key: str) -> Month:
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"not a partition key: {key!r}")
    return int(match[1]), int(match[2])


# Manifest --------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """What a lake holds; replaced atomically, so the lake is always one complete version."""

    partitions: dict[str, dict[str, Any]]
    source: list[str]
    written_at: str
    watermark: str | None
    schema_version: int = SCHEMA_VERSION
    write_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # As read from the file (None for a manifest written before manifests carried one, or not
    # yet written); `to_json` always writes the checksum of what it writes.
    checksum: str | None = field(default=None, compare=False)

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.partitions.values())

    def files(self, lake: Path) -> dict[str, Path]:
        """The file of every partition, by partition key."""
        return {
            key: lake / TABLE / key / meta.get("file", LEGACY_PART)
            for key, meta in sorted(self.partitions.items())
        }

    def layered(self) -> dict[str, dict[str, Any]]:
        """The layers entry of every partition whose layers are of the current version."""
        return {
            key: meta["layers"]
            for key, meta in sorted(self.partitions.items())
            if meta.get("layers", {}).get("version") == LAYERS_VERSION
        }

    def layer_files(self, lake: Path) -> dict[tuple[str, str], Path]:
        """The file of every current layer, by (layer, partition key)."""
        return {
            (layer, key): lake / layer / key / entry[layer]["file"]
            for key, entry in self.layered().items()
            for layer in LAYERS
        }

    def all_files(self, lake: Path) -> set[Path]:
        """Every file this version names: lines and layers (older layer versions included)."""
        named = set(self.files(lake).values())
        for key, meta in self.partitions.items():
            for layer in LAYERS:
                entry = meta.get("layers", {}).get(layer)
                if isinstance(entry, dict) and "file" in entry:
                    named.add(lake / layer / key / entry["file"])
        return named

    def to_json(self) -> str:
        content = {
            "schema_version": self.schema_version,
            "table": TABLE,
            "rows": self.rows,
            "partitions": self.partitions,
            "source": self.source,
            "written_at": self.written_at,
            "watermark": self.watermark,
            "write_id": self.write_id,
            **self.extra,
        }
        return json.dumps({**content, CHECKSUM: manifest_checksum(content)}, indent=2)

    @classmethod
    def read(cls, lake: Path) -> Manifest:
        path = lake / MANIFEST
        if lake.exists() and not lake.is_dir():
            raise LakeError(f"{lake}: is a file, not a lake directory")
        if not path.is_file():
            raise LakeError(
                f"{lake}: no lake here (no {MANIFEST}); run `lgs-fast import` or `lgs-fast export` first"
            )
        return cls.from_json(path.read_bytes(), str(path))

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        """The manifest in `text`, checked: its fields and its own checksum; `DamagedError`
        naming `where` otherwise."""
        try:
            raw = json.loads(text)
            manifest = cls._from_raw(raw)
        except (ValueError, KeyError, TypeError) as err:
            raise DamagedError(f"{where}: unreadable manifest ({first_line(err)})") from None
        if manifest.checksum is not None and manifest.checksum != manifest_checksum(
            {k: v for k, v in raw.items() if k != CHECKSUM}
        ):
            raise DamagedError(
                f"{where}: the manifest's content does not match its checksum (edited or "
                "damaged): its counts and file list cannot be trusted; restore it from a copy, or import "
                "your data into a new lake"
            )
        return manifest

    @classmethod
    def _from_raw(cls, raw: Any) -> Manifest:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw["schema_version"] != SCHEMA_VERSION:
            raise ValueError(f"schema version {raw['schema_version']!r}, expected {SCHEMA_VERSION}")
        partitions = raw["partitions"]
        if not isinstance(partitions, dict):
            raise ValueError("partitions is not an object")
        for key, meta in partitions.items():
            _check_entry(key, meta)
        source = raw["source"]
        if not (isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise ValueError("source is not a list of names")
        if raw["watermark"] is not None:
            dt.datetime.fromisoformat(raw["watermark"])
        checksum = raw.get(CHECKSUM)
        if checksum is not None and not (isinstance(checksum, str) and _SHA.match(checksum)):
            raise ValueError("bad checksum")
        known = {
            "schema_version", "table", "rows", "partitions", "source", "written_at",
            "watermark", "write_id", CHECKSUM,
        }  # fmt: skip
        return cls(
            partitions=partitions,
            source=source,
            written_at=str(raw["written_at"]),
            watermark=raw["watermark"],
            schema_version=raw["schema_version"],
            write_id=raw.get("write_id"),
            extra={k: v for k, v in raw.items() if k not in known},
            checksum=checksum,
        )


def manifest_checksum(content: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's content (every key but the checksum) in one canonical spelling,
    so a hand edit of any count, date or file name is caught on the next read."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_entry(key: str, meta: Any) -> None:
    """A partition entry names a file inside its own partition directory, and nothing else."""
    if not _KEY.match(key):
        raise ValueError(f"bad partition name {key!r}")
    if not isinstance(meta, dict):
        raise ValueError(f"partition {key}: not an object")
    if not _PART.match(meta.get("file", LEGACY_PART)):
        raise ValueError(f"partition {key}: bad file name {meta.get('file')!r}")
    if not (isinstance(meta["rows"], int) and meta["rows"] >= 0):
        raise ValueError(f"partition {key}: bad row count")
    if "bytes" in meta and not (isinstance(meta["bytes"], int) and meta["bytes"] > 0):
        raise ValueError(f"partition {key}: bad size")
    if not (isinstance(meta["sha256"], str) and _SHA.match(meta["sha256"])):
        raise ValueError(f"partition {key}: bad checksum")
    if "layers" in meta:
        _check_layers(key, meta["layers"])


def _check_layers(key: str, entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
        raise ValueError(f"partition {key}: bad layers entry")
    if entry["version"] != LAYERS_VERSION:
        return  # another version's layers are never read: only their file names matter
    for layer in LAYERS:
        _check_file_entry(f"partition {key}, layer {layer}", entry[layer])
    counts = entry["quality"]
    if not (
        isinstance(counts, dict)
        and set(counts) == set(layers.QUALITY_COUNTS)
        and all(isinstance(v, int) and v >= 0 for v in counts.values())
    ):
        raise ValueError(f"partition {key}: bad quality counts")


def _check_file_entry(what: str, meta: Any) -> None:
    if not isinstance(meta, dict) or not _PART.match(str(meta.get("file"))):
        raise ValueError(f"{what}: bad file name")
    if not (isinstance(meta["rows"], int) and meta["rows"] >= 0):
        raise ValueError(f"{what}: bad row count")
    if not (isinstance(meta["bytes"], int) and meta["bytes"] > 0):
        raise ValueError(f"{what}: bad size")
    if not (isinstance(meta["sha256"], str) and _SHA.match(meta["sha256"])):
        raise ValueError(f"{what}: bad checksum")


# Reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One version of a lake: its manifest and the files it names, checked."""

    root: Path
    manifest: Manifest
    files: dict[str, Path]


def check_files(root: Path, manifest: Manifest) -> dict[str, Path]:
    """The manifest's files, each present with the size, row count and content it lists (a
    stat, a Parquet footer and a SHA-256 per file); `DamagedError` naming the file otherwise.

    Every read checks content, not only `verify`: a flipped byte inside a compressed page can
    decode to other numbers without any error from the reader. SHA-256 runs at about 1 GB/s
    here (the CPU's SHA instructions), under 1% of an analysis (docs/benchmarks.md, the read-checks contender).
    """
    files = manifest.files(root)
    for key, path in files.items():
        meta = manifest.partitions[key]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DamagedError(
                f"{path}: partition {key} is missing (the manifest lists it); the lake is damaged"
            ) from None
        if "bytes" in meta and size != meta["bytes"]:
            raise DamagedError(
                f"{path}: partition {key} has {size:,} bytes, the manifest says {meta['bytes']:,}; the lake is damaged"
            )
        try:
            rows = pq.read_metadata(path).num_rows
        except (pa.ArrowException, OSError) as err:
            raise DamagedError(
                f"{path}: partition {key} is not readable Parquet ({first_line(err)})"
            ) from None
        if rows != meta["rows"]:
            raise DamagedError(
                f"{path}: partition {key} has {rows:,} lines, the manifest says {meta['rows']:,}; the lake is damaged"
            )
    layered = manifest.layered()
    expected = [
        (path, manifest.partitions[key]["sha256"], f"partition {key}")
        for key, path in files.items()
    ]
    for (layer, key), path in manifest.layer_files(root).items():
        what = f"partition {key}'s {layer} layer"
        _check_layer_file(path, what, layered[key][layer])
        expected.append((path, layered[key][layer]["sha256"], what))
    check_content(expected)
    return files


def check_content(expected: list[tuple[Path, str, str]]) -> None:
    """Each (file, SHA-256, what it is) hashed on two threads (hashlib lets go of the GIL);
    `DamagedError` naming the first file whose content differs from its checksum."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = list(pool.map(sha256_file, [path for path, _, _ in expected]))
    for (path, sha, what), digest in zip(expected, digests, strict=True):
        if digest != sha:
            raise DamagedError(
                f"{path}: {what}: checksum differs from the manifest; the lake is damaged"
            )


def _check_layer_file(path: Path, what: str, meta: dict[str, Any]) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DamagedError(
            f"{path}: {what} is missing (the manifest lists it); the lake is damaged"
        ) from None
    if size != meta["bytes"]:
        raise DamagedError(
            f"{path}: {what} has {size:,} bytes, the manifest says {meta['bytes']:,}; the lake is damaged"
        )
    try:
        rows = pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError) as err:
        raise DamagedError(f"{path}: {what} is not readable Parquet ({first_line(err)})") from None
    if rows != meta["rows"]:
        raise DamagedError(
            f"{path}: {what} has {rows:,} rows, the manifest says {meta['rows']:,}; the lake is damaged"
        )


def snapshot(lake: str | Path | None = None) -> Snapshot:
    """The lake's current version, its files checked against the manifest."""
    root = Path(lake) if lake is not None else default_lake()
    manifest = Manifest.read(root)
    return Snapshot(root, manifest, check_files(root, manifest))


@contextlib.contextmanager
def reading(lake: str | Path | None = None) -> Iterator[Snapshot]:
    """A snapshot whose files no writer deletes until the block ends (a shared lock)."""
    root = Path(lake) if lake is not None else default_lake()
    # No lock file (no lake, or a file at `root`): `snapshot` says so in its own words.
    fd = _open_lock(root / READER_LOCK, create=False)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield snapshot(root)
    finally:
        if fd is not None:
            os.close(fd)


def pin(snap: Snapshot) -> None:
    """Keep `snap`'s files from the garbage collector while this process lives.

    A notebook scans the lake, keeps the LazyFrame, and collects it later, after other
    processes may have written the lake twice: without a pin the collect met Polars' bare
    FileNotFoundError. Unlike `reading`'s lock, a pin stops no writer: it only keeps files, in
    ``LAKE/.lgs_fast.pins/PID-VERSION.json``, until a write after this process has ended. A
    lake this process cannot write to gets no pin (its frames then last one later write).
    """
    version = snap.manifest.write_id or manifest_checksum(json.loads(snap.manifest.to_json()))
    pins = snap.root / PINS
    path = pins / f"{os.getpid()}-{version[:16]}.json"
    started = _process_start(os.getpid())
    if started is None or path.exists():
        return
    files = sorted(p.relative_to(snap.root).as_posix() for p in snap.manifest.all_files(snap.root))
    with contextlib.suppress(OSError):
        pins.mkdir(exist_ok=True)
        partial = pins / f".{path.name}.partial"
        partial.write_text(json.dumps({"pid": os.getpid(), "started": started, "files": files}))
        os.replace(partial, path)


def _process_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid it names one process, even once the pid is reused. None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _pinned_files(root: Path) -> set[Path]:
    """The files pinned by processes still running; the pins of those gone are removed."""
    kept: set[Path] = set()
    for path in (root / PINS).glob("*.json"):
        try:
            raw = json.loads(path.read_text())
            alive = _process_start(int(raw["pid"])) == raw["started"]
            files = [root / name for name in raw["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            alive, files = False, []  # a pin cut short: its process wrote nothing usable
        if alive:
            kept |= set(files)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return kept


def scan_files(snap: Snapshot) -> pl.LazyFrame:
    """The lines of a snapshot's files as a LazyFrame (with `year`, `month` hive columns)."""
    paths = [str(p) for p in snap.files.values()]
    if not paths:
        return pl.LazyFrame(schema={**POLARS_SCHEMA, "year": pl.Int64, "month": pl.Int64})
    return pl.scan_parquet(paths, hive_partitioning=True)


def scan(
    lake: str | Path | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    snap: Snapshot | None = None,
) -> pl.LazyFrame:
    """The lake's invoice lines as a LazyFrame of the canonical schema; only footers are read.

    `start` (inclusive) and `end` (exclusive) restrict invoice_date; the year/month partition
    columns let Polars skip whole files outside the range.
    """
    if snap is None:
        snap = snapshot(lake)
        pin(snap)  # the frame is the caller's to collect whenever they like
    lf = scan_files(snap)
    if start is not None:
        start_ts = as_datetime(start)
        lf = lf.filter(
            (pl.col("year") * 100 + pl.col("month")) >= start_ts.year * 100 + start_ts.month,
            pl.col("invoice_date") >= start_ts,
        )
    if end is not None:
        end_ts = as_datetime(end)
        lf = lf.filter(
            (pl.col("year") * 100 + pl.col("month")) <= end_ts.year * 100 + end_ts.month,
            pl.col("invoice_date") < end_ts,
        )
    return lf.select(ARROW_SCHEMA.names)


def _in_range(key: str, start: dt.datetime | None, end: dt.datetime | None) -> tuple[bool, bool]:
    """(whether month `key` has any time in [start, end), whether it lies wholly inside)."""
    year, month = month_of(key)
    first = dt.datetime(year, month, 1)
    after = dt.datetime(year + month // 12, month % 12 + 1, 1)
    overlaps = (start is None or after > start) and (end is None or first < end)
    inside = (start is None or first >= start) and (end is None or after <= end)
    return overlaps, inside


def _between(lf: pl.LazyFrame, start: dt.datetime | None, end: dt.datetime | None) -> pl.LazyFrame:
    if start is not None:
        lf = lf.filter(pl.col("invoice_date") >= start)
    if end is not None:
        lf = lf.filter(pl.col("invoice_date") < end)
    return lf


def layer_plan(
    snap: Snapshot | Manifest,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
) -> tuple[list[str], list[str], list[str]]:
    """Which months of the range each source serves, as partition keys:

    - `invoice_months`: months whose invoice layer is read (filtered by date: exact at any cut);
    - `whole_months`: months inside the range whose products layer and quality counts are read;
    - `line_months`: months whose layers are computed from their lines instead: the months
      without current layers (a lake written before them), and for products and quality the
      months the range cuts through.
    """
    lo = as_datetime(start) if start is not None else None
    hi = as_datetime(end) if end is not None else None
    manifest = snap if isinstance(snap, Manifest) else snap.manifest
    layered = manifest.layered()
    invoice_months, whole_months, line_months = [], [], []
    for key in sorted(manifest.partitions):
        overlaps, inside = _in_range(key, lo, hi)
        if not overlaps:
            continue
        if key in layered:
            invoice_months.append(key)
        if key in layered and inside:
            whole_months.append(key)
        else:
            line_months.append(key)
    return invoice_months, whole_months, line_months


def scan_layers(
    lake: str | Path | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    snap: Snapshot | None = None,
) -> Layers:
    """The lake's lines and derived layers (`lgs_fast.lake.layers.Layers`), lazy, over an optional
    date range: what the analyses read. Exact for any range and any lake: layers are read
    where they cover what is asked and computed from the lines where they do not."""
    if snap is None:
        snap = snapshot(lake)
        pin(snap)  # the frames are the caller's to collect whenever they like
    lo = as_datetime(start) if start is not None else None
    hi = as_datetime(end) if end is not None else None
    lines = scan(snap=snap, start=start, end=end)
    invoice_months, whole_months, line_months = layer_plan(snap, start, end)
    entries = snap.manifest.layered()
    invoice_rows = _scan_layer(snap, "invoices", invoice_months, layers.INVOICES_SCHEMA)
    # Stored in 64 bits, added up in 128: the same type as the layer computed from lines.
    stored = [_between(invoice_rows, lo, hi).with_columns(pl.col("micro").cast(pl.Int128))]
    computed = [_between(_scan_months(snap, line_months), lo, hi)] if line_months else []
    unlayered = [k for k in line_months if k not in entries]
    if unlayered:
        stored.append(layers.invoices(_between(_scan_months(snap, unlayered), lo, hi)))
    quality_rows = pl.LazyFrame(
        [entries[k]["quality"] for k in whole_months], schema=layers.QUALITY_SCHEMA
    )
    return Layers(
        lines=lines,
        invoices=pl.concat(stored),
        products=pl.concat(
            [_scan_layer(snap, "products", whole_months, layers.PRODUCTS_SCHEMA)]
            + [layers.products(frame) for frame in computed]
        ),
        # Month by month: exact duplicates are found within a month, in one month's memory.
        quality=pl.concat(
            [quality_rows]
            + [layers.quality(_between(_scan_months(snap, [key]), lo, hi)) for key in line_months]
        ),
    )


def _scan_layer(snap: Snapshot, layer: str, keys: list[str], schema: pl.Schema) -> pl.LazyFrame:
    stored = snap.manifest.layer_files(snap.root)
    paths = [str(stored[layer, key]) for key in keys]
    if not paths:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(paths)


def _scan_months(snap: Snapshot, keys: list[str]) -> pl.LazyFrame:
    paths = [str(snap.files[key]) for key in keys]
    if not paths:
        return pl.LazyFrame(schema=POLARS_SCHEMA)
    return pl.scan_parquet(paths).select(ARROW_SCHEMA.names)


def scan_invoices(
    lake: str | Path | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
) -> pl.LazyFrame:
    """The invoice layer (`lgs_fast.lake.layers`) of the lake as a LazyFrame, over an optional range."""
    return scan_layers(lake, start=start, end=end).invoices


def verify_lake(lake: str | Path | None = None) -> Manifest:
    """Check the lake whole: the manifest against its checksum, every file against the manifest
    (present, size, rows, checksum: what every read checks), and what the manifest derives from
    the lines computed again from them (each month's last invoice, quality counts and layers,
    the watermark); `DamagedError` naming the first difference."""
    root = local_lake(lake, "verify checks")
    with reading(root) as snap:
        # A manifest without a checksum (an earlier lgs_fast's) is checked all the same: what
        # it records is recomputed here, so an edit is caught either way.
        manifest = snap.manifest
        layered = manifest.layered()
        for key, path in snap.files.items():
            _verify_derived(root, key, path, manifest.partitions[key], layered.get(key))
        watermark = _watermark(root, manifest.partitions)
        if watermark != manifest.watermark:
            raise DamagedError(
                f"{root / MANIFEST}: watermark {manifest.watermark} but the lines' last invoice "
                f"is at {watermark}; the lake is damaged"
            )
        return manifest


def _verify_derived(
    root: Path, key: str, path: Path, meta: dict[str, Any], entry: dict[str, Any] | None
) -> None:
    """One month's recorded last invoice, quality counts and layers against its lines."""
    lines = pl.scan_parquet(path, hive_partitioning=False).select(ARROW_SCHEMA.names)
    where = f"{root / MANIFEST}: partition {key}"
    if "last" in meta:
        last = lines.select(pl.col("invoice_date").max()).collect().item()
        if last is None or last.isoformat() != meta["last"]:
            raise DamagedError(
                f"{where}: last invoice recorded as {meta['last']}, the lines say {last}; "
                "the lake is damaged"
            )
    if entry is None:
        return
    invoice_rows, product_rows, quality = layers.month_layers(lines)
    if quality != entry["quality"]:
        differ = "; ".join(
            f"{n} {entry['quality'][n]:,} recorded, {quality[n]:,} counted"
            for n in layers.QUALITY_COUNTS
            if quality[n] != entry["quality"][n]
        )
        raise DamagedError(
            f"{where}: quality counts differ from the lines ({differ}); the lake is damaged"
        )
    for layer, computed in (("invoices", invoice_rows), ("products", product_rows)):
        layer_path = root / layer / key / entry[layer]["file"]
        if not pl.read_parquet(layer_path).equals(computed):
            raise DamagedError(
                f"{layer_path}: partition {key}'s {layer} layer differs from what its lines "
                "give; the lake is damaged"
            )


# Writing ---------------------------------------------------------------------------------------


class _PartitionWriter:
    """Routes batches to one new Parquet file per month, buffering so row groups stay large."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.buffers: dict[Month, list[pl.DataFrame]] = {}
        self.writers: dict[Month, pq.ParquetWriter] = {}
        self.latest: dict[Month, dt.datetime] = {}
        self.counts: dict[Month, int] = {}

    def add(self, frame: pl.DataFrame) -> None:
        keyed = frame.with_columns(
            _y=pl.col("invoice_date").dt.year(), _m=pl.col("invoice_date").dt.month()
        )
        for (year, month), part in keyed.partition_by(
            ["_y", "_m"], as_dict=True, maintain_order=True
        ).items():
            key = (int(year), int(month))  # type: ignore[call-overload]
            latest = part["invoice_date"].max()
            if key not in self.latest or latest > self.latest[key]:  # type: ignore[operator]
                self.latest[key] = latest  # type: ignore[assignment]
            self.counts[key] = self.counts.get(key, 0) + part.height
            self.buffers.setdefault(key, []).append(part.drop("_y", "_m"))
            if sum(f.height for f in self.buffers[key]) >= _ROW_GROUP:
                self._flush(key)
        while sum(f.height for b in self.buffers.values() for f in b) > _MAX_BUFFERED:
            self._flush(max(self.buffers, key=lambda k: sum(f.height for f in self.buffers[k])))

    def path(self, key: Month) -> Path:
        return self.root / TABLE / partition_key(*key) / self.name

    def _flush(self, key: Month) -> None:
        frames = self.buffers.pop(key, [])
        if not frames:
            return
        if key not in self.writers:
            self.path(key).parent.mkdir(parents=True, exist_ok=True)
            self.writers[key] = pq.ParquetWriter(
                self.path(key), ARROW_SCHEMA, compression="zstd", use_dictionary=True
            )
        self.writers[key].write_table(to_arrow(pl.concat(frames)))

    def close(self) -> None:
        for key in list(self.buffers):
            self._flush(key)
        self._close_writers()

    def abort(self) -> None:
        # Closing here, not in a destructor, keeps a full disk from printing "Exception
        # ignored in ParquetWriter.__del__"; the files are removed by the caller.
        self.buffers.clear()
        with contextlib.suppress(Exception):
            self._close_writers()

    def _close_writers(self) -> None:
        writers, self.writers = self.writers, {}
        errors = []
        for writer in writers.values():
            try:
                writer.close()
            except Exception as err:  # close them all, then report the first failure
                errors.append(err)
        if errors:
            raise errors[0]


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


def _open_lock(path: Path, *, create: bool) -> int | None:
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


def _is_own_debris(root: Path) -> bool:
    """True when `root/invoice_lines` and the layers' directories hold only partition
    directories and part files: what a first write killed before its commit leaves."""
    return all(_is_own_table_debris(root / name) for name in (TABLE, *LAYERS))


def _is_own_table_debris(table: Path) -> bool:
    for path in table.rglob("*"):
        rel = path.relative_to(table).as_posix()
        if path.is_dir() and (_KEY.match(rel) or re.match(r"^year=\d{4}$", rel)):
            continue
        in_partition = _KEY.match(path.parent.relative_to(table).as_posix())
        if path.is_file() and in_partition and _PART.match(path.name):
            continue
        return False
    return True


def _claim(root: Path) -> bool:
    """Check that lgs_fast may write at `root`; create it if missing. True if created here."""
    if root.exists() and not root.is_dir():
        raise LakeError(f"{root}: is a file, not a lake directory; lgs_fast leaves it alone")
    if not root.exists():
        try:
            root.mkdir(parents=True)
            return True
        except FileExistsError:
            pass  # another writer made it a moment ago: checked as any existing directory
    entries = {e for e in os.listdir(root) if e != READER_LOCK and not _MANIFEST_TMP.match(e)}
    if MANIFEST in entries:
        try:
            Manifest.read(root)
        except LakeError as err:
            raise type(err)(
                f"{err}; lgs_fast will not write over a lake it cannot read (move it away or restore its manifest)"
            ) from None
        return False
    if not entries or (entries <= {TABLE, *LAYERS} and _is_own_debris(root)):
        return False
    shown = ", ".join(sorted(entries)[:3])
    raise LakeError(
        f"{root}: not a lake (no {MANIFEST}) and not empty ({shown}); lgs_fast writes only into a new or empty directory or a lake it made"
    )


# What this process tried to commit, so that an interrupted command can say what is on disk.
_ATTEMPTS: list[tuple[Path, str]] = []


def interrupted_state() -> list[str]:
    """After an interruption: for each lake this process was writing, whether it changed."""
    said = []
    for root, write_id in _ATTEMPTS:
        try:
            current = Manifest.read(root).write_id
        except LakeError:
            current = None
        if current == write_id:
            said.append(f"lake {root} holds the new version")
        else:
            said.append(f"lake {root} is unchanged")
    return said


class LakeWriter:
    """One write transaction on a lake: stage new part files, then `commit` or drop them.

    Use as a context manager; leaving it without `commit` removes everything it wrote and
    leaves the lake as it was.
    """

    def __init__(self, lake: str | Path | None = None) -> None:
        self.root = Path(lake) if lake is not None else default_lake()
        self.write_id = uuid.uuid4().hex[:16]
        self.name = f"part-{self.write_id}.parquet"
        self.old: Manifest | None = None
        self.created = False
        self.committed = False
        self.rows = 0
        self._lock: int | None = None
        self._writer: _PartitionWriter | None = None
        self._kept: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> LakeWriter:
        self.created = _claim(self.root)
        try:
            self._lock = exclusive_lock(
                self.root,
                os.O_RDONLY | os.O_DIRECTORY,
                f"{self.root}: another lgs-fast process is writing this lake; try again when it ends",
            )
            readers = _open_lock(self.root / READER_LOCK, create=True)
            os.close(readers)  # type: ignore[arg-type]
            if (self.root / MANIFEST).exists():
                self.old = Manifest.read(self.root)
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # Asked of the disk, not of a flag: an interruption can land between the manifest's
        # rename and the next line, and the files of a committed version must stay.
        self._release(failed=not (self.committed or self._on_disk()))

    def _on_disk(self) -> bool:
        try:
            return Manifest.read(self.root).write_id == self.write_id
        except LakeError:
            return False

    def _release(self, *, failed: bool) -> None:
        if self._lock is None:
            return  # never held the lock: nothing here is ours to clean
        if failed:
            if self._writer is not None:
                self._writer.abort()
            self._remove_new_files()
            if not (self.root / MANIFEST).exists():
                # A first write that failed: leave the directory as it was found.
                if self.created:
                    shutil.rmtree(self.root, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.root / READER_LOCK).unlink()
        os.close(self._lock)
        self._lock = None

    def _remove_new_files(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / f".{MANIFEST}.{self.write_id}").unlink()
        for name in (TABLE, *LAYERS):
            table = self.root / name
            for path in table.glob(f"year=*/month=*/part-{self.write_id}*"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            _remove_empty_dirs(table)

    def write(self, frames: Iterable[pl.DataFrame], progress: Progress | None = None) -> int:
        """Stream canonical frames into new part files, one per month; returns lines written."""
        assert self._writer is None, "one write per transaction (or `discard` first)"
        writer = self._writer = _PartitionWriter(self.root, self.name)
        try:
            for frame in frames:
                writer.add(frame)
                self.rows += frame.height
                if progress:
                    progress(self.rows)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return self.rows

    def month_rows(self) -> dict[str, int]:
        """Lines written so far, by partition key."""
        counts = self._writer.counts if self._writer else {}
        return {partition_key(*m): n for m, n in sorted(counts.items())}

    def discard(self) -> None:
        """Drop what was written so far, to write again from the start."""
        if self._writer is not None:
            self._writer.abort()
        self._remove_new_files()
        self._writer, self.rows = None, 0

    def keep(self, keys: Iterable[str]) -> None:
        """Carry these partitions of the current version into the new one, unchanged."""
        for key in keys:
            assert self.old is not None, "no current version to keep partitions of"
            self._kept[key] = dict(self.old.partitions[key])

    def commit(
        self,
        *,
        source: list[str],
        extra: dict[str, Any] | None = None,
        partition_extra: dict[str, dict[str, Any]] | None = None,
        dedupe: bool = False,
        allow_empty: bool = False,
    ) -> tuple[Manifest, bool]:
        """Make the staged files the lake's new version in one atomic step.

        Returns (manifest, changed): when the new version equals the current one file for
        file, nothing is replaced and the current manifest stands (re-running is idempotent).
        """
        partitions = dict(self._kept)
        latest = dict(self._writer.latest) if self._writer else {}
        dropped = 0
        for month in sorted(latest):
            key = partition_key(*month)
            path = self.root / TABLE / key / self.name
            if dedupe:
                dropped += _dedupe_partition(path)
            partitions[key] = {
                "file": self.name,
                "rows": pq.read_metadata(path).num_rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "last": latest[month].isoformat(),
                **(partition_extra or {}).get(key, {}),
            }
        # Every month of the new version gets current layers: the new months, and kept months
        # of a lake written before the layers (or with an older version of them).
        built = []
        for key, meta in partitions.items():
            if meta.get("layers", {}).get("version") != LAYERS_VERSION:
                lines_path = self.root / TABLE / key / meta.get("file", LEGACY_PART)
                if key in self._kept:  # layers of damaged lines would carry the damage on
                    check_content([(lines_path, meta["sha256"], f"partition {key}")])
                partitions[key] = {**meta, "layers": self._write_layers(key, lines_path)}
                built.append(key)
        rows = sum(p["rows"] for p in partitions.values())
        if rows == 0 and not allow_empty:
            raise InputError(
                f"{', '.join(source) or 'input'}: no lines to write (header only?); the lake is unchanged (pass --allow-empty to write an empty lake)"
            )
        manifest = Manifest(
            partitions=dict(sorted(partitions.items())),
            source=source,
            written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            watermark=_watermark(self.root, partitions),
            write_id=self.write_id,
            extra={
                **(extra or {}),
                "duplicates_dropped": (extra or {}).get("duplicates_dropped", 0) + dropped,
            },
        )
        if self.old is not None and _same_data(self.old, manifest):
            self._remove_new_files()
            self.committed = True
            self._collect_garbage(self.old)
            return self.old, False
        # Every new file and every directory entry leading to it reaches the disk before the
        # manifest names it, so a power cut cannot leave a manifest whose files are unreachable.
        directories = {self.root}
        written = [(TABLE, partition_key(*m)) for m in latest]
        written += [(layer, key) for key in built for layer in LAYERS]
        for name, key in written:
            fsync(self.root / name / key / self.name)
            directories |= {
                self.root / name,
                self.root / name / key,
                self.root / name / key.split("/")[0],
            }
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            fsync(directory)
        tmp = self.root / f".{MANIFEST}.{self.write_id}"
        with tmp.open("w") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        _ATTEMPTS.append((self.root, self.write_id))
        os.replace(tmp, self.root / MANIFEST)  # the commit point
        self.committed = True
        fsync(self.root)
        self._collect_garbage(manifest)
        return manifest, True

    def _write_layers(self, key: str, lines_path: Path) -> dict[str, Any]:
        """Build and write the layers of one month from its lines file; their manifest entry."""
        lines = pl.scan_parquet(lines_path, hive_partitioning=False).select(ARROW_SCHEMA.names)
        invoice_rows, product_rows, quality = layers.month_layers(lines)
        entry: dict[str, Any] = {"version": LAYERS_VERSION}
        for layer, frame in (("invoices", invoice_rows), ("products", product_rows)):
            path = self.root / layer / key / self.name
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(path, compression="zstd", statistics=True)
            entry[layer] = {
                "file": self.name,
                "rows": frame.height,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        entry["quality"] = {name: int(quality[name]) for name in layers.QUALITY_COUNTS}
        return entry

    def _collect_garbage(self, new: Manifest) -> None:
        """Delete part files neither this version nor the previous one names, when no reader
        holds the lake (a reader in the middle of a scan keeps every file it may open)."""
        fd = _open_lock(self.root / READER_LOCK, create=False)
        if fd is None:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # left for a later writer
            live = new.all_files(self.root) | _pinned_files(self.root)
            if self.old is not None:
                live |= self.old.all_files(self.root)
            for name in (TABLE, *LAYERS):
                table = self.root / name
                for path in table.glob("year=*/month=*/part-*"):
                    if path not in live and _PART.match(path.name):
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                _remove_empty_dirs(table)
            for leftover in self.root.glob(f".{MANIFEST}.*"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        finally:
            os.close(fd)


def _remove_empty_dirs(table: Path) -> None:
    if not table.is_dir():
        return
    for path in sorted(table.glob("year=*/month=*"), reverse=True) + sorted(table.glob("year=*")):
        with contextlib.suppress(OSError):
            path.rmdir()  # only succeeds when empty
    with contextlib.suppress(OSError):
        table.rmdir()


def _dedupe_partition(path: Path) -> int:
    """Drop exact duplicate lines within one new partition file; returns how many were dropped.

    Exact duplicates share invoice_date and so a partition: deduplicating one month at a time
    is exact and keeps memory bounded by the largest month.
    """
    frame = pl.from_arrow(pq.read_table(path, schema=ARROW_SCHEMA))
    unique = frame.unique(maintain_order=True)  # type: ignore[union-attr]
    dropped = frame.height - unique.height  # type: ignore[union-attr]
    if dropped:
        pq.write_table(to_arrow(unique), path, compression="zstd", row_group_size=_ROW_GROUP)
    return dropped


def _watermark(root: Path, partitions: dict[str, dict[str, Any]]) -> str | None:
    """The latest invoice_date of the lake, from the partitions' own records where they have one."""
    if not partitions:
        return None
    latest_key = max(partitions)
    meta = partitions[latest_key]
    if "last" in meta:
        return str(meta["last"])
    path = root / TABLE / latest_key / meta.get("file", LEGACY_PART)
    value = pl.scan_parquet(path).select(pl.col("invoice_date").max()).collect().item()
    return value.isoformat() if value is not None else None


def _same_data(old: Manifest, new: Manifest) -> bool:
    """The same version but for file names: same content, and the same record of it (an
    export's fingerprints and column mapping included, so that a record that changed while the
    data did not is written, and the next export does not read those months again)."""

    def unnamed(entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        return {f: unnamed(v) for f, v in entry.items() if f != "file"}

    def content(m: Manifest) -> dict[str, Any]:
        return {k: unnamed(p) for k, p in m.partitions.items()}

    # A manifest without a checksum (an earlier lgs_fast's) is written again, with one.
    return (
        old.checksum is not None
        and content(old) == content(new)
        and (old.source, old.extra) == (new.source, new.extra)
    )


def write_lake(
    frames: Iterable[pl.DataFrame],
    lake: Path,
    *,
    source: list[str],
    dedupe: bool = False,
    allow_empty: bool = False,
    extra: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[Manifest, bool]:
    """Write canonical frames as the whole new version of the lake; returns (manifest, changed)."""
    with LakeWriter(lake) as writer:
        writer.write(frames, progress)
        return writer.commit(source=source, extra=extra, dedupe=dedupe, allow_empty=allow_empty)


def upgrade_lake(lake: str | Path | None = None) -> tuple[Manifest, list[str]]:
    """Give every month of a lake the current derived layers, in one atomic commit; the lines
    and the manifest's record of them are unchanged. Returns (manifest, months given layers)."""
    root = local_lake(lake, "upgrade writes")
    Manifest.read(root)  # no lake here: say so before claiming anything
    with LakeWriter(root) as writer:
        old = writer.old
        assert old is not None
        missing = [k for k in old.partitions if k not in old.layered()]
        writer.keep(old.partitions)
        manifest, _ = writer.commit(source=old.source, extra=old.extra, allow_empty=True)
        return manifest, missing
