"""Readers for every file form lgs_fast imports, each yielding conformed batches.

CSV (plain or compressed), the UCI .xlsx, a plain pg_dump of table `retail`, and Parquet. All
readers stream: a file is never held whole as Python objects, only as Arrow batches of
`BATCH_ROWS` lines, so a 100M-line file imports in bounded memory.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lgs_fast.errors import InputError
from lgs_fast.lake import Progress, default_lake, write_lake
from lgs_fast.schema import COLUMNS, conform, header_mapping

BATCH_ROWS = 250_000
_BLOCK_BYTES = 8 << 20

Reader = Callable[[Path], Iterator[pl.DataFrame]]


def read_source(path: str | Path) -> Iterator[pl.DataFrame]:
    """Yield the lines of one importable file as canonical Polars frames, in file order."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    return _reader_for(path)(path)


def _reader_for(path: Path) -> Reader:
    name = path.name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader
    known = ", ".join(_READERS)
    raise InputError(f"{path}: unknown file type; lgs_fast imports {known}")


def _conformed(
    path: Path | str, frames: Iterator[pl.DataFrame], header: list[str]
) -> Iterator[pl.DataFrame]:
    """Rename to canonical names, then conform each frame, numbering rows across frames."""
    mapping = header_mapping(header, str(path))
    row = 1
    for frame in frames:
        if frame.height == 0:
            continue
        named = frame.rename(mapping).select(COLUMNS)
        yield conform(named, origin=str(path), first_row=row)
        row += frame.height


def _arrow_error(path: Path, err: Exception) -> InputError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(f"{path}: {first_line}")


# CSV -----------------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    with pa.input_stream(str(path), compression="detect") as raw:
        head = raw.read(1 << 16)
    if not head.strip():
        raise InputError(f"{path}: empty file")
    first = head.decode("utf-8", errors="replace").splitlines()[0]
    return next(csv.reader([first]))


def _read_csv(path: Path) -> Iterator[pl.DataFrame]:
    header = _csv_header(path)
    # Everything is read as text and parsed in `conform`, which can name the bad row and column.
    # Only an empty field is missing: pyarrow's default null spellings ("NA", "NULL", "nan",
    # …) would turn a product described as "NA" into a line without description.
    convert = pacsv.ConvertOptions(
        column_types={h: pa.string() for h in header}, null_values=[""], strings_can_be_null=True
    )
    bad_rows: list[pacsv.InvalidRow] = []

    def reject(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row)
        return "error"

    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(path), compression="detect"),
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=reject),
            convert_options=convert,
        )
        frames = (pl.from_arrow(b) for b in _batches(reader))
        yield from _conformed(path, frames, header)  # type: ignore[arg-type]
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        if bad_rows:
            row = bad_rows[0]
            where = f"row {row.number - 1}: " if row.number else ""
            raise InputError(
                f"{path}: {where}expected {row.expected_columns} fields, found {row.actual_columns}"
            ) from err
        raise _arrow_error(path, err) from err


