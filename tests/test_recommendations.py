"""Recommendations: the engines' customer_products table, the model on it (reorder and new to
you), its holdout on the real data, the pandas reference of the model, and hand-built edges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks import pandas_reference as reference
from lgs_fast.analyze import compute_tables, recommendation_outputs
from lgs_fast.catalog import UNORDERED
from lgs_fast.config import UNCLASSIFIED, Options
from lgs_fast.errors import InputError
from lgs_fast.models import recommend
from tests.utils import START, assert_agree, check_agreement, line

# Everyone is recommended to, whatever segment a few hand-made customers fall in.
EVERYONE = Options(recommend_segments=(*(r.name for r in Options().rules), UNCLASSIFIED))
COLUMNS = ["customer_id", "segment", "kind", "rank", "stock_code", "description", "score"]


def _recommended(rows: list[dict[str, object]], options: Options = EVERYONE) -> pl.DataFrame:
    """The model on Polars' tables (checked against DuckDB and pandas, as every table is), and
    checked against the pandas reference of the model."""
    tables = check_agreement(rows, options)
    got = recommendation_outputs(tables, options)["recommendations"]
    expected = reference.recommendations(
        *(tables[t].to_pandas() for t in ("customer_products", "product_names", "rfm")), options
    )
    assert_agree(got, expected, "pandas reference of the model")
    return got


def _picks(table: pl.DataFrame, kind: str) -> dict[int, list[str]]:
    chosen = table.filter(pl.col("kind") == kind)
    return {c: g["stock_code"].to_list() for (c,), g in chosen.group_by("customer_id")}


def _basket(invoice: str, day: int, customer: int | None, *codes: str) -> list[dict[str, object]]:
    return [line(invoice, day, customer, stock_code=code) for code in codes]


@pytest.fixture(scope="module")
def real_tables(retail_lake: Path) -> dict[str, pl.DataFrame]:
    return compute_tables(retail_lake)


def test_engines_give_the_model_the_same_input(
    real_tables: dict[str, pl.DataFrame], retail_lake: Path
) -> None:
    """DuckDB's customer_products holds Polars' rows exactly (in another order: the table has
    none), and the model's output is the same from either (the pandas reference of the table
    is in test_agreement)."""
    duckdb = compute_tables(retail_lake, engine="duckdb")
    key = UNORDERED["customer_products"]
    assert duckdb["customer_products"].sort(key).equals(real_tables["customer_products"].sort(key))
    assert duckdb["product_names"].equals(real_tables["product_names"])
    options = Options()
    assert recommendation_outputs(duckdb, options)["recommendations"].equals(
        recommendation_outputs(real_tables, options)["recommendations"]
    )


def test_holdout_on_the_real_data(real_tables: dict[str, pl.DataFrame]) -> None:
    """828 customers of Can't Lose, At Risk and Need Attention who bought a product before their
    last purchase invoice: that invoice holds one of their 3 re-order products for 408 (49.3%),
    one of 3 new-to-you products for 164 (19.8%), one of the 3 best sellers they have not
    bought for 80 (9.7%). The issue's targets: re-order 45% or more, new 18% or more (the best
    of the peers measured: implicit's BM25 item-item 18.0%, ALS 18.2-18.5%)."""
    got = recommend.holdout(real_tables["customer_products"], real_tables["rfm"], Options())
    assert got.select("method", "customers", "hits").rows() == [
        ("reorder", 828, 408),
        ("new", 828, 164),
        ("best sellers not yet bought", 828, 80),
    ]
    rates = dict(got.select("method", "hit_rate").iter_rows())
    assert rates["reorder"] >= 0.45 and rates["new"] >= 0.18


def test_real_customers(real_tables: dict[str, pl.DataFrame]) -> None:
    table = recommendation_outputs(real_tables, Options())["recommendations"]
    assert table.columns == COLUMNS
    assert table.schema["rank"] == table.schema["customer_id"] == pl.Int64
    # Every customer of the three segments, three products of each kind.
    assert table.group_by("segment", "kind").agg(pl.col("customer_id").n_unique()).sort(
        "segment", "kind"
    ).rows() == [
        ("At Risk", "new", 580), ("At Risk", "reorder", 580),
        ("Can't Lose", "new", 63), ("Can't Lose", "reorder", 63),
        ("Need Attention", "new", 186), ("Need Attention", "reorder", 186),
    ]  # fmt: skip
    # Three new products each; three re-order products for those who bought three or more.
    owned = (
        real_tables["customer_products"]
        .join(table.select("customer_id").unique(), on="customer_id")
        .group_by("customer_id")
        .agg(n=pl.len().clip(upper_bound=3))
    )
    assert table.filter(pl.col("kind") == "new").height == 3 * 829
    assert table.filter(pl.col("kind") == "reorder").height == owned["n"].sum() == 2_451
    mine = real_tables["customer_products"].filter(pl.col("customer_id") == 17850)
    picks = table.filter(pl.col("customer_id") == 17850)
    reorder = picks.filter(pl.col("kind") == "reorder")
    # Their most re-ordered products, with the purchase invoices holding each as the score.
    best = mine.sort(["invoices", "stock_code"], descending=[True, False]).head(3)
    assert reorder["score"].to_list() == best["invoices"].cast(pl.Float64).to_list()
    assert reorder["score"].to_list() == [17.0, 17.0, 17.0]
    new = picks.filter(pl.col("kind") == "new")
    assert new["score"][0] == 1.0 and new["score"].is_sorted(descending=True)
    assert not new["stock_code"].is_in(mine["stock_code"].implode()).any()


