"""One benchmark contender, run in its own process so its time and peak memory are its own.

    python -m benchmarks.contender NAME LAKE

Prints two numbers: the wall time of the work in seconds (imports excluded: each contender
imports its libraries before the clock starts) and the process's peak RSS in bytes (VmHWM,
which, unlike rusage, does not inherit the parent's size across fork and exec).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

Work = Callable[[], object]


def pandas(lake: Path) -> Work:
    from benchmarks import pandas_reference
    from lgs_fast.definitions import Options

    options = Options()
    return lambda: pandas_reference.run_all(pandas_reference.load_lines(lake), options)


def polars(lake: Path) -> Work:
    from lgs_fast.analyze import compute_tables

    return lambda: compute_tables(lake, engine="polars")


def duckdb(lake: Path) -> Work:
    from lgs_fast.analyze import compute_tables

    return lambda: compute_tables(lake, engine="duckdb")


def floor(lake: Path) -> Work:
    """The floor: one DuckDB scan of the same lake summing quantity * unit_price."""
    import duckdb as db

    from lgs_fast.lake import snapshot

    files = [str(p) for p in snapshot(lake).files.values()]
    query = "SELECT sum(quantity * unit_price) FROM read_parquet($files)"
    return lambda: db.sql(query, params={"files": files}).fetchall()


def _clv(engine: str) -> Callable[[Path], Work]:
    """CLV from the lake: summary by `engine`, every model fitted, per-customer predictions (with
    BG/NBD named, so the predictions are computed even where no model fits)."""

    def prepare(lake: Path) -> Work:
        from lgs_fast.analyze import clv
        from lgs_fast.clv import ClvSettings

        return lambda: clv(lake, engine=engine, settings=ClvSettings(model="bgnbd"))  # type: ignore[arg-type]

    return prepare


def _feature(engine: str, tables: tuple[str, ...]) -> Callable[[Path], Work]:
    """`tables` alone (and what they are built on), from the lake, by `engine`: the cost of one
    feature measured apart from the rest of the analysis."""

    def prepare(lake: Path) -> Work:
        import polars as pl

        from lgs_fast import metrics, sql
        from lgs_fast.definitions import Options
        from lgs_fast.lake import scan

        options = Options()
        if engine == "duckdb":

            def run() -> object:
                con = sql.connect(lake, options)
                return [sql.query(con, name).pl() for name in tables]

            return run
        return lambda: pl.collect_all([metrics.tables(scan(lake), options)[n] for n in tables])

    return prepare


def forecast(lake: Path) -> Work:
    """Weekly sales by Polars, then the model: fits, intervals and the rolling-origin backtest."""
    from lgs_fast import metrics
    from lgs_fast.definitions import Options
    from lgs_fast.forecast import sales_forecast
    from lgs_fast.lake import scan

    return lambda: sales_forecast(metrics.weekly_sales(scan(lake), Options()).collect())


MOVEMENT = ("segment_movement", "segment_transitions")

CONTENDERS: dict[str, Callable[[Path], Work]] = {
    "pandas": pandas,
    "polars": polars,
    "duckdb": duckdb,
    "floor": floor,
    "clv-polars": _clv("polars"),
    "clv-duckdb": _clv("duckdb"),
    "movement-polars": _feature("polars", MOVEMENT),
    "movement-duckdb": _feature("duckdb", MOVEMENT),
    "recommend-polars": _feature("polars", ("recommendations",)),
    "recommend-duckdb": _feature("duckdb", ("recommendations",)),
    "forecast": forecast,
}
# The analysis proper, compared with pandas and the floor; the CLV runs are measured apart.
ANALYSIS = ("pandas", "polars", "duckdb", "floor")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    name, lake = sys.argv[1], Path(sys.argv[2])
    work = CONTENDERS[name](lake)
    start = time.perf_counter()
    work()
    print(f"{time.perf_counter() - start:.6f} {peak_rss()}")
