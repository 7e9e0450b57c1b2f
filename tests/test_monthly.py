"""Monthly orders, lines, sales, growth and customers: the notebook's anchors on real data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.definitions import Options


def test_notebook_anchors(retail_lake: Path, engine: str) -> None:
    monthly = compute_tables(retail_lake, Options(preset="notebook"), engine=engine)["monthly"]  # type: ignore[arg-type]
    by_month = {row["yyyymm"]: row for row in monthly.iter_rows(named=True)}
    assert by_month[201101]["placed_lines"] == 34_446
    assert by_month[201111]["placed_lines"] == 83_635
    assert by_month[201101]["cancelled_lines"] == 701
    assert round(by_month[201111]["sales"], 2) == 1_509_496.33


def test_standard_monthly(retail_lake: Path, engine: str) -> None:
    monthly = compute_tables(retail_lake, engine=engine)["monthly"]  # type: ignore[arg-type]
    assert monthly.height == 13
    assert monthly["month"].dtype == pl.Date
    assert monthly["yyyymm"].to_list()[:2] == [201012, 201101]
    first, second = monthly.row(0, named=True), monthly.row(1, named=True)
    assert (first["placed_orders"], first["cancelled_orders"]) == (1_699, 326)
    assert first["sales_growth_pct"] is None
    assert first["new_customers"] == first["active_customers"] == 948
    assert (second["active_customers"], second["new_customers"], second["existing_customers"]) == (
        783,
        421,
        362,
    )
    assert second["sales_growth_pct"] == pytest.approx(100 * (691_364.56 / 823_746.14 - 1))
    assert monthly["new_customers"].sum() == 4_372  # every customer is new exactly once


def test_empty_months_are_zero(tmp_path: Path, engine: str) -> None:
    from lgs_fast.analyze import tables_of

    lines = pl.LazyFrame(
        {
            "invoice_no": ["1", "2", "C3"],
            "stock_code": ["A", "A", "A"],
            "description": ["x", "x", "x"],
            "quantity": [1, 2, -1],
            "invoice_date": ["2011-01-05 10:00:00", "2011-04-02 09:00:00", "2011-04-03 09:00:00"],
            "unit_price": [2.0, 2.0, 2.0],
            "customer_id": [7, 7, 7],
            "country": ["UK", "UK", "UK"],
        }
    ).with_columns(
        pl.col("invoice_date").str.to_datetime(time_unit="us"), pl.col("quantity").cast(pl.Int32)
    )
    monthly = tables_of(lines, engine=engine)["monthly"]  # type: ignore[arg-type]
    assert monthly["yyyymm"].to_list() == [201101, 201102, 201103, 201104]
    assert monthly["sales"].to_list() == [2.0, 0.0, 0.0, 4.0]
    assert monthly["placed_orders"].to_list() == [1, 0, 0, 1]
    assert monthly["cancelled_lines"].to_list() == [0, 0, 0, 1]
    assert monthly["sales_growth_pct"].to_list() == [None, -100.0, None, None]
    assert monthly["active_customers"].to_list() == [1, 0, 0, 1]
    assert monthly["existing_customers"].to_list() == [0, 0, 0, 1]
