"""Readers for every file form lgs_fast imports, each yielding conformed batches.

CSV (plain or compressed), the UCI .xlsx, a plain pg_dump of table `retail`, and Parquet. All
readers stream: a file is never held whole as Python objects, only as Arrow batches of
`BATCH_ROWS` lines, so a 100M-line file imports in bounded memory.

Whatever a file holds, a reader either yields canonical frames or raises one `InputError` whose
one-line message names the file (and the row and column where there is one).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lgs_fast.errors import InputError
from lgs_fast.lake import Progress, local_lake, write_lake
from lgs_fast.schema import (
    COLUMNS,
    ISO_DATE_FORMATS,
    SLASH_FORMATS,
    conform,
    header_mapping,
    is_uci_header,
)

BATCH_ROWS = 250_000
_BLOCK_BYTES = 8 << 20
_HEAD_BYTES = 1 << 16
_COMPRESSED = (".gz", ".bz2", ".zst")
_UTF8_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")  # as pyarrow ends lines
_SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: 'CSV UTF-8')"


@dataclass(frozen=True)
class _Part:
    """A batch of a file's lines under canonical names, before they are checked and typed."""

    origin: str  # the file, or the file and its sheet: what a message names
    uci: bool  # the header is UCI's own, whose slash dates are month-first
    lines: pl.DataFrame


Reader = Callable[[Path], Iterator[_Part]]


