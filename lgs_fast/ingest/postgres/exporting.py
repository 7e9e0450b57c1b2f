"""export: the retail table into the lake, from one snapshot over several connections, only the months that changed."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lgs_fast.errors import InputError, SourceError
from lgs_fast.ingest.postgres.connection import (
    DEFAULT_TABLE,
    SESSION_SETTINGS,
    Select,
    default_dsn,
    masked_first_line,
    open_connection,
    psql_environment,
    psql_path,
    redact,
    select_list,
    set_session,
    snapshot_transaction,
    table_columns,
)
from lgs_fast.ingest.postgres.shares import (
    NO_MONTH,
    Share,
    default_jobs,
    intact_months,
    read_fingerprints,
    recorded_fingerprints,
    sampled_lines,
    shares_of_months,
    shares_of_table,
)
from lgs_fast.ingest.postgres.transport import (
    LibpqCopy,
    PsqlCopy,
    Transport,
    Worker,
    copy_query,
    round_robin,
)
from lgs_fast.lake import (
    LakeWriter,
    Progress,
    local_lake,
    month_of,
)


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


class Export:
    """The database side of one export: the coordinating connection, in its REPEATABLE READ
    snapshot, and the workers' statements, all written out before any thread shares it."""

    def __init__(
        self,
        conn: Any,
        dsn: str | None,
        env: Mapping[str, str] | None,
        shares: Sequence[Share],
        select: Select,
        table: str,
        origin: str,
    ) -> None:
        from psycopg import sql

        self._dsn = dsn
        self._psql = psql_path() if env is not None else None
        self._env = env
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        self._statements = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)).as_string(conn),
            *SESSION_SETTINGS,
        )
        self._copies = [
            (
                origin if len(shares) == 1 else f"{origin} ({share.label()})",
                copy_query(select, table, share).as_string(conn),
            )
            for share in shares
        ]

    def _transport(self, copy: str) -> Callable[[], Transport]:
        if self._psql is not None and self._env is not None:
            psql, env, dsn = self._psql, self._env, self._dsn or ""
            return lambda: PsqlCopy(psql, env, self._statements, copy, dsn)
        return lambda: LibpqCopy(self._dsn, self._statements, copy)

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
            Worker(f"lgs-export-{i + 1}", self._transport(copy), origin, native)
            for i, (origin, copy) in enumerate(self._copies)
        ]
        for worker in workers:
            worker.start()
        try:
            writer.write(round_robin(workers), progress)
        finally:
            for worker in workers:
                worker.stop()  # nothing left to stop after a success
            for worker in workers:
                worker.join()


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
        conn = open_connection(dsn)
        shares: list[Share] = []
        try:
            with conn, psql_environment(dsn) as env:
                snapshot_transaction(conn)
                with conn.transaction():
                    set_session(conn)
                    select = select_list(table_columns(conn, table), mapping, table)
                    origin = f"{redact(dsn or '')} table {table}"
                    server = None
                    if incremental:
                        assert old is not None
                        server = read_fingerprints(conn, select, table)
                        incremental = NO_MONTH not in server
                    if incremental:
                        assert old is not None and server is not None
                        recorded = {k for k in server if recorded_fingerprints(old, k, server[k])}
                        stale = [
                            k
                            for k in sorted(server)
                            if k not in recorded or not intact_months(old, root, k)
                        ]
                        # A file changed by hand is read again, and written the same as before:
                        # its record must change too, or the writer, finding the same content
                        # recorded, would keep the current version and its damaged file.
                        for k in recorded.intersection(stale):
                            server[k] = {**server[k], "restored": writer.write_id}
                        lines = {month_of(k): server[k]["source_rows"] for k in stale}
                        shares = shares_of_months(lines, jobs)
                    else:
                        lines = sampled_lines(conn, select, table) if jobs > 1 else {}
                        shares = shares_of_table(lines, jobs)
                    database = Export(conn, dsn, env, shares, select, table, origin)
                    if server is not None:
                        if shares:
                            database.read(writer, select.native, progress)
                    else:
                        # The fingerprints are taken while the workers read, on this
                        # connection, in the same snapshot.
                        beside = _Beside(read_fingerprints, conn, select, table)
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
                f"export from {table!r} failed ({redact(dsn or '')}): {masked_first_line(err)}; the lake is unchanged"
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
