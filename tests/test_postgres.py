"""PostgreSQL export and load-pg against a real server: round trip, incremental, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from lgs_fast.cli import cli
from lgs_fast.errors import InputError, SourceError
from lgs_fast.ingest.postgres import export, load_pg, redact
from lgs_fast.lake import Manifest, scan, verify_lake
from lgs_fast.schema import COLUMNS
from tests.conftest import EMBEDDED


def _snapshot(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


def _summary(lake: Path) -> tuple[object, ...]:
    return (
        scan(lake)
        .select(
            pl.len(),
            (pl.col("quantity") * pl.col("unit_price")).sum().round(6),
            pl.col("customer_id").n_unique(),
            pl.col("invoice_no").n_unique(),
        )
        .collect()
        .row(0)
    )


def test_round_trip_real_data(
    pg_dsn: str, pg_retail: str, retail_lake: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    result = export(pg_dsn, lake, table=pg_retail)
    assert (result.exported, result.rows, result.full) == (541_909, 541_909, True)
    exported, imported = verify_lake(lake), verify_lake(retail_lake)
    assert {k: v["rows"] for k, v in exported.partitions.items()} == {
        k: v["rows"] for k, v in imported.partitions.items()
    }
    assert _summary(lake) == _summary(retail_lake)
    key = list(COLUMNS)
    assert (
        scan(lake)
        .sort(key, nulls_last=True)
        .collect()
        .equals(scan(retail_lake).sort(key, nulls_last=True).collect())
    )
    assert exported.watermark == "2011-12-09T12:50:00"
    assert "password" not in (lake / "_manifest.json").read_text()


def _insert(dsn: str, table: str, rows: list[tuple[object, ...]]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)").format(
                sql.Identifier(table)
            ),
            rows,
        )


def _row(invoice: str, when: str, customer: int | None = 17850) -> tuple[object, ...]:
    return (invoice, "85123A", "WHITE HANGING HEART", 6, when, 2.55, customer, "United Kingdom")


def _lines(lake: Path) -> pl.DataFrame:
    return scan(lake).sort(list(COLUMNS), nulls_last=True).collect()


def test_incremental_export(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text(
        "invoice_no,stock_code,description,quantity,invoice_date,unit_price,customer_id,country\n"
        "1,A,x,1,2011-01-05 10:00:00,1.5,7,UK\n1,B,y,2,2011-01-05 10:00:00,2.0,7,UK\n"
        "2,A,x,3,2011-02-10 09:00:00,1.5,8,UK\n"
    )
    assert load_pg([small], pg_dsn, table=pg_table) == 3
    lake = tmp_path / "lake"
    first = export(pg_dsn, lake, table=pg_table)
    assert (first.rows, first.watermark, first.full) == (3, "2011-02-10T09:00:00", True)
    february = verify_lake(lake).partitions["year=2011/month=02"]
    # A late row in the last month, a new month, and a late row in an old month.
    _insert(
        pg_dsn,
        pg_table,
        [
            _row("3", "2011-02-01 08:00:00"),
            _row("4", "2011-03-02 12:00:00"),
            _row("5", "2011-01-20 12:00:00"),
        ],
    )
    second = export(pg_dsn, lake, table=pg_table)
    assert not second.full and second.months == ["2011-01", "2011-02", "2011-03"]
    assert (second.exported, second.rows, second.watermark) == (6, 6, "2011-03-02T12:00:00")
    # An UPDATE and a DELETE in January only: only January is read again.
    with psycopg.connect(pg_dsn) as conn:
        ident = sql.Identifier(pg_table)
        conn.execute(sql.SQL("UPDATE {} SET quantity = 99 WHERE invoice_no = '5'").format(ident))
        conn.execute(sql.SQL("DELETE FROM {} WHERE stock_code = 'B'").format(ident))
    third = export(pg_dsn, lake, table=pg_table)
    assert (third.months, third.exported, third.rows) == (["2011-01"], 2, 5)
    assert verify_lake(lake).partitions["year=2011/month=02"]["sha256"] != february["sha256"]
    fourth = export(pg_dsn, lake, table=pg_table)
    assert not fourth.changed and fourth.months == [] and fourth.exported == 0
    full = tmp_path / "full"
    export(pg_dsn, full, table=pg_table, full=True)
    assert _lines(lake).equals(_lines(full))
    assert {k: v["rows"] for k, v in verify_lake(lake).partitions.items()} == {
        "year=2011/month=01": 2, "year=2011/month=02": 2, "year=2011/month=03": 1,
    }  # fmt: skip


def test_column_mapping_and_types(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                'CREATE TABLE {} ("InvoiceNo" varchar(10), stock_code text, description text, '
                "quantity smallint, invoice_date timestamptz, unit_price numeric(8,3), "
                "customer_id numeric, country text)"
            ).format(sql.Identifier(pg_table))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('536365', '85123A', NULL, 6, '2010-12-01 08:26:00+00', 2.55, 17850.0, 'United Kingdom')"
            ).format(sql.Identifier(pg_table))
        )
        # Text that other tools read as missing stays text; '' stays an empty description.
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('C536366', 'NA', '', -1, '2011-07-01 12:00:00.25+00', 0.1, NULL, 'NULL')"
            ).format(sql.Identifier(pg_table))
        )
    lake = tmp_path / "lake"
    export(pg_dsn, lake, table=pg_table, columns={"invoice_no": "InvoiceNo"})
    line, other = scan(lake).collect().sort("invoice_date").iter_rows(named=True)
    assert line["invoice_no"] == "536365" and line["customer_id"] == 17850
    assert line["unit_price"] == 2.55 and line["description"] is None
    assert (
        line["invoice_date"].isoformat() == "2010-12-01T08:26:00"
    )  # UTC 08:26 is 08:26 in London in December
    assert (other["stock_code"], other["description"], other["country"]) == ("NA", "", "NULL")
    assert other["invoice_date"].isoformat() == "2011-07-01T13:00:00.250000"  # BST
    assert other["customer_id"] is None and other["unit_price"] == 0.1


@pytest.fixture
def old_lake(tmp_path: Path) -> Path:
    from lgs_fast.ingest.sources import import_files

    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    return lake


def test_bad_dsn_hides_password(old_lake: Path) -> None:
    before = _snapshot(old_lake)
    dsn = "host=127.0.0.1 port=1 user=postgres password=s3cr3t-pw dbname=test"
    with pytest.raises(SourceError) as err:
        export(dsn, old_lake)
    assert "s3cr3t-pw" not in str(err.value) and "cannot connect" in str(err.value)
    assert "password" not in redact(dsn)
    result = CliRunner().invoke(cli, ["export", "--dsn", dsn, "--lake", str(old_lake)])
    assert result.exit_code == 4 and "s3cr3t-pw" not in result.output + result.stderr
    assert _snapshot(old_lake) == before


def test_missing_table_and_columns(pg_dsn: str, pg_table: str, old_lake: Path) -> None:
    before = _snapshot(old_lake)
    with pytest.raises(SourceError, match="no table"):
        export(pg_dsn, old_lake, table=pg_table)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, invoice_date integer)"
            ).format(sql.Identifier(pg_table))
        )
    with pytest.raises(SourceError, match="no column 'description'"):
        export(pg_dsn, old_lake, table=pg_table)
    with pytest.raises(SourceError, match="no column 'nope'"):
        export(pg_dsn, old_lake, table=pg_table, columns={"stock_code": "nope"})
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(pg_table)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, quantity int, invoice_date integer, unit_price float8, customer_id int, country text)"
            ).format(sql.Identifier(pg_table))
        )
    with pytest.raises(SourceError, match="not a timestamp"):
        export(pg_dsn, old_lake, table=pg_table)
    assert _snapshot(old_lake) == before
    assert Manifest.read(old_lake).watermark == "2011-12-09T12:50:00"


def test_identifiers_are_quoted(pg_dsn: str, old_lake: Path) -> None:
    with pytest.raises(SourceError, match="no table"):
        export(pg_dsn, old_lake, table='retail"; DROP TABLE retail; --')


def test_backend_killed_mid_export(pg_dsn: str, pg_retail: str, old_lake: Path) -> None:
    """pg_terminate_backend during the COPY: one clear error, the old lake and watermark intact."""
    before = _snapshot(old_lake)
    killed: list[int] = []

    def kill_the_copy() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not killed:
                # Only this test's COPY: another worker's export (test_export_parallel) may be
                # copying its own table from the same server at the same time.
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'lgs_fast' "
                    "AND state = 'active' AND query LIKE 'COPY%%' AND query LIKE %s",
                    (f"%{pg_retail}%",),
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                time.sleep(0.002)

    killer = threading.Thread(target=kill_the_copy)
    killer.start()
    with pytest.raises(SourceError, match="export from"):
        export(pg_dsn, old_lake, table=pg_retail, full=True)
    killer.join()
    assert killed, "the export finished before its backend could be terminated"
    assert _snapshot(old_lake) == before
    assert verify_lake(old_lake).rows == 541_909
    assert not list(old_lake.parent.glob(".lake.tmp-*"))


def test_bad_value_mid_stream(pg_dsn: str, pg_retail: str, pg_table: str, old_lake: Path) -> None:
    """A bad value while the COPY is still streaming: the error names the row, the reader stops."""
    before = _snapshot(old_lake)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity text, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(sql.Identifier(pg_table))
        )
        # Physical order is insertion order: four good rows, the bad one, then 541,909 more.
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT {} FROM {} LIMIT 4").format(
                sql.Identifier(pg_table), cols, sql.Identifier(pg_retail)
            )
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('536999', '85123A', 'MUG', 'six', '2010-12-01 08:26', "
                "2.55, 17850, 'United Kingdom')"
            ).format(sql.Identifier(pg_table))
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT {} FROM {}").format(
                sql.Identifier(pg_table), cols, sql.Identifier(pg_retail)
            )
        )
    # One worker reads the table in its physical order, so the bad line is row 5 whatever the
    # months of the four before it (with several, rows count within each worker's months:
    # tests/test_export_parallel.py checks that).
    with pytest.raises(InputError, match=r"row 5: column quantity .*'six'"):
        export(pg_dsn, old_lake, table=pg_table, full=True, jobs=1)
    assert not [t for t in threading.enumerate() if t.name == "lgs-copy-reader"]
    assert _snapshot(old_lake) == before
    # The server is not left with a COPY of this table (another xdist worker may be exporting
    # its own tables from the same server meanwhile: only this one's backends count).
    with psycopg.connect(pg_dsn) as conn:
        (busy,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lgs_fast' "
            "AND query LIKE %s",
            (f"%{pg_table}%",),
        ).fetchone()
    assert busy == 0


def test_value_the_typed_reader_refuses(pg_dsn: str, pg_table: str, old_lake: Path) -> None:
    """An infinite timestamp fails the typed CSV reader; the text re-read names its row."""
    before = _snapshot(old_lake)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity int, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(sql.Identifier(pg_table))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES "
                "('536365', '85123A', 'MUG', 6, '2010-12-01 08:26', 2.55, 17850, 'United Kingdom'),"
                "('536366', '85123A', 'MUG', 6, 'infinity', 2.55, 17850, 'United Kingdom')"
            ).format(sql.Identifier(pg_table))
        )
    with pytest.raises(InputError, match=r"row 2: column invoice_date cannot be read as a date"):
        export(pg_dsn, old_lake, table=pg_table, full=True)
    assert _snapshot(old_lake) == before


def test_load_pg_bad_input_leaves_table(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "invoice_no,stock_code,description,quantity,invoice_date,unit_price,customer_id,country\n1,A,x,1,2011-01-05 10:00:00,1.5,7,UK\n"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text() + "2,A,x,one,2011-01-05 10:00:00,1.5,7,UK\n")
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["load-pg", str(good), "--dsn", pg_dsn, "--table", pg_table]).exit_code
        == 0
    )
    result = runner.invoke(cli, ["load-pg", str(bad), "--dsn", pg_dsn, "--table", pg_table])
    assert result.exit_code == 2 and "row 2: column quantity" in result.stderr
    with psycopg.connect(pg_dsn) as conn:
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_table))
        ).fetchone()
    assert count == (1,)


def test_closed_stream_releases_a_waiting_reader() -> None:
    """pyarrow reads ahead on its own thread; closing the stream must not leave it waiting.

    The export once hung when a bad value stopped it while that thread waited for a block the
    stopped COPY reader would never send.
    """
    from lgs_fast.ingest.postgres.transport import CopyStream

    built = threading.Event()

    def rows() -> Iterator[bytes]:
        yield b"536365,85123A\n"
        built.wait(10)
        stream._stop.wait(10)  # a COPY whose next row arrives only once the stream is closed

    stream = CopyStream(rows(), block=1)
    built.set()
    buffer = bytearray(64)
    assert stream.readinto(buffer) == 14
    got: list[int] = []
    waiting = threading.Thread(target=lambda: got.append(stream.readinto(buffer)), daemon=True)
    waiting.start()
    time.sleep(0.2)
    assert got == []  # it is waiting for the next block
    stream.close()
    waiting.join(5)
    assert not waiting.is_alive()
    assert got == [0]


def test_load_pg_reads_slash_dates_as_import_does(
    pg_dsn: str, pg_table: str, tmp_path: Path
) -> None:
    """A UK file whose every date reads both ways: refused with the --date-format to give,
    then loaded day-first with it."""
    uk = tmp_path / "uk.csv"
    uk.write_text(
        ",".join(COLUMNS) + "\n"
        "1,A,x,1,01/12/2010 08:26,1.5,7,UK\n"
        "2,A,x,1,02/12/2010 09:00,1.5,7,UK\n"
    )
    runner = CliRunner()
    args = ["load-pg", str(uk), "--dsn", pg_dsn, "--table", pg_table]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2 and "--date-format '%d/%m/%Y %H:%M'" in refused.stderr
    loaded = runner.invoke(cli, [*args, "--date-format", "%d/%m/%Y %H:%M"])
    assert loaded.exit_code == 0, loaded.output
    with psycopg.connect(pg_dsn) as conn:
        dates = conn.execute(
            sql.SQL("SELECT invoice_date::text FROM {} ORDER BY 1").format(sql.Identifier(pg_table))
        ).fetchall()
    assert dates == [("2010-12-01 08:26:00",), ("2010-12-02 09:00:00",)]
