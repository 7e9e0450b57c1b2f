"""Overview, invoice amounts, top countries and products, cohorts, data quality: real values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.definitions import Options


@pytest.fixture
def tables(retail_lake: Path, engine: str) -> dict[str, pl.DataFrame]:
    return compute_tables(retail_lake, engine=engine)  # type: ignore[arg-type]


def test_overview(tables: dict[str, pl.DataFrame]) -> None:
    row = tables["overview"].row(0, named=True)
    assert (row["lines"], row["invoices"], row["customers"], row["stock_codes"], row["countries"]) == (
        541_909, 25_900, 4_372, 4_070, 38,
    )  # fmt: skip
    assert row["first_invoice"] == dt.datetime(2010, 12, 1, 8, 26)
    assert row["last_invoice"] == dt.datetime(2011, 12, 9, 12, 50)
    assert row["revenue"] == pytest.approx(9_747_747.934)
    assert row["mean_invoice_total"] == pytest.approx(534.403033266533)


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
    assert top.select("stock_code", "description", "quantity", "orders").row(0) == (
        "22423", "REGENCY CAKESTAND 3 TIER", 13_837, 1_992,
    )  # fmt: skip
    assert "POST" not in top["stock_code"].to_list() and "DOT" not in top["stock_code"].to_list()


def test_cohorts(tables: dict[str, pl.DataFrame]) -> None:
    cohorts = tables["cohorts"]
    first = cohorts.filter(pl.col("cohort_yyyymm") == 201012)
    assert first["customers"].to_list()[:3] == [948, 362, 317]
    assert first.height == 13
    assert cohorts.filter(pl.col("months_since") == 0)["cohort_size"].sum() == 4_372
    assert cohorts.filter(pl.col("months_since") == 0)["retention"].to_list() == [1.0] * 13
    assert cohorts.height == sum(range(1, 14))


def test_data_quality(tables: dict[str, pl.DataFrame]) -> None:
    quality = dict(tables["data_quality"].iter_rows())
    assert quality["exact_duplicate_lines"] == 5_268
    assert quality["non_product_lines"] == 2_950
    assert quality["cancellation_lines"] == 9_288


def test_csv_shows_money_to_the_penny_and_parquet_keeps_full_precision(
    retail_lake: Path, tmp_path: Path
) -> None:
    from lgs_fast.analyze import write_tables
    from lgs_fast.definitions import MONEY_COLUMNS

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
    assert overview["revenue"] == "9747747.93"
    assert tables["overview"]["revenue"].item() == pytest.approx(9_747_747.934, abs=1e-6)
    top = pl.read_csv(tmp_path / "top_countries.csv", infer_schema=False)
    assert top["sales"][0] == "9003097.96"
    assert top["share"][0] == str(tables["top_countries"]["share"][0])
