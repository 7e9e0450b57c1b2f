"""The Spark engine: the same queries, translated (lgs_fast/engines/spark/dialect.py), on a real local[2]
Spark, agree with Polars and DuckDB on every table of the real data, both presets, and over a
range that cuts months (tests/test_spark_command.py: URIs, the command, its errors)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.catalog import ANALYSES
from lgs_fast.config import Options
from lgs_fast.engines.spark.dialect import to_spark
from tests.utils import assert_engines_agree

MASTER = "local[2]"


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    from lgs_fast.engines.spark import session

    return session(MASTER)


def _agree(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame], what: str) -> None:
    assert list(got) == list(expected), what
    for name in expected:
        assert_engines_agree(name, expected[name], got[name], f"{what}/{name}")


# The shipped lines whole (standard preset), and the Online Retail II month over a range that
# cuts it (notebook preset): there Spark computes the layers from the lines by
# queries/layer_*.sql, exact duplicates included. Polars = DuckDB is tests/test_agreement.py's.
CASES = [
    ("retail_lake", "standard", None, None),
    ("retail_ii_lake", "notebook", dt.date(2009, 12, 3), dt.date(2009, 12, 21)),
]


@pytest.mark.parametrize(("data", "preset", "start", "end"), CASES)
def test_spark_agrees_with_duckdb_on_every_table(
    request: pytest.FixtureRequest,
    spark: object,
    data: str,
    preset: str,
    start: dt.date | None,
    end: dt.date | None,
) -> None:
    lake: Path = request.getfixturevalue(data)
    options = Options(preset=preset)  # type: ignore[arg-type]
    duck = compute_tables(lake, options, engine="duckdb", start=start, end=end)
    got = compute_tables(lake, options, engine="spark", start=start, end=end, spark_master=MASTER)
    assert list(got) == list(ANALYSES)
    _agree(got, duck, f"spark/{data}/{preset}")
    assert got["customer_products"].height > 0 and got["rfm"].height > 0
    if start is not None:
        quality = dict(got["data_quality"].iter_rows())
        assert 0 < quality["lines"] < 45_228
        assert got["overview"]["first_invoice"][0] >= dt.datetime(2009, 12, 3)


def test_translated_lists_count_as_duckdb_does(spark) -> None:  # type: ignore[no-untyped-def]
    """Positions from 1 and from the end, out of range as NULL, ordered lists, the n largest
    values, whole-string regular expressions, ISO weekdays: each evaluated by both engines."""
    query = """
        SELECT
            [10, 20, 30][1] AS first, [10, 20, 30][-1] AS last, [10, 20, 30][0] AS zero,
            [10, 20, 30][4] AS beyond, [10, 20, 30][k] AS computed,
            (SELECT list(x ORDER BY x) FROM (VALUES (3), (1), (2)) AS t(x)) AS sorted,
            (SELECT max(x, 2)[-1] FROM (VALUES (3), (1), (5), (5)) AS t(x)) AS second_largest,
            regexp_full_match('545', '5[4-5]5') AS whole, regexp_full_match('5455', '5[4-5]5') AS part,
            isodow(TIMESTAMP '2011-12-04 10:00:00') AS sunday,
            array_length(list_filter([1, 2, 3], lambda v: v > 1)) AS kept
        FROM (SELECT 2 AS k)
    """
    expected = duckdb.sql(query).fetchall()
    got = [tuple(row) for row in spark.sql(to_spark(query)).collect()]
    assert got == expected
