"""PostgreSQL: `export` the `retail` table into the lake, and `load_pg` files into it.

Export streams `COPY (SELECT …) TO STDOUT` from one REPEATABLE READ snapshot straight into
pyarrow's CSV reader (C), so no value ever becomes a Python object; batches go to the lake
writer as they arrive, and memory stays bounded whatever the table's size. Identifiers from
users pass through `psycopg.sql.Identifier`; no message shows a DSN's password.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import select
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from lgs_fast.errors import SourceError
from lgs_fast.lake import (
    LakeWriter,
    Manifest,
    Progress,
    default_lake,
    month_of,
    partition_key,
    sha256_file,
)
from lgs_fast.schema import ARROW_SCHEMA, COLUMNS, conform

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


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact(dsn: str) -> str:
    """The DSN as it may be shown: host, port, database and user, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparseable DSN)"
    password = parts.get("password")
    shown = {
        k: _mask(str(v), password)
        for k, v in parts.items()
        if k in ("host", "port", "dbname", "user") and v
    }
    return " ".join(f"{k}={v}" for k, v in shown.items()) or "(default connection)"


def _mask(value: str, password: object) -> str:
    """A value with any URI's user information and the password itself replaced by ***."""
    if isinstance(password, str) and password and password in value:
        value = value.replace(password, "***")
    return _USERINFO.sub("***@", value)


def _connect(dsn: str | None) -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if not dsn:
        raise SourceError("no PostgreSQL DSN: pass --dsn or set LGS_PG_DSN")
    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        # libpq's message quotes the whole string, password included: say only what is wrong.
        raise SourceError(
            "cannot parse the PostgreSQL DSN (not shown: it may hold a password); "
            "expected 'host=… dbname=… user=…' or 'postgresql://user@host:port/dbname'"
        ) from None
    try:
        return psycopg.connect(dsn, application_name=APPLICATION, connect_timeout=10)
    except psycopg.Error as err:
        message = _scrub(_first_line(err), dsn, parts.get("password"))
        raise SourceError(f"cannot connect to PostgreSQL ({redact(dsn)}): {message}") from None


def _scrub(message: str, dsn: str, password: object) -> str:
    """The message without the DSN or its password, in whatever form libpq may echo them."""
    from urllib.parse import quote

    secrets = [dsn]
    if isinstance(password, str) and password:
        secrets += [password, quote(password, safe=""), quote(password)]
    for secret in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return _USERINFO.sub("***@", message)


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


# PostgreSQL types whose text output always parses straight into the canonical Arrow type:
# for these pyarrow's CSV reader converts in C; every other column arrives as text for `conform`.
_NATIVE = {
    "quantity": ("smallint", "integer"),
    "invoice_date": ("timestamp without time zone", "timestamp with time zone", "date"),
    "unit_price": ("double precision",),
    "customer_id": ("smallint", "integer", "bigint"),
}
_NUMBER_TYPES = (
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "text",
    "character varying",
)  # fmt: skip


@dataclass(frozen=True)
class _Select:
    items: Any  # psycopg.sql.Composable: the SELECT list, aliased to the canonical names
    native: frozenset[str]  # canonical columns whose values the CSV reader may type itself


def _select_list(available: Mapping[str, str], mapping: Mapping[str, str], table: str) -> _Select:
    """The SELECT list in canonical names, converting only what COPY would not print right.

    Columns go out in their own text form (a `::text` cast would cost the server a fifth more
    time and print the same); zoned timestamps are moved to UK time and dates to timestamps.
    """
    from psycopg import sql

    items, native = [], set()
    for canonical in COLUMNS:
        source = mapping.get(canonical, canonical)
        if source not in available:
            raise SourceError(f"table {table!r} has no column {source!r} (for {canonical})")
        kind = available[source]
        column: Any = sql.Identifier(source)
        if canonical == "invoice_date":
            if kind == "timestamp with time zone":
                column = sql.SQL("({} AT TIME ZONE 'Europe/London')").format(column)
            elif kind == "date":
                column = sql.SQL("{}::timestamp").format(column)
            elif not kind.startswith("timestamp"):
                raise SourceError(f"column {source!r} of {table!r} is {kind}, not a timestamp")
        elif canonical in ("quantity", "unit_price", "customer_id") and kind not in _NUMBER_TYPES:
            raise SourceError(f"column {source!r} of {table!r} is {kind}, not a number")
        if kind in _NATIVE.get(canonical, ()):
            native.add(canonical)
        items.append(sql.SQL("{} AS {}").format(column, sql.Identifier(canonical)))
    return _Select(sql.SQL(", ").join(items), frozenset(native))


