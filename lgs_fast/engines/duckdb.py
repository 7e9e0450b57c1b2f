"""The DuckDB engine: `queries/*.sql` over the lake, registered as view `invoice_lines`, and
its derived layers (`lgs_fast.lake.layers`) as views `invoices`, `products` and `quality`.

Options reach the SQL as DuckDB variables set with bound parameters (`getvariable('bins')`),
never pasted into the text, so each query file runs unchanged for every option.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import duckdb
import polars as pl

from lgs_fast.catalog import ANALYSES
from lgs_fast.config import (
    COMPARE_DAYS,
    NON_PRODUCT_PATTERN,
    Options,
    as_datetime,
    segment_rules_frame,
)
from lgs_fast.engines.base import EngineSettings, LocalEngine, Span
from lgs_fast.errors import LgsError
from lgs_fast.lake import Snapshot, layer_plan, snapshot
from lgs_fast.lake.layers import INVOICES_SCHEMA, PRODUCTS_SCHEMA, QUALITY_SCHEMA
from lgs_fast.schema import ARROW_SCHEMA, COLUMNS

if TYPE_CHECKING:
    from lgs_fast.engines.base import Version


def _queries() -> Traversable:
    """The `queries/*.sql` files: inside the installed package (lgs_fast.queries), or beside it
    in a source checkout run without installing."""
    try:
        return resources.files("lgs_fast.queries")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "queries"


# Queries that others read from, kept as views: `invoice_views` reads `invoice_totals`, and
# `invoice_amounts` and `invoice_histogram` read `invoice_views`;
# `segments` reads `rfm`, `monthly` and `cohorts` read `coverage`, `rfm` and `segment_movement`
# read `reference_time`, `segment_movement` reads `rfm`, `segment_transitions` reads both. Each
# comes after those it reads.
VIEWS = (
    "invoice_totals",
    "invoice_views",
    "reference_time",
    "rfm",
    "coverage",
    "segment_movement",
)
# Queries over a parameter, created as table macros: RFM at a given time, once at the reference
# time (`rfm`) and once at the earlier time of segment movement.
MACROS = {"rfm_at": "rfm_time"}
_NAME = re.compile(r"^[a-z_]+$")


@cache
def load_query(name: str) -> str:
    """The text of `queries/NAME.sql`."""
    path = _queries() / f"{name}.sql"
    if not _NAME.match(name) or not path.is_file():
        known = ", ".join(
            sorted(
                p.name.removesuffix(".sql") for p in _queries().iterdir() if p.name.endswith(".sql")
            )
        )
        raise LgsError(f"no query named {name!r}; known: {known}")
    return path.read_text()


# The queries' variables and their types; Spark declares each with its type (`spark_type`).
VARIABLE_TYPES: Final = pl.Schema(
    {
        "notebook": pl.Boolean,
        "as_of": pl.Datetime("us"),
        "compare_as_of": pl.Datetime("us"),
        "compare_days": pl.Int32,
        "bins": pl.Int32,
        "top": pl.Int32,
        "histogram_bins": pl.Int32,
        "non_product": pl.String,
        "recommend_segments": pl.List(pl.String),
    }
)


def variables(options: Options) -> dict[str, object]:
    """The options as the queries' variables (`getvariable('bins')`), for every SQL engine;
    their names and types are `VARIABLE_TYPES`."""
    return {
        "notebook": options.preset == "notebook",
        "as_of": options.as_of,
        "compare_as_of": options.compare_as_of,
        "compare_days": COMPARE_DAYS,
        "bins": options.bins,
        "top": options.top,
        "histogram_bins": options.histogram_bins,
        "non_product": NON_PRODUCT_PATTERN,
        "recommend_segments": list(options.recommend_segments),
    }


def _lines(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
) -> duckdb.DuckDBPyRelation:
    """The lines of `files` (exactly the manifest's, never a glob) within [start, end)."""
    if not files:
        return con.from_arrow(ARROW_SCHEMA.empty_table())
    rel = con.read_parquet([str(f) for f in files], hive_partitioning=True)
    col, const = duckdb.ColumnExpression, duckdb.ConstantExpression
    # Hive values arrive as text ("03"); compare year*100+month as integers to prune files.
    month = col("year").cast(duckdb.sqltypes.INTEGER) * const(100) + col("month").cast(
        duckdb.sqltypes.INTEGER
    )
    if start is not None:
        ts = as_datetime(start)
        rel = rel.filter(month >= const(ts.year * 100 + ts.month)).filter(
            col("invoice_date") >= const(ts)
        )
    if end is not None:
        ts = as_datetime(end)
        rel = rel.filter(month <= const(ts.year * 100 + ts.month)).filter(
            col("invoice_date") < const(ts)
        )
    return rel.select(*COLUMNS)


def _between(
    rel: duckdb.DuckDBPyRelation,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
) -> duckdb.DuckDBPyRelation:
    col, const = duckdb.ColumnExpression, duckdb.ConstantExpression
    if start is not None:
        rel = rel.filter(col("invoice_date") >= const(as_datetime(start)))
    if end is not None:
        rel = rel.filter(col("invoice_date") < const(as_datetime(end)))
    return rel


def _register_layers(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot | None,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
) -> None:
    """Views `invoices`, `products` and `quality`: the lake's stored layers where they cover the
    range (`lake.layer_plan`), and queries/layer_*.sql over the lines where they do not (months
    cut by the range, a lake written before the layers, lines given without a lake)."""
    if snap is None:  # lines without a lake: every layer is computed from them
        invoice_months, whole_months, line_months, unlayered = [], [], [], None
    else:
        invoice_months, whole_months, line_months = layer_plan(snap, start, end)
        entries = snap.manifest.layered()
        unlayered = [snap.files[k] for k in line_months if k not in entries]

    def computed(name: str, files: list[Path] | None) -> duckdb.DuckDBPyRelation:
        lines = con.table("invoice_lines") if files is None else _lines(con, files, start, end)
        lines.create_view("layer_lines", replace=True)
        con.execute(f"CREATE TEMP TABLE computed_{name} AS {load_query(f'layer_{name}')}")
        return con.table(f"computed_{name}")

    cut = None if snap is None else [snap.files[k] for k in line_months]
    parts = {
        "invoices": [computed("invoices", unlayered)],
        "products": [computed("products", cut)],
        "quality": [computed("quality", cut)],
    }
    con.execute("DROP VIEW layer_lines")
    if snap is not None and invoice_months:
        stored_files = snap.manifest.layer_files(snap.root)
        for layer, months in (("invoices", invoice_months), ("products", whole_months)):
            files = [str(stored_files[layer, k]) for k in months]
            if files:
                stored = con.read_parquet(files)
                parts[layer].append(_between(stored, start, end) if layer == "invoices" else stored)
        counts = [entries[k]["quality"] for k in whole_months]
        parts["quality"].append(
            con.from_arrow(pl.DataFrame(counts, schema=QUALITY_SCHEMA).to_arrow())
        )
    for layer, schema in (
        ("invoices", INVOICES_SCHEMA),
        ("products", PRODUCTS_SCHEMA),
        ("quality", QUALITY_SCHEMA),
    ):
        rel = parts[layer][0]
        for more in parts[layer][1:]:
            rel = rel.union(more.select(*schema.names()))
        rel.create_view(layer)


def connect(
    lake: str | Path | None = None,
    options: Options | None = None,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    lines: pl.LazyFrame | None = None,
    snap: Snapshot | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake as view `invoice_lines`, ready for `query(con, name)`.

    `lines`, if given, is used instead of a lake (a LazyFrame of the canonical schema; tests
    and notebooks use it to run the SQL engine on any frame); `snap`, a lake version already
    checked (see `lake.reading`).
    """
    options = options or Options()
    con = duckdb.connect()
    # No progress bar in terminals; inside Jupyter without ipywidgets DuckDB refuses the
    # setting, and shows no bar there anyway.
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    limit = os.environ.get("LGS_DUCKDB_MEMORY")
    if limit:
        # Past the limit DuckDB spills group-bys, sorts and distincts to disk.
        con.execute("SET memory_limit = $limit", {"limit": limit})
        con.execute(
            "SET temp_directory = $dir",
            {"dir": str(Path(tempfile.gettempdir()) / "lgs_fast_duckdb")},
        )
    for name, value in variables(options).items():
        con.execute(f"SET VARIABLE {name} = $value", {"value": value})
    if lines is not None:
        snap = None
        rel = con.from_arrow(lines.collect().to_arrow().cast(ARROW_SCHEMA))
    else:
        snap = snap or snapshot(lake)
        rel = _lines(con, list(snap.files.values()), start, end)
    rel.create_view("invoice_lines")
    _register_layers(con, snap, start, end)
    con.from_arrow(segment_rules_frame(options.rules).to_arrow()).create_view("segment_rules")
    for name, parameter in MACROS.items():
        con.execute(f"CREATE TEMP MACRO {name}({parameter}) AS TABLE {load_query(name)}")
    for name in VIEWS:
        con.execute(f"CREATE TEMP VIEW {name} AS {load_query(name)}")
    return con


def query(con: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyRelation:
    """The relation of `queries/NAME.sql`; lazy until fetched (`.pl()`, `.arrow()`, `.df()`)."""
    if name in MACROS:
        raise LgsError(f"{name} is a table macro: SELECT * FROM {name}({MACROS[name]})")
    return con.sql(load_query(name))


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """Every analysis of `queries/`, fetched as Polars frames, keyed by table name."""
    for name in VIEWS:  # computed once here, not once per query that reads them
        con.execute(f"DROP VIEW {name}")
        con.execute(f"CREATE TEMP TABLE {name} AS {load_query(name)}")
    # `rfm` is read back from its table rather than computed a second time.
    return {
        name: (con.table(name) if name in VIEWS else query(con, name)).pl() for name in ANALYSES
    }


@dataclass(frozen=True)
class DuckDBEngine(LocalEngine):
    """The DuckDB engine behind the engines' protocol: `queries/*.sql` over the lake's files."""

    name: str = "duckdb"
    title: str = "DuckDB"

    def tables(self, version: Version, options: Options, span: Span) -> dict[str, pl.DataFrame]:
        snap = self.local(version)
        return tables(connect(snap=snap, options=options, start=span.start, end=span.end))

    def clv_summary(self, version: Version, options: Options, span: Span) -> pl.DataFrame:
        snap = self.local(version)
        con = connect(snap=snap, options=options, start=span.start, end=span.end)
        return query(con, "clv_summary").pl()

    def tables_of(self, lines: pl.LazyFrame, options: Options) -> dict[str, pl.DataFrame]:
        return tables(connect(options=options, lines=lines))


def open_engine(settings: EngineSettings) -> DuckDBEngine:
    return DuckDBEngine()
