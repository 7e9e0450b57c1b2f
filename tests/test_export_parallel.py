"""The parallel export: workers in one snapshot, through psql or in this process, against a
real PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import polars as pl
import psycopg
import pytest
from psycopg import sql

from lgs_fast.errors import InputError, SourceError
from lgs_fast.ingest import postgres
from lgs_fast.ingest.postgres import connection, export, exporting
from lgs_fast.ingest.postgres import shares as splitting
from lgs_fast.lake import LakeWriter, scan, verify_lake
from tests.conftest import EMBEDDED

needs_psql = pytest.mark.skipif(connection.psql_path() is None, reason="no psql on PATH")


def _files(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


def _record(lake: Path) -> dict[str, tuple[object, ...]]:
    """What the manifest says of each month's lines, but for file names."""
    return {
        key: (meta["rows"], meta["source_rows"], meta["fingerprint"], meta["sha256"])
        for key, meta in verify_lake(lake).partitions.items()
    }


def _lgs_backends(dsn: str, table: str) -> int:
    """lgs_fast's backends on the server whose query names `table`: another xdist worker may be
    exporting its own tables from the same server at the same time."""
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lgs_fast' "
            "AND query LIKE %s",
            (f"%{table}%",),
        ).fetchone()
    return int(count)


def _export_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("lgs-export", "lgs-copy"))]


@needs_psql
def test_parallel_export_equals_single_job(
    pg_dsn: str, pg_retail: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers (through psql, and in this process) give the lines of one worker, each
    month in the table's order, and the same files whichever way they travel."""
    one = export(pg_dsn, tmp_path / "one", table=pg_retail, jobs=1)
    three = export(pg_dsn, tmp_path / "three", table=pg_retail, full=True, jobs=3)
    monkeypatch.setenv("LGS_PSQL", "")
    inproc = export(pg_dsn, tmp_path / "inproc", table=pg_retail, full=True, jobs=3)
    assert (one.jobs, three.jobs, inproc.jobs) == (1, 3, 3)
    assert one.rows == three.rows == inproc.rows == 541_909
    lines = scan(tmp_path / "one").collect()
    assert scan(tmp_path / "three").collect().equals(lines)
    assert scan(tmp_path / "inproc").collect().equals(lines)
    counts = {k: v[:3] for k, v in _record(tmp_path / "one").items()}
    assert {k: v[:3] for k, v in _record(tmp_path / "three").items()} == counts
    # The writer gets the workers' frames in turn: the same files on every run.
    assert _record(tmp_path / "inproc") == _record(tmp_path / "three")


@needs_psql
def test_workers_read_the_coordinators_snapshot(
    pg_dsn: str, pg_table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines committed after the snapshot was exported, before any worker began, are not read:
    every worker imports the coordinating transaction's snapshot, the one the coordinator's own
    counts are taken in."""
    ident = sql.Identifier(pg_table)
    months = ["2011-01-05", "2011-02-05", "2011-03-05"]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity int, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(ident)
        )
        for day in months:
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES ('1', 'A', 'x', 1, %s, 1.5, 7, 'UK')").format(ident),
                (day,),
            )
    for psql in (None, ""):
        if psql is not None:
            monkeypatch.setenv("LGS_PSQL", psql)
        conn = connection.open_connection(pg_dsn)
        try:
            connection.snapshot_transaction(conn)
            with conn.transaction(), connection.psql_environment(pg_dsn) as env:
                connection.set_session(conn)
                select = connection.select_list(
                    connection.table_columns(conn, pg_table), {}, pg_table
                )
                shares = splitting.shares_of_table({(2011, m): 1 for m in (1, 2, 3)}, 3)
                assert len(shares) == 3
                database = exporting.Export(conn, pg_dsn, env, shares, select, pg_table, "t")
                with psycopg.connect(pg_dsn) as other:  # committed before the workers start
                    for day in months:
                        other.execute(
                            sql.SQL(
                                "INSERT INTO {} VALUES ('2', 'B', 'y', 2, %s, 2.5, 8, 'UK')"
                            ).format(ident),
                            (day,),
                        )
                with LakeWriter(tmp_path / f"lake{psql}") as writer:
                    database.read(writer, select.native, None)
                    writer_rows = writer.month_rows()
                    assert writer_rows == {
                        "year=2011/month=01": 1, "year=2011/month=02": 1, "year=2011/month=03": 1,
                    }  # fmt: skip
                server = splitting.read_fingerprints(conn, select, pg_table)
                assert {k: v["source_rows"] for k, v in server.items()} == writer_rows
        finally:
            conn.close()
        with psycopg.connect(pg_dsn) as other:
            other.execute(sql.SQL("DELETE FROM {} WHERE invoice_no = '2'").format(ident))


def test_insert_during_an_export_is_not_seen(
    pg_dsn: str, pg_retail: str, pg_table: str, tmp_path: Path
) -> None:
    """Lines inserted into every month while the workers read reach neither the lake nor the
    manifest's counts, and the next export reads exactly those months."""
    ident = sql.Identifier(pg_table)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(ident, sql.Identifier(pg_retail))
        )
    inserted: list[bool] = []

    def insert_while_copying() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                copying = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lgs_fast' "
                    "AND state = 'active' AND query LIKE 'COPY%%' AND query LIKE %s",
                    (f"%{pg_table}%",),
                ).fetchone()[0]
                if copying:
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} SELECT 'NEW', 'NEW', 'NEW', 1, m, 1.0, 1, 'UK' FROM "
                            "generate_series('2010-12-15'::timestamp, '2011-12-15', '1 month') AS m"
                        ).format(ident)
                    )
                    inserted.append(True)
                    return
                time.sleep(0.002)

    inserter = threading.Thread(target=insert_while_copying)
    inserter.start()
    lake = tmp_path / "lake"
    result = export(pg_dsn, lake, table=pg_table, jobs=3)
    inserter.join()
    assert inserted, "no COPY was seen running"
    assert result.rows == 541_909 and result.jobs == 3
    assert scan(lake).filter(pl.col("invoice_no") == "NEW").collect().height == 0
    assert sum(p["source_rows"] for p in verify_lake(lake).partitions.values()) == 541_909
    again = export(pg_dsn, lake, table=pg_table, jobs=3)
    assert len(again.months) == 13 and again.rows == 541_909 + 13


