"""PostgreSQL: `export` the `retail` table into the lake, and `load_pg` files into it.

Export streams `COPY (SELECT …) TO STDOUT` from one REPEATABLE READ snapshot straight into
pyarrow's CSV reader (C), so no value ever becomes a Python object; batches go to the lake
writer as they arrive, and memory stays bounded whatever the table's size. Identifiers from
users pass through `psycopg.sql.Identifier`; no message shows a DSN's password.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from lgs_fast.errors import LakeError, SourceError
from lgs_fast.lake import Manifest, Month, Progress, default_lake, write_lake
from lgs_fast.schema import COLUMNS, conform

DEFAULT_TABLE = "retail"
APPLICATION = "lgs_fast"
_CHUNK = 8 << 20

# The LGS table, as `load-pg` creates it.
_DDL_TYPES = {
    "invoice_no": "text NOT NULL",
    "stock_code": "text NOT NULL",
    "description": "text",
    "quantity": "integer NOT NULL",
    "invoice_date": "timestamp NOT NULL",
    "unit_price": "double precision NOT NULL",
    "customer_id": "bigint",
    "country": "text",
}


def default_dsn() -> str | None:
    """`LGS_PG_DSN`, if set."""
    return os.environ.get("LGS_PG_DSN") or None


def redact(dsn: str) -> str:
    """The DSN as it may be shown: host, port, database and user, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparseable DSN)"
    shown = {k: v for k, v in parts.items() if k in ("host", "port", "dbname", "user") and v}
    return " ".join(f"{k}={v}" for k, v in shown.items()) or "(default connection)"


def _connect(dsn: str | None) -> Any:
    import psycopg

    if not dsn:
        raise SourceError("no PostgreSQL DSN: pass --dsn or set LGS_PG_DSN")
    try:
        return psycopg.connect(dsn, application_name=APPLICATION, connect_timeout=10)
    except psycopg.Error as err:
        raise SourceError(
            f"cannot connect to PostgreSQL ({redact(dsn)}): {_first_line(err)}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    # libpq messages may quote the connection string; keep only the first line, no secrets.
    return text.splitlines()[0] if text else type(err).__name__


def _columns(conn: Any, table: str) -> dict[str, str]:
    """The table's columns and their PostgreSQL types (`table` may be `schema.table`)."""
    schema, _, name = table.rpartition(".")
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = coalesce(%s, current_schema()) "
        "ORDER BY ordinal_position",
        (name, schema or None),
    ).fetchall()
    if not rows:
        raise SourceError(f"no table {table!r} in the database")
    return {str(c): str(t) for c, t in rows}


def _table_ident(table: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*table.split("."))


def _select_list(available: Mapping[str, str], mapping: Mapping[str, str], table: str) -> Any:
    """SELECT items casting each source column to text, aliased to the canonical names."""
    from psycopg import sql

    items = []
    for canonical in COLUMNS:
        source = mapping.get(canonical, canonical)
        if source not in available:
            raise SourceError(f"table {table!r} has no column {source!r} (for {canonical})")
        kind = available[source]
        column = sql.Identifier(source)
        if canonical == "invoice_date":
            if kind == "timestamp with time zone":
                column = sql.SQL("({} AT TIME ZONE 'Europe/London')").format(column)
            elif not kind.startswith(("timestamp", "date")):
                raise SourceError(f"column {source!r} of {table!r} is {kind}, not a timestamp")
        elif canonical in ("quantity", "unit_price", "customer_id") and kind not in (
            "smallint", "integer", "bigint", "numeric", "real", "double precision", "text",
            "character varying",
        ):  # fmt: skip
            raise SourceError(f"column {source!r} of {table!r} is {kind}, not a number")
        items.append(sql.SQL("{}::text AS {}").format(column, sql.Identifier(canonical)))
    return sql.SQL(", ").join(items)


class _CopyStream(io.RawIOBase):
    """A file over a psycopg COPY TO STDOUT, for pyarrow's streaming CSV reader.

    libpq hands over one row per chunk, as a view of its own buffer; copying each into one
    growing bytearray (instead of keeping a million views alive) keeps the per-row work tiny.
    """

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._pending = bytearray()
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        if self._offset >= len(self._pending):
            pending = bytearray()
            for chunk in self._chunks:
                pending += chunk
                if len(pending) >= want:
                    break
            self._pending, self._offset = pending, 0
        n = min(want, len(self._pending) - self._offset)
        buffer[:n] = memoryview(self._pending)[self._offset : self._offset + n]
        self._offset += n
        return n


def _month_start(value: dt.datetime) -> dt.datetime:
    return dt.datetime(value.year, value.month, 1)


