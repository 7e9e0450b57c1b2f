"""The Spark dialect: DuckDB's list, regular expression and weekday functions, translated
(lgs_fast/engines/spark/dialect.py), evaluated by a real local[2] Spark as DuckDB evaluates
them. Spark's tables agree with DuckDB's to the bit in tests/test_agreement.py, with the other
engines; tests/test_spark_command.py covers URIs, the command and its errors."""

from __future__ import annotations

import duckdb
import pytest

from lgs_fast.engines.spark.dialect import to_spark

MASTER = "local[2]"


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    from lgs_fast.engines.spark import session

    return session(MASTER)


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
