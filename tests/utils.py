"""One comparison for every table: engines agree exactly, to the bit, money included (DESIGN.md
"Money"); the pandas reference, an independent opinion that interpolates and averages in
floats its own way, within 1e-9 relative on floats.

Also small hand-built frames of lines, and the check that runs every table on one with both
engines and the pandas reference.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import polars as pl

from lgs_fast.config import Options
from lgs_fast.schema import POLARS_SCHEMA

REL = 1e-9
START = dt.datetime(2010, 11, 1, 8, 0)


def to_polars(frame: pl.DataFrame | pd.DataFrame, like: pl.DataFrame) -> pl.DataFrame:
    """A result in `like`'s schema (pandas results arrive with pandas' own dtypes)."""
    if isinstance(frame, pd.DataFrame):
        frame = pl.from_pandas(frame.reset_index(drop=True))
    if frame.height == 0 and like.height == 0:
        return like.clear()
    return frame.select(
        pl.col(name).cast(dtype) if frame.schema[name] != dtype else pl.col(name)
        for name, dtype in like.schema.items()
    )


def _same(x: float | None, y: float | None) -> bool:
    """Equal floats: both null, both NaN, or equal values."""
    if x is None or y is None:
        return x is y
    return x == y or (math.isnan(x) and math.isnan(y))


def assert_agree(
    expected: pl.DataFrame, got: pl.DataFrame | pd.DataFrame, what: str = "", exact: bool = False
) -> None:
    """Equal columns and rows; floats equal to the bit if `exact`, else within `REL`."""
    got = to_polars(got, expected)
    assert got.columns == expected.columns, what
    assert got.height == expected.height, f"{what}: {got.height} rows, expected {expected.height}"
    for name, dtype in expected.schema.items():
        a, b = expected[name].to_list(), got[name].to_list()
        if dtype.is_float() and exact:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert _same(x, y), f"{what}.{name}[{i}]: {x!r} vs {y!r}"
        elif dtype.is_float():
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                if x is None or y is None or (isinstance(x, float) and math.isnan(x)):
                    assert (x is None or math.isnan(x)) == (y is None or math.isnan(y)), (
                        f"{what}.{name}[{i}]: {x} vs {y}"
                    )
                else:
                    assert math.isclose(x, y, rel_tol=REL, abs_tol=1e-9), (
                        f"{what}.{name}[{i}]: {x} vs {y}"
                    )
        else:
            assert a == b, (
                f"{what}.{name}: first difference at {next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)}"
            )


def assert_tables_agree(
    name: str,
    expected: pl.DataFrame,
    got: pl.DataFrame | pd.DataFrame,
    what: str = "",
    exact: bool = False,
) -> None:
    """`assert_agree` for table `name`: a table in no set order (`catalog.UNORDERED`) is
    compared with both sides sorted by its key."""
    from lgs_fast.catalog import UNORDERED

    key = UNORDERED.get(name)
    if key is not None:
        got = to_polars(got, expected).sort(key)
        expected = expected.sort(key)
    assert_agree(expected, got, what, exact)


def assert_engines_agree(
    name: str, expected: pl.DataFrame, got: pl.DataFrame, what: str = ""
) -> None:
    """Two engines' table `name`: the same schema and the same values to the bit."""
    assert got.schema == expected.schema, what
    assert_tables_agree(name, expected, got, what, exact=True)


def frame(rows: list[dict[str, object]]) -> pl.LazyFrame:
    """Lines of the canonical schema from plain rows."""
    return pl.DataFrame(rows, schema=POLARS_SCHEMA).lazy()


def line(
    invoice: str,
    day: int,
    customer: int | None,
    quantity: int = 1,
    price: float = 2.0,
    stock_code: str = "22423",
) -> dict[str, object]:
    """One line of `invoice`, `day` days after START."""
    return {
        "invoice_no": invoice,
        "stock_code": stock_code,
        "description": "CAKESTAND",
        "quantity": quantity,
        "invoice_date": START + dt.timedelta(days=day),
        "unit_price": price,
        "customer_id": customer,
        "country": "United Kingdom",
    }


def check_agreement(rows: list[dict[str, object]], options: Options) -> dict[str, pl.DataFrame]:
    """Every table of `rows` by Polars, DuckDB and the pandas reference, compared; Polars' back."""
    from benchmarks import pandas_reference as reference
    from lgs_fast.analyze import tables_of
    from lgs_fast.catalog import ANALYSES

    lines = frame(rows)
    polars = tables_of(lines, options, engine="polars")
    duckdb = tables_of(lines, options, engine="duckdb")
    expected = reference.run_all(lines.collect().to_pandas(), options)
    for name in ANALYSES:
        assert_engines_agree(name, polars[name], duckdb[name], f"duckdb/{name}")
        if not (name == "invoice_histogram" and polars[name].height == 0):
            assert_tables_agree(name, polars[name], expected[name], f"pandas/{name}")
    return polars


def write_segment_map(path: Path, *entries: tuple[str, str, str]) -> Path:
    """A segment map file of (name, pattern, action) entries, for tests that need their own."""
    path.write_text(
        "".join(
            f"[[segment]]\nname = {json.dumps(name)}\npattern = {json.dumps(pattern)}\n"
            f"action = {json.dumps(action)}\n"
            for name, pattern, action in entries
        )
    )
    return path


def hostile_lines(lines: pl.LazyFrame, *, france: str) -> pl.LazyFrame:
    """Real lines with text a spreadsheet would run: EIRE as '=EIRE', France as `france`, the
    cake stand 22423 described as '-CAKESTAND'."""
    return lines.with_columns(
        country=pl.when(pl.col("country") == "EIRE")
        .then(pl.lit("=EIRE"))
        .when(pl.col("country") == "France")
        .then(pl.lit(france))
        .otherwise(pl.col("country")),
        description=pl.when(pl.col("stock_code") == "22423")
        .then(pl.lit("-CAKESTAND"))
        .otherwise(pl.col("description")),
    )
