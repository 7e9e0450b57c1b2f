"""Monthly orders, lines, sales, growth, customers and completeness: the notebook's anchors on
real data, and small hand-built cases for the edges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import compute_tables, tables_of
from lgs_fast.config import Options
from tests.utils import check_agreement, frame, line


def test_notebook_anchors(retail_lake: Path, engine: str) -> None:
    monthly = compute_tables(retail_lake, Options(preset="notebook"), engine=engine)["monthly"]  # type: ignore[arg-type]
    by_month = {row["yyyymm"]: row for row in monthly.iter_rows(named=True)}
    assert by_month[201101]["placed_lines"] == 34_446
    assert by_month[201111]["placed_lines"] == 83_635
    assert by_month[201101]["cancelled_lines"] == 701
    assert round(by_month[201111]["sales"], 2) == 1_509_496.33
    # The notebook counted every customer of the first month as new.
    assert by_month[201012]["new_customers"] == by_month[201012]["active_customers"] == 948
    assert by_month[201012]["existing_customers"] == 0
    assert monthly["new_customers"].sum() == 4_372
    assert monthly["complete"].to_list() == [True] * 12 + [False]


def test_standard_monthly(retail_lake: Path, engine: str) -> None:
    monthly = compute_tables(retail_lake, engine=engine)["monthly"]  # type: ignore[arg-type]
    assert monthly.height == 13
    assert monthly["month"].dtype == pl.Date
    assert monthly["yyyymm"].to_list()[:2] == [201012, 201101]
    first, second = monthly.row(0, named=True), monthly.row(1, named=True)
    assert (first["placed_orders"], first["cancelled_orders"]) == (1_699, 326)
    assert first["sales_growth_pct"] is None
    # Nobody's history is known before the data starts: new and existing are unknown there.
    assert first["active_customers"] == 948
    assert first["new_customers"] is None and first["existing_customers"] is None
    assert (second["active_customers"], second["new_customers"], second["existing_customers"]) == (
        783,
        421,
        362,
    )
    assert second["sales_growth_pct"] == pytest.approx(100 * (691_364.56 / 823_746.14 - 1))
    # Every customer is new exactly once; the first month's 948 are not counted as new.
    assert monthly["new_customers"].sum() == 4_372 - 948
    assert monthly.columns[-1] == "complete"
    # The data starts on 2010-12-01 and ends on 2011-12-09: December 2010 is complete,
    # December 2011 is not, every month between is.
    assert monthly["complete"].to_list() == [True] * 12 + [False]


def test_empty_months_are_zero(tmp_path: Path, engine: str) -> None:
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
    assert monthly["new_customers"].to_list() == [None, 0, 0, 0]
    assert monthly["existing_customers"].to_list() == [None, 0, 0, 1]
    # Lines from 5 January to 3 April: the first and last months are partly covered.
    assert monthly["complete"].to_list() == [False, True, True, False]


def _month_of(first: str, last: str, engine: str, preset: str = "standard") -> pl.DataFrame:
    rows = [line("1", 0, 7), line("2", 0, 8), line("3", 0, 7)]
    for row, date in zip(rows, [first, last, first], strict=True):
        row["invoice_date"] = dt.datetime.fromisoformat(date)
    return tables_of(frame(rows), Options(preset=preset), engine=engine)["monthly"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first", "last", "complete"),
    [
        ("2011-02-01 00:00", "2011-02-28 23:59", True),  # first to last day: complete
        ("2011-02-01 09:00", "2011-02-28 09:00", True),  # any time of those days
        ("2011-02-02 09:00", "2011-02-28 09:00", False),  # starts late
        ("2011-02-01 09:00", "2011-02-27 23:59", False),  # ends early
        ("2012-02-01 09:00", "2012-02-28 09:00", False),  # a leap year: 29 days
        ("2012-02-01 09:00", "2012-02-29 09:00", True),
        ("2011-12-01 09:00", "2011-12-31 09:00", True),  # the year's last day
    ],
)
def test_a_single_month_is_complete_when_covered_from_first_to_last_day(
    first: str, last: str, complete: bool, engine: str
) -> None:
    monthly = _month_of(first, last, engine)
    assert monthly.height == 1
    assert monthly["complete"].to_list() == [complete]
    assert monthly.select("active_customers", "new_customers", "existing_customers").row(0) == (
        2, None, None,
    )  # fmt: skip


def test_notebook_counts_the_first_months_customers_as_new(engine: str) -> None:
    monthly = _month_of("2011-02-01 09:00", "2011-02-28 09:00", engine, preset="notebook")
    assert monthly.select("active_customers", "new_customers", "existing_customers").row(0) == (
        2, 2, 0,
    )  # fmt: skip


def test_months_agree_with_pandas() -> None:
    rows = [line("1", 0, 7), line("2", 45, 8), line("C3", 90, 7, quantity=-1)]
    for preset in ("standard", "notebook"):
        check_agreement(rows, Options(preset=preset))  # type: ignore[arg-type]