def _batches(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    yield from reader


# xlsx ----------------------------------------------------------------------------------------


def _read_xlsx(path: Path) -> Iterator[pl.DataFrame]:
    # calamine (Rust) reads a sheet in one go; a sheet holds at most 1,048,576 rows, so memory
    # stays bounded per sheet. Text cells everywhere, then the one parser in `conform`.
    try:
        sheets = pl.read_excel(path, sheet_id=0, engine="calamine", infer_schema_length=0)
    except Exception as err:  # fastexcel raises its own exception types
        raise _arrow_error(path, err) from err
    for sheet, frame in sheets.items():
        yield from _conformed(f"{path} sheet {sheet!r}", iter([frame]), frame.columns)


# pg_dump -------------------------------------------------------------------------------------

_COPY_LINE = re.compile(
    rb"^COPY\s+(?:[\w\"]+\.)?\"?retail\"?\s*\((?P<cols>[^)]*)\)\s+FROM\s+stdin;", re.I
)
_END = b"\n\\.\n"


class _CopyBlock(io.RawIOBase):
    """The bytes of one `COPY … FROM stdin` block of a plain pg_dump, up to its `\\.` line."""

    def __init__(self, raw: BinaryIO, origin: Path) -> None:
        self._raw = raw
        self._origin = origin
        self._pending = b"\n"  # leading newline lets one search find an empty block too
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._done and len(self._pending) < len(buffer) + len(_END):
            chunk = self._raw.read(_BLOCK_BYTES)
            self._pending += chunk
            end = self._pending.find(_END)
            if end >= 0:
                self._pending = self._pending[: end + 1]
                self._done = True
            elif not chunk:
                raise InputError(f"{self._origin}: COPY block has no terminating '\\.' line")
        if self._pending.startswith(b"\n"):
            self._pending = self._pending[1:]
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _unescape_copy_text(value: str | None) -> str | None:
    """Undo COPY text escaping (backslash sequences); only called on the rare values holding one."""
    if value is None or "\\" not in value:
        return value
    out, i = [], 0
    table = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "b": "\b", "f": "\f", "v": "\v"}
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(table.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _read_pg_dump(path: Path) -> Iterator[pl.DataFrame]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as raw:
        header: list[str] | None = None
        for line in iter(raw.readline, b""):
            match = _COPY_LINE.match(line)
            if match:
                header = [c.strip().strip('"') for c in match["cols"].decode().split(",")]
                break
        if header is None:
            raise InputError(
                f"{path}: no 'COPY retail (…) FROM stdin' block found; is it a plain-format pg_dump of table retail?"
            )
        block = _CopyBlock(raw, path)
        reader = pacsv.open_csv(
            io.BufferedReader(block, buffer_size=_BLOCK_BYTES),
            read_options=pacsv.ReadOptions(column_names=header, block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                null_values=["\\N"],
                strings_can_be_null=True,
            ),
        )
        try:
            frames = (_unescape_frame(pl.from_arrow(b)) for b in _batches(reader))  # type: ignore[arg-type]
            yield from _conformed(path, frames, header)
        except pa.ArrowInvalid as err:
            raise _arrow_error(path, err) from err


def _unescape_frame(frame: pl.DataFrame) -> pl.DataFrame:
    for name in frame.columns:
        rows = frame[name].str.contains("\\", literal=True).fill_null(False).arg_true()
        if len(rows):
            fixed = [_unescape_copy_text(v) for v in frame[name].gather(rows)]
            frame = frame.with_columns(frame[name].scatter(rows, fixed))
    return frame


# Parquet -------------------------------------------------------------------------------------


def _read_parquet(path: Path) -> Iterator[pl.DataFrame]:
    try:
        file = pq.ParquetFile(path)
        header = file.schema_arrow.names
        frames = (pl.from_arrow(b) for b in file.iter_batches(batch_size=BATCH_ROWS))
        yield from _conformed(path, frames, header)  # type: ignore[arg-type]
    except (pa.ArrowInvalid, OSError) as err:
        raise _arrow_error(path, err) from err


_READERS: dict[str, Reader] = {
    ".csv": _read_csv,
    ".csv.gz": _read_csv,
    ".csv.bz2": _read_csv,
    ".csv.zst": _read_csv,
    ".xlsx": _read_xlsx,
    ".sql": _read_pg_dump,
    ".sql.gz": _read_pg_dump,
    ".parquet": _read_parquet,
}


@dataclass(frozen=True)
class ImportResult:
    lake: Path
    rows: int
    duplicates_dropped: int
    changed: bool


def import_files(
    paths: Sequence[str | Path],
    lake: str | Path | None = None,
    *,
    dedupe: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Build the lake from exactly these files (replacing what was there), atomically.

    Every file is validated while it streams; the first bad value aborts the whole import
    before anything is swapped in, so the previous lake stays as it was.
    """
    if not paths:
        raise InputError("no input files given")
    root = Path(lake) if lake is not None else default_lake()
    for path in paths:
        read_source(path)  # checks path and file type now, before any work; reads nothing

    def frames() -> Iterator[pl.DataFrame]:
        for path in paths:
            yield from read_source(path)

    manifest, changed = write_lake(
        frames(),
        root,
        source=[str(Path(p).name) for p in paths],
        dedupe=dedupe,
        extra={"kind": "import"},
        progress=progress,
    )
    return ImportResult(root, manifest.rows, manifest.extra.get("duplicates_dropped", 0), changed)
