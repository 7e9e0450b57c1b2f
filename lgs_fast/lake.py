"""The lake: hive-partitioned Parquet of canonical invoice lines, plus `_manifest.json`.

Layout: ``LAKE/invoice_lines/year=YYYY/month=MM/part-0.parquet`` (zstd). A new lake is always
built in a temporary directory beside the old one and swapped in with one atomic rename, so a
crash, a kill or rejected input leaves the previous lake readable and unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from lgs_fast.errors import LakeError
from lgs_fast.schema import ARROW_SCHEMA, POLARS_SCHEMA, SCHEMA_VERSION, to_arrow

DEFAULT_LAKE = Path("data/lake")
TABLE = "invoice_lines"
MANIFEST = "_manifest.json"
PART_FILE = "part-0.parquet"
_ROW_GROUP = 128_000  # rows buffered per partition before a row group is written
_MAX_BUFFERED = 1_000_000  # rows buffered over all partitions before the largest is flushed

Month = tuple[int, int]
Progress = Callable[[int], None]


def default_lake() -> Path:
    """`LGS_LAKE` if set, else `data/lake`."""
    return Path(os.environ.get("LGS_LAKE") or DEFAULT_LAKE)


@dataclass
class Manifest:
    """What a lake holds; written last, so a lake with a manifest is complete."""

    partitions: dict[str, dict[str, Any]]
    source: list[str]
    written_at: str
    watermark: str | None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.partitions.values())

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "table": TABLE,
                "rows": self.rows,
                "partitions": self.partitions,
                "source": self.source,
                "written_at": self.written_at,
                "watermark": self.watermark,
                **self.extra,
            },
            indent=2,
        )

    @classmethod
    def read(cls, lake: Path) -> Manifest:
        path = lake / MANIFEST
        if not path.is_file():
            raise LakeError(
                f"{lake}: no lake here (no {MANIFEST}); run `lgs-fast import` or `lgs-fast export` first"
            )
        try:
            raw = json.loads(path.read_text())
            known = {
                "schema_version",
                "table",
                "rows",
                "partitions",
                "source",
                "written_at",
                "watermark",
            }
            return cls(
                partitions=raw["partitions"],
                source=raw["source"],
                written_at=raw["written_at"],
                watermark=raw["watermark"],
                schema_version=raw["schema_version"],
                extra={k: v for k, v in raw.items() if k not in known},
            )
        except (ValueError, KeyError) as err:
            raise LakeError(f"{path}: unreadable manifest ({err})") from err


def partition_key(year: int, month: int) -> str:
    return f"year={year:04d}/month={month:02d}"


class _PartitionWriter:
    """Routes batches to one Parquet file per month, buffering so row groups stay large."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.buffers: dict[Month, list[pl.DataFrame]] = {}
        self.writers: dict[Month, pq.ParquetWriter] = {}

    def add(self, frame: pl.DataFrame) -> None:
        keyed = frame.with_columns(
            _y=pl.col("invoice_date").dt.year(), _m=pl.col("invoice_date").dt.month()
        )
        for (year, month), part in keyed.partition_by(
            ["_y", "_m"], as_dict=True, maintain_order=True
        ).items():
            key = (int(year), int(month))  # type: ignore[call-overload]
            self.buffers.setdefault(key, []).append(part.drop("_y", "_m"))
            if sum(f.height for f in self.buffers[key]) >= _ROW_GROUP:
                self._flush(key)
        while sum(f.height for b in self.buffers.values() for f in b) > _MAX_BUFFERED:
            self._flush(max(self.buffers, key=lambda k: sum(f.height for f in self.buffers[k])))

    def _flush(self, key: Month) -> None:
        frames = self.buffers.pop(key, [])
        if not frames:
            return
        if key not in self.writers:
            directory = self.root / TABLE / partition_key(*key)
            directory.mkdir(parents=True, exist_ok=True)
            self.writers[key] = pq.ParquetWriter(
                directory / PART_FILE, ARROW_SCHEMA, compression="zstd", use_dictionary=True
            )
        self.writers[key].write_table(to_arrow(pl.concat(frames)))

    def close(self) -> None:
        for key in list(self.buffers):
            self._flush(key)
        for writer in self.writers.values():
            writer.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dedupe_partition(path: Path) -> int:
    """Drop exact duplicate lines within one partition file; returns how many were dropped.

    Exact duplicates share invoice_date and so a partition: deduplicating one month at a time
    is exact and keeps memory bounded by the largest month.
    """
    table = pq.read_table(path, schema=ARROW_SCHEMA)
    frame = pl.from_arrow(table)
    unique = frame.unique(maintain_order=True)  # type: ignore[union-attr]
    dropped = frame.height - unique.height  # type: ignore[union-attr]
    if dropped:
        pq.write_table(to_arrow(unique), path, compression="zstd", row_group_size=_ROW_GROUP)
    return dropped


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def staging(lake: Path) -> Iterator[Path]:
    """A fresh directory beside `lake`, removed unless it was swapped in."""
    lake.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(lake)
    tmp = lake.parent / f".{lake.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clean_leftovers(lake: Path) -> None:
    """Remove staging directories of writers that died; their pid no longer runs."""
    for leftover in lake.parent.glob(f".{lake.name}.tmp-*"):
        pid = leftover.name.split("-")[-2]
        if not (pid.isdigit() and _pid_alive(int(pid))) or int(pid) == os.getpid():
            shutil.rmtree(leftover, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def swap_in(tmp: Path, lake: Path) -> None:
    """Make `tmp` the lake in one atomic step; the old lake is removed only afterwards."""
    if not lake.exists():
        os.rename(tmp, lake)
        return
    if not _exchange(tmp, lake):
        # No renameat2 (not Linux): two renames, with a brief window where `lake` is absent.
        old = lake.parent / f".{lake.name}.tmp-{os.getpid()}-old"
        os.rename(lake, old)
        os.rename(tmp, lake)
        tmp = old
    shutil.rmtree(tmp, ignore_errors=True)


def write_lake(
    frames: Iterable[pl.DataFrame],
    lake: Path,
    *,
    source: list[str],
    dedupe: bool = False,
    keep: Callable[[Path], Iterable[Month]] | None = None,
    extra: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[Manifest, bool]:
    """Write canonical frames as a new lake at `lake`, atomically; returns (manifest, changed).

    `keep`, if given, names months of the current lake to carry over unchanged (incremental
    export); all other months come from `frames`. When the result equals the current lake file
    for file, nothing is swapped and the old manifest stands: re-running is idempotent.
    """
    with staging(lake) as tmp:
        writer = _PartitionWriter(tmp)
        rows = 0
        try:
            for frame in frames:
                writer.add(frame)
                rows += frame.height
                if progress:
                    progress(rows)
        finally:
            writer.close()
        for month in keep(lake) if keep else ():
            src = lake / TABLE / partition_key(*month)
            if not (tmp / TABLE / partition_key(*month)).exists():
                shutil.copytree(src, tmp / TABLE / partition_key(*month))
        dropped = 0
        partitions: dict[str, dict[str, Any]] = {}
        for part in sorted((tmp / TABLE).glob(f"year=*/month=*/{PART_FILE}")):
            if dedupe:
                dropped += _dedupe_partition(part)
            key = f"{part.parent.parent.name}/{part.parent.name}"
            partitions[key] = {
                "rows": pq.ParquetFile(part).metadata.num_rows,
                "sha256": _sha256(part),
            }
        watermark = _watermark(tmp) if partitions else None
        manifest = Manifest(
            partitions=partitions,
            source=source,
            written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            watermark=watermark,
            extra={**(extra or {}), "duplicates_dropped": dropped},
        )
        if _same_data(lake, manifest):
            return Manifest.read(lake), False
        (tmp / MANIFEST).write_text(manifest.to_json())
        _fsync_tree(tmp)
        swap_in(tmp, lake)
        return manifest, True


def _watermark(root: Path) -> str | None:
    latest = scan(root, check=False).select(pl.col("invoice_date").max()).collect().item()
    return latest.isoformat() if latest is not None else None


def _same_data(lake: Path, manifest: Manifest) -> bool:
    if not (lake / MANIFEST).exists():
        return False
    try:
        old = Manifest.read(lake)
    except LakeError:
        return False
    return old.partitions == manifest.partitions and old.source == manifest.source


def scan(
    lake: str | Path | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    check: bool = True,
) -> pl.LazyFrame:
    """The lake's invoice lines as a LazyFrame of the canonical schema; nothing is read yet.

    `start` (inclusive) and `end` (exclusive) restrict invoice_date; the year/month partition
    columns let Polars skip whole files outside the range.
    """
    root = Path(lake) if lake is not None else default_lake()
    if check:
        Manifest.read(root)
    files = root / TABLE
    if not any(files.glob(f"year=*/month=*/{PART_FILE}")):
        return pl.LazyFrame(schema=POLARS_SCHEMA)
    lf = pl.scan_parquet(files, hive_partitioning=True)
    if start is not None:
        start_ts = (
            dt.datetime.combine(start, dt.time()) if not isinstance(start, dt.datetime) else start
        )
        lf = lf.filter(
            (pl.col("year") * 100 + pl.col("month")) >= start_ts.year * 100 + start_ts.month,
            pl.col("invoice_date") >= start_ts,
        )
    if end is not None:
        end_ts = dt.datetime.combine(end, dt.time()) if not isinstance(end, dt.datetime) else end
        lf = lf.filter(
            (pl.col("year") * 100 + pl.col("month")) <= end_ts.year * 100 + end_ts.month,
            pl.col("invoice_date") < end_ts,
        )
    return lf.select(ARROW_SCHEMA.names)


def verify_lake(lake: str | Path | None = None) -> Manifest:
    """Check every partition file against the manifest's row count and checksum."""
    root = Path(lake) if lake is not None else default_lake()
    manifest = Manifest.read(root)
    found = {
        f"{p.parent.parent.name}/{p.parent.name}"
        for p in (root / TABLE).glob(f"year=*/month=*/{PART_FILE}")
    }
    if found != set(manifest.partitions):
        extra = sorted(found ^ set(manifest.partitions))
        raise LakeError(f"{root}: partitions differ from the manifest: {', '.join(extra[:3])}")
    for key, meta in manifest.partitions.items():
        path = root / TABLE / key / PART_FILE
        if _sha256(path) != meta["sha256"]:
            raise LakeError(f"{path}: checksum differs from the manifest")
    return manifest
