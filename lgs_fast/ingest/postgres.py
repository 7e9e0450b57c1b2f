"""PostgreSQL: `export` the `retail` table into the lake, and `load_pg` files into it.

Export reads one snapshot over several connections, as `pg_dump -j` does: a coordinating
connection opens a REPEATABLE READ transaction and exports its snapshot (`pg_export_snapshot()`);
each worker connection imports it (`SET TRANSACTION SNAPSHOT`) and streams `COPY (SELECT …) TO
STDOUT` of its own months straight into pyarrow's CSV reader (C), on a thread of its own, so no
value ever becomes a Python object. Frames reach the one lake writer through short queues, so
memory stays bounded whatever the table's size. Identifiers from users pass through
`psycopg.sql.Identifier`; no message shows a DSN's password.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from lgs_fast.errors import InputError, SourceError
from lgs_fast.lake import (
    LakeWriter,
    Manifest,
    Progress,
    local_lake,
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
# What follows `password` anywhere in a DSN or a message quoting one: libpq takes a dbname such
# as 'test password=S3cret' literally and quotes it back, and a URI may spell it `password%3D…`.
_PASSWORD_VALUE = re.compile(
    r"(password\s*(?:=|%3D)\s*)('(?:[^'\\]|\\.)*'?|[^\s&\"',;]+)", re.IGNORECASE
)


def mask_passwords(text: str) -> str:
    """`text` with every value that follows `password` (key=value and URI forms) as ***."""
    return _PASSWORD_VALUE.sub(r"\1***", text)


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
    return mask_passwords(_USERINFO.sub("***@", value))


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
    return mask_passwords(_USERINFO.sub("***@", message))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    # libpq messages may quote the connection string; keep only the first line, no secrets.
    return mask_passwords(text.splitlines()[0]) if text else type(err).__name__


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
    line_hash: Any  # a line's 64-bit hash, over the SELECT list's columns `s.…`


def _select_list(available: Mapping[str, str], mapping: Mapping[str, str], table: str) -> _Select:
    """The SELECT list in canonical names, converting only what COPY would not print right.

    Columns go out in their own text form (a `::text` cast would cost the server a fifth more
    time and print the same); zoned timestamps are moved to UK time and dates to timestamps.
    """
    from psycopg import sql

    items, native, hashes = [], set(), []
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
        hashes.append(_hashed(canonical, kind, seed=len(hashes) + 1))
    return _Select(sql.SQL(", ").join(items), frozenset(native), sql.SQL(" # ").join(hashes))


# The extended (64-bit, seeded) hash function of each type a canonical column may have.
_HASH = {
    "smallint": "hashint2extended", "integer": "hashint4extended", "bigint": "hashint8extended",
    "numeric": "hash_numeric_extended", "real": "hashfloat4extended",
    "double precision": "hashfloat8extended", "text": "hashtextextended",
    "character varying": "hashtextextended",
}  # fmt: skip


def _hashed(canonical: str, kind: str, seed: int) -> Any:
    """A 64-bit hash of one column's value, seeded by its place in the line, the same for two
    values only when the lake's values are the same.

    Text is hashed as bytes (collation "C": under a case-insensitive collation 'A' equals 'a'),
    a float with its sign when it is zero (-0 equals 0), a type this does not know by its
    printed text, and NULL as the seed itself.
    """
    from psycopg import sql

    column = sql.SQL("s.{}").format(sql.Identifier(canonical))
    if canonical == "invoice_date":  # a timestamp, after the SELECT list's conversion
        value = sql.SQL("timestamp_hash_extended({}, {})")
    elif kind in ("text", "character varying"):
        value = sql.SQL('hashtextextended({} COLLATE "C", {})')
    elif kind in _HASH:
        value = sql.SQL(_HASH[kind] + "({}, {})")
    else:
        value = sql.SQL(
            'hashtextextended(CASE WHEN {0} IS NOT NULL THEN concat({0}) END COLLATE "C", {1})'
        )
    hashed = sql.SQL("coalesce({}, {})").format(
        value.format(column, sql.Literal(seed)), sql.Literal(seed)
    )
    if kind in ("real", "double precision"):
        hashed = sql.SQL(
            "({} # CASE WHEN {c} = 0 THEN hashtextextended({c}::text, {s}) ELSE 0 END)"
        ).format(hashed, c=column, s=sql.Literal(seed))
    return hashed


def _put_unless_stopped(items: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting for room unless `stop` is set; False if stopped
    (a consumer that went away must not leave the producer blocked for ever)."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


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
        self.stop()
        self._thread.join()
        super().close()

    def stop(self) -> None:
        """End the stream soon, from any thread: `close` then cancels the COPY."""
        self._stop.set()

    def _put(self, item: Any) -> bool:
        return _put_unless_stopped(self._queue, item, self._stop)

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
    jobs: int = 1  # connections that read the table side by side


# Per month (UK local time), the server's row count and a content fingerprint: the sum of a
# 64-bit hash of each line, the exclusive or of its columns' hashes (`_hashed`), so any INSERT,
# UPDATE or DELETE in a month changes it. Over 10M lines, on the server, here: 3.1 s of CPU in
# all, against 5.0 s for a hash of each line's values as one record (`hash_record_extended`)
# and 10 s for a hash of each line's text (`hashtextextended(s::text, 0)`, the form before:
# the record's text form costs more than the COPY itself). Fingerprints of the form before
# have no "values:" in front and never match, so a lake recorded with them is read again once.
_FINGERPRINTS = """
SELECT to_char(month, 'YYYY-MM'), source_rows, fingerprint FROM (
    SELECT date_trunc('month', s.invoice_date) AS month,
           count(*) AS source_rows,
           'values:' || sum({line_hash})::text AS fingerprint
    FROM (SELECT {items} FROM {table}) AS s
    GROUP BY 1
) AS m
"""


_NO_MONTH = "(no month)"


def _fingerprints(conn: Any, select: _Select, table: str) -> dict[str, dict[str, Any]]:
    """The server's row count and fingerprint of every month, by partition key."""
    from psycopg import sql

    query = sql.SQL(_FINGERPRINTS).format(
        line_hash=select.line_hash, items=select.items, table=_table_ident(table)
    )
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


