"""Reading one version of the lake: its files checked against the manifest (sizes, row counts, content), under the readers' lock, pinned for a notebook's frames; lazy scans of lines and layers over a date range; verify."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lgs_fast.config import as_datetime
from lgs_fast.errors import DamagedError
from lgs_fast.lake import layers
from lgs_fast.lake.layers import Layers
from lgs_fast.lake.location import default_lake, local_lake
from lgs_fast.lake.locks import PINS, READER_LOCK, first_line, open_lock, sha256_file
from lgs_fast.lake.manifest import MANIFEST, Manifest, latest_invoice, manifest_checksum, month_of
from lgs_fast.schema import ARROW_SCHEMA, POLARS_SCHEMA


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
    fd = open_lock(root / READER_LOCK, create=False)
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


def pinned_files(root: Path) -> set[Path]:
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
    invoice_rows = _scan_layer(snap, "invoices", invoice_months)
    stored = [_between(invoice_rows, lo, hi)]
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
            [_scan_layer(snap, "products", whole_months)]
            + [layers.products(frame) for frame in computed]
        ),
        # Month by month: exact duplicates are found within a month, in one month's memory.
        quality=pl.concat(
            [quality_rows]
            + [layers.quality(_between(_scan_months(snap, [key]), lo, hi)) for key in line_months]
        ),
    )


def _scan_layer(snap: Snapshot, layer: str, keys: list[str]) -> pl.LazyFrame:
    """A stored layer's rows of months `keys`, money stored in 64 bits read in 128: the types
    of the layer computed from lines, so that sums never overflow."""
    stored = snap.manifest.layer_files(snap.root)
    paths = [str(stored[layer, key]) for key in keys]
    if not paths:
        return pl.LazyFrame(schema=layers.SCHEMAS[layer])
    return pl.scan_parquet(paths).with_columns(pl.col(layers.MICRO_COLUMNS[layer]).cast(pl.Int128))


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
        watermark = latest_invoice(root, manifest.partitions)
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
