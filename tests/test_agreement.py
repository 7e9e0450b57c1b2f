"""Every engine gives every table to the bit (Polars = DuckDB, and Spark = DuckDB on a small
lake), and they equal the pandas reference, on the real data, both presets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from benchmarks import pandas_reference as reference
from lgs_fast.analyze import compute_tables
from lgs_fast.catalog import ANALYSES
from lgs_fast.config import Options
from tests.utils import assert_engines_agree, assert_tables_agree

CASES = {
    "standard": Options(),
    "notebook": Options(preset="notebook"),
    "quartiles": Options(bins=4),
}
_cache: dict[tuple[str, str], dict[str, object]] = {}


def _pandas(lake: Path, case: str) -> dict[str, object]:
    key = (str(lake), case)
    if key not in _cache:
        _cache[key] = reference.run_all(reference.load_lines(lake), CASES[case])  # type: ignore[assignment]
    return _cache[key]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("data", ["retail_lake", "retail_ii_lake"])
def test_engines_agree_with_pandas(
    request: pytest.FixtureRequest, data: str, case: str, engine: str
) -> None:
    lake: Path = request.getfixturevalue(data)
    got = compute_tables(lake, CASES[case], engine=engine)  # type: ignore[arg-type]
    assert list(got) == list(ANALYSES)
    expected = _pandas(lake, case)
    for name in ANALYSES:
        assert_tables_agree(name, got[name], expected[name], f"{engine}/{data}/{case}/{name}")  # type: ignore[arg-type]


# (lake, preset, from, to): the shipped lines whole, and the Online Retail II month whole and
# over a range that cuts it (there the layers are computed from the lines, by
# queries/layer_*.sql on Spark, exact duplicates included).
SPANS = {
    "retail/standard": ("retail_lake", "standard", None, None),
    "retail_ii/standard": ("retail_ii_lake", "standard", None, None),
    "retail_ii/notebook/cut": (
        "retail_ii_lake",
        "notebook",
        dt.date(2009, 12, 3),
        dt.date(2009, 12, 21),
    ),
}
# Spark (marked `spark`: it starts a JVM, local[2]) on the small lake's cut only, to keep its
# cost low; tests/test_spark_cluster.py compares the whole month, every table of a whole run,
# on a standalone cluster and over Spark Connect.
ENGINE_SPANS = [("polars", span) for span in SPANS] + [
    pytest.param("spark", "retail_ii/notebook/cut", marks=pytest.mark.spark)
]
SPARK_MASTER = "local[2]"


@pytest.mark.parametrize(("other", "span"), ENGINE_SPANS)
def test_engines_agree_to_the_bit(request: pytest.FixtureRequest, other: str, span: str) -> None:
    data, preset, start, end = SPANS[span]
    lake: Path = request.getfixturevalue(data)
    options = Options(preset=preset)  # type: ignore[arg-type]
    master = SPARK_MASTER if other == "spark" else None
    duckdb = compute_tables(lake, options, engine="duckdb", start=start, end=end)
    got = compute_tables(lake, options, engine=other, start=start, end=end, spark_master=master)  # type: ignore[arg-type]
    assert list(got) == list(ANALYSES)
    for name in ANALYSES:
        assert_engines_agree(name, duckdb[name], got[name], f"{other}/{span}/{name}")
    # Real values, not only agreement: the cut is read, and every table has rows.
    assert got["rfm"].height > 0 and got["customer_products"].height > 0
    if start is not None:
        assert 0 < dict(got["data_quality"].iter_rows())["lines"] < 45_228
        assert got["overview"]["first_invoice"][0] >= dt.datetime(2009, 12, 3)


def test_date_range(retail_lake: Path, engine: str) -> None:
    import datetime as dt

    got = compute_tables(
        retail_lake, engine=engine, start=dt.date(2011, 1, 1), end=dt.date(2011, 4, 1)
    )  # type: ignore[arg-type]
    monthly = got["monthly"]
    assert monthly["yyyymm"].to_list() == [201101, 201102, 201103]
    assert monthly["placed_lines"].to_list() == [34_446, 27_232, 36_049]
    # The range sees no earlier data: who was new in 2011-01 is unknown.
    assert monthly["active_customers"][0] == 783
    assert monthly["new_customers"][0] is None and monthly["existing_customers"][0] is None
    # Completeness follows the analysed lines: they start on 4 January and end on 31 March.
    assert monthly["complete"].to_list() == [False, True, True]
    january = got["cohorts"].filter(pl.col("cohort_yyyymm") == 201101)
    assert january["complete"].to_list() == [False, True, True]
    overview = got["overview"].row(0, named=True)
    assert (
        overview["lines"]
        == monthly.select(pl.col("placed_lines") + pl.col("cancelled_lines")).sum().item()
    )


def test_date_range_without_data(retail_lake: Path, engine: str) -> None:
    import datetime as dt

    got = compute_tables(retail_lake, engine=engine, start=dt.date(2015, 1, 1))  # type: ignore[arg-type]
    overview = got["overview"].row(0, named=True)
    assert overview["lines"] == overview["invoices"] == overview["customers_with_purchase"] == 0
    assert overview["placed_sales"] == overview["cancelled_value"] == overview["net_revenue"] == 0.0
    assert got["reversed_invoices"].height == 0
    assert got["monthly"].height == 0
    assert got["rfm"].height == 0
    assert got["segments"]["customers"].sum() == 0
    assert got["invoice_amounts"]["count"].to_list() == [0, 0]


def test_streaming_path_agrees(retail_lake: Path) -> None:
    """Above STREAMING_ROWS the Polars engine collects table by table, above IN_MEMORY_ROWS
    together with the streaming engine, below with the in-memory one; same answers."""
    from lgs_fast.engines.polars.engine import IN_MEMORY_ROWS, collect_tables
    from lgs_fast.lake import scan_layers

    layers = scan_layers(retail_lake)
    whole = collect_tables(layers, Options(), rows=1)
    for rows, streaming in ((IN_MEMORY_ROWS, False), (1, True)):
        other = collect_tables(layers, Options(), rows=rows, streaming=streaming)
        for name in ANALYSES:
            assert_engines_agree(
                name, whole[name], other[name], f"{rows} rows, streaming {streaming}/{name}"
            )
    assert dict(whole["data_quality"].iter_rows())["exact_duplicate_lines"] == 5_268