def _recorded(old: Manifest, key: str, server: Mapping[str, Any]) -> bool:
    """True when the lake's record of a month matches the server's count and fingerprint."""
    meta = old.partitions.get(key)
    return meta is not None and (meta.get("source_rows"), meta.get("fingerprint")) == (
        server["source_rows"],
        server["fingerprint"],
    )


def _intact(old: Manifest, root: Path, key: str) -> bool:
    """True when a month's file still has the size and checksum its manifest records."""
    meta = old.partitions[key]
    path = old.files(root)[key]
    try:
        return path.stat().st_size == meta.get("bytes") and sha256_file(path) == meta["sha256"]
    except FileNotFoundError:
        return False


# Splitting the table between workers -----------------------------------------------------------

Month = tuple[int, int]


def _next(month: Month) -> Month:
    year, number = month
    return (year + number // 12, number % 12 + 1)


@dataclass(frozen=True)
class _Share:
    """What one worker reads: the lines dated in `spans`, UK time, each [first month, the month
    after the last) with None for no bound; `undated` adds the lines without a date."""

    spans: tuple[tuple[Month | None, Month | None], ...]
    undated: bool = False

    def where(self) -> Any:
        from psycopg import sql

        def start(month: Month) -> Any:
            return sql.Literal(f"{month[0]:04d}-{month[1]:02d}-01")

        terms = []
        for first, after in self.spans:
            bounds = []
            if first is not None:
                bounds.append(sql.SQL("s.invoice_date >= {}::timestamp").format(start(first)))
            if after is not None:
                bounds.append(sql.SQL("s.invoice_date < {}::timestamp").format(start(after)))
            if not bounds:
                return sql.SQL("")  # every line
            terms.append(sql.SQL(" AND ").join(bounds))
        if self.undated:
            terms.append(sql.SQL("s.invoice_date IS NULL"))
        return sql.SQL(" WHERE ") + sql.SQL(" OR ").join(sql.SQL("({})").format(t) for t in terms)

    def label(self) -> str:
        """The share as a reader would name it, for messages: `lines dated 2011-01 to 2011-03`."""

        def shown(month: Month) -> str:
            return f"{month[0]:04d}-{month[1]:02d}"

        parts = []
        for first, after in self.spans:
            last = None if after is None else (after[0] - (after[1] == 1), (after[1] - 2) % 12 + 1)
            if first is None and last is None:
                parts.append("any date")
            elif first is None:
                parts.append(f"up to {shown(last)}")  # type: ignore[arg-type]
            elif last is None:
                parts.append(f"from {shown(first)} on")
            elif first == last:
                parts.append(shown(first))
            else:
                parts.append(f"{shown(first)} to {shown(last)}")
        return "lines dated " + ", ".join(parts) + (" or undated" if self.undated else "")


def _groups(lines: Mapping[Month, int], jobs: int) -> list[list[Month]]:
    """The months in order, cut into at most `jobs` runs of about equal lines (a month is never
    split: each month's file is then one worker's lines in the table's order)."""
    months = sorted(lines)
    count = min(jobs, len(months))
    if count <= 1:
        return [months] if months else []
    before = [0]
    for month in months:
        before.append(before[-1] + lines[month])
    total = before[-1]
    cuts = [0]
    for j in range(1, count):
        target = total * j / count
        # The cut whose lines before it come nearest the target, leaving a month for each run.
        low, high = cuts[-1] + 1, len(months) - (count - j)
        at = min(max(bisect.bisect_left(before, target), low), high)
        if at > low and abs(before[at - 1] - target) <= abs(before[at] - target):
            at -= 1
        cuts.append(at)
    cuts.append(len(months))
    return [months[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _shares_of_table(lines: Mapping[Month, int], jobs: int) -> list[_Share]:
    """Every line of the table, in month ranges of about equal lines (from a sample): the first
    range has no lower bound, the last no upper one and the undated lines."""
    groups = _groups(lines, jobs)
    if len(groups) <= 1:
        return [_Share(((None, None),))]
    starts = [group[0] for group in groups]
    bounds = [None, *starts[1:]], [*starts[1:], None]
    shares = [_Share(((first, after),)) for first, after in zip(*bounds, strict=True)]
    return [*shares[:-1], _Share(shares[-1].spans, undated=True)]


def _shares_of_months(lines: Mapping[Month, int], jobs: int) -> list[_Share]:
    """Only these months, in runs of about equal lines; consecutive months make one range."""
    shares = []
    for group in _groups(lines, jobs):
        spans: list[tuple[Month | None, Month | None]] = []
        for month in group:
            if spans and spans[-1][1] == month:
                spans[-1] = (spans[-1][0], _next(month))
            else:
                spans.append((month, _next(month)))
        shares.append(_Share(tuple(spans)))
    return shares


# Blocks the sample reads: at 10M lines (140,000 blocks) about 18,000 lines in 10 ms.
_SAMPLE_BLOCKS = 256


def _sampled_lines(conn: Any, select: _Select, table: str) -> dict[Month, int]:
    """Lines per month in a sample of the table's blocks (`TABLESAMPLE SYSTEM`), to split it
    between workers; empty for a view or anything that cannot be sampled (one worker then)."""
    import psycopg
    from psycopg import sql

    ident = _table_ident(table)
    kind = conn.execute(
        "SELECT c.relkind, CASE c.relkind WHEN 'p' THEN (SELECT sum(pg_relation_size(t.relid)) "
        "FROM pg_partition_tree(c.oid) AS t) ELSE pg_relation_size(c.oid) END "
        "FROM pg_class AS c WHERE c.oid = %s::regclass",
        (ident.as_string(conn),),
    ).fetchone()
    if kind is None or kind[0] not in ("r", "p", "m"):
        return {}
    percent = min(100.0, 100.0 * _SAMPLE_BLOCKS / max(1, int(kind[1] or 0) // 8192))
    query = sql.SQL(
        "SELECT to_char(date_trunc('month', s.invoice_date), 'YYYY-MM'), count(*) "
        "FROM (SELECT {} FROM {} TABLESAMPLE SYSTEM ({}) REPEATABLE (0)) AS s GROUP BY 1"
    ).format(select.items, ident, sql.Literal(percent))
    try:
        with conn.transaction():  # a savepoint: a failure leaves the snapshot usable
            rows = conn.execute(query).fetchall()
    except psycopg.errors.FeatureNotSupported:
        return {}
    return {(int(m[:4]), int(m[5:7])): n for m, n in rows if m and re.fullmatch(r"\d{4}-\d{2}", m)}


# Jobs ------------------------------------------------------------------------------------------


def default_jobs() -> int:
    """`LGS_EXPORT_JOBS` if set, else the number of CPUs, at least 2."""
    given = os.environ.get("LGS_EXPORT_JOBS")
    if given:
        try:
            jobs = int(given)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise InputError(f"LGS_EXPORT_JOBS must be a whole number from 1 up: {given!r}")
        return jobs
    return max(2, os.cpu_count() or 1)


# Workers ---------------------------------------------------------------------------------------

# Each worker's transaction, before its COPY: the coordinator's snapshot, then the settings every
# value is printed under. Each worker scans on its own from the table's first block (no parallel
# plan, whose rows come in any order, and not from wherever another scan of the table happens
# to be), so each month's lines come in the table's order on every run.
_SETTINGS = (
    "SET LOCAL TimeZone = 'Europe/London'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL client_encoding = 'UTF8'",
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL synchronize_seqscans = off",
)


class _Transport(Protocol):
    """A worker's connection running its statements; `stream` yields the COPY's bytes."""

    stream: Any

    def finish(self) -> None: ...  # after the stream's end: raises if the connection failed
    def failure(self) -> BaseException | None: ...  # the connection's failure, if it has failed
    def cancel(self) -> None: ...  # from another thread: stop the COPY soon
    def close(self) -> None: ...


class _LibpqCopy:
    """The statements on a psycopg connection of this process: libpq hands over one row at a
    time, a Python call each (about 0.4 µs, holding the GIL)."""

    def __init__(self, dsn: str | None, statements: Sequence[str], copy: str) -> None:
        from psycopg import sql

        self._conn = _connect(dsn)
        try:
            self._conn.autocommit = True  # the statements hold their own BEGIN and COMMIT
            for statement in statements:
                self._conn.execute(statement)
            self._copy = _CopyStream(_copy_rows(self._conn, sql.SQL(copy)))
        except BaseException:
            self._conn.close()
            raise
        self.stream = io.BufferedReader(self._copy, buffer_size=_CHUNK)

    def finish(self) -> None:
        self._copy.close()
        self._conn.execute("COMMIT")

    def failure(self) -> BaseException | None:
        return None  # libpq's errors come through the stream itself

    def cancel(self) -> None:
        self._copy.stop()

    def close(self) -> None:
        try:
            self._copy.close()
        finally:
            self._conn.close()


class _PsqlCopy:
    """The statements in a `psql` process, the COPY's rows coming through its standard output.

    psql's loop over libpq's rows is C: it costs 0.4 s of CPU (and 1.5 s of system time, as
    any reader's) for 10M lines where the same loop in Python costs 3.6 s, holding the GIL that
    the workers' parsers and the writer share. The DSN reaches psql through its environment,
    the password through a private password file: neither shows in a process listing.
    """

    def __init__(
        self, psql: str, env: Mapping[str, str], statements: Sequence[str], copy: str, dsn: str
    ) -> None:
        self._dsn = dsn
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `close`)
        args = [psql, "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"]
        for statement in (*statements, copy, "COMMIT"):
            args += ["--command", statement]
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=dict(env),
                bufsize=_CHUNK,
                start_new_session=True,  # a Ctrl-C reaches lgs-fast, which stops psql itself
            )
        except OSError as err:
            self._stderr.close()
            raise SourceError(f"cannot run {psql}: {err.strerror}") from None
        self.stream = self._proc.stdout

    def finish(self) -> None:
        if self._proc.wait() != 0:
            raise self._error()

    def failure(self) -> BaseException | None:
        code = self._proc.poll()
        return self._error() if code not in (None, 0) else None

    def cancel(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGINT)  # psql sends the server a cancel request

    def close(self) -> None:
        self.cancel()
        self._proc.stdout.close()  # psql stops at its next write, if the cancel did not stop it
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        finally:
            self._stderr.close()

    def _error(self) -> Exception:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()]
        message = next(
            (line for line in lines if line), f"psql exited with {self._proc.returncode}"
        )
        message = re.sub(r"^(psql: error: |(ERROR|FATAL): +)", "", message)
        password = conninfo_to_dict(self._dsn).get("password")
        # Reported as the same failure on a connection of this process would be.
        return psycopg.OperationalError(_scrub(message, self._dsn, password))


# libpq's connection parameters that have an environment variable, by keyword.
_ENVIRONMENT = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "passfile": "PGPASSFILE", "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING", "service": "PGSERVICE", "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE", "sslnegotiation": "PGSSLNEGOTIATION", "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB", "gssdelegation": "PGGSSDELEGATION",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
}  # fmt: skip


def _psql() -> str | None:
    """The psql the workers run: `LGS_PSQL` if set (empty: none, read in this process), else
    the one on PATH, if any."""
    given = os.environ.get("LGS_PSQL")
    if given is not None:
        return given or None
    return shutil.which("psql")


@contextlib.contextmanager
def _psql_environment(dsn: str | None) -> Iterator[dict[str, str] | None]:
    """psql's environment for `dsn`: the same connection as `_connect` makes, or None when
    the DSN has a setting psql cannot take from its environment."""
    from psycopg.conninfo import conninfo_to_dict

    parts = {k: str(v) for k, v in conninfo_to_dict(dsn or "").items()}
    password = parts.pop("password", None)
    parts.pop("application_name", None)
    parts.pop("connect_timeout", None)
    dbname = parts.get("dbname", "")
    if (
        set(parts) - set(_ENVIRONMENT)
        or "=" in dbname
        or "://" in dbname
        or "\n" in (password or "")
    ):
        yield None
        return
    env = dict(os.environ)
    env.update({_ENVIRONMENT[k]: v for k, v in parts.items()})
    env.update(PGAPPNAME=APPLICATION, PGCONNECT_TIMEOUT="10")
    if password is None:
        yield env
        return
    env.pop("PGPASSWORD", None)
    private = tempfile.mkdtemp(prefix="lgs-fast-")
    try:
        passfile = Path(private, "pgpass")
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{escaped}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env
    finally:
        shutil.rmtree(private, ignore_errors=True)


_END = object()


class _Worker:
    """One share of the table on a connection of its own: its COPY parsed into canonical frames
    on a thread of its own, handed over through a short queue."""

    def __init__(
        self,
        name: str,
        open_copy: Callable[[], _Transport],
        origin: str,
        native: frozenset[str],
        depth: int = 2,
    ) -> None:
        self._open_copy = open_copy
        self._origin = origin
        self._native = native
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._transport: _Transport | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            transport = self._transport = self._open_copy()
            try:
                if self._stop.is_set():
                    return
                for frame in _frames(transport.stream, self._origin, self._native):
                    if not self._put(frame):
                        return
                transport.finish()
            except BaseException as err:
                # A connection lost mid-COPY ends the stream early: say that, not what a
                # parser makes of the lines it got.
                failure = transport.failure()
                if failure is None:
                    raise
                raise failure from err
            finally:
                transport.close()
            self._put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def _put(self, item: Any) -> bool:
        return _put_unless_stopped(self._queue, item, self._stop)

    def get(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return RuntimeError(f"{self._thread.name} stopped without a word")

    def stop(self) -> None:
        """Stop the COPY (from another thread); `join` waits until the connection is closed."""
        self._stop.set()
        transport = self._transport
        if transport is not None:
            transport.cancel()

    def join(self) -> None:
        self._thread.join()


def _round_robin(workers: Sequence[_Worker]) -> Iterator[pl.DataFrame]:
    """The workers' frames, one from each in turn: the writer sees the same sequence on every
    run (and so writes the same files), whichever worker is ahead."""
    active = list(workers)
    while active:
        for worker in list(active):
            item = worker.get()
            if item is _END:
                active.remove(worker)
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item


class _Export:
    """The database side of one export: the coordinating connection, in its REPEATABLE READ
    snapshot, and the workers' statements, all written out before any thread shares it."""

    def __init__(
        self,
        conn: Any,
        dsn: str | None,
        env: Mapping[str, str] | None,
        shares: Sequence[_Share],
        select: _Select,
        table: str,
        origin: str,
    ) -> None:
        from psycopg import sql

        self._dsn = dsn
        self._psql = _psql() if env is not None else None
        self._env = env
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        self._statements = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)).as_string(conn),
            *_SETTINGS,
        )
        self._copies = [
            (
                origin if len(shares) == 1 else f"{origin} ({share.label()})",
                _copy_query(select, table, share).as_string(conn),
            )
            for share in shares
        ]

    def _transport(self, copy: str) -> Callable[[], _Transport]:
        if self._psql is not None and self._env is not None:
            psql, env, dsn = self._psql, self._env, self._dsn or ""
            return lambda: _PsqlCopy(psql, env, self._statements, copy, dsn)
        return lambda: _LibpqCopy(self._dsn, self._statements, copy)

    def read(self, writer: LakeWriter, native: frozenset[str], progress: Progress | None) -> None:
        """Every share's lines into the writer, one worker per share. A value the typed reader
        refuses (an infinite date, say) is read again, as text, so that `conform` names its row
        and column."""
        try:
            self._read(writer, native, progress)
        except pa.ArrowInvalid:
            writer.discard()
            self._read(writer, frozenset(), progress)

    def _read(self, writer: LakeWriter, native: frozenset[str], progress: Progress | None) -> None:
        workers = [
            _Worker(f"lgs-export-{i + 1}", self._transport(copy), origin, native)
            for i, (origin, copy) in enumerate(self._copies)
        ]
        for worker in workers:
            worker.start()
        try:
            writer.write(_round_robin(workers), progress)
        finally:
            for worker in workers:
                worker.stop()  # nothing left to stop after a success
            for worker in workers:
                worker.join()