@needs_psql
def test_worker_failure_leaves_the_previous_lake(
    pg_dsn: str, pg_retail: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of three workers' backends terminated mid-COPY: one error, the previous lake as it
    was, and no worker, psql or backend left behind, whichever way the workers connect."""
    from lgs_fast.ingest.sources import import_files

    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    before = _files(lake)
    for psql in (None, ""):
        if psql is not None:
            monkeypatch.setenv("LGS_PSQL", psql)
        killed: list[int] = []

        def kill_one_copy(killed: list[int] = killed) -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not killed:
                    # Only this test's table: another worker may be exporting its own.
                    row = conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'lgs_fast' "
                        "AND state = 'active' AND query LIKE 'COPY%%' AND query LIKE %s "
                        "ORDER BY backend_start DESC",
                        (f"%{pg_retail}%",),
                    ).fetchone()
                    if row:
                        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                        killed.append(row[0])
                    time.sleep(0.002)

        killer = threading.Thread(target=kill_one_copy)
        killer.start()
        with pytest.raises(SourceError, match="export from .* failed .*; the lake is unchanged"):
            export(pg_dsn, lake, table=pg_retail, full=True, jobs=3)
        killer.join()
        assert killed, "the export finished before a worker's backend could be terminated"
        assert _files(lake) == before
        assert not _export_threads()
        deadline = time.monotonic() + 5
        while _lgs_backends(pg_dsn, pg_retail) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _lgs_backends(pg_dsn, pg_retail) == 0


def test_bad_value_in_the_last_share_names_its_range(
    pg_dsn: str, pg_table: str, tmp_path: Path
) -> None:
    """A refused value in one worker's months stops every worker; the message names the row
    within that worker's range of months, and nothing is left running."""
    ident = sql.Identifier(pg_table)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity text, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(ident)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT n::text, 'A', 'x', '1', "
                "'2011-01-01'::timestamp + (n % 12) * interval '1 month', 1.5, 7, 'UK' "
                "FROM generate_series(1, 24000) AS n"
            ).format(ident)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('X', 'A', 'x', 'six', '2011-12-20', 1.5, 7, 'UK')"
            ).format(ident)
        )
    lake = tmp_path / "lake"
    with pytest.raises(
        InputError,
        match=r"lines dated from 2011-09 on or undated\): row 8001: column quantity .*'six'",
    ):
        export(pg_dsn, lake, table=pg_table, jobs=3)
    assert not lake.exists()
    assert not _export_threads()


