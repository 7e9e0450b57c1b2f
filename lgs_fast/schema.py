"""The canonical schema of an invoice line, the header forms it is read from, and validation.

Every source (CSV, xlsx, pg_dump, Parquet, PostgreSQL, the generator) ends in `conform`, so
there is exactly one place that decides what a valid line is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import polars as pl
import pyarrow as pa

from lgs_fast.catalog import BY_NAME
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

# The columns every line must have; the others may be empty (null).
REQUIRED: Final = frozenset({"invoice_no", "stock_code", "quantity", "invoice_date", "unit_price"})


# Each Polars type the lake and the tables use, as every other system spells it: (Arrow,
# Spark SQL, PostgreSQL, pandas). Every schema outside Polars is derived from a Polars one
# through this table, never written again by hand. Int128 is the exact money sum (DuckDB's
# HUGEINT); Parquet stores no such type (`lgs_fast.lake.layers` stores it in 64 bits).
_TYPES: Final[dict[pl.DataType, tuple[pa.DataType | None, str, str, str]]] = {
    pl.String(): (pa.string(), "STRING", "text", "string"),
    pl.Boolean(): (pa.bool_(), "BOOLEAN", "boolean", "boolean"),
    pl.Int32(): (pa.int32(), "INT", "integer", "Int32"),
    pl.Int64(): (pa.int64(), "BIGINT", "bigint", "Int64"),
    pl.Int128(): (None, "DECIMAL(38,0)", "numeric(38,0)", "object"),
    pl.Float64(): (pa.float64(), "DOUBLE", "double precision", "Float64"),
    pl.Date(): (pa.date32(), "DATE", "date", "datetime64[s]"),
    pl.Datetime("us"): (pa.timestamp("us"), "TIMESTAMP_NTZ", "timestamp", "datetime64[us]"),
}


def _spelled(dtype: pl.DataType, system: int) -> object:
    if isinstance(dtype, pl.List) and system == 1:
        return f"ARRAY<{_spelled(dtype.inner, 1)}>"
    try:
        spelled = _TYPES[dtype][system]
    except KeyError:
        spelled = None
    if spelled is None:
        raise TypeError(
            f"{dtype} has no spelling in {('Arrow', 'Spark', 'PostgreSQL', 'pandas')[system]}"
        )
    return spelled


def spark_type(dtype: pl.DataType) -> str:
    """The Spark SQL type of a Polars type."""
    return str(_spelled(dtype, 1))


def spark_ddl(schema: pl.Schema) -> str:
    """A Spark DDL schema string ("a BIGINT, b STRING") of a Polars schema."""
    return ", ".join(f"{name} {spark_type(dtype)}" for name, dtype in schema.items())


def postgres_column(name: str) -> str:
    """Line column `name`'s PostgreSQL type, NOT NULL when every line must have it."""
    spelled = str(_spelled(POLARS_SCHEMA[name], 2))
    return f"{spelled} NOT NULL" if name in REQUIRED else spelled


def pandas_dtypes(schema: pl.Schema) -> dict[str, str]:
    """pandas' nullable dtypes of a Polars schema (what `read_parquet(dtype_backend=
    "numpy_nullable")` gives)."""
    return {name: str(_spelled(dtype, 3)) for name, dtype in schema.items()}


ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field(name, _spelled(dtype, 0), nullable=name not in REQUIRED)  # type: ignore[arg-type]
        for name, dtype in POLARS_SCHEMA.items()
    ]
)

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

# Date spellings always read: ISO as UCI publishes it, PostgreSQL prints it and Polars writes it
# (a `T`, fractional seconds). Slash dates are ambiguous (01/12/2010 is 1 December in the UK,
# 12 January in the US): `sources.py` decides per file which of `SLASH_FORMATS` applies, from
# all of the file's dates, or takes the `--date-format` given.
ISO_DATE_FORMATS: Final = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
)
SLASH_FORMATS: Final = {
    "day-first": ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S"),
    "month-first": ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S"),
}

# The largest unit price accepted, in GBP, either sign. The analyses turn amounts into whole
# pence, and sum them, as int64 (at most 9.2e18): at ten million pounds a unit, any int32
# quantity's amount fits in pence with room for sums, and one of up to 922,337 units still fits
# in the millionths of a pound that RFM adds up. NaN, infinities and prices like 1e300 are
# typing or export accidents, never prices; the real data's largest is 38,970.
MAX_UNIT_PRICE: Final = 10_000_000.0
# The largest line amount (quantity × unit_price), either sign: a billion pounds, against the
# real data's 168,469.60. Each line then fits RFM's millionths of a pound (1e15) many thousand
# times over in int64, and the sums are taken in 128 bits, so no accepted line can overflow.
MAX_LINE_AMOUNT: Final = 1_000_000_000.0

