"""COPY transports: libpq's COPY or psql's, streamed into pyarrow's CSV reader on worker threads, through bounded queues, as canonical frames."""

from __future__ import annotations

import contextlib
import io
import queue
import re
import select
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from lgs_fast.errors import SourceError
from lgs_fast.ingest.postgres.connection import Select, open_connection, scrub_message, table_ident
from lgs_fast.ingest.postgres.shares import Share
from lgs_fast.schema import ARROW_SCHEMA, COLUMNS, conform

_CHUNK = 8 << 20


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


class CopyStream(io.RawIOBase):
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

    def __enter__(self) -> CopyStream:
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


class Transport(Protocol):
    """A worker's connection running its statements; `stream` yields the COPY's bytes."""

    stream: Any

    def finish(self) -> None: ...  # after the stream's end: raises if the connection failed
    def failure(self) -> BaseException | None: ...  # the connection's failure, if it has failed
    def cancel(self) -> None: ...  # from another thread: stop the COPY soon
    def close(self) -> None: ...


class LibpqCopy:
    """The statements on a psycopg connection of this process: libpq hands over one row at a
    time, a Python call each (about 0.4 µs, holding the GIL)."""

    def __init__(self, dsn: str | None, statements: Sequence[str], copy: str) -> None:
        from psycopg import sql

        self._conn = open_connection(dsn)
        try:
            self._conn.autocommit = True  # the statements hold their own BEGIN and COMMIT
            for statement in statements:
                self._conn.execute(statement)
            self._copy = CopyStream(_copy_rows(self._conn, sql.SQL(copy)))
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


class PsqlCopy:
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
        return psycopg.OperationalError(scrub_message(message, self._dsn, password))


_END = object()


class Worker:
    """One share of the table on a connection of its own: its COPY parsed into canonical frames
    on a thread of its own, handed over through a short queue."""

    def __init__(
        self,
        name: str,
        open_copy: Callable[[], Transport],
        origin: str,
        native: frozenset[str],
        depth: int = 2,
    ) -> None:
        self._open_copy = open_copy
        self._origin = origin
        self._native = native
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._transport: Transport | None = None
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


def round_robin(workers: Sequence[Worker]) -> Iterator[pl.DataFrame]:
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


def copy_query(select: Select, table: str, share: Share) -> Any:
    """COPY of the canonical columns of one share, in COPY's text format.

    Text, not CSV (0.5 s less of the server's time at 10M lines, nothing to unquote) and not
    binary: the server spends as long on binary (5.2 s against 5.0 s here), and its rows would
    have to be taken apart value by value in Python, where pyarrow parses text in C."""
    from psycopg import sql

    return sql.SQL("COPY (SELECT * FROM (SELECT {} FROM {}) AS s{}) TO STDOUT").format(
        select.items, table_ident(table), share.where()
    )


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
