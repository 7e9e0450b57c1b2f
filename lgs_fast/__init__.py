"""lgs_fast: London Gift Shop's customer analytics: lake, Polars and DuckDB engines, charts.

    import lgs_fast as lgs
    lines = lgs.scan("data/lake")          # polars.LazyFrame, canonical schema
    lgs.rfm(lines).collect()               # nothing is read before collect()
    layers = lgs.scan_layers("data/lake")  # lines + derived layers: what the analyses read
    lgs.rfm(layers).collect()              # the same table, from one row per invoice
    lgs.scan_invoices("data/lake")         # the invoice layer alone

Importing the package loads nothing heavy: each name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "LgsError": "lgs_fast.errors",
    "InputError": "lgs_fast.errors",
    "LakeError": "lgs_fast.errors",
    "SourceError": "lgs_fast.errors",
    "BusyError": "lgs_fast.errors",
    "DamagedError": "lgs_fast.errors",
    "Options": "lgs_fast.config",
    "load_segment_rules": "lgs_fast.config",
    "scan": "lgs_fast.lake",
    "scan_invoices": "lgs_fast.lake",
    "scan_layers": "lgs_fast.lake",
    "upgrade_lake": "lgs_fast.lake",
    "find_lake": "lgs_fast.lake",
    "snapshot": "lgs_fast.lake",
    "verify_lake": "lgs_fast.lake",
    "Manifest": "lgs_fast.lake",
    "compute_tables": "lgs_fast.analyze",
    "campaign_results": "lgs_fast.analyze",
    "export": "lgs_fast.ingest.postgres",
    "load_pg": "lgs_fast.ingest.postgres",
    "import_files": "lgs_fast.ingest.sources",
    "read_source": "lgs_fast.ingest.sources",
    "overview": "lgs_fast.engines.polars",
    "invoice_totals": "lgs_fast.engines.polars",
    "invoice_amounts": "lgs_fast.engines.polars",
    "invoice_histogram": "lgs_fast.engines.polars",
    "monthly": "lgs_fast.engines.polars",
    "rfm": "lgs_fast.engines.polars",
    "segments": "lgs_fast.engines.polars",
    "top_countries": "lgs_fast.engines.polars",
    "top_products": "lgs_fast.engines.polars",
    "reversed_invoices": "lgs_fast.engines.polars",
    "cohorts": "lgs_fast.engines.polars",
    "data_quality": "lgs_fast.engines.polars",
    "clv_summary": "lgs_fast.engines.polars",
    "segment_movement": "lgs_fast.engines.polars.movement",
    "segment_transitions": "lgs_fast.engines.polars.movement",
    "weekly_sales": "lgs_fast.engines.polars",
    "sales_forecast": "lgs_fast.models.forecast",
    "customer_products": "lgs_fast.engines.polars",
    "product_names": "lgs_fast.engines.polars",
    "recommendations": "lgs_fast.models.recommend",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lgs_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