# The accepted range of dates, documented in docs/lake.md. Dates must fit Python's datetime
# (the manifest, the report and notebooks turn them into Python values; 9999-12-31 plus a day is
# year 10000), and a shop's invoices lie well inside these two centuries: a year 1 or 9999 is a
# placeholder or a typing accident, and the forecast would try to fill every month up to it.
FIRST_DATE: Final = datetime(1900, 1, 1)
LAST_DATE: Final = datetime(2099, 12, 31, 23, 59, 59, 999_999)
DATE_RANGE: Final = "from 1900-01-01 to 2099-12-31"

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

# Why a refused value is refused, by column; each names the whole rule, so one message fits a
# value that is not a number at all and one that is out of range.
_PROBLEM: Final = {
    "quantity": f"is not a whole number from {INT32_MIN:,} to {INT32_MAX:,}",
    "customer_id": "is not a whole number that fits in 64 bits",
    "unit_price": "cannot be read as a number",
    "invoice_date": "cannot be read as a date (YYYY-MM-DD HH:MM:SS, or the slash form the file "
    "uses or --date-format names)",
}
# Why a value that was read is still refused, for the columns with a range of their own.
_RANGE_PROBLEM: Final = {
    "unit_price": f"is not a finite price within ±{MAX_UNIT_PRICE:,.0f}",
    "invoice_date": f"is not a date {DATE_RANGE}",
}

# What a column's type must be, for the value types Parquet can carry. A value is accepted when
# its text form would be accepted from CSV, so no type may turn into something its text never
# would: booleans are not quantities, and an int64 is not a date (Polars would read it as
# microseconds after 1970). Text is accepted everywhere and parsed as CSV text is.
_EXPECTED: Final = {
    "invoice_date": "a timestamp, date or text",
    "quantity": "a number or text",
    "unit_price": "a number or text",
    "customer_id": "a number or text",
}
_EXPECTED_TEXT: Final = "text or an integer"


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
    # Two columns of one name leave no way to tell which holds the values.
    recognised = [h for h in stripped if h in names]
    for name in recognised:
        if recognised.count(name) > 1:
            raise InputError(f"{origin}: column {name!r} appears more than once in the header")
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


def is_uci_header(header: Sequence[str]) -> bool:
    """Whether `header` is one of UCI's own, whose exports write slash dates month-first."""
    stripped = {h.strip().lstrip("\ufeff") for h in header}
    return any(set(HEADER_FORMS[form]) <= stripped for form in ("uci", "uci_ii"))


def _canonical(name: str, form: tuple[str, ...]) -> str:
    return COLUMNS[form.index(name)] if name in form else ""


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum)


def _accepts(name: str, dtype: pl.DataType) -> bool:
    """Whether a column of `dtype` may hold column `name` (its values are checked later)."""
    target = POLARS_SCHEMA[name]
    if _is_text(dtype):
        return True
    if target == pl.String:
        return dtype.is_integer()
    if isinstance(target, pl.Datetime):
        return isinstance(dtype, (pl.Datetime, pl.Date))
    return dtype.is_integer() or dtype.is_float() or dtype.is_decimal()


def _whole(number: pl.Expr, target: pl.DataType) -> pl.Expr:
    """`number` as the integer type `target` when it is a whole number in range, else null.

    Spreadsheets store ids and quantities as 17850.0; 17850.5 is no id, and a plain cast would
    truncate it. NaN and infinities compare equal to their floor, and then fail the cast.
    """
    return pl.when(number == number.floor()).then(number).cast(target, strict=False)


def _fast(name: str, dtype: pl.DataType) -> pl.Expr:
    """The one-step parse that fits nearly every value (ISO dates, plain integers)."""
    col = pl.col(name)
    target = POLARS_SCHEMA[name]
    if dtype == pl.String and isinstance(target, pl.Datetime):
        return col.str.to_datetime(ISO_DATE_FORMATS[0], time_unit="us", strict=False)
    if dtype == pl.String and target != pl.String:
        return col.str.strip_chars().cast(target, strict=False)
    if target.is_integer() and (dtype.is_float() or dtype.is_decimal()):
        return _whole(col.cast(pl.Float64), target)
    if isinstance(target, pl.Datetime) and isinstance(dtype, pl.Datetime) and dtype.time_zone:
        # Zoned timestamps are shown in UK local time, as the shop's own data is.
        return (
            col.dt.convert_time_zone("Europe/London")
            .dt.replace_time_zone(None)
            .dt.cast_time_unit("us")
        )
    return col.cast(target, strict=False)


def _lenient(name: str, dtype: pl.DataType, date_formats: Sequence[str]) -> pl.Expr:
    """The slower parse for what the fast one missed: other date forms, whole floats as ids."""
    col = pl.col(name)
    target = POLARS_SCHEMA[name]
    if dtype != pl.String:
        return _fast(name, dtype)
    text = col.str.strip_chars()
    if isinstance(target, pl.Datetime):
        return pl.coalesce(
            *(text.str.to_datetime(f, time_unit="us", strict=False) for f in date_formats)
        )
    if target.is_integer():
        return _whole(text.cast(pl.Float64, strict=False), target)
    return _fast(name, dtype)