def _copy_rows(conn: Any, query: Any) -> Iterator[memoryview]:
    """The rows of a `COPY … TO STDOUT`, straight from libpq.

    psycopg's `Copy` reads each row through a generator round trip (6.3 s of CPU for 10M rows
    here, against 3.9 s this way), and libpq's blocking PQgetCopyData lets go of the GIL while
    it waits for the server, so the thread that parses and writes keeps running. Closing the
    iterator early cancels the COPY and drains it, so the connection is ready for a rollback.
    """
    from psycopg import errors, pq

    pgconn = conn.pgconn
    with conn.lock:
        pgconn.send_query(query.as_bytes(conn))
        while pgconn.flush():  # the connection is non-blocking: send the whole query
            select.select([], [pgconn.socket], [])
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            _last_result(pgconn)
            raise errors.error_from_result(result, encoding=conn.info.encoding)
        finished = False
        try:
            while (row := pgconn.get_copy_data(0))[0] > 0:
                yield row[1]
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(errors.Error):
                    conn.cancel_safe()
                    while pgconn.get_copy_data(0)[0] > 0:
                        pass
            final = _last_result(pgconn)
        if finished and (final is None or final.status != pq.ExecStatus.COMMAND_OK):
            raise errors.error_from_result(final, encoding=conn.info.encoding)


def _last_result(pgconn: Any) -> Any:
    """Consume the command's remaining results; the last one."""
    last = None
    while (result := pgconn.get_result()) is not None:
        last = result
    return last


