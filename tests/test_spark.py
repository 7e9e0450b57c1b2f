"""The Spark engine: the same queries, translated (lgs_fast/dialect.py), on a real local[2]
Spark, agree with Polars and DuckDB on every table of the real data; lakes at URIs; one clear
line for a bad master, no Java, or a lake Spark cannot read."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.definitions import Options
from lgs_fast.dialect import to_spark
from lgs_fast.metrics import ANALYSES
from tests.utils import assert_agree

MASTER = "local[2]"
CLI = Path(sys.executable).parent / "lgs-fast"


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    from lgs_fast.spark import session

    return session(MASTER)


def _agree(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame], what: str) -> None:
    assert list(got) == list(expected), what
    for name in expected:
        assert got[name].schema == expected[name].schema, f"{what}/{name}"
        assert_agree(expected[name], got[name], f"{what}/{name}")


@pytest.mark.parametrize(
    ("data", "preset"),
    [("retail_lake", "standard"), ("retail_ii_lake", "notebook")],
)
def test_spark_agrees_with_polars_and_duckdb(
    request: pytest.FixtureRequest, spark: object, data: str, preset: str
) -> None:
    lake: Path = request.getfixturevalue(data)
    options = Options(preset=preset)  # type: ignore[arg-type]
    duck = compute_tables(lake, options, engine="duckdb")
    _agree(compute_tables(lake, options, engine="polars"), duck, f"polars/{data}/{preset}")
    got = compute_tables(lake, options, engine="spark", spark_master=MASTER)
    assert list(got) == list(ANALYSES)
    _agree(got, duck, f"spark/{data}/{preset}")
    assert got["recommendations"].height > 0 and got["rfm"].height > 0


def test_spark_notebook_preset_on_the_shipped_data(spark: object, retail_lake: Path) -> None:
    """The notebook's own numbers (README): 4,372 customers scored, every line counted."""
    options = Options(preset="notebook", recommend_segments=())
    got = compute_tables(retail_lake, options, engine="spark", spark_master=MASTER)
    _agree(got, compute_tables(retail_lake, options, engine="duckdb"), "spark/retail/notebook")
    assert got["rfm"].height == 4_372
    monthly = got["monthly"]
    assert monthly["placed_lines"].sum() + monthly["cancelled_lines"].sum() == 541_909


def test_spark_over_a_range_that_cuts_months(spark: object, retail_ii_lake: Path) -> None:
    """A range cutting a month: Spark computes its layers from the lines (queries/layer_*.sql,
    exact duplicates included) and agrees with DuckDB."""
    options = Options(recommend_segments=(), as_of=dt.datetime(2009, 12, 18, 12, 0))
    start, end = dt.date(2009, 12, 3), dt.date(2009, 12, 21)
    got = compute_tables(
        retail_ii_lake, options, engine="spark", start=start, end=end, spark_master=MASTER
    )
    duck = compute_tables(retail_ii_lake, options, engine="duckdb", start=start, end=end)
    _agree(got, duck, "spark/range")
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


def test_a_damaged_lake_at_a_uri_is_named(
    spark: object, retail_ii_lake: Path, tmp_path: Path
) -> None:
    """file:///… is read through Hadoop's file systems, as s3a:// or hdfs:// would be: the
    manifest, then each file's size and rows checked against it; a damaged file is named."""
    from lgs_fast.errors import DamagedError, LakeError

    lake = tmp_path / "lake"
    shutil.copytree(retail_ii_lake, lake)
    manifest = json.loads((lake / "_manifest.json").read_text())
    key, entry = next(iter(manifest["partitions"].items()))
    layer = lake / "invoices" / key / entry["layers"]["invoices"]["file"]
    with layer.open("ab") as f:
        f.write(b"\0")
    options = Options(recommend_segments=())
    with pytest.raises(DamagedError, match=r"invoices layer has [\d,]+ bytes, the manifest says"):
        compute_tables(f"file://{lake}", options, engine="spark", spark_master=MASTER)
    (lake / "invoice_lines" / key / entry["file"]).unlink()
    with pytest.raises(DamagedError, match=rf"partition {key} is missing"):
        compute_tables(f"file://{lake}", options, engine="spark", spark_master=MASTER)
    with pytest.raises(LakeError, match="no lake here"):
        compute_tables(f"file://{tmp_path}/nothing", options, engine="spark", spark_master=MASTER)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_bad_master_missing_java_and_uri_without_spark_are_one_line(
    retail_ii_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    _one_line(
        _run(*base, "--engine", "spark", "--spark-master", "locl[2]"),
        7,
        "'locl[2]' is not a Spark master URL",
    )
    _one_line(
        _run(*base, "--engine", "spark", "--spark-master", "spark://127.0.0.1:9"),
        7,
        "cannot reach the Spark master spark://127.0.0.1:9",
    )
    no_java = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    no_java["PATH"] = str(tmp_path)  # no java there, nor anywhere else on PATH
    _one_line(_run(*base, "--engine", "spark", env=no_java), 7, "no Java found")
    _one_line(
        _run("analyze", "--lake", "s3a://bucket/lake", "--out", str(out), "--engine", "duckdb"),
        2,
        "a lake at a URI is read by the Spark engine",
    )
    _one_line(_run(*base, "--spark-master", "local[2]"), 2, "--spark-master is for --engine spark")
    assert not out.exists()


def test_analyze_command_on_spark_over_a_lake_at_a_uri(
    retail_ii_lake: Path, tmp_path: Path
) -> None:
    """The whole command, as an analyst runs it, on a lake named by URI (read through
    Hadoop's file systems, as s3a:// or hdfs:// would be): every table written, DuckDB's."""
    out = tmp_path / "out"
    done = _run(
        "analyze", "--lake", f"file://{retail_ii_lake}", "--out", str(out), "--no-report",
        "--engine", "spark", "--spark-master", MASTER, "--no-recommendations",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[:2] == ["starting Spark…", "computing tables with spark…"]
    assert "Traceback" not in done.stderr and "WARN" not in done.stderr
    expected = compute_tables(retail_ii_lake, Options(recommend_segments=()), engine="duckdb")
    for name in ANALYSES:
        assert_agree(expected[name], pl.read_parquet(out / "tables" / f"{name}.parquet"), name)