def _copy_query(select: _Select, table: str, share: _Share) -> Any:
    """COPY of the canonical columns of one share, in COPY's text format.

    Text, not CSV (0.5 s less of the server's time at 10M lines, nothing to unquote) and not
    binary: the server spends as long on binary (5.2 s against 5.0 s here), and its rows would
    have to be taken apart value by value in Python, where pyarrow parses text in C."""
    from psycopg import sql

    return sql.SQL("COPY (SELECT * FROM (SELECT {} FROM {}) AS s{}) TO STDOUT").format(
        select.items, _table_ident(table), share.where()
    )


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


def export(
    dsn: str | None = None,
    lake: str | Path | None = None,
    *,
    table: str = DEFAULT_TABLE,
    full: bool = False,
    columns: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> ExportResult:
    """Export `table` into the lake, atomically, from one consistent snapshot.

    Incremental unless `full` or the lake holds no earlier export of the same table: the server
    counts and fingerprints every month, and only the months that differ from the lake's
    manifest (inserted, updated or deleted lines, in any month) are read again; months gone
    from the table leave the lake. The result equals a full export. The lake changes only
    after the database work is over, so a server lost at any moment leaves the previous lake.

    `jobs` connections (default `default_jobs()`) read disjoint ranges of months side by side,
    all in the snapshot of the coordinating connection's transaction.
    """
    import psycopg

    dsn = dsn or default_dsn()
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise InputError(f"jobs must be 1 or more, not {jobs}")
    root = local_lake(lake, "export writes")
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
        shares: list[_Share] = []
        try:
            with conn, _psql_environment(dsn) as env:
                _snapshot_transaction(conn)
                with conn.transaction():
                    _session(conn)
                    select = _select_list(_columns(conn, table), mapping, table)
                    origin = f"{redact(dsn or '')} table {table}"
                    server = None
                    if incremental:
                        assert old is not None
                        server = _fingerprints(conn, select, table)
                        incremental = _NO_MONTH not in server
                    if incremental:
                        assert old is not None and server is not None
                        recorded = {k for k in server if _recorded(old, k, server[k])}
                        stale = [
                            k
                            for k in sorted(server)
                            if k not in recorded or not _intact(old, root, k)
                        ]
                        # A file changed by hand is read again, and written the same as before:
                        # its record must change too, or the writer, finding the same content
                        # recorded, would keep the current version and its damaged file.
                        for k in recorded.intersection(stale):
                            server[k] = {**server[k], "restored": writer.write_id}
                        lines = {month_of(k): server[k]["source_rows"] for k in stale}
                        shares = _shares_of_months(lines, jobs)
                    else:
                        lines = _sampled_lines(conn, select, table) if jobs > 1 else {}
                        shares = _shares_of_table(lines, jobs)
                    database = _Export(conn, dsn, env, shares, select, table, origin)
                    if server is not None:
                        if shares:
                            database.read(writer, select.native, progress)
                    else:
                        # The fingerprints are taken while the workers read, on this
                        # connection, in the same snapshot.
                        beside = _Beside(_fingerprints, conn, select, table)
                        try:
                            database.read(writer, select.native, progress)
                        except BaseException:
                            with contextlib.suppress(psycopg.Error):
                                conn.cancel_safe()
                            beside.wait()  # done before the snapshot's transaction ends
                            raise
                        server = beside.result()
                    if not incremental:
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
        root,
        manifest.rows,
        writer.rows,
        months,
        not incremental,
        manifest.watermark,
        changed,
        len(shares),
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


# COPY's text format escapes these; a value holds a backslash only as part of one of them.
_ESCAPES = {
    "\\\\": "\\",
    "\\b": "\b",
    "\\f": "\f",
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
}


def _frames(
    stream: Any, origin: str, native: frozenset[str] = frozenset()
) -> Iterator[pl.DataFrame]:
    """Canonical frames from a stream in COPY's text format (a binary file); `native` columns
    are typed by the CSV reader."""
    types = {f.name: f.type if f.name in native else pa.string() for f in ARROW_SCHEMA}
    # One line per row, fields split by tabs, nothing quoted: escapes stand for tabs, newlines
    # and backslashes in values, and \N for NULL.
    parse_options = pacsv.ParseOptions(
        delimiter="\t", quote_char=False, double_quote=False, escape_char=False
    )
    convert_options = pacsv.ConvertOptions(
        column_types=types, null_values=["\\N"], strings_can_be_null=True
    )
    row = 1
    for block in _blocks(stream):
        batch = pacsv.read_csv(
            pa.py_buffer(block),
            # The whole block at once, whatever the length of its lines.
            read_options=pacsv.ReadOptions(
                column_names=list(COLUMNS), block_size=len(block) + 1, use_threads=False
            ),
            parse_options=parse_options,
            convert_options=convert_options,
        )
        escaped = [n for n in COLUMNS if n not in native and _has_backslash(batch.column(n))]
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if escaped:
            frame = frame.with_columns(
                pl.col(escaped).str.replace_many(list(_ESCAPES), list(_ESCAPES.values()))
            )
        yield conform(frame, origin=origin, first_row=row)
        row += frame.height


def _blocks(stream: Any) -> Iterator[memoryview]:
    """The stream in blocks of about `_CHUNK` bytes that end at the end of a line.

    Each block is parsed on its own (`pyarrow.csv.read_csv`): pyarrow's streaming reader
    reads up to 32 blocks ahead of its parser, 256 MiB at this block size, for each worker.
    COPY's text format has no quotes, so every newline ends a row.
    """
    rest = b""
    while True:
        block = bytearray(len(rest) + _CHUNK)  # a new one each time: pyarrow may keep views
        block[: len(rest)] = rest
        size = len(rest)
        while size < len(block) and (n := stream.readinto(memoryview(block)[size:])):
            size += n
        if size == len(rest):
            break
        end = block.rfind(b"\n", 0, size) + 1
        rest = bytes(block[end:size])
        if end:
            yield memoryview(block)[:end]
    if rest:
        yield memoryview(rest)


def _has_backslash(column: pa.ChunkedArray) -> bool:
    """True if a text column's bytes hold a backslash (a scan of its values would cost twenty
    times as much, and backslashes are rare)."""
    for chunk in column.chunks:
        data = chunk.buffers()[2]
        if data is not None and b"\\" in data.to_pybytes():
            return True
    return False


def load_pg(
    paths: Sequence[str | Path],
    dsn: str | None = None,
    *,
    table: str = DEFAULT_TABLE,
    append: bool = False,
    progress: Progress | None = None,
    date_format: str | None = None,
) -> int:
    """Create `table` (the LGS DDL) if needed and load the files into it, in one transaction.

    Without `append` the table's old rows are replaced. Returns the number of rows loaded.
    Slash dates are read as `import` reads them (`date_format`, or each file's own order).
    """
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.sources import read_source

    for path in paths:
        # Checks paths, file types and the date format before touching the database.
        read_source(path, date_format=date_format)
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
                    for frame in read_source(path, date_format=date_format):
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
