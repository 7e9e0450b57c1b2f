"""`OUT/lgs_report.xlsx`: every output table and every campaign list in one Excel workbook.

A Contents sheet that links every other sheet, then a sheet per segment list (campaigns first),
then per table (how the models were fitted and checked last). Money is shown in pounds to the
penny and fractions as percentages while the cell keeps the full value; dates are dates; each sheet has a frozen header row
and a filter. No cell runs as a formula: text is always written as text, and text that a
spreadsheet would run gets the same leading `'` as in the CSV files (`campaigns.spreadsheet_safe`),
so a value reads the same in both.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from lgs_fast.config import MONEY_COLUMNS, currency
from lgs_fast.outputs.lists import (
    CONTROL,
    ListSettings,
    campaign_counts,
    campaign_lists,
    export_list,
    human_header,
    split_list,
    spreadsheet_safe,
)

Tables = dict[str, pl.DataFrame]

WORKBOOK_NAME = "lgs_report.xlsx"


def money_format() -> str:
    """Excel's number format for money in the currency symbol in force (quoted: any symbol is
    a literal there), e.g. `"£"#,##0.00;-"£"#,##0.00`."""
    symbol = f'"{currency()}"'
    return f"{symbol}#,##0.00;-{symbol}#,##0.00"


DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
PERCENT_FORMAT = "0.0%"
DECIMAL_FORMAT = "#,##0.00"
CONTENTS = "Contents"

# Fractions shown as percentages (the cell keeps the fraction).
PERCENT_COLUMNS = frozenset(
    {"share", "hit_rate", "retention", "probability_alive", "mean_probability_alive",
     "top_decile_share"}
)  # fmt: skip
# Means, counts expected and errors: two decimals. Model estimates (alpha, aicc, estimate…)
# keep Excel's General format: their size varies too much for a fixed number of decimals.
DECIMAL_COLUMNS = frozenset(
    {"mean_recency", "mean_frequency", "expected_purchases", "actual_purchases",
     "predicted_purchases", "mae", "rmse", "bias", "mase", "smape", "sales_growth_pct",
     "total_error_pct", "score", "spearman"}
)  # fmt: skip
# Tables that describe how the models were fitted and checked: after everything a marketer
# or analyst reads first.
MODEL_DETAIL = (
    "clv_models", "clv_matrix", "clv_holdout", "clv_holdout_customers",
    "clv_holdout_by_frequency", "forecast_backtest", "forecast_models", "recommendation_holdout",
)  # fmt: skip

# One row per customer: the campaign lists already hold these columns for every customer a
# campaign can reach, and tables/NAME.csv holds them whole. Left out of the workbook, which is
# for reading (they were two thirds of its cells and of the time to write it).
PER_CUSTOMER = ("rfm", "segment_movement", "clv_summary", "clv", "recommendations")
FILES_ROW = "(files)"  # the Contents row that names them

# Excel refuses these in a sheet name, and names longer than 31 characters.
_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_MAX_NAME = 31
# Column widths in characters: wide enough for the header and most values, never a wall.
_MIN_WIDTH, _MAX_WIDTH = 6, 60
# The most characters one Excel cell holds; xlsxwriter cuts longer text without a word.
CELL_LIMIT = 32_767


def cell_text(text: str) -> str:
    """`text` as a cell holds it: whole, or cut with a marker that says so and where it is whole."""
    if len(text) <= CELL_LIMIT:
        return text
    marker = f"… [cut: {len(text):,} characters, a cell holds {CELL_LIMIT:,}; whole in the CSV]"
    return text[: CELL_LIMIT - len(marker)] + marker


def sheet_name(wanted: str, taken: set[str]) -> str:
    """A valid, unique sheet name close to `wanted`; adds its casefolded form to `taken`.

    Excel compares names without case, refuses `[]:*?/\\`, a leading or trailing `'`, names over
    31 characters and the reserved `History`; a clash gets a number: `Champions (2)`.
    """
    base = _FORBIDDEN.sub("", wanted).strip().strip("'").strip() or "Sheet"
    if base.casefold() == "history":
        base = f"{base} sheet"
    name, number = base[:_MAX_NAME], 1
    while name.casefold() in taken:
        number += 1
        suffix = f" ({number})"
        name = base[: _MAX_NAME - len(suffix)].rstrip().rstrip("'") + suffix
    taken.add(name.casefold())
    return name


def column_width(frame: pl.DataFrame, column: str) -> float:
    """Characters for `column`: its header or its longest shown value, within bounds."""
    values = frame.get_column(column)
    longest = 0
    if values.len() > 0:
        if values.dtype.is_float():
            # Shown as at most 2 decimals with thousands separators.
            largest = values.abs().max()
            longest = len(f"{largest:,.2f}") + 2 if _finite(largest) else 4
        else:
            longest = int(values.cast(pl.String).str.len_chars().max() or 0)
    return float(min(max(len(column) + 2, longest + 1, _MIN_WIDTH), _MAX_WIDTH))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _write_sheet(book: Any, name: str, frame: pl.DataFrame, money: tuple[str, ...]) -> None:
    sheet = book.add_worksheet(name)
    bold = book.add_format({"bold": True})
    formats = {
        "money": book.add_format({"num_format": money_format()}),
        "date": book.add_format({"num_format": DATE_FORMAT}),
        "datetime": book.add_format({"num_format": DATETIME_FORMAT}),
        "percent": book.add_format({"num_format": PERCENT_FORMAT}),
        "decimal": book.add_format({"num_format": DECIMAL_FORMAT}),
    }
    # Only the text is neutralised here: numbers keep their full value under the £ format.
    shown = spreadsheet_safe(frame)
    for col, (column, dtype) in enumerate(shown.schema.items()):
        sheet.write_string(0, col, column, bold)
        kind = _kind(column, dtype, money)
        sheet.set_column(col, col, column_width(shown, column), formats.get(kind))
        for row, value in enumerate(shown.get_column(column).to_list(), start=1):
            _write_cell(sheet, row, col, value, formats.get(kind))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(shown.height, 1), max(shown.width - 1, 0))
    if name == CONTENTS:
        # Each sheet's name links to it (the row naming the files in tables/ is not a sheet).
        names = shown.get_column("sheet").to_list()
        for row, target in enumerate(names[: len(names) - (FILES_ROW in names)], start=1):
            quoted = str(target).replace("'", "''")
            sheet.write_url(row, 0, f"internal:'{quoted}'!A1", string=str(target))


def _kind(column: str, dtype: pl.DataType, money: tuple[str, ...]) -> str:
    if column in money and dtype.is_numeric():
        return "money"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if column in PERCENT_COLUMNS and dtype.is_numeric():
        return "percent"
    if column in DECIMAL_COLUMNS and dtype.is_float():
        return "decimal"
    return "plain"


def _write_cell(sheet: Any, row: int, col: int, value: object, fmt: Any) -> None:
    """One cell by its Python type: text is never parsed, so it can never become a formula."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        sheet.write_blank(row, col, None, fmt)
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value, fmt)
    elif isinstance(value, int | float):
        # Excel has no infinity: written as text, it cannot pass for a number.
        if math.isinf(value):
            sheet.write_string(row, col, "inf" if value > 0 else "-inf")
        else:
            sheet.write_number(row, col, value, fmt)
    elif isinstance(value, dt.date):  # datetimes too
        sheet.write_datetime(row, col, value, fmt)
    else:
        sheet.write_string(row, col, cell_text(str(value)))