def _months_before(lake: Path, start: dt.datetime) -> list[Month]:
    manifest = Manifest.read(lake)
    months = []
    for key in manifest.partitions:
        year, month = (int(part.split("=")[1]) for part in key.split("/"))
        if (year, month) < (start.year, start.month):
            months.append((year, month))
    return months


@dataclass(frozen=True)
class ExportResult:
    lake: Path
    rows: int
    exported: int
    since: dt.datetime | None
    watermark: str | None
    changed: bool


def export(
    dsn: str | None = None,
    lake: str | Path | None = None,
    *,
    table: str = DEFAULT_TABLE,
    full: bool = False,
    columns: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export `table` into the lake, atomically; incremental unless `full` or no lake yet.

    Incremental: re-export from the first day of the watermark's month, replacing those months
    and keeping the earlier ones as they are; late rows in that month are picked up.
    """
    import psycopg
    from psycopg import sql

    dsn = dsn or default_dsn()
    root = Path(lake) if lake is not None else default_lake()
    since: dt.datetime | None = None
    if not full:
        try:
            watermark = Manifest.read(root).watermark
        except LakeError:
            watermark = None
        since = _month_start(dt.datetime.fromisoformat(watermark)) if watermark else None
    conn = _connect(dsn)
    exported = 0
    try:
        with conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                select = _select_list(_columns(conn, table), columns or {}, table)
                where = sql.SQL("")
                if since is not None:
                    # COPY takes no bind parameters; the bound is a datetime we computed,
                    # rendered by psycopg as a quoted literal.
                    where = sql.SQL(" WHERE {} >= {}").format(
                        sql.Identifier((columns or {}).get("invoice_date", "invoice_date")),
                        sql.Literal(since),
                    )
                query = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT csv)").format(
                    select, _table_ident(table), where
                )
                cur = conn.cursor()
                with cur.copy(query) as copy:
                    frames = _frames(copy, origin=f"{redact(dsn or '')} table {table}")

                    def counted() -> Iterator[pl.DataFrame]:
                        nonlocal exported
                        for frame in frames:
                            exported += frame.height
                            yield frame

                    manifest, changed = write_lake(
                        counted(),
                        root,
                        source=[f"postgresql {redact(dsn or '')} table {table}"],
                        keep=(lambda old: _months_before(old, since)) if since else None,
                        extra={"kind": "export", "since": since.isoformat() if since else None},
                        progress=progress,
                    )
    except psycopg.Error as err:
        raise SourceError(
            f"export from {table!r} failed ({redact(dsn or '')}): {_first_line(err)}"
        ) from None
    finally:
        conn.close()
    return ExportResult(root, manifest.rows, exported, since, manifest.watermark, changed)


def _frames(copy: Any, origin: str) -> Iterator[pl.DataFrame]:
    reader = pacsv.open_csv(
        io.BufferedReader(_CopyStream(iter(copy)), buffer_size=_CHUNK),
        read_options=pacsv.ReadOptions(
            column_names=list(COLUMNS), block_size=_CHUNK, use_threads=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in COLUMNS},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    row = 1
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield conform(frame, origin=origin, first_row=row)
        row += frame.height


def load_pg(
    paths: Sequence[str | Path],
    dsn: str | None = None,
    *,
    table: str = DEFAULT_TABLE,
    append: bool = False,
    progress: Progress | None = None,
) -> int:
    """Create `table` (the LGS DDL) if needed and load the files into it, in one transaction.

    Without `append` the table's old rows are replaced. Returns the number of rows loaded.
    """
    import psycopg
    from psycopg import sql

    from lgs_fast.sources import read_source

    for path in paths:
        read_source(path)  # checks paths and file types before touching the database
    dsn = dsn or default_dsn()
    conn = _connect(dsn)
    ident = _table_ident(table)
    loaded = 0
    try:
        with conn, conn.transaction():
            ddl = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_DDL_TYPES[c])) for c in COLUMNS
            )
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(ident, ddl))
            if not append:
                conn.execute(sql.SQL("TRUNCATE {}").format(ident))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                ident, sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
            )
            with conn.cursor().copy(copy_sql) as copy:
                for path in paths:
                    for frame in read_source(path):
                        buffer = io.BytesIO()
                        frame.write_csv(
                            buffer, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f"
                        )
                        copy.write(buffer.getvalue())
                        loaded += frame.height
                        if progress:
                            progress(loaded)
    except psycopg.Error as err:
        raise SourceError(
            f"load into {table!r} failed ({redact(dsn or '')}): {_first_line(err)}"
        ) from None
    finally:
        conn.close()
    return loaded
