"""Overview, invoice amounts, top countries and products, cohorts, data quality: real values.

Reversed invoices have their own file (test_reversed_invoices.py), monthly too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options
from tests.utils import assert_agree


@pytest.fixture
def tables(retail_lake: Path, engine: str) -> dict[str, pl.DataFrame]:
    return compute_tables(retail_lake, engine=engine)  # type: ignore[arg-type]


OVERVIEW_COLUMNS = [
    "lines", "invoices", "purchase_invoices", "credit_notes", "customers",
    "customers_with_purchase", "stock_codes", "countries", "first_invoice", "last_invoice",
    "placed_sales", "cancelled_value", "net_revenue", "mean_invoice_total",
]  # fmt: skip


def test_overview(tables: dict[str, pl.DataFrame]) -> None:
    overview = tables["overview"]
    assert overview.columns == OVERVIEW_COLUMNS
    row = overview.row(0, named=True)
    assert overview.select(OVERVIEW_COLUMNS[:8]).row(0) == (
        541_909, 25_900, 22_064, 3_836, 4_372, 4_339, 4_070, 38,
    )  # fmt: skip
    assert row["purchase_invoices"] + row["credit_notes"] == row["invoices"]
    # Customers with a purchase are exactly RFM's customers, in either preset's overview.
    assert row["customers_with_purchase"] == tables["rfm"].height
    assert row["first_invoice"] == dt.datetime(2010, 12, 1, 8, 26)
    assert row["last_invoice"] == dt.datetime(2011, 12, 9, 12, 50)
    assert row["placed_sales"] == pytest.approx(10_644_560.424)
    assert row["cancelled_value"] == pytest.approx(-896_812.49)
    assert row["net_revenue"] == pytest.approx(9_747_747.934)
    assert row["placed_sales"] + row["cancelled_value"] == pytest.approx(row["net_revenue"])
    assert row["mean_invoice_total"] == pytest.approx(534.403033266533)


def test_overview_is_the_same_in_the_notebook_preset(retail_lake: Path, engine: str) -> None:
    notebook = compute_tables(retail_lake, Options(preset="notebook"), engine=engine)  # type: ignore[arg-type]
    standard = compute_tables(retail_lake, engine=engine)  # type: ignore[arg-type]
    # Float sums may differ in the last bit from run to run (DuckDB adds in parallel).
    assert_agree(standard["overview"], notebook["overview"], "overview")


def test_invoice_amounts(tables: dict[str, pl.DataFrame]) -> None:
    views = {row["view"]: row for row in tables["invoice_amounts"].iter_rows(named=True)}
    everything, low = views["all"], views["le_p85"]
    assert everything["count"] == 19_960
    assert (everything["min"], everything["mode"], everything["max"]) == (0.38, 15.0, 168_469.6)
    assert everything["median"] == pytest.approx(303.835)
    assert everything["p85"] == pytest.approx(714.413)
    assert low["count"] == 16_966
    assert low["max"] <= everything["p85"]
    histogram = tables["invoice_histogram"]
    assert histogram.group_by("view").agg(pl.col("count").sum()).sort("view").rows() == [
        ("all", 19_960),
        ("le_p85", 16_966),
    ]
    assert histogram.height == 2 * Options().histogram_bins


def test_notebook_invoice_amounts(retail_lake: Path, engine: str) -> None:
    amounts = compute_tables(retail_lake, Options(preset="notebook"), engine=engine)[
        "invoice_amounts"
    ]  # type: ignore[arg-type]
    row = amounts.row(0, named=True)
    assert (row["count"], row["min"], row["median"], row["mode"]) == (530_104, 0.001, 9.9, 15.0)


def test_top_countries(tables: dict[str, pl.DataFrame]) -> None:
    top = tables["top_countries"]
    assert top.height == 10
    assert top.select("rank", "country", "orders", "customers").row(0) == (
        1,
        "United Kingdom",
        20_122,
        3_921,
    )
    assert top["country"].to_list()[:5] == [
        "United Kingdom",
        "Netherlands",
        "EIRE",
        "Germany",
        "France",
    ]
    assert top["sales"][0] == pytest.approx(9_003_097.964, rel=1e-9)


def test_top_products(tables: dict[str, pl.DataFrame]) -> None:
    top = tables["top_products"]
    assert top.columns == [
        "rank", "stock_code", "description", "net_revenue", "placed_sales", "cancelled_value",
        "quantity", "purchase_invoices",
    ]  # fmt: skip
    assert top["rank"].to_list() == list(range(1, 11))
    assert top["stock_code"].to_list() == [
        "22423", "47566", "85123A", "85099B", "23084", "22086", "84879", "79321", "22502", "22197",
    ]  # fmt: skip
    assert top.select("stock_code", "description", "quantity", "purchase_invoices").row(0) == (
        "22423", "REGENCY CAKESTAND 3 TIER", 13_837, 1_992,
    )  # fmt: skip
    first = top.row(0, named=True)
    assert first["net_revenue"] == pytest.approx(164_762.19)
    assert first["placed_sales"] == pytest.approx(174_484.74)
    assert first["cancelled_value"] == pytest.approx(-9_722.55)
    assert top.select(
        (pl.col("placed_sales") + pl.col("cancelled_value") - pl.col("net_revenue")).abs().max()
    ).item() == pytest.approx(0, abs=1e-6)
    assert top["net_revenue"].is_sorted(descending=True)
    # 80,995 units ordered and cancelled at once: placed sales of £168,469.60 and no net revenue.
    assert "23843" not in top["stock_code"].to_list()
    assert "POST" not in top["stock_code"].to_list() and "DOT" not in top["stock_code"].to_list()


def test_cohorts(tables: dict[str, pl.DataFrame]) -> None:
    cohorts = tables["cohorts"]
    first = cohorts.filter(pl.col("cohort_yyyymm") == 201012)
    assert first["customers"].to_list()[:3] == [948, 362, 317]
    assert first.height == 13
    assert cohorts.filter(pl.col("months_since") == 0)["cohort_size"].sum() == 4_372
    assert cohorts.filter(pl.col("months_since") == 0)["retention"].to_list() == [1.0] * 13
    assert cohorts.height == sum(range(1, 14))
    # Only December 2011 is incomplete (the data ends on the 9th): each cohort's last cell.
    last_cells = cohorts.group_by("cohort").agg(pl.col("months_since").max()).sort("cohort")
    assert cohorts.filter(~pl.col("complete")).select("cohort", "months_since").equals(last_cells)


def test_data_quality(tables: dict[str, pl.DataFrame]) -> None:
    quality = dict(tables["data_quality"].iter_rows())
    assert quality["exact_duplicate_lines"] == 5_268
    assert quality["non_product_lines"] == 2_950
    assert quality["cancellation_lines"] == 9_288


def test_csv_shows_money_to_the_penny_and_parquet_keeps_full_precision(
    retail_lake: Path, tmp_path: Path
) -> None:
    from lgs_fast.analyze import write_tables
    from lgs_fast.config import MONEY_COLUMNS

    tables = compute_tables(retail_lake)
    write_tables(tables, tmp_path)
    money_cells = 0
    for name, frame in tables.items():
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(frame), name
        text = pl.read_csv(tmp_path / f"{name}.csv", infer_schema=False)
        assert text.columns == frame.columns and text.height == frame.height, name
        for column, dtype in frame.schema.items():
            if column in MONEY_COLUMNS.get(name, ()):
                cells = text[column].drop_nulls()
                assert cells.str.contains(r"^-?\d+\.\d{1,2}$").all(), (name, column, cells)
                shown = text[column].cast(pl.Float64).to_list()
                for value, penny in zip(frame[column].to_list(), shown, strict=True):
                    assert (value is None) == (penny is None)
                    if value is not None:
                        assert abs(value - penny) <= 0.005 + 1e-9, (name, column, value, penny)
                money_cells += cells.len()
            elif dtype.is_float():  # shares, percentages, means of days: full precision
                assert text[column].cast(pl.Float64).equals(frame[column]), (name, column)
    assert money_cells > 4_339
    overview = pl.read_csv(tmp_path / "overview.csv", infer_schema=False).row(0, named=True)
    assert overview["net_revenue"] == "9747747.93"
    assert (overview["placed_sales"], overview["cancelled_value"]) == ("10644560.42", "-896812.49")
    assert tables["overview"]["net_revenue"].item() == pytest.approx(9_747_747.934, abs=1e-6)
    reversed_ = pl.read_csv(tmp_path / "reversed_invoices.csv", infer_schema=False)
    assert float(reversed_["total"][0]) == 168_469.6
    top = pl.read_csv(tmp_path / "top_countries.csv", infer_schema=False)
    assert top["sales"][0] == "9003097.96"
    assert top["share"][0] == str(tables["top_countries"]["share"][0])
