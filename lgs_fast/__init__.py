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
    "Options": "lgs_fast.definitions",
    "load_segment_rules": "lgs_fast.definitions",
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
    "export": "lgs_fast.postgres",
    "load_pg": "lgs_fast.postgres",
    "import_files": "lgs_fast.sources",
    "read_source": "lgs_fast.sources",
    "overview": "lgs_fast.metrics",
    "invoice_totals": "lgs_fast.metrics",
    "invoice_amounts": "lgs_fast.metrics",
    "invoice_histogram": "lgs_fast.metrics",
    "monthly": "lgs_fast.metrics",
    "rfm": "lgs_fast.metrics",
    "segments": "lgs_fast.metrics",
    "top_countries": "lgs_fast.metrics",
    "top_products": "lgs_fast.metrics",
    "reversed_invoices": "lgs_fast.metrics",
    "cohorts": "lgs_fast.metrics",
    "data_quality": "lgs_fast.metrics",
    "clv_summary": "lgs_fast.metrics",
    "segment_movement": "lgs_fast.movement",
    "segment_transitions": "lgs_fast.movement",
    "weekly_sales": "lgs_fast.metrics",
    "sales_forecast": "lgs_fast.forecast",
    "customer_products": "lgs_fast.metrics",
    "product_names": "lgs_fast.metrics",
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
