"""The Spark engine: the same `queries/*.sql` as the DuckDB engine, translated into Spark SQL by
`lgs_fast.engines.spark.dialect`, over the lake read by Spark itself, from a local path or any URI Hadoop can
read (`file://`, `s3a://`, `hdfs://`, …).

Spark sees what DuckDB sees: view `invoice_lines` (exactly the manifest's files, never a glob),
the derived layers as views `invoices`, `products` and `quality` (`lake.layer_plan` says which
months are read from the stored layers and which are computed from the lines by
`queries/layer_*.sql`), and `segment_rules`. Options are typed session variables, set from bound
values. Tables come back as Polars frames in their schemas of `lgs_fast.catalog`, so every
engine's output has one shape.

PySpark is an extra (`pip install 'lgs-fast[spark]'`); it is imported only here, when the engine
is used. The session (`lgs_fast.engines.spark.session`) is `local[*]` unless `--spark-master`
or `$LGS_SPARK_MASTER` names a master, or `$SPARK_REMOTE` (or a `sc://` master) a Spark
Connect server.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lgs_fast.catalog import ANALYSES
from lgs_fast.config import Options, as_datetime, segment_rules_frame
from lgs_fast.engines.base import EngineSettings, Span
from lgs_fast.engines.duckdb import MACROS, VARIABLE_TYPES, VIEWS, load_query, variables
from lgs_fast.engines.spark.dialect import reads, staged, to_spark
from lgs_fast.engines.spark.session import QUICK_JIT as QUICK_JIT
from lgs_fast.engines.spark.session import JobFailed as JobFailed
from lgs_fast.engines.spark.session import (
    check_can_start,
    checkpoint_directory,
    session,
    spark_failures,
)
from lgs_fast.engines.spark.session import master_url as master_url
from lgs_fast.errors import DamagedError, EngineError, InputError, LakeError, LgsError
from lgs_fast.lake import MANIFEST, Manifest, Snapshot, first_line, layer_plan
from lgs_fast.lake.layers import MICRO_COLUMNS, QUALITY_SCHEMA, SCHEMAS, STORED_SCHEMAS
from lgs_fast.schema import POLARS_SCHEMA, spark_ddl, spark_type, table_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lgs_fast.engines.base import Version

# The lake ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkLake:
    """One version of a lake as Spark reads it: the manifest and its files' locations."""

    location: str
    manifest: Manifest
    files: dict[str, str]  # partition key -> lines file
    layer_files: dict[tuple[str, str], str]  # (layer, key) -> layer file


def _locate(root: str, manifest: Manifest) -> SparkLake:
    here = Path(".")
    return SparkLake(
        location=root,
        manifest=manifest,
        files={k: f"{root}/{p.as_posix()}" for k, p in manifest.files(here).items()},
        layer_files={k: f"{root}/{p.as_posix()}" for k, p in manifest.layer_files(here).items()},
    )


def from_snapshot(snap: Snapshot) -> SparkLake:
    """A local lake already checked against its manifest (`lake.reading`)."""
    return _locate(str(snap.root.resolve()), snap.manifest)


def open_uri(spark: SparkSession, uri: str) -> SparkLake:
    """The lake at `uri`, read through Spark's file systems: its manifest, and every file it
    names present with the size and row count it lists (`DamagedError` otherwise)."""
    root = uri.rstrip("/")
    text = _read_text(spark, f"{root}/{MANIFEST}")
    manifest = Manifest.from_json(text, f"{root}/{MANIFEST}")
    lake = _locate(root, manifest)
    _check(spark, lake)
    return lake