def read_source(path: str | Path, *, date_format: str | None = None) -> Iterator[pl.DataFrame]:
    """Yield the lines of one importable file as canonical Polars frames, in file order.

    ISO dates are always read. Slash dates are read in `date_format` when given, else day-first
    or month-first as all the file's slash dates show (see `_slash_order`).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    formats = None if date_format is None else (*ISO_DATE_FORMATS, check_date_format(date_format))
    return _conformed(path, _reader_for(path), formats)


def check_date_format(date_format: str) -> str:
    """`date_format` if it is a strftime format Polars can read dates with, else one line."""
    try:
        pl.Series(["2010-12-01"]).str.to_datetime(date_format, strict=False)
    except pl.exceptions.PolarsError as err:
        raise InputError(
            f"--date-format {date_format!r} is not a date format: {_one_line(str(err))}"
        ) from None
    if "%" not in date_format:
        raise InputError(
            f"--date-format {date_format!r} is not a date format; e.g. '%d/%m/%Y %H:%M'"
        )
    return date_format


def _reader_for(path: Path) -> Reader:
    name = path.name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader
    known = ", ".join(_READERS)
    raise InputError(f"{path}: unknown file type; lgs_fast imports {known}")


def _conformed(path: Path, reader: Reader, formats: Sequence[str] | None) -> Iterator[pl.DataFrame]:
    """Conform each part of the file, numbering rows across the parts of one origin.

    The file is read a second time, for its dates alone, only when it holds slash dates and
    no format was given: their order is a property of the whole file.
    """
    rows: dict[str, int] = {}
    for part in reader(path):
        lines = part.lines.select(COLUMNS)
        if lines.height == 0:
            continue
        if formats is None and _slash_fields(lines["invoice_date"]) is not None:
            formats = (*ISO_DATE_FORMATS, *SLASH_FORMATS[_slash_order(path, reader)])
        first = rows.get(part.origin, 1)
        yield conform(
            lines, origin=part.origin, first_row=first, date_formats=formats or ISO_DATE_FORMATS
        )
        rows[part.origin] = first + lines.height


_SLASH_DATE = r"^\s*(\d{1,2})/(\d{1,2})/\d{4}(?:\s|$)"


def _slash_fields(dates: pl.Series) -> pl.DataFrame | None:
    """The first and second fields of the slash dates among `dates` (null elsewhere), or None
    when there is none."""
    if not (dates.dtype == pl.String or dates.dtype == pl.Categorical):
        return None
    text = dates.cast(pl.String)
    # Every batch of every file passes here: an ISO file costs one literal search, a third of
    # the regular expression's time.
    if not text.str.contains("/", literal=True).any():
        return None
    fields = text.str.extract_groups(_SLASH_DATE).struct.unnest()
    fields = fields.select(
        value=text,
        first=fields["1"].cast(pl.Int32),
        second=fields["2"].cast(pl.Int32),
    )
    return fields if fields["first"].is_not_null().any() else None


@dataclass(frozen=True)
class _Place:
    origin: str
    row: int
    value: str
    line: int  # the line's number in the whole file, across sheets: which came first

    def named_from(self, origin: str) -> str:
        """`row N 'value'`, with the origin too when it is not `origin` (another sheet)."""
        where = f"row {self.row}" if self.origin == origin else f"{self.origin} row {self.row}"
        return f"{where} {self.value!r}"


def _first_place(
    part: _Part, first_row: int, first_line: int, fields: pl.DataFrame, where: pl.Series
) -> _Place:
    i = int(where.fill_null(False).arg_true()[0])
    return _Place(part.origin, first_row + i, str(fields["value"][i]).strip()[:40], first_line + i)


def _slash_order(path: Path, reader: Reader) -> str:
    """Whether the file's slash dates read "day-first" or "month-first", from all of them.

    A first field above 12 can only be a day, a second above 12 only a day too (so the first is
    the month). A file with both kinds is refused, naming a value of each; a file whose every
    slash date reads both ways is refused with the --date-format to give, unless its header is
    UCI's own (whose exports are month-first). A date is never silently read the other way.
    """
    first: _Place | None = None
    day_first: _Place | None = None
    month_first: _Place | None = None
    uci = True
    rows: dict[str, int] = {}
    line = 0
    for part in reader(path):
        dates = part.lines["invoice_date"]
        row = rows.get(part.origin, 1)
        rows[part.origin] = row + part.lines.height
        line += part.lines.height
        fields = _slash_fields(dates)
        if fields is None:
            continue
        uci = uci and part.uci
        start = line - part.lines.height
        first = first or _first_place(part, row, start, fields, fields["first"].is_not_null())
        if day_first is None and (fields["first"] > 12).any():
            day_first = _first_place(part, row, start, fields, fields["first"] > 12)
        if month_first is None and (fields["second"] > 12).any():
            month_first = _first_place(part, row, start, fields, fields["second"] > 12)
        if day_first and month_first:
            # Name the value that contradicts the first one found.
            later, earlier = sorted([day_first, month_first], key=lambda p: p.line, reverse=True)
            kind = "day-first (DD/MM/YYYY)" if later is day_first else "month-first (MM/DD/YYYY)"
            other = "month-first" if later is day_first else "day-first"
            raise InputError(
                f"{later.origin}: row {later.row}: column invoice_date {later.value!r} can only "
                f"be {kind}, but {earlier.named_from(later.origin)} can only be {other}; "
                "a file's slash dates must all be one or the other"
            )
    if day_first:
        return "day-first"
    if month_first or uci:
        return "month-first"
    assert first is not None  # only called for a file that holds slash dates
    raise InputError(
        f"{first.origin}: row {first.row}: column invoice_date {first.value!r}: every slash date "
        "in the file reads day-first or month-first; give --date-format '%d/%m/%Y %H:%M' "
        "(day-first, as in the UK) or '%m/%d/%Y %H:%M' (month-first, as in the US)"
    )


def _frames(batches: Iterable[pa.RecordBatch], origin: str | Path) -> Iterator[pl.DataFrame]:
    for batch in batches:
        try:
            frame = pl.from_arrow(batch)
        except pl.exceptions.PolarsError as err:  # an Arrow type Polars has no counterpart for
            raise _library_error(origin, err) from err
        assert isinstance(frame, pl.DataFrame)
        yield frame


def _positional_names(header: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """Column names by position: canonical where recognised, a placeholder elsewhere.

    Columns lgs_fast does not read may then repeat a name, or have none, without a clash.
    """
    return [mapping.get(name) or f"_unused_{i}" for i, name in enumerate(header)]


def _one_line(text: str, limit: int = 200) -> str:
    """The first line of a library's message, shortened, with unprintable characters escaped.

    Some messages quote the offending bytes; they must not reach a terminal raw.
    """
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    shown = "".join(
        c if c.isprintable() and c != "\ufffd" else c.encode("unicode_escape").decode("ascii")
        for c in first[:limit]
    )
    return shown + ("…" if len(first) > limit else "")


def _library_error(origin: str | Path, err: BaseException) -> InputError:
    return InputError(f"{origin}: {_one_line(str(err)) or type(err).__name__}")


def _read_error(path: Path, err: BaseException) -> InputError:
    """A file that could not be read through: for a compressed one, truncated or corrupt data."""
    if path.name.lower().endswith(_COMPRESSED):
        detail = _one_line(str(err)) or type(err).__name__
        return InputError(f"{path}: compressed data is truncated or corrupt ({detail})")
    return _library_error(path, err)


# pyarrow's CSV messages carry the 1-based line ("Row #") and the 0-based column of the problem
# (when read without threads); these turn them into the row and column name lgs_fast reports.
_FIELD_COUNT = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")
_NOT_UTF8 = re.compile(r"column #(\d+): Row #(\d+): CSV conversion error to string: invalid UTF8")


def _csv_error(
    path: Path, err: pa.ArrowInvalid, names: Sequence[str], lines_before: int
) -> InputError:
    """pyarrow's CSV error as one line with row and column; `lines_before` precede row 1."""
    text = str(err)
    if (found := _NOT_UTF8.search(text)) and int(found[1]) < len(names):
        row, column = int(found[2]) - lines_before, names[int(found[1])]
        return InputError(
            f"{path}: row {row}: column {column} is not UTF-8 text (the file is in another "
            f"encoding, such as Windows-1252); {_SAVE_AS_UTF8}"
        )
    if found := _FIELD_COUNT.search(text):
        row = int(found[1]) - lines_before
        return InputError(f"{path}: row {row}: expected {found[2]} fields, found {found[3]}")
    return _library_error(path, err)


