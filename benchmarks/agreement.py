"""Both engines, every table, on a lake of any size: the agreement check at scale.

    python -m benchmarks.agreement [--rows 10000000] [--lake DIR]

Computes every table with DuckDB, Polars (in memory) and Polars' streaming path over the same
lake (generated with seed 0 when missing) and compares them to the bit, money included. Exit 0
when all agree, 1 otherwise. The tests run
the same comparison on 2M generated lines; this runs it where a test would take too long.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks.datasets import lake as benchmark_lake
from lgs_fast.analyze import compute_tables
from lgs_fast.catalog import ANALYSES
from lgs_fast.engines.polars import engine as polars_engine
from tests.utils import assert_engines_agree


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--lake", type=Path, help="an existing lake (default: the benchmark's)")
    args = parser.parse_args()
    lake = args.lake or benchmark_lake(args.rows)
    runs = {}
    for label, streaming_rows in (("duckdb", None), ("polars", None), ("polars-streaming", 0)):
        polars_engine.STREAMING_ROWS = 20_000_000 if streaming_rows is None else streaming_rows
        start = time.perf_counter()
        runs[label] = compute_tables(lake, engine="duckdb" if label == "duckdb" else "polars")
        print(f"{label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    reference = runs.pop("duckdb")
    differing = 0
    for label, tables in runs.items():
        for name in ANALYSES:
            try:
                assert_engines_agree(name, reference[name], tables[name], f"{label}/{name}")
            except AssertionError as err:
                differing += 1
                print(f"DIFFERS {label} {name}: {str(err).splitlines()[0]}")
    lines = reference["overview"]["lines"].item()
    customers = reference["rfm"].select(pl.len()).item()
    print(f"{lines:,} lines, {customers:,} customers, {len(ANALYSES)} tables: {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