def _read_text(spark: SparkSession, uri: str) -> str:
    """A small file read through Hadoop's file system for its URI, as Spark itself would reach
    it (Spark's own readers skip names starting with `_`, as the manifest's does)."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        raise EngineError(
            f"{uri}: a lake at a URI is read through a classic Spark session; over Spark Connect, "
            "name a lake the server reaches as a local path instead"
        )
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        fs = path.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
        if not fs.exists(path):
            raise LakeError(
                f"{uri.rsplit('/', 1)[0]}: no lake here (no {MANIFEST}); "
                "run `lgs-fast import` or `lgs-fast export` first"
            )
        stream = fs.open(path)
        try:
            chunks = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
    except LgsError:
        raise
    except Exception as err:
        raise LakeError(f"{uri}: cannot be read ({first_line(err)})") from None
    return bytes(chunks).decode()


def _check(spark: SparkSession, lake: SparkLake) -> None:
    """Each file the manifest names: present, with its size (from the file system) and its rows
    (from the Parquet footers, read by Spark: no data is read)."""
    layered = lake.manifest.layered()
    expected = {p: (f"partition {k}", lake.manifest.partitions[k]) for k, p in lake.files.items()}
    expected |= {
        path: (f"partition {k}'s {layer} layer", layered[k][layer])
        for (layer, k), path in lake.layer_files.items()
    }
    if not expected:
        return
    jvm = spark._jvm  # type: ignore[attr-defined]
    conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    for path, (what, meta) in expected.items():
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        fs = hadoop_path.getFileSystem(conf)
        if not fs.exists(hadoop_path):
            raise DamagedError(
                f"{path}: {what} is missing (the manifest lists it); the lake is damaged"
            )
        size = fs.getFileStatus(hadoop_path).getLen()
        if "bytes" in meta and size != meta["bytes"]:
            raise DamagedError(
                f"{path}: {what} has {size:,} bytes, the manifest says {meta['bytes']:,}; the lake is damaged"
            )
    from pyspark.sql import functions as F

    try:
        found = (
            spark.read.parquet(*expected)
            .groupBy(F.col("_metadata.file_path").alias("path"))
            .count()
            .collect()
        )
    except Exception as err:
        raise DamagedError(
            f"{lake.location}: a file the manifest lists is not readable Parquet ({first_line(err)})"
        ) from None
    rows = {_same_path(row["path"]): row["count"] for row in found}
    for path, (what, meta) in expected.items():
        if rows.get(_same_path(path), 0) != meta["rows"]:
            raise DamagedError(
                f"{path}: {what} has {rows.get(_same_path(path), 0):,} rows, the manifest says {meta['rows']:,}; the lake is damaged"
            )
    # The content, as a local read checks it: a byte flipped inside a page passes the checks
    # above, and Spark then failed with "An error occurred while calling o384.getResult" or
    # read other numbers. Spark hashes the files where they are (one pass, in parallel).
    digests = (
        spark.read.format("binaryFile")
        .load(list(expected))
        .select("path", F.sha2("content", 256).alias("sha256"))
        .collect()
    )
    found_sha = {_same_path(row["path"]): row["sha256"] for row in digests}
    for path, (what, meta) in expected.items():
        if found_sha.get(_same_path(path)) != meta["sha256"]:
            raise DamagedError(
                f"{path}: {what}: checksum differs from the manifest; the lake is damaged"
            )


def _same_path(path: str) -> str:
    # Spark reports file:/x for file:///x and /x.
    return re.sub(r"^file:/+", "/", path)


# Views ---------------------------------------------------------------------------------------


def _between(df: DataFrame, start: dt.datetime | None, end: dt.datetime | None) -> DataFrame:
    from pyspark.sql import functions as F

    # Compared as text cast in Spark: a Python datetime would be read in the driver's zone.
    if start is not None:
        df = df.where(
            F.col("invoice_date") >= F.lit(start.isoformat(sep=" ")).cast("timestamp_ntz")
        )
    if end is not None:
        df = df.where(F.col("invoice_date") < F.lit(end.isoformat(sep=" ")).cast("timestamp_ntz"))
    return df


def _read(spark: SparkSession, paths: list[str], schema: pl.Schema) -> DataFrame:
    """The files' rows in `schema`, given rather than inferred from every footer."""
    ddl = spark_ddl(schema)
    if not paths:
        return spark.createDataFrame([], ddl)
    return spark.read.schema(ddl).parquet(*paths).select(*schema.names())