# CSV -----------------------------------------------------------------------------------------


def _csv_head(path: Path) -> bytes:
    try:
        with pa.input_stream(str(path), compression="detect") as raw:
            return raw.read(_HEAD_BYTES)
    except OSError as err:
        raise _read_error(path, err) from err


def _csv_header(path: Path) -> tuple[list[str], bool]:
    """The header's names, and whether anything follows the header line."""
    head = _csv_head(path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: is UTF-16 text; {_SAVE_AS_UTF8}")
    if b"\0" in head:
        raise InputError(f"{path}: holds binary data (NUL bytes), not CSV text")
    full = len(head) == _HEAD_BYTES
    head = head.removeprefix(_UTF8_BOM)  # Excel's "CSV UTF-8" starts with one
    if not head.strip():
        raise InputError(f"{path}: empty file")
    first, *rest = _LINE_END.split(head, maxsplit=1)
    try:
        header = next(csv.reader([first.decode("utf-8")]))
    except UnicodeDecodeError:
        raise InputError(
            f"{path}: the header (line 1) is not UTF-8 text; if it is a CSV file, {_SAVE_AS_UTF8}"
        ) from None
    except csv.Error as err:
        raise InputError(f"{path}: the header (line 1) is not CSV: {_one_line(str(err))}") from None
    return header, full or any(part.strip() for part in rest)


def _read_csv(path: Path) -> Iterator[_Part]:
    header, has_lines = _csv_header(path)
    mapping = header_mapping(header, str(path))
    uci = is_uci_header(header)
    if not has_lines:
        return  # a header alone holds no lines; whether that is an error is the caller's call
    # The header is parsed above (BOM, repeated names, encoding) and skipped here: columns are
    # named by position, and only the canonical ones are converted.
    names = _positional_names(header, mapping)
    # Everything is read as text and parsed in `conform`, which can name the bad row and column.
    # Only an empty field is missing: pyarrow's default null spellings ("NA", "NULL", "nan",
    # …) would turn a product described as "NA" into a line without description.
    convert = pacsv.ConvertOptions(
        include_columns=list(COLUMNS),
        column_types=dict.fromkeys(COLUMNS, pa.string()),
        null_values=[""],
        strings_can_be_null=True,
    )
    # Without threads pyarrow's errors carry the line number.
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1, block_size=_BLOCK_BYTES, use_threads=False
    )
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            reader = pacsv.open_csv(stream, read_options=read, convert_options=convert)
            for frame in _frames(reader, path):
                yield _Part(str(path), uci, frame)
    except pa.ArrowInvalid as err:
        raise _csv_error(path, err, names, lines_before=1) from err
    except OSError as err:
        raise _read_error(path, err) from err


# xlsx ----------------------------------------------------------------------------------------


def _read_xlsx(path: Path) -> Iterator[_Part]:
    # calamine (Rust) reads a sheet in one go; a sheet holds at most 1,048,576 rows, so memory
    # stays bounded per sheet. Text cells everywhere, then the one parser in `conform`. The
    # header row is read as data, as written: as a header, a repeated name would come back
    # renamed (`Quantity_1`) and the repetition would go unnoticed.
    try:
        sheets = pl.read_excel(
            path,
            sheet_id=0,
            engine="calamine",
            has_header=False,
            infer_schema_length=0,
            raise_if_empty=False,
        )
    except Exception as err:  # fastexcel raises its own exception types
        raise _library_error(path, err) from err
    for sheet, frame in sheets.items():
        if frame.height == 0:
            continue  # a blank sheet holds no lines
        origin = f"{path} sheet {sheet!r}"
        header = ["" if cell is None else str(cell) for cell in frame.row(0)]
        names = _positional_names(header, header_mapping(header, origin))
        lines = frame.slice(1).rename(dict(zip(frame.columns, names, strict=True)))
        yield _Part(origin, is_uci_header(header), lines)


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
        self._started = False
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
                raise InputError(
                    f"{self._origin}: the COPY block ends without its '\\.' line; "
                    "the dump is truncated"
                )
        if not self._started:
            # Only the newline added above: later, a newline at the front is a line's end.
            self._pending = self._pending[1:]
            self._started = True
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


