"""Shared fixtures: the real data, and lakes built from it once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.ingest.sources import import_files

ROOT = Path(__file__).resolve().parent.parent
# The real files the tests read (UCI Online Retail, its II extract, CDNOW), in the repository.
TEST_DATA = ROOT / "tests" / "data"
EMBEDDED = ROOT / "lgs_fast" / "ingest" / "data" / "online_retail.parquet"
ONLINE_RETAIL_CSV = TEST_DATA / "online_retail.csv.gz"
RETAIL_II_CSV = TEST_DATA / "online_retail_ii_2009-12.csv.gz"


def data_file(path: Path) -> Path:
    """A real data file of tests/data; a missing one is a failure, never a skip."""
    if not path.exists():
        pytest.fail(f"real data file {path} is missing from the repository")
    return path


@pytest.fixture(scope="session")
def retail_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped 541,909 real lines (UCI Online Retail) as a lake."""
    lake = tmp_path_factory.mktemp("retail") / "lake"
    import_files([EMBEDDED], lake)
    return lake


@pytest.fixture(scope="session")
def retail_ii_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """December 2009 of UCI Online Retail II (45,228 real lines) as a lake."""
    lake = tmp_path_factory.mktemp("retail_ii") / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    return lake


@pytest.fixture(scope="session")
def retail_ii_frame() -> pl.DataFrame:
    """The 2009-12 file read the plain way, as an independent check on the importer."""
    raw = pl.read_csv(data_file(RETAIL_II_CSV), infer_schema=False)
    return raw.select(
        invoice_no=pl.col("Invoice"),
        stock_code=pl.col("StockCode"),
        description=pl.col("Description"),
        quantity=pl.col("Quantity").cast(pl.Int32),
        invoice_date=pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us"),
        unit_price=pl.col("Price").cast(pl.Float64),
        customer_id=pl.col("Customer ID").cast(pl.Int64),
        country=pl.col("Country"),
    )


@pytest.fixture(params=["polars", "duckdb"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every analysis test runs on both engines."""
    return str(request.param)


LOCAL_PG = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def _reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real PostgreSQL: $LGS_TEST_PG_DSN, else the local server, else an embedded pgserver."""
    configured = os.environ.get("LGS_TEST_PG_DSN")
    if configured:
        return configured
    if _reachable(LOCAL_PG):
        return LOCAL_PG
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    return str(server.get_uri())


@pytest.fixture
def pg_table(pg_dsn: str) -> Iterator[str]:
    """A fresh table name, dropped afterwards, so tests never share rows."""
    import uuid

    import psycopg
    from psycopg import sql

    name = f"retail_test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_retail(pg_dsn: str) -> Iterator[str]:
    """The real 541,909 lines loaded into PostgreSQL once (table name returned)."""
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.postgres import load_pg

    name = f"retail_real_{os.getpid()}"
    assert load_pg([EMBEDDED], pg_dsn, table=name) == 541_909
    yield name
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
