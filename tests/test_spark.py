"""The Spark dialect: DuckDB's list, regular expression and weekday functions, translated
(lgs_fast/engines/spark/dialect.py), evaluated by a real local[2] Spark as DuckDB evaluates
them; and the layers Spark computes once per lake version and range, never reused for another.
Spark's tables agree with DuckDB's to the bit in tests/test_agreement.py, with the other
engines; tests/test_spark_command.py covers URIs, the command and its errors."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from lgs_fast.config import Options
from lgs_fast.engines import duckdb as duck
from lgs_fast.engines import spark as spark_engine
from lgs_fast.engines.spark.dialect import reads, staged, to_spark
from lgs_fast.ingest.sources import import_files
from lgs_fast.lake import snapshot
from tests.conftest import RETAIL_II_CSV, data_file
from tests.utils import assert_engines_agree

pytestmark = pytest.mark.spark
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


def test_spark_hints_written_as_comments_reach_spark(spark) -> None:  # type: ignore[no-untyped-def]
    """`SELECT /*+ HINT */`, a comment to DuckDB, is Spark's hint; other comments are dropped."""
    query = """
        SELECT x, count(*) AS n
        FROM (SELECT /*+ REPARTITION(x) */ * FROM (VALUES (1), (1), (2)) AS t(x))  -- by x
        GROUP BY x ORDER BY x
    """
    sql = to_spark(query)
    assert "/*+ REPARTITION(x) */" in sql and "by x" not in sql
    frame = spark.sql(sql)
    assert "RepartitionByExpression" in frame._jdf.queryExecution().analyzed().toString()
    assert (
        [tuple(row) for row in frame.collect()] == duckdb.sql(query).fetchall() == [(1, 2), (2, 1)]
    )


def test_rows_lost_with_an_executor_are_told_in_one_line(spark) -> None:  # type: ignore[no-untyped-def]
    """Rows kept by `localCheckpoint` are lost with the executor that kept them (here removed
    as its loss would remove them), and the job fails; `analyze` said only Py4J's "An error
    occurred while calling o343.getResult.". It says the cause and what outlives the loss."""
    persisted = spark.sparkContext._jsc.getPersistentRDDs
    before = set(persisted().keys())  # other tests' kept rows, which stay
    kept = spark.range(10).localCheckpoint(eager=True)
    for key, rdd in persisted().items():
        if key not in before:
            rdd.unpersist(True)
    with pytest.raises(spark_engine.JobFailed) as failed, spark_engine.spark_failures():
        spark_engine.to_polars(kept, pl.Schema({"id": pl.Int64}))
    said = str(failed.value)
    assert said.startswith("[CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND] Checkpoint block rdd_"), said
    assert "set spark.checkpoint.dir" in said and len(said.splitlines()) == 1, said


def test_a_value_spark_refuses_is_not_shown(spark, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Spark quotes a value it refuses; with ',' typed for ';', the value of one setting holds
    the next one's, a credential here. Neither the message nor its cause shows it."""
    secret = "AKIAIOSFODNN7EXAMPLEKEY0"
    value = f"true,spark.hadoop.fs.s3a.secret.key={secret}"
    monkeypatch.setenv("LGS_SPARK_CONF", f"spark.sql.ansi.enabled={value}")
    with pytest.raises(spark_engine.JobFailed) as failed, spark_engine.spark_failures():
        spark.conf.set("spark.sql.ansi.enabled", value)
    assert "spark.sql.ansi.enabled" in str(failed.value)
    assert secret not in str(failed.value) and failed.value.__cause__ is None


def test_what_a_query_reads_includes_what_its_macros_read() -> None:
    """A shared view read only inside a table macro's body must be registered before the query
    that calls the macro runs; `rfm` reads `invoices` through `rfm_at` alone."""
    macros = (("totals_at", "t", "SELECT * FROM rfm WHERE recency <= t"),)
    query = "WITH r AS (SELECT 1 AS t) SELECT * FROM totals_at((SELECT t FROM r)), segment_rules"
    assert reads(query, macros) == {"rfm", "segment_rules"}
    assert reads(query) == {"segment_rules"}
    assert "invoices" in reads(
        duck.load_query("rfm"), tuple((m, p, duck.load_query(m)) for m, p in duck.MACROS.items())
    )


def test_common_tables_read_twice_are_computed_once(spark) -> None:  # type: ignore[no-untyped-def]
    """A common table expression read twice becomes a view computed first (Spark would inline
    it at each use); one marked NOT MATERIALIZED stays inline, carried along by each step that
    reads it; the answer is DuckDB's."""
    query = """
        WITH a AS (SELECT x FROM (VALUES (1), (2), (3), (4)) AS t(x)),
        b AS NOT MATERIALIZED (SELECT x FROM a WHERE x > 1),
        c AS (SELECT x, x * 10 AS y FROM b),
        d AS (SELECT x FROM a WHERE x < 4)
        SELECT a.x, c.y, (SELECT max(y) FROM c) AS top, b2.x AS again
        FROM a
        JOIN c USING (x)
        JOIN b AS b2 USING (x)
        JOIN d USING (x)
        ORDER BY a.x
    """
    steps, main = staged(query, "t")
    assert [view for view, _ in steps] == ["t__a", "t__c"]
    assert "WITH b AS" in steps[1][1] and "t__a" in steps[1][1]
    for view, sql in steps:
        spark.sql(sql).createOrReplaceTempView(view)
    got = [tuple(row) for row in spark.sql(main).collect()]
    assert got == duckdb.sql(query).fetchall() == [(2, 20, 40, 2), (3, 30, 40, 3)]
    # A name a subquery defines again is not staged: a reference to it may mean either.
    shadowed = """
        WITH a AS (SELECT 1 AS x)
        SELECT (SELECT count(*) FROM a) AS outer_a,
            (SELECT sum(x) FROM (WITH a AS (SELECT 5 AS x UNION ALL SELECT 6) SELECT x FROM a)) AS inner_a
    """
    assert staged(shadowed, "s")[0] == ()


def test_each_connection_reads_its_own_lake_version_range_and_options(
    retail_ii_lake: Path, tmp_path: Path
) -> None:
    """A connection keeps the layers of the one before it only for the same lake version and
    range: another range, another version of the lake at the same path, or other options (which
    the layers do not depend on) each give DuckDB's tables for what they name; a table that
    reads the shared views (segments reads rfm) reads them with the connection's options."""
    lake = tmp_path / "lake"
    shutil.copytree(retail_ii_lake, lake)
    cut = dt.date(2009, 12, 10)
    as_of = Options(as_of=dt.datetime(2009, 12, 15))

    def compare(options: Options, start: dt.date | None, what: str, *more: str) -> None:
        snap = snapshot(lake)
        con = spark_engine.connect(
            spark_engine.from_snapshot(snap), options, start=start, master=MASTER
        )
        expected = duck.connect(lake, options, start=start)
        for name in ("overview", "clv_summary", *more):
            want, got = duck.query(expected, name).pl(), spark_engine.table(con, name)
            assert_engines_agree(name, want, got, f"{what}, from {start}, as of {options.as_of}")

    compare(Options(), None, "the month")
    compare(Options(), cut, "the month", "segments")  # another range
    compare(as_of, cut, "the month", "segments")  # other options, the same layers
    # The same path and range, another version: the month imported twice over (every line
    # twice), so every count and total differs.
    month = data_file(RETAIL_II_CSV)
    import_files([month, month], lake)
    compare(as_of, cut, "the month twice")
