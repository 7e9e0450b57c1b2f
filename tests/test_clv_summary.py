"""The CLV summary: Polars = DuckDB (to the bit) = pandas, on real and generated lines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from benchmarks import pandas_reference as reference
from lgs_fast.config import Options
from lgs_fast.engines import duckdb as sql
from lgs_fast.engines import polars as metrics
from lgs_fast.ingest.generate import generate
from lgs_fast.lake import scan
from lgs_fast.schema import POLARS_SCHEMA
from tests.utils import assert_agree

START = dt.datetime(2011, 3, 1, 9, 30)


def _both(lines: pl.LazyFrame, options: Options) -> tuple[pl.DataFrame, pl.DataFrame]:
    polars = metrics.clv_summary(lines, options).collect()
    duckdb = sql.query(sql.connect(options=options, lines=lines), "clv_summary").pl()
    return polars, duckdb


def _line(invoice: str, day: float, customer: int | None, quantity: int, price: float) -> dict:
    return {
        "invoice_no": invoice, "stock_code": "22423", "description": "CAKESTAND",
        "quantity": quantity, "invoice_date": START + dt.timedelta(days=day),
        "unit_price": price, "customer_id": customer, "country": "United Kingdom",
    }  # fmt: skip


def test_definitions_by_hand(engine: str) -> None:
    """Two invoices on one day are one purchase day; cancellations and guests are not purchases."""
    rows = [
        _line("1", 0, 7, 2, 5.0),  # first day: £10 + £4
        _line("2", 0.2, 7, 1, 4.0),
        _line("3", 3, 7, 3, 2.5),  # repeat day 1: £7.50
        _line("C4", 5, 7, -3, 2.5),  # a credit note: not a purchase day
        _line("5", 10.5, 7, 1, 12.5),  # repeat day 2 (21:30 on day 10): £12.50
        _line("6", 2, 8, 1, 1.0),  # one purchase day only
        _line("7", 4, None, 1, 1.0),  # a guest
        _line("C8", 1, 9, -1, 1.0),  # only a cancellation: not in the summary
        _line("9", 20.9, None, 1, 1.0),  # latest line, 06:06 on day 21: T counts to day 21
    ]
    lines = pl.DataFrame(rows, schema=POLARS_SCHEMA).lazy()
    polars, duckdb = _both(lines, Options())
    got = polars if engine == "polars" else duckdb
    assert got.to_dicts() == [
        {"customer_id": 7, "first_purchase": dt.date(2011, 3, 1),
         "last_purchase": dt.date(2011, 3, 11), "frequency": 2, "recency": 10, "T": 21,
         "monetary_value": 10.0},
        {"customer_id": 8, "first_purchase": dt.date(2011, 3, 3),
         "last_purchase": dt.date(2011, 3, 3), "frequency": 0, "recency": 0, "T": 19,
         "monetary_value": None},
    ]  # fmt: skip


def test_engines_equal_on_the_real_data(retail_lake: Path) -> None:
    for options in (
        Options(),
        Options(as_of=dt.datetime(2011, 9, 1) - dt.timedelta(microseconds=1)),
    ):
        polars, duckdb = _both(scan(retail_lake), options)
        assert polars.schema == duckdb.schema
        assert polars.equals(duckdb)
        assert_agree(polars, reference.clv_summary(reference.load_lines(retail_lake), options))
    full = _both(scan(retail_lake), Options())[0]
    assert full.height == 4_339  # customers with a purchase, as in rfm
    assert full["frequency"].sum() == 12_427
    assert full.filter(pl.col("frequency") > 0)["monetary_value"].null_count() == 0


def test_engines_equal_on_generated_lines(tmp_path: Path) -> None:
    lake, _ = generate(300_000, tmp_path / "lake", seed=3)
    for options in (Options(), Options(preset="notebook"), Options(as_of=dt.datetime(2011, 6, 30))):
        polars, duckdb = _both(scan(lake), options)
        assert polars.height > 1_000
        assert polars.equals(duckdb), options