@needs_psql
def test_escaped_text_round_trips(
    pg_dsn: str, pg_table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tabs, newlines, carriage returns and backslashes in values, a text that reads \\N, an
    empty text and a NULL: COPY's text format escapes them, the export gives them back."""
    ident = sql.Identifier(pg_table)
    texts = ["a\tb", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "", None, "\\\\n\\t", "é ü"]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity int, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(ident)
        )
        conn.cursor().executemany(
            sql.SQL(
                "INSERT INTO {} VALUES (%s, 'S\\1', %s, %s, '2011-01-05', 1.5, 7, 'UK')"
            ).format(ident),
            [(str(i), text, i) for i, text in enumerate(texts)],
        )
    for psql in (None, ""):
        if psql is not None:
            monkeypatch.setenv("LGS_PSQL", psql)
        lake = tmp_path / f"lake{psql}"
        export(pg_dsn, lake, table=pg_table, jobs=2)
        got = scan(lake).sort("quantity").collect()
        assert got["description"].to_list() == texts
        assert set(got["stock_code"]) == {"S\\1"}


@needs_psql
def test_password_reaches_psql_through_a_private_file(pg_dsn: str) -> None:
    """Neither psql's arguments nor its environment hold the password (a process listing shows
    both); it is in a file only its owner may read, removed afterwards."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = make_conninfo(pg_dsn, password="S3cret:pw\\x")
    with connection.psql_environment(dsn) as env:
        assert env is not None
        assert "S3cret" not in repr(env) and "PGPASSWORD" not in env
        passfile = Path(env["PGPASSFILE"])
        assert passfile.stat().st_mode & 0o077 == 0
        assert passfile.read_text() == "*:*:*:*:S3cret\\:pw\\\\x\n"
        assert env["PGAPPNAME"] == "lgs_fast"
        parts = conninfo_to_dict(pg_dsn)
        assert all(env[connection.PSQL_ENVIRONMENT[k]] == str(v) for k, v in parts.items())
    assert not passfile.exists()
    # A setting psql cannot take from its environment: the workers connect in this process.
    with connection.psql_environment(make_conninfo(pg_dsn, keepalives="1")) as env:
        assert env is None


def test_splitting_months_between_workers() -> None:
    groups = splitting.month_groups({(2011, m): n for m, n in enumerate([5, 1, 1, 1, 5, 1], 1)}, 3)
    assert groups == [[(2011, 1)], [(2011, 2), (2011, 3), (2011, 4)], [(2011, 5), (2011, 6)]]
    assert splitting.month_groups({(2011, 1): 9}, 4) == [[(2011, 1)]]
    assert splitting.month_groups({}, 4) == []
    shares = splitting.shares_of_table({(2010, 12): 3, (2011, 1): 1, (2011, 2): 1, (2011, 3): 3}, 2)
    assert [s.label() for s in shares] == [
        "lines dated up to 2011-01",
        "lines dated from 2011-02 on or undated",
    ]
    months = splitting.shares_of_months({(2011, 1): 1, (2011, 2): 1, (2011, 5): 1}, 1)
    assert [s.label() for s in months] == ["lines dated 2011-01 to 2011-02, 2011-05"]


def test_jobs_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LGS_EXPORT_JOBS", raising=False)
    assert postgres.default_jobs() == max(2, os.cpu_count() or 1)
    monkeypatch.setenv("LGS_EXPORT_JOBS", "3")
    assert postgres.default_jobs() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("LGS_EXPORT_JOBS", bad)
        with pytest.raises(InputError, match="LGS_EXPORT_JOBS"):
            postgres.default_jobs()
    with pytest.raises(InputError, match="jobs"):
        export("host=nowhere", "/nonexistent/lake", jobs=0)
