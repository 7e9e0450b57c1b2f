"""The one list of output tables that the engines compute.

Each entry names a table, its family (how the report and the docs group it), the layers of the
lake it reads, its declared schema (column → Polars type name, the shape every engine returns),
its money columns, and, for a table in no set order, the key of a row. The Polars and DuckDB
engines, Spark, the pandas reference and the tests iterate `TABLES`; adding a table means its
query in `queries/`, an entry here, its Polars function (`lgs_fast.engines.polars`), its pandas
reference (`benchmarks/pandas_reference.py`) and a test over the engines (`tests/test_catalog.py`
checks that none is missing).

Loads nothing heavy: the command line reads it before any engine is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lgs_fast.config import MONEY_COLUMNS

# A timestamp of the canonical schema: microseconds, no zone (UK local time, as in the source).
DATETIME: Final = "Datetime"


@dataclass(frozen=True)
class Table:
    name: str
    family: str  # sales, customers, products, quality, or "model input"
    reads: tuple[str, ...]  # layers of the lake: lines, invoices, products, quality
    schema: dict[str, str]  # column → Polars type name (Int64, Float64, String, Date, …)
    # A table in no set order, with the key that identifies a row: sorting millions of
    # (customer, product) rows would cost more than computing them (0.9 s of 2.5 at 10M lines),
    # and the model builds its matrix the same from any order. Compared sorted by the key.
    key: tuple[str, ...] | None = None
    # Read by a model only: `analyze` does not write it (customer_products has a row per
    # customer and product, millions on a large lake); `compute_tables` returns it.
    model_input: bool = False

    @property
    def money(self) -> tuple[str, ...]:
        return MONEY_COLUMNS.get(self.name, ())


_I, _F, _S, _D, _B, _I32 = "Int64", "Float64", "String", "Date", "Boolean", "Int32"
_DISTRIBUTION = ("min", "mean", "median", "mode", "max", "p25", "p75", "p85", "p95", "p99")

TABLES: Final[tuple[Table, ...]] = (
    Table("overview", "sales", ("invoices", "products"), {
        "lines": _I, "invoices": _I, "purchase_invoices": _I, "credit_notes": _I,
        "customers": _I, "customers_with_purchase": _I, "stock_codes": _I, "countries": _I,
        "first_invoice": DATETIME, "last_invoice": DATETIME, "placed_sales": _F,
        "cancelled_value": _F, "net_revenue": _F, "mean_invoice_total": _F,
    }),
    Table("invoice_amounts", "sales", ("invoices",), {
        "view": _S, "count": _I, **dict.fromkeys(_DISTRIBUTION, _F),
    }),
    Table("invoice_histogram", "sales", ("invoices",), {
        "view": _S, "bin": _I32, "bin_start": _F, "bin_end": _F, "count": _I,
    }),
    Table("monthly", "sales", ("invoices",), {
        "month": _D, "yyyymm": _I32, "placed_orders": _I, "cancelled_orders": _I,
        "placed_lines": _I, "cancelled_lines": _I, "sales": _F, "sales_growth_pct": _F,
        "active_customers": _I, "new_customers": _I, "existing_customers": _I, "complete": _B,
    }),
    Table("rfm", "customers", ("invoices",), {
        "customer_id": _I, "country": _S, "recency": _I, "frequency": _I, "monetary": _F,
        "r_score": _I32, "f_score": _I32, "m_score": _I32, "rfm_score": _S, "segment": _S,
    }),
    Table("segments", "customers", ("invoices",), {
        "segment": _S, "customers": _I, "share": _F, "mean_recency": _F,
        "mean_frequency": _F, "mean_monetary": _F, "total_monetary": _F, "action": _S,
    }),
    Table("segment_movement", "customers", ("invoices",), {
        "customer_id": _I, "segment_then": _S, "segment": _S, "movement": _S,
    }),
    Table("segment_transitions", "customers", ("invoices",), {
        "segment_then": _S, "segment": _S, "customers": _I, "net_revenue": _F,
    }),
    Table("top_countries", "sales", ("invoices",), {
        "rank": _I, "country": _S, "sales": _F, "share": _F, "orders": _I, "customers": _I,
    }),
    Table("top_products", "products", ("products", "lines"), {
        "rank": _I, "stock_code": _S, "description": _S, "net_revenue": _F,
        "placed_sales": _F, "cancelled_value": _F, "quantity": _I, "purchase_invoices": _I,
    }),
    Table("reversed_invoices", "quality", ("invoices", "lines"), {
        "invoice_no": _S, "credit_note": _S, "customer_id": _I, "invoice_date": DATETIME,
        "credit_date": DATETIME, "total": _F,
    }),
    Table("cohorts", "customers", ("invoices",), {
        "cohort": _D, "cohort_yyyymm": _I32, "months_since": _I32, "cohort_size": _I,
        "customers": _I, "retention": _F, "complete": _B,
    }),
    Table("data_quality", "quality", ("invoices", "quality"), {"check": _S, "count": _I}),
    Table("clv_summary", "customers", ("invoices",), {
        "customer_id": _I, "first_purchase": _D, "last_purchase": _D, "frequency": _I,
        "recency": _I, "T": _I, "monetary_value": _F,
    }),
    Table("weekly_sales", "sales", ("invoices",), {
        "week": _D, "net_revenue": _F, "placed_sales": _F, "invoices": _I, "complete": _B,
    }),
    Table("customer_products", "model input", ("invoices", "lines"), {
        "customer_id": _I, "stock_code": _S, "invoices": _I, "last_purchase": _D,
        "on_last_invoice": _B,
    }, key=("customer_id", "stock_code"), model_input=True),
    Table("product_names", "model input", ("lines",), {"stock_code": _S, "description": _S},
          model_input=True),
)  # fmt: skip

BY_NAME: Final[dict[str, Table]] = {table.name: table for table in TABLES}
# The names in the engines' order (the order `compute_tables` returns them in).
ANALYSES: Final[tuple[str, ...]] = tuple(table.name for table in TABLES)
MODEL_INPUTS: Final[tuple[str, ...]] = tuple(t.name for t in TABLES if t.model_input)
UNORDERED: Final[dict[str, tuple[str, ...]]] = {t.name: t.key for t in TABLES if t.key}