def _copy_header(raw: BinaryIO, path: Path) -> list[str]:
    """The column list of the `COPY retail (…) FROM stdin` line; `raw` is left after it."""
    for line in iter(raw.readline, b""):
        match = _COPY_LINE.match(line)
        if match:
            columns = match["cols"].decode("utf-8", errors="replace")
            return [c.strip().strip('"') for c in columns.split(",")]
    raise InputError(
        f"{path}: no 'COPY retail (…) FROM stdin' block found; is it a plain-format pg_dump of table retail?"
    )


def _read_pg_dump(path: Path) -> Iterator[_Part]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    names: list[str] = []
    try:
        with opener(path, "rb") as raw:
            header = _copy_header(raw, path)
            names = _positional_names(header, header_mapping(header, str(path)))
            block = io.BufferedReader(_CopyBlock(raw, path), buffer_size=_BLOCK_BYTES)
            if not block.peek(1):
                return  # the dump of an empty table: no lines (pyarrow would call it an error)
            reader = pacsv.open_csv(
                block,
                read_options=pacsv.ReadOptions(
                    column_names=names, block_size=_BLOCK_BYTES, use_threads=False
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t", quote_char=False, escape_char=False
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(COLUMNS),
                    column_types=dict.fromkeys(COLUMNS, pa.string()),
                    null_values=["\\N"],
                    strings_can_be_null=True,
                ),
            )
            for frame in _frames(reader, path):
                yield _Part(str(path), False, _unescape_frame(frame))
    except pa.ArrowInvalid as err:
        raise _csv_error(path, err, names, lines_before=0) from err
    except (OSError, EOFError, zlib.error) as err:  # gzip's ways of saying "damaged"
        raise _read_error(path, err) from err


def _unescape_frame(frame: pl.DataFrame) -> pl.DataFrame:
    for name in frame.columns:
        rows = frame[name].str.contains("\\", literal=True).fill_null(False).arg_true()
        if len(rows):
            fixed = [_unescape_copy_text(v) for v in frame[name].gather(rows)]
            frame = frame.with_columns(frame[name].scatter(rows, fixed))
    return frame


# Parquet -------------------------------------------------------------------------------------


def _read_parquet(path: Path) -> Iterator[_Part]:
    # Only the recognised columns are read: faster, and others may be of any type or name.
    try:
        with pq.ParquetFile(path) as file:
            mapping = header_mapping(file.schema_arrow.names, str(path))
            batches = file.iter_batches(batch_size=BATCH_ROWS, columns=list(mapping))
            uci = is_uci_header(file.schema_arrow.names)
            for frame in _frames(batches, path):
                yield _Part(str(path), uci, frame.rename(mapping))
    except (pa.ArrowException, OSError) as err:
        raise _library_error(path, err) from err


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
    allow_empty: bool = False,
    progress: Progress | None = None,
    date_format: str | None = None,
) -> ImportResult:
    """Build the lake from exactly these files (replacing what was there), atomically.

    Every file is validated while it streams; the first bad value aborts the whole import
    before the commit, so the previous lake stays as it was. Input without a single line is
    refused unless `allow_empty`. Slash dates are read in `date_format` when given, else in the
    order each file's own dates show.
    """
    if not paths:
        raise InputError("no input files given")
    root = local_lake(lake, "import writes")
    for path in paths:
        # Checks path, file type and date format now, before any work; reads nothing.
        read_source(path, date_format=date_format)

    def frames() -> Iterator[pl.DataFrame]:
        for path in paths:
            yield from read_source(path, date_format=date_format)

    manifest, changed = write_lake(
        frames(),
        root,
        source=[str(Path(p).name) for p in paths],
        dedupe=dedupe,
        allow_empty=allow_empty,
        extra={"kind": "import"},
        progress=progress,
    )
    return ImportResult(root, manifest.rows, manifest.extra.get("duplicates_dropped", 0), changed)
