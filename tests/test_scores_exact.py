"""Scores are exact at the quantile edges and the same in every engine, on any data.

Float sums depend on the order of addition, and the engines add in different orders: on 10M
generated lines one customer's spend sat exactly on the 40% edge and got m_score 2 from DuckDB
and 3 from Polars. Spends are now added up exactly and scored in whole pence, and every edge
is compared with integers only.
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import lgs_fast as lgs
from lgs_fast.analyze import compute_tables
from lgs_fast.catalog import ANALYSES
from lgs_fast.config import Options
from lgs_fast.engines.polars import engine as polars_engine
from lgs_fast.ingest.generate import generate
from tests.test_properties import START, check_agreement
from tests.utils import assert_engines_agree

GENERATED_ROWS = 2_000_000


def _line(invoice: str, customer: int, price: float, quantity: int = 1) -> dict[str, object]:
    return {
        "invoice_no": invoice,
        "stock_code": "22423",
        "description": "CAKESTAND",
        "quantity": quantity,
        "invoice_date": START,
        "unit_price": price,
        "customer_id": customer,
        "country": "United Kingdom",
    }


def _scores(rfm: pl.DataFrame, column: str) -> dict[int, int]:
    return dict(rfm.select("customer_id", column).iter_rows())


def test_equal_spends_on_an_edge_get_equal_scores() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats, one line of 0.3 is 0.29999999999999999:
    # both spent 30p. The 40% edge is customer 3's spend, so with float sums customer 4 was
    # "above" it and scored 3 while customer 3 scored 2.
    rows = [
        _line("1", 1, 0.1),
        _line("2", 2, 0.2),
        _line("3", 3, 0.3),
        _line("4", 4, 0.1),
        _line("4", 4, 0.2),
        _line("5", 5, 0.5),
        _line("6", 6, 0.6),
    ]
    rfm = check_agreement(rows, Options())["rfm"]  # Polars = DuckDB = pandas
    assert _scores(rfm, "m_score") == {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 5}
    # edges in pence 20, 30, 30, 50: 10p and 20p at or below the first, 30p below the second
    assert rfm.filter(pl.col("customer_id").is_in([3, 4]))["monetary"].to_list() == [0.3, 0.3]


@pytest.mark.parametrize("preset", ["standard", "notebook"])
def test_a_spend_that_cancels_out_is_zero(preset: str) -> None:
    rows = [
        _line("1", 1, 0.1),
        _line("1", 1, 0.2),
        _line("C2", 1, 0.3, quantity=-1),  # 0.1 + 0.2 - 0.3 = 5.55e-17 in floats
        _line("3", 2, 1.0),
        _line("C4", 2, 1.0, quantity=-1),
        _line("5", 3, 5.0),
    ]
    rfm = check_agreement(rows, Options(preset=preset))["rfm"]  # type: ignore[arg-type]
    monetary = dict(rfm.select("customer_id", "monetary").iter_rows())
    assert monetary == {1: 0.0, 2: 0.0, 3: 5.0}
    assert math.copysign(1.0, monetary[1]) == 1.0  # not -0.0 either
    assert _scores(rfm, "m_score") == {1: 1, 2: 1, 3: 5}


def test_an_edge_between_two_pence_is_not_rounded() -> None:
    # Spends 1p, 2p, 4p, 7p: quintile edges 1.6p, 2.4p, 3.6p, 5.2p (positions 0.6, 1.2, 1.8, 2.4).
    rows = [_line(str(c), c, p) for c, p in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.07)]]
    rfm = check_agreement(rows, Options())["rfm"]
    assert _scores(rfm, "m_score") == {1: 1, 2: 2, 3: 4, 4: 5}


@pytest.fixture(scope="module")
def generated_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("generated") / "lake"
    generate(GENERATED_ROWS, lake, seed=0)
    return lake


def _exact_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """The DESIGN.md bin of integer values, from edges as exact fractions (an independent oracle).

    For an integer x and any edge e, x > e exactly when x > floor(e); the floors are sorted,
    so the count of edges below x is a binary search.
    """
    ordered = np.sort(values)
    n = len(ordered)
    floors = []
    for k in range(1, bins):
        position = Fraction(k * (n - 1), bins)
        i = math.floor(position)
        lo, hi = int(ordered[i]), int(ordered[min(i + 1, n - 1)])
        floors.append(math.floor(lo + (position - i) * (hi - lo)))
    return 1 + np.searchsorted(np.array(floors), values, side="left")


def test_scores_are_exact_on_generated_lines(generated_lake: Path, engine: str) -> None:
    options = Options()
    rfm = compute_tables(generated_lake, options, engine=engine)["rfm"]  # type: ignore[arg-type]
    # Spend in whole pence from the lines, independently: the generated prices have at most
    # three decimals, so every amount is a whole number of tenths of a penny.
    mills = (
        lgs.scan(generated_lake)
        .filter(pl.col("customer_id").is_not_null())
        .group_by("customer_id")
        .agg(
            mills=(pl.col("quantity").cast(pl.Float64) * pl.col("unit_price") * 1000)
            .round(0)
            .cast(pl.Int64)
            .sum()
        )
        .collect()
    )
    table = rfm.join(mills, on="customer_id", how="left")
    assert table["mills"].null_count() == 0
    pence = np.sign(table["mills"].to_numpy()) * ((np.abs(table["mills"].to_numpy()) + 5) // 10)
    assert np.allclose(table["monetary"].to_numpy(), pence / 100, rtol=0, atol=0.005 + 1e-9)
    by_rank = table.sort("frequency", "customer_id").with_columns(
        f_rank=pl.int_range(1, pl.len() + 1)
    )
    b = options.bins
    assert table["m_score"].to_list() == _exact_bins(pence, b).tolist()
    assert (
        table["r_score"].to_list() == (b + 1 - _exact_bins(table["recency"].to_numpy(), b)).tolist()
    )
    assert by_rank["f_score"].to_list() == _exact_bins(by_rank["f_rank"].to_numpy(), b).tolist()
    assert table.height > 10_000


def test_engines_agree_on_every_table_of_generated_lines(
    generated_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polars (in memory and streaming) = DuckDB on every table, to the bit, money included."""
    duckdb = compute_tables(generated_lake, engine="duckdb")
    polars = compute_tables(generated_lake, engine="polars")
    monkeypatch.setattr(polars_engine, "STREAMING_ROWS", 0)  # the path taken above 20M lines
    streamed = compute_tables(generated_lake, engine="polars")
    assert duckdb["overview"]["lines"].item() == GENERATED_ROWS
    for name in ANALYSES:
        assert_engines_agree(name, duckdb[name], polars[name], f"generated/{name}")
        assert_engines_agree(name, duckdb[name], streamed[name], f"generated/streaming/{name}")


def test_as_of_and_quartiles_agree_on_generated_lines(generated_lake: Path) -> None:
    options = Options(bins=4, as_of=dt.datetime(2011, 6, 30, 23, 59, 59))
    polars = compute_tables(generated_lake, options, engine="polars")["rfm"]
    duckdb = compute_tables(generated_lake, options, engine="duckdb")["rfm"]
    assert polars.height > 0
    assert polars.equals(duckdb)
