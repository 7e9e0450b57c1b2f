"""One benchmark contender, run in its own process so its time and peak memory are its own.

    python -m benchmarks.contender NAME LAKE

Prints two numbers: the wall time of the work in seconds (imports excluded: each contender
imports its libraries before the clock starts) and the process's peak RSS in bytes (VmHWM,
which, unlike rusage, does not inherit the parent's size across fork and exec). The
whole-process contenders (`analyze-*`, `import`) run `lgs-fast` itself as a child: their time
is the child's from exec to exit, start-up included, and their memory the child's peak.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Work = Callable[[], object]
_CHILD_RSS: list[int] = []  # peak RSS of the whole-process contenders' children
_SCRATCH: list[Path] = []  # their output directories, removed after the clock stops

# Benchmarks time the work itself, never a model's tables kept from an earlier run.
os.environ["LGS_MODEL_CACHE"] = "0"


def _scratch() -> Path:
    _SCRATCH.append(Path(tempfile.mkdtemp(prefix="lgs_bench_")))
    return _SCRATCH[-1]


def _lgs_fast(*args: str) -> None:
    """`lgs-fast ARGS` as a child process, which must succeed; its peak RSS is recorded."""
    subprocess.run([sys.executable, "-m", "lgs_fast", *args], check=True, capture_output=True)
    _CHILD_RSS.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


def _pandas(core: bool) -> Callable[[Path], Work]:
    """The pandas reference reading the lake and computing every table, then its own
    recommendation model with scipy.sparse (`core`: no recommendations)."""

    def prepare(lake: Path) -> Work:
        from benchmarks import pandas_reference as reference
        from lgs_fast.config import Options

        options = Options(recommend_segments=()) if core else Options()

        def run() -> object:
            tables = reference.run_all(reference.load_lines(lake), options)
            inputs = (tables[t] for t in ("customer_products", "product_names", "rfm"))
            tables["recommendations"] = reference.recommendations(*inputs, options)
            return tables

        return run

    return prepare


def _engine(engine: str, core: bool) -> Callable[[Path], Work]:
    """Every table by `engine` from the lake, then the recommendation model and its holdout
    (`core`: no recommendations)."""

    def prepare(lake: Path) -> Work:
        from lgs_fast.analyze import compute_tables, recommendation_outputs
        from lgs_fast.config import Options

        options = Options(recommend_segments=()) if core else Options()

        def run() -> object:
            tables = compute_tables(lake, options, engine=engine)  # type: ignore[arg-type]
            return tables | recommendation_outputs(tables, options)

        return run

    return prepare


def _spark(core: bool) -> Callable[[Path], Work]:
    """Every table by Spark on local[*] (`core`: all but the recommendations). The session (a
    JVM) starts before the clock, as the other contenders' imports do."""

    def prepare(lake: Path) -> Work:
        from lgs_fast.analyze import compute_tables
        from lgs_fast.config import Options
        from lgs_fast.engines.spark import session

        session()
        options = Options(recommend_segments=()) if core else Options()
        return lambda: compute_tables(lake, options, engine="spark")

    return prepare


def _analyze(engine: str) -> Callable[[Path], Work]:
    """`lgs-fast analyze --no-report` as a user runs it: start-up, every table, the CLV models,
    the forecast and the written tables, in a fresh process."""

    def prepare(lake: Path) -> Work:
        out = _scratch() / "out"
        args = ["analyze", "--no-report", "--engine", engine, "--lake", str(lake)]
        return lambda: _lgs_fast(*args, "--out", str(out))

    return prepare


def import_lake(lake: Path) -> Work:
    """`lgs-fast import` of the lake's own line files into a new lake, derived layers included,
    in a fresh process (the new lake is removed afterwards, outside the clock)."""
    from lgs_fast.lake import snapshot

    files = [str(p) for p in snapshot(lake).files.values()]
    target = _scratch() / "lake"

    def run() -> None:
        _lgs_fast("import", *files, "--lake", str(target))

    return run


def floor(lake: Path) -> Work:
    """The floor: one DuckDB scan of the same lake summing quantity * unit_price."""
    import duckdb as db

    from lgs_fast.lake import snapshot

    files = [str(p) for p in snapshot(lake).files.values()]
    query = "SELECT sum(quantity * unit_price) FROM read_parquet($files)"
    return lambda: db.sql(query, params={"files": files}).fetchall()


def read_checks(lake: Path) -> Work:
    """What every read checks before it reads: the manifest and its checksum, and each file's
    size, footer and SHA-256 (a part of every `analyze-*` run, measured alone)."""
    from lgs_fast.lake import snapshot

    return lambda: snapshot(lake)