def test_reference_agrees_on_the_real_data(real_tables: dict[str, pl.DataFrame]) -> None:
    """The model and its pandas reference on the shipped data: every row."""
    options = Options()
    got = recommendation_outputs(real_tables, options)["recommendations"]
    inputs = (real_tables[t].to_pandas() for t in ("customer_products", "product_names", "rfm"))
    assert_agree(got, reference.recommendations(*inputs, options), "pandas reference")


def test_row_order_changes_nothing(real_tables: dict[str, pl.DataFrame]) -> None:
    options = Options()
    shuffled = real_tables["customer_products"].sample(fraction=1.0, shuffle=True, seed=7)
    inputs = (real_tables["product_names"], real_tables["rfm"])
    assert recommend.recommendations(shuffled, *inputs, options).equals(
        recommend.recommendations(real_tables["customer_products"], *inputs, options)
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    invoices=st.lists(
        st.tuples(
            st.integers(1, 6),  # customer
            st.lists(
                st.sampled_from([f"P{i}" for i in range(1, 9)]), min_size=1, max_size=6, unique=True
            ),
        ),
        min_size=1,
        max_size=16,
    ),
    neighbours=st.integers(1, 4),
    profile=st.integers(1, 4),
    top=st.integers(1, 3),
)
def test_model_agrees_with_reference_on_generated_baskets(
    invoices: list[tuple[int, list[str]]], neighbours: int, profile: int, top: int
) -> None:
    """Small neighbour lists and profiles, where their ties and cut-offs decide."""
    rows = [
        row
        for number, (customer, codes) in enumerate(invoices)
        for row in _basket(str(536000 + number), number, customer, *codes)
    ]
    options = Options(recommend_segments=EVERYONE.recommend_segments, recommendations=top)
    tables = check_agreement(rows, options)
    inputs = [tables[t] for t in ("customer_products", "product_names", "rfm")]
    got = recommend.recommendations(*inputs, options, neighbours=neighbours, profile=profile)
    expected = reference.recommendations(
        *(t.to_pandas() for t in inputs), options, neighbours=neighbours, profile=profile
    )
    assert_agree(got, expected, "pandas reference")


def test_reorder_ranks_by_invoices_then_best_seller_then_code() -> None:
    rows = [
        # Customer 9: P1 on two invoices, P2, P3 and P4 on one each.
        *_basket("1", 0, 9, "P1", "P2", "P3", "P4"),
        *_basket("2", 1, 9, "P1"),
        # P4 sells best among the others, then P2 and P3 equally.
        *_basket("3", 2, 1, "P4"),
        *_basket("4", 3, 2, "P4"),
    ]
    table = _recommended(rows)
    assert table.filter(pl.col("customer_id") == 9, pl.col("kind") == "reorder").select(
        "rank", "stock_code", "score"
    ).rows() == [(1, "P1", 2.0), (2, "P4", 1.0), (3, "P2", 1.0)]


def test_new_is_never_bought_and_everything_bought_leaves_reorder_only() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2", "P3"),
        *_basket("2", 1, 2, "P1", "P2"),
        *_basket("3", 2, 3, "P3"),
    ]
    table = _recommended(rows)
    assert _picks(table, "new") == {2: ["P3"], 3: ["P1", "P2"]}
    assert _picks(table, "reorder") == {1: ["P1", "P2", "P3"], 2: ["P1", "P2"], 3: ["P3"]}


def test_non_products_cancellations_and_returns_are_left_out() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2", "POST"),
        *_basket("2", 0, 2, "P1", "POST", "M"),
        # A credit note holding P1 and P3, and a stock adjustment of P4 on a purchase invoice:
        # neither is bought.
        *_basket("C3", 1, 2, "P1", "P3"),
        line("4", 1, 3, stock_code="P1"),
        line("4", 1, 3, quantity=-2, stock_code="P4"),
        # A guest invoice (no customer) is no purchase invoice.
        *_basket("5", 2, None, "P1", "P5"),
        # A product every customer bought tells nothing of what goes with it (its BM25 weight
        # is 0): one customer without P1.
        *_basket("6", 3, 4, "P9"),
    ]
    table = _recommended(rows)
    assert _picks(table, "new") == {2: ["P2"], 3: ["P2"]}
    assert _picks(table, "reorder") == {1: ["P1", "P2"], 2: ["P1"], 3: ["P1"], 4: ["P9"]}