def _out_of_range(name: str, typed: pl.Series) -> pl.Series | None:
    """Values that were read but are no valid value of `name` (null where none), if it has a range.

    The integer casts already refuse what does not fit int32 / int64.
    """
    if name == "unit_price":
        return ~(typed.is_finite() & (typed.abs() <= MAX_UNIT_PRICE))
    if name == "invoice_date":
        return ~typed.is_between(FIRST_DATE, LAST_DATE)
    return None


def conform(
    df: pl.DataFrame,
    *,
    origin: str,
    first_row: int,
    unit: str = "row",
    date_formats: Sequence[str] = ISO_DATE_FORMATS,
) -> pl.DataFrame:
    """Cast a frame with canonical column names to the canonical schema, strictly.

    `first_row` is the number, in `unit`s of the source, of the frame's first row, so the error
    can point at the exact place, e.g.
    ``online_retail.csv: row 17: column unit_price is not a finite price within ±10,000,000: 'nan'``.
    Text dates are read in `date_formats` (ISO unless the caller knows a file's slash form).
    """
    for name in COLUMNS:
        dtype = df.schema[name]
        if not _accepts(name, dtype):
            expected = _EXPECTED.get(name, _EXPECTED_TEXT)
            raise InputError(
                f"{origin}: column {name} has type {_type_label(dtype)}; expected {expected}"
            )
    # Dictionary-encoded text (Parquet) is parsed as the text it stands for.
    categorical = [n for n in COLUMNS if _is_text(df.schema[n]) and df.schema[n] != pl.String]
    if categorical:
        df = df.with_columns(pl.col(categorical).cast(pl.String))
    typed = df.select(_fast(name, df.schema[name]).alias(name) for name in COLUMNS)
    for name in COLUMNS:
        missed = typed[name].is_null() & df[name].is_not_null()
        if missed.any():
            retry = df.select(_lenient(name, df.schema[name], date_formats).alias(name)).to_series()
            typed = typed.with_columns(typed[name].fill_null(retry))
        # A required value must be there; an optional one, if given, must parse.
        bad = typed[name].is_null()
        if name not in REQUIRED:
            bad = bad & df[name].is_not_null()
        out_of_range = _out_of_range(name, typed[name])
        if out_of_range is not None:
            bad = bad | out_of_range.fill_null(False)
        if bad.any():
            i = int(bad.arg_true()[0])
            what = _problem(name, df[name], typed[name], i)
            raise InputError(f"{origin}: {unit} {first_row + i}: column {name} {what}")
    amount = typed["quantity"].cast(pl.Float64) * typed["unit_price"]
    too_large = amount.abs() > MAX_LINE_AMOUNT
    if too_large.any():
        i = int(too_large.arg_true()[0])
        raise InputError(
            f"{origin}: {unit} {first_row + i}: columns quantity × unit_price = {amount[i]:,.2f}, "
            f"beyond ±{MAX_LINE_AMOUNT:,.0f} for one line"
        )
    return typed


def _problem(name: str, given: pl.Series, typed: pl.Series, i: int) -> str:
    """Why value `i` of column `name` is refused, with the value as the source gave it."""
    if _is_null(given, i):
        return "is empty"
    if name in _RANGE_PROBLEM and not _is_null(typed, i):
        return f"{_RANGE_PROBLEM[name]}: {_shown(given, i)}"
    return f"{_PROBLEM.get(name, 'cannot be read as text')}: {_shown(given, i)}"


def _is_null(values: pl.Series, i: int) -> bool:
    # Without making value `i` a Python object: a date in year 0 or 10000 cannot be one.
    return values.slice(i, 1).null_count() == 1


def _shown(values: pl.Series, i: int, limit: int = 60) -> str:
    """Value `i` in its text form, quoted and escaped, so a message stays one printable line."""
    text = values.slice(i, 1).cast(pl.String, strict=False)[0]
    if text is None:
        return f"(a value of type {_type_label(values.dtype)})"
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


def _type_label(dtype: pl.DataType) -> str:
    return str(dtype).lower()


def to_arrow(df: pl.DataFrame) -> pa.Table:
    """The canonical Arrow table of a conformed frame (plain `string`, not Polars' views)."""
    return df.to_arrow().cast(ARROW_SCHEMA)


# The catalog's type names as Polars types (a timestamp is the canonical one: µs, no zone).
_CATALOG_TYPES: Final[dict[str, pl.DataType]] = {
    "Int32": pl.Int32(),
    "Int64": pl.Int64(),
    "Float64": pl.Float64(),
    "String": pl.String(),
    "Date": pl.Date(),
    "Datetime": pl.Datetime("us"),
    "Boolean": pl.Boolean(),
}


def table_schema(name: str) -> pl.Schema:
    """Output table `name`'s declared schema (`lgs_fast.catalog`) as a Polars schema."""
    from_catalog = BY_NAME[name].schema
    return pl.Schema({column: _CATALOG_TYPES[kind] for column, kind in from_catalog.items()})
