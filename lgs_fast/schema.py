"""The canonical schema of an invoice line, the header forms it is read from, and validation.

Every source (CSV, xlsx, pg_dump, Parquet, PostgreSQL, the generator) ends in `conform`, so
there is exactly one place that decides what a valid line is.
"""

from __future__ import annotations

from typing import Final

import polars as pl
import pyarrow as pa

from lgs_fast.errors import InputError

SCHEMA_VERSION: Final = 1

COLUMNS: Final = (
    "invoice_no",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
)

POLARS_SCHEMA: Final = pl.Schema(
    {
        "invoice_no": pl.String,
        "stock_code": pl.String,
        "description": pl.String,
        "quantity": pl.Int32,
        "invoice_date": pl.Datetime("us"),
        "unit_price": pl.Float64,
        "customer_id": pl.Int64,
        "country": pl.String,
    }
)

ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field("invoice_no", pa.string(), nullable=False),
        pa.field("stock_code", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("invoice_date", pa.timestamp("us"), nullable=False),
        pa.field("unit_price", pa.float64(), nullable=False),
        pa.field("customer_id", pa.int64()),
        pa.field("country", pa.string()),
    ]
)

REQUIRED: Final = frozenset(f.name for f in ARROW_SCHEMA if not f.nullable)

# The three header spellings met in the wild, each mapped onto the canonical names in order.
HEADER_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "uci": (
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ),
    "uci_ii": (
        "Invoice",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "Price",
        "Customer ID",
        "Country",
    ),
    "snake": COLUMNS,
}

# Date spellings: ISO as UCI publishes it and PostgreSQL prints it, and the US form of the
# original UCI spreadsheet export.
DATE_FORMATS: Final = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
)


def header_mapping(header: list[str], origin: str) -> dict[str, str]:
    """Map a file's header onto canonical names, or raise naming what is missing or unknown."""
    stripped = [h.strip().lstrip("\ufeff") for h in header]
    best_form, best_hits = "", -1
    for form, names in HEADER_FORMS.items():
        hits = len(set(names) & set(stripped))
        if hits > best_hits:
            best_form, best_hits = form, hits
    names = HEADER_FORMS[best_form]
    if best_hits < 3:
        shown = ",".join(stripped[:8]) or "(empty)"
        raise InputError(
            f"{origin}: unknown header {shown!r}; expected the UCI, UCI II or snake_case "
            f"columns ({','.join(COLUMNS)})"
        )
    missing = [n for n in names if n not in stripped]
    if missing:
        raise InputError(f"{origin}: missing column {missing[0]!r} (header form {best_form})")
    return {
        original: canonical
        for original, canonical in zip(
            header, (_canonical(h, names) for h in stripped), strict=True
        )
        if canonical
    }


def _canonical(name: str, form: tuple[str, ...]) -> str:
    return COLUMNS[form.index(name)] if name in form else ""


def _fast(name: str, dtype: pl.DataType) -> pl.Expr:
    """The one-step parse that fits nearly every value (ISO dates, plain integers)."""
    col = pl.col(name)
    target = POLARS_SCHEMA[name]
    if dtype == pl.String and isinstance(target, pl.Datetime):
        return col.str.to_datetime(DATE_FORMATS[0], time_unit="us", strict=False)
    if dtype == pl.String and target != pl.String:
        return col.str.strip_chars().cast(target, strict=False)
    if isinstance(target, pl.Datetime) and isinstance(dtype, pl.Datetime) and dtype.time_zone:
        # Zoned timestamps are shown in UK local time, as the shop's own data is.
        return (
            col.dt.convert_time_zone("Europe/London")
            .dt.replace_time_zone(None)
            .dt.cast_time_unit("us")
        )
    return col.cast(target, strict=False)


def _lenient(name: str, dtype: pl.DataType) -> pl.Expr:
    """The slower parse for what the fast one missed: other date forms, whole floats as ids."""
    col = pl.col(name)
    target = POLARS_SCHEMA[name]
    text = col.str.strip_chars() if dtype == pl.String else col
    if isinstance(target, pl.Datetime) and dtype == pl.String:
        return pl.coalesce(
            *(text.str.to_datetime(f, time_unit="us", strict=False) for f in DATE_FORMATS)
        )
    if target.is_integer():
        # Customer ids arrive as 17850.0 from spreadsheets; accept whole numbers only.
        as_float = text.cast(pl.Float64, strict=False)
        return pl.when(as_float == as_float.floor()).then(as_float).cast(target, strict=False)
    return _fast(name, dtype)


def conform(df: pl.DataFrame, *, origin: str, first_row: int, unit: str = "row") -> pl.DataFrame:
    """Cast a frame with canonical column names to the canonical schema, strictly.

    `first_row` is the number, in `unit`s of the source, of the frame's first row, so the error
    can point at the exact place (e.g. ``online_retail.csv: row 17: column quantity: 'x'``).
    """
    typed = df.select(_fast(name, df.schema[name]).alias(name) for name in COLUMNS)
    for name in COLUMNS:
        missed = typed[name].is_null() & df[name].is_not_null()
        if missed.any():
            retry = df.select(_lenient(name, df.schema[name]).alias(name)).to_series()
            typed = typed.with_columns(typed[name].fill_null(retry))
        # A required value must be there; an optional one, if given, must parse.
        bad = typed[name].is_null()
        if name not in REQUIRED:
            bad = bad & df[name].is_not_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            value = df[name][i]
            what = (
                "is empty" if value is None else f"cannot be read as {_type_name(name)}: {value!r}"
            )
            raise InputError(f"{origin}: {unit} {first_row + i}: column {name} {what}")
    return typed


def _type_name(name: str) -> str:
    return {
        "quantity": "an integer",
        "customer_id": "a whole number",
        "unit_price": "a number",
        "invoice_date": "a date (YYYY-MM-DD HH:MM:SS)",
    }.get(name, "text")


def to_arrow(df: pl.DataFrame) -> pa.Table:
    """The canonical Arrow table of a conformed frame (plain `string`, not Polars' views)."""
    return df.to_arrow().cast(ARROW_SCHEMA)
