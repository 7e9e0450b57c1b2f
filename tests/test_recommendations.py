"""Recommendations: the real data's holdout check, hand-built edges, and the bounds that decide
how much is computed, which must never change the result (both engines and pandas)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks import pandas_reference as reference
from lgs_fast import recommend, sql
from lgs_fast.analyze import compute_tables
from lgs_fast.definitions import UNCLASSIFIED, Options
from lgs_fast.errors import InputError
from lgs_fast.lake import scan
from lgs_fast.metrics import rfm
from tests.utils import START, assert_agree, check_agreement, frame, line

# Everyone is recommended to, whatever segment a few hand-made customers fall in.
EVERYONE = Options(recommend_segments=(*(r.name for r in Options().rules), UNCLASSIFIED))
COLUMNS = ["customer_id", "segment", "rank", "stock_code", "description", "score"]


def _recommended(rows: list[dict[str, object]], options: Options = EVERYONE) -> pl.DataFrame:
    """The table by Polars, checked against DuckDB and pandas (every table is)."""
    return check_agreement(rows, options)["recommendations"]


def _picks(table: pl.DataFrame) -> dict[int, list[str]]:
    return {c: g["stock_code"].to_list() for (c,), g in table.group_by("customer_id")}


def _basket(invoice: str, day: int, customer: int | None, *codes: str) -> list[dict[str, object]]:
    return [line(invoice, day, customer, stock_code=code) for code in codes]


def test_holdout_beats_best_sellers(retail_lake: Path, engine: str) -> None:
    """829 target customers with two purchase invoices or more: their last invoice holds a
    recommended product for 124 of them (15.0%), one of the best sellers for 80 (9.7%)."""
    got = recommend.holdout_hit_rate(scan(retail_lake), Options(), engine=engine)  # type: ignore[arg-type]
    assert got == {
        "customers": 829,
        "hits": 124,
        "hit_rate": 124 / 829,
        "baseline_hits": 80,
        "baseline_hit_rate": 80 / 829,
    }
    assert got["hit_rate"] > got["baseline_hit_rate"]


def test_real_customers(retail_lake: Path, engine: str) -> None:
    table = compute_tables(retail_lake, engine=engine)["recommendations"]  # type: ignore[arg-type]
    assert table.columns == COLUMNS
    assert table.schema["rank"] == table.schema["score"] == table.schema["customer_id"] == pl.Int64
    # Every customer of the three segments, three products each.
    assert table.group_by("segment").agg(pl.col("customer_id").n_unique()).sort(
        "segment"
    ).rows() == [("At Risk", 580), ("Can't Lose", 63), ("Need Attention", 186)]
    assert table.height == 3 * 829
    assert table.filter(pl.col("customer_id") == 17850).select(
        "rank", "stock_code", "description", "score"
    ).rows() == [
        (1, "85099B", "JUMBO BAG RED RETROSPOT", 1344),
        (2, "22423", "REGENCY CAKESTAND 3 TIER", 1223),
        (3, "21733", "RED HANGING HEART T-LIGHT HOLDER", 1120),
    ]


def _duckdb(lines: pl.LazyFrame, options: Options, keep: int) -> pl.DataFrame:
    con = sql.connect(options=options, lines=lines)
    con.execute("SET VARIABLE neighbours = $keep", {"keep": keep})
    return sql.query(con, "recommendations").pl()


@pytest.mark.parametrize("keep", [1, 3, 20])
def test_short_lists_change_nothing(retail_lake: Path, keep: int) -> None:
    """With lists of 1 to 20 partners many customers are not settled by them and are scored in
    full, the others through many candidates: the same table, exactly (December 2010 and
    January 2011)."""
    lines = scan(retail_lake).filter(pl.col("invoice_date") < dt.datetime(2011, 2, 1)).collect()
    options = Options()
    expected = reference.recommendations(
        lines.to_pandas(), options, reference.rfm(lines.to_pandas(), options)
    )
    table = rfm(lines.lazy(), options).collect().lazy()
    polars = recommend.recommendations(lines.lazy(), options, table, keep=keep).collect()
    assert polars.height == 3 * 312  # three for each of 312 customers of January 2011
    assert_agree(polars, expected, f"polars keep={keep}")
    assert_agree(polars, _duckdb(lines.lazy(), options, keep), f"duckdb keep={keep}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    invoices=st.lists(
        st.tuples(
            st.integers(1, 5),  # customer
            st.lists(
                st.sampled_from([f"P{i}" for i in range(1, 9)]), min_size=1, max_size=6, unique=True
            ),
        ),
        min_size=1,
        max_size=14,
    ),
    keep=st.integers(1, 4),
    top=st.integers(1, 3),
)
def test_bounds_agree_on_generated_baskets(
    invoices: list[tuple[int, list[str]]], keep: int, top: int
) -> None:
    rows = [
        row
        for number, (customer, codes) in enumerate(invoices)
        for row in _basket(str(536000 + number), number, customer, *codes)
    ]
    options = Options(recommend_segments=EVERYONE.recommend_segments, recommendations=top)
    lines = frame(rows)
    df = lines.collect().to_pandas()
    expected = reference.recommendations(df, options, reference.rfm(df, options))
    table = rfm(lines, options)
    polars = recommend.recommendations(lines, options, table, keep=keep).collect()
    assert_agree(polars, expected, "polars")
    assert_agree(polars, _duckdb(lines, options, keep), "duckdb")


def test_customer_who_bought_everything_gets_nothing() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2", "P3"),
        *_basket("2", 1, 2, "P1", "P2"),
        *_basket("3", 2, 3, "P3"),
    ]
    assert _picks(_recommended(rows)) == {2: ["P3"], 3: ["P1", "P2"]}


def test_ties_by_invoices_then_code() -> None:
    # For customer 9 (who bought P1): co(P1, P2) = co(P1, P3) = co(P1, P4) = 1; P3 is on
    # two invoices, P2 and P4 on one each: P3, then P2 before P4.
    rows = [
        *_basket("1", 0, 1, "P1", "P2"),
        *_basket("2", 0, 2, "P1", "P3"),
        *_basket("3", 0, 3, "P1", "P4"),
        *_basket("4", 0, 4, "P3"),
        *_basket("5", 1, 9, "P1"),
    ]
    table = _recommended(rows)
    assert table.filter(pl.col("customer_id") == 9).select("rank", "stock_code", "score").rows() == [
        (1, "P3", 1), (2, "P2", 1), (3, "P4", 1),
    ]  # fmt: skip


def test_non_products_cancellations_and_returns_are_left_out() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2", "POST"),
        *_basket("2", 0, 2, "P1", "POST", "M"),
        # A credit note holding P1 and P3, and a stock adjustment of P4 on a purchase invoice:
        # neither makes P3 or P4 bought with P1.
        *_basket("C3", 1, 2, "P1", "P3"),
        line("4", 1, 3, stock_code="P1"),
        line("4", 1, 3, quantity=-2, stock_code="P4"),
        # A guest invoice (no customer) is no purchase invoice.
        *_basket("5", 2, None, "P1", "P5"),
    ]
    assert _picks(_recommended(rows)) == {2: ["P2"], 3: ["P2"]}


def test_most_frequent_description_smallest_on_ties() -> None:
    rows = _basket("1", 0, 1, "P1", "P2") + _basket("2", 1, 2, "P1")
    for text in ["ZEBRA", "APPLE", None, None]:
        rows.append({**line("3", 3, 3, stock_code="P2"), "description": text})
    # P2's basket lines: CAKESTAND, ZEBRA and APPLE once each (nulls do not count): APPLE.
    assert _recommended(rows).filter(pl.col("stock_code") == "P2")["description"].to_list() == [
        "APPLE"
    ]


def test_segments_and_number() -> None:
    rows = [*_basket("1", 0, 1, "P1", "P2", "P3", "P4"), *_basket("2", 1, 2, "P1")]
    assert _recommended(rows, Options(recommend_segments=("Nobody",))).height == 0
    assert _recommended(rows, Options(recommend_segments=())).height == 0
    one = Options(recommend_segments=EVERYONE.recommend_segments, recommendations=1)
    assert _recommended(rows, one).select("customer_id", "rank", "stock_code").rows() == [
        (2, 1, "P2")
    ]
    with pytest.raises(InputError, match="at least 1, not 0"):
        Options(recommendations=0)


def test_as_of_drops_later_lines() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2"),
        *_basket("2", 1, 2, "P1"),
        *_basket("3", 5, 3, "P1", "P3"),
    ]
    options = Options(
        as_of=START + dt.timedelta(days=2), recommend_segments=EVERYONE.recommend_segments
    )
    assert _picks(_recommended(rows, options)) == {2: ["P2"]}


def test_cli_chooses_segments_and_number(retail_lake: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lgs_fast.cli import cli

    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_lake), "--out", str(out), "--no-report"]
    refused = CliRunner().invoke(cli, [*args, "--recommend", "At risk"])
    assert refused.exit_code == 2
    assert "--recommend: no segment 'At risk' in the segment map" in refused.output
    assert not out.exists()
    done = CliRunner().invoke(
        cli,
        [*args, "--recommend", "Hibernating", "--recommend", "At Risk", "--recommendations", "2"],
    )
    assert done.exit_code == 0, done.output
    table = pl.read_parquet(out / "tables" / "recommendations.parquet")
    assert set(table["segment"]) == {"Hibernating", "At Risk"}
    assert table["rank"].max() == 2
    assert table.filter(pl.col("segment") == "At Risk")["customer_id"].n_unique() == 580


def test_no_recommendations_reads_no_basket(retail_ii_lake: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lgs_fast.cli import cli

    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out)]
    refused = CliRunner().invoke(cli, [*args, "--no-recommendations", "--recommend", "At Risk"])
    assert refused.exit_code == 2 and "contradict each other" in refused.output
    done = CliRunner().invoke(cli, [*args, "--no-recommendations"])
    assert done.exit_code == 0, done.output
    assert pl.read_parquet(out / "tables" / "recommendations.parquet").height == 0
    page = (out / "report.html").read_text()
    assert "What to offer" not in page and "none (--no-recommendations)" in page
    lists = pl.read_csv(next((out / "segments").glob("*.csv")), infer_schema=False)
    assert "recommendation_1" not in lists.columns or lists["recommendation_1"].is_null().all()
