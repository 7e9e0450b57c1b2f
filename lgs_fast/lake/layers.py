"""Derived layers: what the analyses read instead of re-grouping every line (DESIGN.md "Lake").

- **invoices**: one row per (invoice_no, customer_id, country, invoice_date): lines, micro (the
  exact sum of quantity × unit_price in millionths of a pound, see "Money" below) and the
  cancellation flag. Keyed by every value the invoice-level tables look at, so an invoice that
  spans customers, countries or timestamps stays exact, and a cut at any time (`--from`,
  `--to`, `--as-of`) keeps or drops whole rows, exactly as it would keep or drop their lines.
- **products**: one row per stock_code: lines, net revenue (`net_micro`), placed sales
  (`placed_micro`), cancelled value (`cancelled_micro`), all in millionths of a pound, and units
  (quantity over non-cancellation lines).
- **quality**: one row of the data-quality counts that add up line by line (exact duplicates
  included: equal lines share their date, so they are counted within one month).

The lake writer builds them month by month from each month's lines (`lgs_fast.lake`); rows of
several months are added up by the analyses, which is exact for every column above. Products
and quality rows cover whole months: a date range that cuts through a month reads that month's
lines instead (`lgs_fast.lake.scan_layers`). Both engines read the same layers; `of_lines`
builds them from any lines (notebooks, tests, a lake written before the layers existed).

Money (docs/analysis.md, "Money"): each line's amount, quantity × unit_price, is rounded once to
whole millionths of a pound (`LINE_MICRO`, half away from zero; exact for prices of up to six
decimals, the real data has at most three), and every money total is a sum of these integers,
taken in 128 bits. An integer sum is the same in any order, so every engine gives every total
to the bit; a float sum depends on the order of addition, which differs between engines and
between runs (a spend that is mathematically zero came out as 3.3e-13). Totals become pounds
once, at the edge, as the nearest float to micro / 10^6.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from lgs_fast.config import NON_PRODUCT_PATTERN

# Raised whenever a layer's definition or columns change: a lake whose layers carry another
# version is read as if it had none (built again from its lines), never trusted.
LAYERS_VERSION = 2  # 2: money as exact micro columns only
LAYERS = ("invoices", "products")

MICRO = 1_000_000  # millionths of a pound in a pound
_AMOUNT = pl.col("quantity").cast(pl.Float64) * pl.col("unit_price")
_CANCELLATION = pl.col("invoice_no").str.starts_with("C")
# A line's amount in whole millionths of a pound: the one rounding of money (see above).
LINE_MICRO = (_AMOUNT * MICRO).round(0, mode="half_away_from_zero").cast(pl.Int64)
_INT64_MAX = 2**63 - 1
_ROWS_THAT_FIT = 9_000  # lines of at most 10^15 millionths each whose sum fits 2^63 - 1
INVOICE_KEY = ("invoice_no", "customer_id", "country", "invoice_date")
MICRO_COLUMNS = {
    "invoices": ("micro",),
    "products": ("net_micro", "placed_micro", "cancelled_micro"),
}

INVOICES_SCHEMA = pl.Schema(
    {
        "invoice_no": pl.String,
        "customer_id": pl.Int64,
        "country": pl.String,
        "invoice_date": pl.Datetime("us"),
        "cancellation": pl.Boolean,
        "lines": pl.Int64,
        "micro": pl.Int128,  # stored as Int64 (`stored`), read back as Int128
    }
)
PRODUCTS_SCHEMA = pl.Schema(
    {
        "stock_code": pl.String,
        "lines": pl.Int64,
        "net_micro": pl.Int128,  # the three stored as Int64, as the invoices' micro
        "placed_micro": pl.Int128,
        "cancelled_micro": pl.Int128,
        "quantity": pl.Int64,
    }
)
SCHEMAS = {"invoices": INVOICES_SCHEMA, "products": PRODUCTS_SCHEMA}
# The layers as Parquet stores them: money in 64 bits (`stored`), read back in 128.
STORED_SCHEMAS = {
    layer: pl.Schema(
        {
            name: pl.Int64 if name in MICRO_COLUMNS[layer] else dtype
            for name, dtype in schema.items()
        }
    )
    for layer, schema in SCHEMAS.items()
}
QUALITY_COUNTS = (
    "lines",
    "no_customer_id",
    "no_description",
    "cancellation_lines",
    "stock_adjustment_lines",
    "zero_price_lines",
    "negative_price_lines",
    "non_product_lines",
    "exact_duplicate_lines",
)
QUALITY_SCHEMA = pl.Schema({name: pl.Int64 for name in QUALITY_COUNTS})


def pounds(micro: pl.Expr, places: int = 6) -> pl.Expr:
    """micro / 10^places as the nearest float (places=6: millionths of a pound to pounds).

    SQL divides as doubles; Polars divides by a constant through its reciprocal, which can
    differ in the last bit, so this goes through a decimal, whose conversion to a float rounds
    as the division does."""
    return (micro.cast(pl.Decimal(38, 0)) * pl.lit(Decimal(1).scaleb(-places))).cast(pl.Float64)


@dataclass(frozen=True)
class Layers:
    """The lines and the layers derived from them, all lazy: what every analysis reads."""

    lines: pl.LazyFrame
    invoices: pl.LazyFrame
    products: pl.LazyFrame
    quality: pl.LazyFrame


def invoices(lines: pl.LazyFrame) -> pl.LazyFrame:
    """The invoice layer of `lines` (see the module's docstring), micro in 128 bits."""
    return _invoice_rows(lines.group_by(*INVOICE_KEY))


def _invoice_rows(groups: pl.lazyframe.group_by.LazyGroupBy) -> pl.LazyFrame:
    return groups.agg(
        cancellation=_CANCELLATION.first(),
        lines=pl.len().cast(pl.Int64),
        micro=LINE_MICRO.cast(pl.Int128).sum(),
    )


def products(lines: pl.LazyFrame) -> pl.LazyFrame:
    """The products layer of `lines`: per stock_code, lines, net revenue (all lines), placed
    sales and units (non-cancellation lines) and cancelled value (cancellation lines)."""
    return _product_rows(lines.group_by("stock_code"))


def _product_rows(groups: pl.lazyframe.group_by.LazyGroupBy) -> pl.LazyFrame:
    micro, placed = LINE_MICRO.cast(pl.Int128), ~_CANCELLATION
    return groups.agg(
        lines=pl.len().cast(pl.Int64),
        net_micro=micro.sum(),
        placed_micro=micro.filter(placed).sum(),
        cancelled_micro=micro.filter(~placed).sum(),
        quantity=pl.col("quantity").filter(placed).cast(pl.Int64).sum(),
    )


def stored(layer: str, lines: pl.LazyFrame) -> pl.DataFrame:
    """Layer `layer` ("invoices" or "products") of one month's lines as the lake stores it:
    money in 64 bits (Parquet has no wider integer), invoices sorted by date so that row groups
    prune on a date range, products by stock_code.

    A line is at most a billion pounds (`schema.MAX_LINE_AMOUNT`, 10^15 millionths), so only a
    key with thousands of such lines can pass 2^63; such a key is stored as several rows of at
    most `_ROWS_THAT_FIT` lines each. Rows add up, so every analysis stays exact.
    """
    key, rows_of = (
        (list(INVOICE_KEY), _invoice_rows)
        if layer == "invoices"
        else (["stock_code"], _product_rows)
    )
    money = list(MICRO_COLUMNS[layer])
    rows = rows_of(lines.group_by(*key)).collect(engine="streaming")
    if rows.select(pl.any_horizontal(pl.col(money).abs() > _INT64_MAX).any()).item():
        block = pl.int_range(pl.len()).over(key) // _ROWS_THAT_FIT
        rows = (
            rows_of(lines.with_columns(_block=block).group_by(*key, "_block"))
            .drop("_block")
            .collect()
        )
    order = ["invoice_date", "invoice_no", "customer_id", "country"] if layer == "invoices" else key
    return rows.with_columns(pl.col(money).cast(pl.Int64)).sort(order)


def exact_duplicates(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row: lines that repeat an earlier line in every column.

    Equal lines have equal hashes: only lines whose hash repeats can be duplicates, and those
    few are then compared in full, so the count is exact at a fraction of a full-row distinct.
    Repeated hashes are found by sorting them (measured: 0.45 s against 1.1 s for
    `is_duplicated` at 10M lines). Equal lines share invoice_date, so counting month by month
    and adding up is also exact.
    """
    line = pl.struct(pl.all())
    hashed = lines.with_columns(_hash=line.hash())
    h = pl.col("_hash")
    repeated = hashed.select(h.sort()).filter((h == h.shift(1)) | (h == h.shift(-1))).unique()
    return (
        hashed.join(repeated, on="_hash", how="semi")
        .drop("_hash")
        .select(exact_duplicate_lines=pl.len() - line.n_unique())
    )


def quality(lines: pl.LazyFrame, duplicates: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """One row of the data-quality counts of `lines` that add up (`QUALITY_COUNTS`).

    `duplicates`, if given, is the `exact_duplicates` row computed some other way (per month).
    """
    counts = lines.select(
        lines=pl.len(),
        no_customer_id=pl.col("customer_id").is_null().sum(),
        no_description=pl.col("description").is_null().sum(),
        cancellation_lines=_CANCELLATION.sum(),
        stock_adjustment_lines=((pl.col("quantity") < 0) & ~_CANCELLATION).sum(),
        zero_price_lines=(pl.col("unit_price") == 0).sum(),
        negative_price_lines=(pl.col("unit_price") < 0).sum(),
        non_product_lines=pl.col("stock_code").str.contains(NON_PRODUCT_PATTERN).sum(),
    )
    dupes = exact_duplicates(lines) if duplicates is None else duplicates
    return pl.concat([counts, dupes], how="horizontal").select(
        pl.col(name).cast(pl.Int64) for name in QUALITY_COUNTS
    )


def of_lines(lines: pl.LazyFrame) -> Layers:
    """The layers of any LazyFrame of canonical lines, computed from them (lazily)."""
    return Layers(lines, invoices(lines), products(lines), quality(lines))


def month_layers(lines: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """The invoice and product layers and the quality counts of one month's lines, collected:
    what the lake writer stores beside that month's file. Each is computed by Polars'
    streaming engine, in memory of the order of its result rather than of the month's lines."""
    counts = quality(lines).collect(engine="streaming")
    return stored("invoices", lines), stored("products", lines), counts.row(0, named=True)


def as_layers(data: pl.LazyFrame | Layers) -> Layers:
    """`data` if it is already `Layers`, else the layers of those lines."""
    return data if isinstance(data, Layers) else of_lines(data)
