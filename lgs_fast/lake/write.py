"""Writing the lake as a transaction: files under new names, then the manifest replaced atomically; one writer at a time; garbage collected only where no reader or pin needs it."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from lgs_fast.errors import InputError, LakeError
from lgs_fast.lake import layers
from lgs_fast.lake.layers import LAYERS, LAYERS_VERSION
from lgs_fast.lake.location import default_lake, local_lake
from lgs_fast.lake.locks import READER_LOCK, exclusive_lock, fsync, open_lock, sha256_file
from lgs_fast.lake.manifest import (
    KEY_PATTERN,
    LEGACY_PART,
    MANIFEST,
    PART_PATTERN,
    TABLE,
    Manifest,
    Month,
    Progress,
    latest_invoice,
    partition_key,
)
from lgs_fast.lake.read import check_content, pinned_files
from lgs_fast.schema import ARROW_SCHEMA, to_arrow

_ROW_GROUP = 128_000  # rows buffered per partition before a row group is written


_MAX_BUFFERED = 1_000_000  # rows buffered over all partitions before the largest is flushed


_MANIFEST_TMP = re.compile(r"^\._manifest\.json\.[0-9a-f]{16}$")  # a commit that did not finish


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


def _is_own_debris(root: Path) -> bool:
    """True when `root/invoice_lines` and the layers' directories hold only partition
    directories and part files: what a first write killed before its commit leaves."""
    return all(_is_own_table_debris(root / name) for name in (TABLE, *LAYERS))


def _is_own_table_debris(table: Path) -> bool:
    for path in table.rglob("*"):
        rel = path.relative_to(table).as_posix()
        if path.is_dir() and (KEY_PATTERN.match(rel) or re.match(r"^year=\d{4}$", rel)):
            continue
        in_partition = KEY_PATTERN.match(path.parent.relative_to(table).as_posix())
        if path.is_file() and in_partition and PART_PATTERN.match(path.name):
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
            readers = open_lock(self.root / READER_LOCK, create=True)
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
            watermark=latest_invoice(self.root, partitions),
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
        fd = open_lock(self.root / READER_LOCK, create=False)
        if fd is None:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # left for a later writer
            live = new.all_files(self.root) | pinned_files(self.root)
            if self.old is not None:
                live |= self.old.all_files(self.root)
            for name in (TABLE, *LAYERS):
                table = self.root / name
                for path in table.glob("year=*/month=*/part-*"):
                    if path not in live and PART_PATTERN.match(path.name):
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
