"""Benchmark lakes: the real 541,909 lines, and synthetic lakes of N lines from `lgs-fast generate`.

Built once under benchmarks/data/ (ignored by git) and reused while their manifest says N lines;
a lake built before the derived layers is upgraded (`lgs-fast upgrade`) before it is used.
"""

from __future__ import annotations

from pathlib import Path

from lgs_fast.errors import LakeError
from lgs_fast.ingest.generate import generate
from lgs_fast.ingest.sources import import_files
from lgs_fast.lake import Manifest, upgrade_lake

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
EMBEDDED = ROOT.parent / "lgs_fast" / "ingest" / "data" / "online_retail.parquet"
REAL_ROWS = 541_909
SEED = 0


def lake(rows: int, customers: int | None = None) -> Path:
    """The lake of `rows` lines: the real data for 541,909, else generated with seed 0 (with
    `customers`, by the wholesale preset: that many customers over two years)."""
    path = DATA / (f"lake_{rows}" if customers is None else f"lake_{rows}_customers_{customers}")
    try:
        manifest = Manifest.read(path)
        if manifest.rows == rows:
            if len(manifest.layered()) < len(manifest.partitions):
                upgrade_lake(path)
            return path
    except LakeError:
        pass
    if rows == REAL_ROWS and customers is None:
        import_files([EMBEDDED], path)
    else:
        generate(rows, path, seed=SEED, customers=customers)
    return path
