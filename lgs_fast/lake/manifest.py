"""The manifest, the lake's one source of truth: every month's files with their row counts, sizes and checksums, the layers, the watermark, and a checksum of its own content."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lgs_fast.errors import DamagedError, LakeError
from lgs_fast.lake import layers
from lgs_fast.lake.layers import LAYERS, LAYERS_VERSION
from lgs_fast.lake.locks import first_line
from lgs_fast.schema import SCHEMA_VERSION

Month = tuple[int, int]


TABLE = "invoice_lines"


MANIFEST = "_manifest.json"


CHECKSUM = "checksum"  # the manifest's key for the SHA-256 of the rest of it


LEGACY_PART = "part-0.parquet"  # lakes written before part files were named by write


KEY_PATTERN = re.compile(r"^year=(\d{4})/month=(0[1-9]|1[0-2])$")


PART_PATTERN = re.compile(r"^part-[0-9a-f]{1,32}\.parquet$")


_SHA = re.compile(r"^[0-9a-f]{64}$")


Progress = Callable[[int], None]


def partition_key(year: int, month: int) -> str:
    return f"year={year:04d}/month={month:02d}"


def month_of(key: str) -> Month:
    match = KEY_PATTERN.match(key)
    if not match:
        raise ValueError(f"not a partition key: {key!r}")
    return int(match[1]), int(match[2])


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
    if not KEY_PATTERN.match(key):
        raise ValueError(f"bad partition name {key!r}")
    if not isinstance(meta, dict):
        raise ValueError(f"partition {key}: not an object")
    if not PART_PATTERN.match(meta.get("file", LEGACY_PART)):
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
    if not isinstance(meta, dict) or not PART_PATTERN.match(str(meta.get("file"))):
        raise ValueError(f"{what}: bad file name")
    if not (isinstance(meta["rows"], int) and meta["rows"] >= 0):
        raise ValueError(f"{what}: bad row count")
    if not (isinstance(meta["bytes"], int) and meta["bytes"] > 0):
        raise ValueError(f"{what}: bad size")
    if not (isinstance(meta["sha256"], str) and _SHA.match(meta["sha256"])):
        raise ValueError(f"{what}: bad checksum")


def latest_invoice(root: Path, partitions: dict[str, dict[str, Any]]) -> str | None:
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