def test_customer_products_counts_invoices_and_marks_the_last() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2"),
        line("1", 0, 1, stock_code="P1"),  # twice on one invoice: one invoice
        *_basket("2", 3, 1, "P1"),
        # The latest purchase invoice holds only postage: no product is on it.
        *_basket("3", 5, 2, "P3"),
        *_basket("4", 6, 2, "POST"),
    ]
    table = check_agreement(rows, EVERYONE)["customer_products"].sort(
        UNORDERED["customer_products"]
    )
    assert table.select("customer_id", "stock_code", "invoices", "on_last_invoice").rows() == [
        (1, "P1", 2, True),
        (1, "P2", 1, False),
        (2, "P3", 1, False),
    ]
    assert table["last_purchase"].to_list() == [
        (START + dt.timedelta(days=d)).date() for d in (3, 0, 5)
    ]


def test_most_frequent_description_smallest_on_ties() -> None:
    rows = _basket("1", 0, 1, "P1", "P2") + _basket("2", 1, 2, "P1")
    for text in ["ZEBRA", "APPLE", None, None]:
        rows.append({**line("3", 3, 3, stock_code="P2"), "description": text})
    # P2's purchase lines: CAKESTAND, ZEBRA and APPLE once each (nulls do not count): APPLE.
    table = _recommended(rows)
    assert table.filter(pl.col("stock_code") == "P2")["description"].unique().to_list() == ["APPLE"]


def test_a_product_without_a_description_keeps_its_name_null() -> None:
    """Its lines' descriptions are all null: the product is named, as null (the query counts the
    null with the others, in one pass, and takes it only when it is all there is)."""
    rows = _basket("1", 0, 1, "P1") + [
        {**line("2", 1, 2, stock_code=code), "description": text}
        for code, text in [("P2", None), ("P2", None), ("P3", None), ("P3", None), ("P3", "BOX")]
    ]
    names = check_agreement(rows, EVERYONE)["product_names"]
    assert names.rows() == [("P1", "CAKESTAND"), ("P2", None), ("P3", "BOX")]


def test_segments_and_number() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2", "P3", "P4"),
        *_basket("2", 1, 2, "P1"),
        *_basket("3", 2, 3, "P9"),
    ]
    assert _recommended(rows, Options(recommend_segments=())).height == 0
    one = Options(recommend_segments=EVERYONE.recommend_segments, recommendations=1)
    assert _recommended(rows, one).select("customer_id", "kind", "rank", "stock_code").rows() == [
        (1, "reorder", 1, "P1"),
        (2, "reorder", 1, "P1"),
        (2, "new", 1, "P2"),
        (3, "reorder", 1, "P9"),
    ]
    with pytest.raises(InputError, match="at least 1, not 0"):
        Options(recommendations=0)


def test_as_of_drops_later_lines() -> None:
    rows = [
        *_basket("1", 0, 1, "P1", "P2"),
        *_basket("2", 1, 2, "P1"),
        *_basket("3", 5, 3, "P1", "P3"),
        *_basket("4", 1, 4, "P9"),
    ]
    options = Options(
        as_of=START + dt.timedelta(days=2), recommend_segments=EVERYONE.recommend_segments
    )
    assert _picks(_recommended(rows, options), "new") == {2: ["P2"]}


def test_the_api_checks_the_segments_it_recommends_to(tmp_path: Path) -> None:
    # Only the CLI checked --recommend: Options(recommend_segments=("At risk",)) recommended to
    # nobody, silently, and the report named the segment all the same.
    from lgs_fast.config import load_segment_rules
    from lgs_fast.errors import InputError
    from tests.utils import write_segment_map

    with pytest.raises(InputError, match="--recommend: no segment 'At risk' in the segment map"):
        Options(recommend_segments=("At risk",))
    assert Options().recommend_segments == ("Can't Lose", "At Risk", "Need Attention")
    # A map of its own without those names: nobody by default, and the report says none.
    rules = load_segment_rules(write_segment_map(tmp_path / "own.toml", ("Best", "..", "x")))
    assert Options(rules=rules).recommend_segments == ()


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
    assert set(table["kind"]) == {"reorder", "new"}
    assert table["rank"].max() == 2
    assert table.filter(pl.col("segment") == "At Risk")["customer_id"].n_unique() == 580
    holdout = pl.read_parquet(out / "tables" / "recommendation_holdout.parquet")
    assert holdout["method"].to_list() == ["reorder", "new", "best sellers not yet bought"]
    assert not (out / "tables" / "customer_products.parquet").exists()


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
    assert "reorder_1" not in lists.columns and "new_1" not in lists.columns