# A sheet's source: ("table", table name) or ("segment", segment name).
Source = tuple[str, str]


def contents(
    tables: Tables, sheets: dict[Source, str], sizes: dict[Source, int] | None = None
) -> pl.DataFrame:
    """The first sheet: each other sheet, what it holds, its rows (`sizes`, else the table's or
    the list's) and, for a campaign list, how many customers of the segment were left out (net
    spend of £0 or less); a list's action is said here once, not on each of its rows."""
    sizes = sizes or {}
    counts = {r["segment"]: r for r in campaign_counts(tables).iter_rows(named=True)}
    actions = dict(tables["segments"].select("segment", "action").iter_rows())
    rows = []
    for (kind, key), name in sheets.items():
        if kind == "table":
            rows.append((name, f"table {key}", tables[key].height, None))
        elif kind == CONTROL:
            rows.append(
                (name, f"control group of {key}: held back, not to be contacted "
                 "(compared with the contacted by lgs-fast campaign-results)",
                 sizes.get((kind, key), 0), None)
            )  # fmt: skip
        else:
            c = counts[key]
            action = actions.get(key) or "no action set"
            listed = sizes.get((kind, key), c["listed"])
            rows.append((name, f"campaign list: {key}. {action}", listed, c["left_out"]))
    apart = [t for t in PER_CUSTOMER if t in tables]
    if apart:
        rows.append(
            (FILES_ROW, f"one row per customer, in the lists above and whole in tables/: "
             f"{', '.join(f'{t}.csv' for t in apart)}", None, None)
        )  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={"sheet": pl.String, "contents": pl.String, "rows": pl.Int64, "left_out": pl.Int64},
        orient="row",
    )


def write_workbook(
    tables: Tables, path: Path, settings: ListSettings | None = None
) -> dict[str, int]:
    """Write the workbook to `path`, its lists as the CSV files show them (`settings`); returns
    rows per sheet (the Contents sheet excepted)."""
    import xlsxwriter

    lists = campaign_lists(tables)
    taken = {CONTENTS.casefold()}
    # The campaign lists first (in the one order of segments), then the tables, the models'
    # fitting and checking last.
    ordered = sorted((t for t in tables if t not in PER_CUSTOMER), key=lambda t: t in MODEL_DETAIL)
    groups = {s: split_list(s, frame, settings) for s, frame in lists.items()}
    held_back = settings is not None and settings.control is not None
    sheets: dict[Source, str] = {}
    frames = {("table", t): frame for t, frame in tables.items()}
    for s, (contact, control) in groups.items():
        sheets["segment", s] = sheet_name(s, taken)
        frames["segment", s] = export_list(
            contact if held_back else contact.drop("group"), settings, to_the_penny=False
        )
        if held_back:  # the control group right after its list, on a sheet of its own
            sheets[CONTROL, s] = sheet_name(f"{s} ({CONTROL})", taken)
            frames[CONTROL, s] = export_list(control, settings, to_the_penny=False)
    sheets |= {("table", t): sheet_name(t, taken) for t in ordered}
    human = settings is not None and settings.human_headers
    list_money = tuple(
        human_header(c) if human else c for c in MONEY_COLUMNS.get("campaign_list", ())
    )
    options = {
        # Belt and braces: text is written with write_string, which never parses it anyway.
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
    }
    with xlsxwriter.Workbook(str(path), options) as book:
        sizes = {source: frames[source].height for source in sheets}
        _write_sheet(book, CONTENTS, contents(tables, sheets, sizes), ())
        for (kind, key), name in sheets.items():
            money = MONEY_COLUMNS.get(key, ()) if kind == "table" else list_money
            _write_sheet(book, name, frames[kind, key], money)
    return {name: frames[source].height for source, name in sheets.items()}