def shuffle_partitions(rows: int) -> int:
    """Spark's shuffle partitions for a lake of `rows` lines: `LGS_SPARK_PARTITIONS`, else one
    per million lines, at least 8. The shuffles carry the aggregations' rows (a few per
    invoice or customer), and Spark's default of 200 spent most of a small lake's time on
    empty tasks: `analyze --no-report` of one month (45,228 lines) on a one-worker standalone
    cluster took 121 s with 200, 71 s with 8 (tests/test_spark_cluster.py, one run each)."""
    given = os.environ.get("LGS_SPARK_PARTITIONS")
    return int(given) if given else max(8, rows // 1_000_000)


@dataclass
class Connection:
    """A Spark session with one lake version's views registered, ready for `query`. The views
    are the session's: a later `connect` in the same process replaces them."""

    spark: SparkSession
    options: Options
    # Whether the shared views (VIEWS) are registered: on first use, by the first query that
    # reads one, or computed by `tables`.
    views: bool = False


def connect(
    lake: SparkLake,
    options: Options | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    master: str | None = None,
) -> Connection:
    """A Spark session with `lake` as views, the options as session variables."""
    options = options or Options()
    spark = session(master, lake.manifest.rows)
    lo = as_datetime(start) if start is not None else None
    hi = as_datetime(end) if end is not None else None
    _set_variables(spark, options)
    # The layers are the lake's and the range's, not the options' (they read one variable, the
    # constant `non_product`): a second connection to the same lake version and range (CLV's
    # calibration, and its baseline, in `analyze`) keeps them.
    if _LAYERED.get(id(spark)) != (lake, lo, hi):
        _LAYERED.pop(id(spark), None)
        _register_layers(spark, lake, lo, hi)
        _LAYERED[id(spark)] = (lake, lo, hi)
    rules = segment_rules_frame(options.rules)
    spark.createDataFrame(rules.rows(), spark_ddl(rules.schema)).createOrReplaceTempView(
        "segment_rules"
    )
    return Connection(spark, options)


# The lake version and range whose layers a session's views hold, by session.
_LAYERED: dict[int, tuple[SparkLake, dt.datetime | None, dt.datetime | None]] = {}


def _register_layers(
    spark: SparkSession, lake: SparkLake, lo: dt.datetime | None, hi: dt.datetime | None
) -> None:
    """Views `invoice_lines` (the range's lines) and the layers `invoices`, `products` and
    `quality`: stored where the lake has them, computed from the lines where not, and then
    computed once (`_materialised`)."""
    spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions(lake.manifest.rows)))
    invoice_months, whole_months, line_months = layer_plan(lake.manifest, lo, hi)
    months = sorted(set(invoice_months) | set(line_months))
    lines = _between(_read(spark, [lake.files[k] for k in months], POLARS_SCHEMA), lo, hi)
    lines.createOrReplaceTempView("invoice_lines")
    entries = lake.manifest.layered()

    def computed(name: str, keys: list[str]) -> DataFrame:
        # A view per layer, kept: over Spark Connect a query names its views until it runs.
        view = f"layer_lines_{name}"
        rows = _between(_read(spark, [lake.files[k] for k in keys], POLARS_SCHEMA), lo, hi)
        rows.createOrReplaceTempView(view)
        return spark.sql(to_spark(load_query(f"layer_{name}").replace("layer_lines", view)))

    unlayered = [k for k in line_months if k not in entries]
    stored_invoices = _read(
        spark,
        [lake.layer_files["invoices", k] for k in invoice_months],
        STORED_SCHEMAS["invoices"],
    )
    invoices = _between(stored_invoices, lo, hi).unionByName(computed("invoices", unlayered))
    products = _read(
        spark,
        [lake.layer_files["products", k] for k in whole_months],
        STORED_SCHEMAS["products"],
    ).unionByName(computed("products", line_months))
    counts = [tuple(entries[k]["quality"][c] for c in QUALITY_SCHEMA.names()) for k in whole_months]
    quality_schema = spark_ddl(QUALITY_SCHEMA)
    quality = spark.createDataFrame(counts, quality_schema).unionByName(
        computed("quality", line_months)
        if line_months
        else spark.createDataFrame([], quality_schema)
    )
    # Money as DECIMAL(38,0), DuckDB's HUGEINT (the layers' Int128): sums never overflow.
    for name, frame in (("invoices", invoices), ("products", products)):
        money = MICRO_COLUMNS[name]
        frame = frame.withColumns({c: frame[c].cast(spark_type(SCHEMAS[name][c])) for c in money})
        _materialised(frame).createOrReplaceTempView(name)
    _materialised(quality).createOrReplaceTempView("quality")


