"""Shared fixtures: the real data, and lakes built from it once per session."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.sources import import_files

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
EMBEDDED = ROOT / "lgs_fast" / "data" / "online_retail.parquet"
ONLINE_RETAIL_CSV = SHARED_DATA / "online_retail.csv.gz"
RETAIL_II_CSV = SHARED_DATA / "online_retail_ii_2009-12.csv.gz"


def shared(path: Path) -> Path:
    """A file from shared/data, or a skip naming it where this checkout has no shared/ beside it."""
    if not path.exists():
        pytest.skip(f"real data file {path} is not present")
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
    import_files([shared(RETAIL_II_CSV)], lake)
    return lake


@pytest.fixture(scope="session")
def retail_ii_frame() -> pl.DataFrame:
    """The 2009-12 file read the plain way, as an independent check on the importer."""
    raw = pl.read_csv(shared(RETAIL_II_CSV), infer_schema=False)
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
