"""Benchmark lakes: the real 541,909 lines, and the real lines replicated to N lines.

Replica k of the real data shifts invoice numbers and customer ids by k so that invoices and
customers stay distinct; dates, products, prices and countries are the real ones. Lakes are
written through lgs_fast's own lake writer, in chunks, so building 10M lines stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lgs_fast.lake import Manifest, write_lake
from lgs_fast.sources import import_files

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
EMBEDDED = ROOT.parent / "lgs_fast" / "data" / "online_retail.parquet"
REAL_ROWS = 541_909


def _replicas(rows: int) -> Iterator[pl.DataFrame]:
    real = pl.read_parquet(EMBEDDED)
    k = 0
    while rows > 0:
        part = real.head(rows).with_columns(
            invoice_no=pl.when(pl.col("invoice_no").str.starts_with("C"))
            .then(pl.lit("C") + (pl.col("invoice_no").str.slice(1) + f"-{k}"))
            .otherwise(pl.col("invoice_no") + f"-{k}")
            if k
            else pl.col("invoice_no"),
            customer_id=pl.col("customer_id") + 100_000 * k,
        )
        yield part
        rows -= part.height
        k += 1


def lake(rows: int) -> Path:
    """The lake of `rows` lines (built once, then reused)."""
    path = DATA / f"lake_{rows}"
    try:
        if Manifest.read(path).rows == rows:
            return path
    except Exception:
        pass
    if rows == REAL_ROWS:
        import_files([EMBEDDED], path)
    else:
        write_lake(_replicas(rows), path, source=[f"replicated real data, {rows} lines"])
    return path