def _materialised(frame: DataFrame) -> DataFrame:
    """`frame` computed once, now, and kept: a view of it is read as rows, not planned and
    computed again by every query that names it. The layers and the shared views are a few rows
    per invoice, customer or product; Spark inlines a view at each use, and matching a cached
    plan failed for views holding scalar subqueries, so each of the 17 tables computed the
    layers and rfm again (about 250 jobs for one month).

    Kept by the executors, in memory and on their disks, unless the session has a checkpoint
    directory (`spark.checkpoint.dir`): then written there, so a run outlives the loss of an
    executor, which otherwise takes the kept rows with it and fails the run."""
    if checkpoint_directory(frame.sparkSession):
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _set_variables(spark: SparkSession, options: Options) -> None:
    for name, value in variables(options).items():
        # Options as typed session variables, each declared with a bound value, never pasted:
        # one statement each (a statement costs a round trip and an analysis in the JVM).
        kind = spark_type(VARIABLE_TYPES[name])
        if isinstance(value, dt.datetime | dt.date):
            # As text, cast by Spark: a Python datetime would be converted in the driver's zone.
            value = as_datetime(value).isoformat(sep=" ")
        spark.sql(
            f"DECLARE OR REPLACE VARIABLE {name} {kind} DEFAULT CAST(:value AS {kind})",
            args={"value": value},
        )


def _macros() -> tuple[tuple[str, str, str], ...]:
    return tuple((macro, parameter, load_query(macro)) for macro, parameter in MACROS.items())


def _translated(name: str) -> str:
    return to_spark(load_query(name), _macros())


def query(con: Connection, name: str) -> DataFrame:
    """The Spark DataFrame of `queries/NAME.sql`: the common table expressions it reads more than
    once computed now, each once (`dialect.staged`); the rest lazy until collected."""
    if not con.views and reads(load_query(name), _macros()) & set(VIEWS):
        # Lazy views, registered only when a query needs them: each is analysed when registered,
        # and `analyze` connects three times (the CLV's summaries read none of them).
        for view in VIEWS:
            con.spark.sql(_translated(view)).createOrReplaceTempView(view)
        con.views = True
    steps, main = staged(load_query(name), name, _macros())
    for view, sql in steps:
        _materialised(con.spark.sql(sql)).createOrReplaceTempView(view)
    return con.spark.sql(main)


def table(con: Connection, name: str) -> pl.DataFrame:
    """`queries/NAME.sql` computed by Spark, as a Polars frame in its schema of the catalog."""
    return to_polars(query(con, name), table_schema(name))


def tables(con: Connection) -> dict[str, pl.DataFrame]:
    """Every analysis of `queries/`, as Polars frames in the catalog's schemas."""
    # Each shared view computed once, in order, from the ones before it, then read by the tables.
    con.views = True
    for name in VIEWS:
        _materialised(query(con, name)).createOrReplaceTempView(name)
    return {
        name: to_polars(con.spark.table(name), table_schema(name))
        if name in VIEWS
        else table(con, name)
        for name in ANALYSES
    }


def to_polars(df: DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """A Spark result as a Polars frame of `schema` (Spark's decimals are DuckDB's doubles)."""
    frame = pl.from_arrow(df.toArrow())
    assert isinstance(frame, pl.DataFrame)
    if frame.columns != schema.names():
        raise EngineError(f"Spark returned columns {frame.columns}, expected {schema.names()}")
    return frame.cast(dict(schema))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SparkEngine:
    """The Spark engine behind the engines' protocol, on `master` (`master_url`)."""

    master: str | None = None
    name: str = "spark"

    def check(self) -> str | None:
        check_can_start(self.master)
        return "starting Spark…"

    def open_uri(self, uri: str) -> SparkLake:
        with spark_failures():
            return open_uri(session(self.master), uri)

    def _connect(self, version: Version, options: Options, span: Span) -> Connection:
        lake = from_snapshot(version) if isinstance(version, Snapshot) else version
        return connect(lake, options, start=span.start, end=span.end, master=self.master)

    def tables(self, version: Version, options: Options, span: Span) -> dict[str, pl.DataFrame]:
        with spark_failures():
            return tables(self._connect(version, options, span))

    def clv_summary(self, version: Version, options: Options, span: Span) -> pl.DataFrame:
        with spark_failures():
            return table(self._connect(version, options, span), "clv_summary")

    def tables_of(self, lines: pl.LazyFrame, options: Options) -> dict[str, pl.DataFrame]:
        raise InputError(
            "the Spark engine reads a lake, not a frame: compute_tables(lake, engine='spark')"
        )


def open_engine(settings: EngineSettings) -> SparkEngine:
    return SparkEngine(settings.spark_master)