class _CopyStream(io.RawIOBase):
    """A file over the rows of a COPY TO STDOUT, for pyarrow's streaming CSV reader.

    A reader thread drains the COPY into blocks of about `block` bytes on a short queue, so
    PostgreSQL keeps sending while this side parses, validates and writes the blocks before:
    read in line, the wire would sit idle whenever the client works. libpq hands over one row
    per chunk, as a view of its own buffer; copying each into one growing bytearray keeps the
    per-row work tiny. Use as a context manager: leaving it stops the thread before anything
    else touches the connection.
    """

    _END = object()

    def __init__(self, chunks: Iterator[Any], *, block: int = _CHUNK, depth: int = 4) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._block = block
        self._pending: bytes | bytearray = b""
        self._offset = 0
        self._done = False
        self._thread = threading.Thread(
            target=self._drain, args=(chunks,), name="lgs-copy-reader", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> _CopyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _drain(self, chunks: Iterator[Any]) -> None:
        # Closed here, in this thread, so an early stop cancels the COPY before the consumer
        # goes on to use the connection.
        with contextlib.closing(chunks):  # type: ignore[type-var]
            self._fill(chunks)

    def _fill(self, chunks: Iterator[Any]) -> None:
        try:
            block = bytearray()
            for chunk in chunks:
                block += chunk
                if len(block) >= self._block:
                    if not self._put(block):
                        return
                    block = bytearray()
                if self._stop.is_set():
                    return
            if block and not self._put(block):
                return
            self._put(self._END)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def readable(self) -> bool:
        return True

    def _next(self) -> Any:
        # pyarrow reads ahead on a thread of its own, which may still be waiting here when
        # the consumer has stopped: once closed, the stream ends instead of waiting forever.
        while not self._done:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    break
        return self._END

    def readinto(self, buffer: Any) -> int:
        if self._offset >= len(self._pending):
            item = self._next()
            if item is self._END or isinstance(item, BaseException):
                self._done = True
                if item is self._END:
                    return 0
                raise item
            self._pending, self._offset = item, 0
        n = min(len(buffer), len(self._pending) - self._offset)
        buffer[:n] = memoryview(self._pending)[self._offset : self._offset + n]
        self._offset += n
        return n


@dataclass(frozen=True)
class ExportResult:
    lake: Path
    rows: int
    exported: int
    months: list[str]  # the months (YYYY-MM) read from the server by this export
    full: bool  # every month was read (no earlier export of the same table to compare with)
    watermark: str | None
    changed: bool


# Per month (UK local time), the server's row count and a content fingerprint: the sum of a
# 64-bit hash of each row's text, so any INSERT, UPDATE or DELETE in a month changes it. The
# text, not the values: hashing a record (`hash_record_extended`, twice as fast) follows each
# type's equality, under which -0 equals 0 and 'A' equals 'a' in a case-insensitive collation,
# and such a change would be missed while a full export would carry it.
_FINGERPRINTS = """
SELECT to_char(month, 'YYYY-MM'), source_rows, fingerprint FROM (
    SELECT date_trunc('month', s.invoice_date) AS month,
           count(*) AS source_rows,
           sum(hashtextextended(s::text, 0))::text AS fingerprint
    FROM (SELECT {items} FROM {table}) AS s
    GROUP BY 1
) AS m
"""


_NO_MONTH = "(no month)"


def _fingerprints(conn: Any, select: _Select, table: str) -> dict[str, dict[str, Any]]:
    """The server's row count and fingerprint of every month, by partition key."""
    from psycopg import sql

    query = sql.SQL(_FINGERPRINTS).format(items=select.items, table=_table_ident(table))
    months: dict[str, dict[str, Any]] = {}
    for month, rows, fingerprint in conn.execute(query).fetchall():
        if month is None:
            # Missing or infinite dates: no month to hold them. Reading every line lets
            # `conform` name the first such row.
            months[_NO_MONTH] = {"source_rows": rows, "fingerprint": fingerprint}
            continue
        year, number = (int(part) for part in month.split("-"))
        months[partition_key(year, number)] = {"source_rows": rows, "fingerprint": fingerprint}
    return months


def _unchanged(old: Manifest, root: Path, key: str, server: Mapping[str, Any]) -> bool:
    """True when the lake's month matches the server's and its file its checksum."""
    meta = old.partitions.get(key)
    if meta is None or (meta.get("source_rows"), meta.get("fingerprint")) != (
        server["source_rows"],
        server["fingerprint"],
    ):
        return False
    path = old.files(root)[key]
    try:
        return (
            bool(path.stat().st_size == meta.get("bytes")) and sha256_file(path) == meta["sha256"]
        )
    except FileNotFoundError:
        return False


def _copy_query(select: _Select, table: str, months: list[str] | None) -> Any:
    """COPY of the canonical columns, of only `months` (partition keys) when given."""
    from psycopg import sql

    where = sql.SQL("")
    if months is not None:
        # COPY takes no bind parameters: the months are strings we made, quoted by psycopg.
        wanted = sql.SQL(", ").join(
            sql.Literal(f"{y:04d}-{m:02d}") for y, m in (month_of(k) for k in months)
        )
        where = sql.SQL(
            " WHERE to_char(date_trunc('month', s.invoice_date), 'YYYY-MM') IN ({})"
        ).format(wanted)
    return sql.SQL("COPY (SELECT * FROM (SELECT {} FROM {}) AS s{}) TO STDOUT (FORMAT csv)").format(
        select.items, _table_ident(table), where
    )


def export(
    dsn: str | None = None,
    lake: str | Path | None = None,
    *,
    table: str = DEFAULT_TABLE,
    full: bool = False,
    columns: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Export `table` into the lake, atomically, from one consistent snapshot.

    Incremental unless `full` or the lake holds no earlier export of the same table: the server
    counts and fingerprints every month, and only the months that differ from the lake's
    manifest (inserted, updated or deleted lines, in any month) are read again; months gone
    from the table leave the lake. The result equals a full export. The lake changes only
    after the database work is over, so a server lost at any moment leaves the previous lake.
    """
    import psycopg

    dsn = dsn or default_dsn()
    root = Path(lake) if lake is not None else default_lake()
    mapping = dict(columns or {})
    source = [f"postgresql {redact(dsn or '')} table {table}"]
    with LakeWriter(root) as writer:
        old = writer.old
        incremental = (
            not full
            and old is not None
            and old.source == source
            and old.extra.get("columns", {}) == mapping
            and all("fingerprint" in p for p in old.partitions.values())
        )
        conn = _connect(dsn)
        try:
            with conn:
                _snapshot_transaction(conn)
                with conn.transaction():
                    _session(conn)
                    select = _select_list(_columns(conn, table), mapping, table)
                    origin = f"{redact(dsn or '')} table {table}"
                    if incremental:
                        assert old is not None
                        server = _fingerprints(conn, select, table)
                        incremental = _NO_MONTH not in server
                    if incremental:
                        stale = [
                            k for k in sorted(server) if not _unchanged(old, root, k, server[k])
                        ]
                        if stale:
                            query = _copy_query(select, table, stale)
                            _copy_into(conn, query, writer, origin, select.native, progress)
                    else:
                        # Everything is read: the fingerprints are taken at the same time, on a
                        # second connection that shares this transaction's snapshot.
                        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                        beside = _Beside(_fingerprints_of_snapshot, dsn, snapshot, select, table)
                        query = _copy_query(select, table, None)
                        try:
                            _copy_into(conn, query, writer, origin, select.native, progress)
                        except BaseException:
                            beside.wait()  # done before the snapshot's transaction ends
                            raise
                        server = beside.result()
                        stale = sorted(server)
        except psycopg.Error as err:
            raise SourceError(
                f"export from {table!r} failed ({redact(dsn or '')}): {_first_line(err)}; the lake is unchanged"
            ) from None
        finally:
            conn.close()
        expected = {k: server[k]["source_rows"] for k in stale}
        if writer.month_rows() != expected:
            raise SourceError(
                f"export from {table!r}: the lines read differ from the server's counts; the lake is unchanged"
            )
        writer.keep(k for k in server if k not in stale)
        manifest, changed = writer.commit(
            source=source,
            extra={"kind": "export", "columns": mapping},
            partition_extra={k: server[k] for k in stale},
            allow_empty=allow_empty,
        )
    months = [f"{y:04d}-{m:02d}" for y, m in (month_of(k) for k in stale)]
    return ExportResult(
        root, manifest.rows, writer.rows, months, not incremental, manifest.watermark, changed
    )


def _snapshot_transaction(conn: Any) -> None:
    """Read-only REPEATABLE READ: every query of the export sees one snapshot of the table."""
    import psycopg

    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ


def _session(conn: Any) -> None:
    # UK time for every timestamp comparison and conversion, whatever the server's or the
    # DSN's TimeZone; values printed the same on every server.
    conn.execute("SET LOCAL TimeZone = 'Europe/London'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute("SET LOCAL extra_float_digits = 1")


def _fingerprints_of_snapshot(
    dsn: str | None, snapshot: str, select: _Select, table: str
) -> dict[str, dict[str, Any]]:
    """`_fingerprints` on a connection of its own, in the snapshot another transaction exported."""
    from psycopg import sql

    conn = _connect(dsn)
    try:
        with conn:
            _snapshot_transaction(conn)
            with conn.transaction():
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                _session(conn)
                return _fingerprints(conn, select, table)
    finally:
        conn.close()


class _Beside:
    """A function run on a thread of its own; `result` waits for it and returns or raises."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self._outcome: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, args=(function, *args), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[..., Any], *args: Any) -> None:
        try:
            self._outcome = (True, function(*args))
        except BaseException as err:  # handed to the caller of `result`
            self._outcome = (False, err)

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def _copy_into(
    conn: Any,
    query: Any,
    writer: LakeWriter,
    origin: str,
    native: frozenset[str],
    progress: Progress | None,
) -> None:
    """COPY into the writer, each attempt inside a savepoint so that a failed one leaves the
    snapshot usable: a value the typed reader refuses (an infinite date, say) is read again,
    from the same snapshot, as text, so that `conform` names its row and column."""
    try:
        with conn.transaction(), _CopyStream(_copy_rows(conn, query)) as stream:
            writer.write(_frames(stream, origin=origin, native=native), progress)
    except pa.ArrowInvalid:
        writer.discard()
        with conn.transaction(), _CopyStream(_copy_rows(conn, query)) as stream:
            writer.write(_frames(stream, origin=origin, native=frozenset()), progress)


def _frames(
    stream: _CopyStream, origin: str, native: frozenset[str] = frozenset()
) -> Iterator[pl.DataFrame]:
    """Canonical frames from a CSV stream; `native` columns are typed by the CSV reader."""
    types = {f.name: f.type if f.name in native else pa.string() for f in ARROW_SCHEMA}
    buffered = io.BufferedReader(stream, buffer_size=_CHUNK)
    if not buffered.peek(1):
        return  # no line at all (an empty table): pyarrow would call it an invalid file
    reader = pacsv.open_csv(
        buffered,
        read_options=pacsv.ReadOptions(
            column_names=list(COLUMNS), block_size=_CHUNK, use_threads=False
        ),
        # COPY's CSV prints NULL as an empty field and an empty string as "": nothing else is
        # missing (not pyarrow's default "NA", "NULL", "NaN", … spellings).
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
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