def _clv(engine: str) -> Callable[[Path], Work]:
    """CLV from the lake: summary by `engine`, every model fitted (BG/NBD, modified BG/NBD,
    Pareto/NBD, NBD, Gamma-Gamma), the per-customer predictions of the model `auto` picks."""

    def prepare(lake: Path) -> Work:
        from lgs_fast.analyze import clv

        return lambda: clv(lake, engine=engine)  # type: ignore[arg-type]

    return prepare


def _feature(engine: str, tables: tuple[str, ...]) -> Callable[[Path], Work]:
    """`tables` alone (and what they are built on), from the lake, by `engine`: the cost of one
    feature measured apart from the rest of the analysis."""

    def prepare(lake: Path) -> Work:
        import polars as pl

        from lgs_fast.config import Options
        from lgs_fast.engines import duckdb as sql
        from lgs_fast.engines import polars as metrics
        from lgs_fast.lake import scan_layers

        options = Options()
        if engine == "duckdb":

            def run() -> object:
                con = sql.connect(lake, options)
                return [sql.query(con, name).pl() for name in tables]

            return run
        return lambda: pl.collect_all(
            [metrics.tables(scan_layers(lake), options)[n] for n in tables]
        )

    return prepare


def _recommend(engine: str) -> Callable[[Path], Work]:
    """The recommendations alone: customer_products, product_names and rfm by `engine`, then the
    model and its holdout, as `analyze` runs them."""

    def prepare(lake: Path) -> Work:
        import polars as pl

        from lgs_fast.analyze import recommendation_outputs
        from lgs_fast.config import Options
        from lgs_fast.engines import duckdb as sql
        from lgs_fast.engines import polars as metrics
        from lgs_fast.lake import scan_layers

        options = Options()
        names = ("customer_products", "product_names", "rfm")

        def run() -> object:
            if engine == "duckdb":
                con = sql.connect(lake, options)
                tables = {name: sql.query(con, name).pl() for name in names}
            else:
                lazy = metrics.tables(scan_layers(lake), options)
                tables = dict(zip(names, pl.collect_all([lazy[n] for n in names]), strict=True))
            return recommendation_outputs(tables, options)

        return run

    return prepare


def forecast(lake: Path) -> Work:
    """Weekly sales by Polars, then the model: fits, intervals and the rolling-origin backtest."""
    from lgs_fast.config import Options
    from lgs_fast.engines import polars as metrics
    from lgs_fast.lake import scan_layers
    from lgs_fast.models.forecast import sales_forecast

    return lambda: sales_forecast(metrics.weekly_sales(scan_layers(lake), Options()).collect())


MOVEMENT = ("segment_movement", "segment_transitions")

CONTENDERS: dict[str, Callable[[Path], Work]] = {
    "pandas": _pandas(core=False),
    "polars": _engine("polars", core=False),
    "duckdb": _engine("duckdb", core=False),
    "pandas-core": _pandas(core=True),
    "polars-core": _engine("polars", core=True),
    "duckdb-core": _engine("duckdb", core=True),
    "spark": _spark(core=False),
    "spark-core": _spark(core=True),
    "floor": floor,
    "read-checks": read_checks,
    "analyze-polars": _analyze("polars"),
    "analyze-duckdb": _analyze("duckdb"),
    "analyze-spark": _analyze("spark"),
    "import": import_lake,
    "clv-polars": _clv("polars"),
    "clv-duckdb": _clv("duckdb"),
    "movement-polars": _feature("polars", MOVEMENT),
    "movement-duckdb": _feature("duckdb", MOVEMENT),
    "recommend-polars": _recommend("polars"),
    "recommend-duckdb": _recommend("duckdb"),
    "forecast": forecast,
}
# The analysis proper, compared with pandas and the floor; the CLV runs are measured apart.
ANALYSIS = (
    "pandas", "polars", "duckdb", "spark", "pandas-core", "polars-core", "duckdb-core",
    "spark-core", "analyze-polars", "analyze-duckdb", "analyze-spark", "import", "floor",
)  # fmt: skip
# Spark on one machine is measured up to this size (1M and 10M lines, beside the others);
# beyond it, a cluster's figures would be the meaningful ones.
SPARK_MAX_ROWS = 10_000_000


def _hwm(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: str) -> list[str]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            children = task.read_text().split()
            found += children
            todo += children
    return found


def peak_rss() -> int:
    """This process's peak RSS, plus that of its live children (Spark's JVM does the work of
    the spark contenders)."""
    return _hwm("self") + sum(_hwm(child) for child in _descendants(str(os.getpid())))


if __name__ == "__main__":
    name, lake = sys.argv[1], Path(sys.argv[2])
    work = CONTENDERS[name](lake)
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    print(f"{seconds:.6f} {max(_CHILD_RSS) if _CHILD_RSS else peak_rss()}")
    for scratch in _SCRATCH:
        shutil.rmtree(scratch, ignore_errors=True)
