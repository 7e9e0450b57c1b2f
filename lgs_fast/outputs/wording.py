"""The words and headline figures the summary, the report, the charts and the workbook share.

DESIGN.md fixes one vocabulary: placed sales, cancelled value, net revenue; invoices, purchase
invoices, credit notes; customers, customers with a purchase. Everything that shows those
figures takes them from here, so the terminal, a card and a chart title never disagree on a
name, and every place where two totals differ can say why in one line (`reconciliation`).
Nothing here computes a metric: it reads the output tables.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import polars as pl

from lgs_fast.config import currency

Tables = dict[str, pl.DataFrame]

# The longest text a chart or the report shows in one label or cell; longer is cut with "…".
# A 5,000-character country made the report wider than any screen. The tables, the campaign
# lists and the workbook keep the full text.
LABEL_LIMIT = 60
# Line and paragraph separators (U+2028, U+2029) and control characters: Vega's expression
# parser refuses a label holding one (and the SVG conversion fails), and on a page they would
# break a label in two. Shown as a space.
_UNSHOWABLE = r"[\p{Cc}\p{Zl}\p{Zp}]"


def shown_text(column: pl.Expr, limit: int = LABEL_LIMIT) -> pl.Expr:
    """`column`'s text as a chart or the report shows it: one line, at most `limit` characters."""
    text = column.str.replace_all(_UNSHOWABLE, " ")
    cut = pl.concat_str(text.str.slice(0, limit - 1).str.strip_chars_end(), pl.lit("…"))
    return pl.when(text.str.len_chars() > limit).then(cut).otherwise(text)


# Sentences the page is there to say (a segment's action, a model's verdict), written by lgs_fast
# or by the team's segment map: kept whole, on one line; a cell wraps them.
WHOLE_TEXT = frozenset({"action", "verdict", "note", "models", "model_name"})


def shown_tables(tables: Tables) -> Tables:
    """The tables with every text column as `shown_text`: what the charts and the report draw
    (the sentences of `WHOLE_TEXT` on one line but not cut)."""
    return {
        name: frame.with_columns(
            shown_text(pl.col(c), limit=1_000_000 if c in WHOLE_TEXT else LABEL_LIMIT)
            for c, dtype in frame.schema.items()
            if dtype == pl.String
        )
        for name, frame in tables.items()
    }


# Data-quality checks as a reader names them (the table keeps the snake_case keys).
QUALITY_LABELS: dict[str, str] = {
    "lines": "Lines analysed",
    "no_customer_id": "Lines without a customer id",
    "no_description": "Lines without a description",
    "cancellation_lines": "Cancellation lines (credit notes)",
    "cancelled_invoices": "Credit notes",
    "stock_adjustment_lines": "Stock adjustments (negative quantity, not a credit note)",
    "zero_price_lines": "Lines with a price of zero",
    "negative_price_lines": "Lines with a negative price (bad-debt write-offs)",
    "non_product_lines": "Postage, fees, vouchers and other non-product lines",
    "exact_duplicate_lines": "Exact duplicates of an earlier line",
}


def money(value: float | None, *, symbol: str | None = None) -> str:
    """Money to the penny, a true minus sign before the symbol: `−£896,812.49` (the symbol
    in force unless `symbol` is given)."""
    if value is None:
        return "–"
    sign = "−" if round(value, 2) < 0 else ""
    return f"{sign}{symbol or currency()}{abs(value):,.2f}"


@dataclass(frozen=True)
class Figure:
    """One headline number: its name in the vocabulary, its value shown, a line of detail."""

    label: str
    value: str
    detail: str = ""
    money: bool = False


def headline(tables: Tables) -> list[Figure]:
    """The overview's figures in the vocabulary, in the order every view shows them."""
    o = tables["overview"].row(0, named=True)
    return [
        Figure("Lines", f"{o['lines']:,}"),
        Figure(
            "Invoices",
            f"{o['invoices']:,}",
            f"{o['purchase_invoices']:,} purchase invoices, {o['credit_notes']:,} credit notes",
        ),
        Figure(
            "Customers", f"{o['customers']:,}", f"{o['customers_with_purchase']:,} with a purchase"
        ),
        Figure("Products", f"{o['stock_codes']:,}", "stock codes"),
        Figure("Countries", f"{o['countries']:,}"),
        Figure("Placed sales", money(o["placed_sales"]), "all purchase invoices", money=True),
        Figure("Cancelled value", money(o["cancelled_value"]), "all credit notes", money=True),
        Figure(
            "Net revenue", money(o["net_revenue"]), "placed sales + cancelled value", money=True
        ),
        Figure(
            "Mean invoice",
            money(o["mean_invoice_total"]),
            f"invoices above {currency()}0",
            money=True,
        ),
    ]


def reconciliation(tables: Tables, preset: str = "standard") -> list[str]:
    """One sentence per pair of totals a reader may see disagree, saying why they differ."""
    o = tables["overview"].row(0, named=True)
    scored = tables["rfm"]
    segment_total = float(scored["monetary"].sum()) if scored.height else 0.0
    said = [
        f"Net revenue {money(o['net_revenue'])} is placed sales {money(o['placed_sales'])} "
        f"plus the cancelled value {money(o['cancelled_value'])} of the credit notes.",
        f"The {o['invoices']:,} invoices are {o['purchase_invoices']:,} purchase invoices and "
        f"{o['credit_notes']:,} credit notes.",
    ]
    rest = money(o["net_revenue"] - segment_total)
    if preset == "notebook":
        said.append(
            f"Segments cover all {scored.height:,} customers (notebook preset) and add up to "
            f"{money(segment_total)}, their net spend; the other {rest} of net revenue is on "
            "lines without a customer id."
        )
    else:
        # Customers not scored: those with only credit notes, and with --as-of those whose
        # first purchase came after the reference time (their lines after it are not scored).
        credit_only = o["customers"] - o["customers_with_purchase"]
        later = o["customers_with_purchase"] - scored.height
        others = [
            f"{credit_only:,} {_plural(credit_only, 'customer', 'customers')} with only credit notes"
            if credit_only > 0 else "",
            f"{later:,} whose first purchase came after the reference time" if later > 0 else "",
        ]  # fmt: skip
        who = "; not scored: " + " and ".join(o for o in others if o) if any(others) else ""
        said.append(
            f"Segments cover the {scored.height:,} customers with a purchase by the reference "
            f"time{who}. They add up to {money(segment_total)}, their net spend; the other "
            f"{rest} of net revenue is on lines without a customer id or of customers not "
            "scored (and, with --as-of, on lines after the reference time)."
        )
    amounts = tables["invoice_amounts"].filter(pl.col("view") == "all")
    counted = int(amounts["count"][0]) if amounts.height else 0
    if preset == "notebook":
        said.append(
            f"The invoice amounts cover {counted:,} line amounts with a positive quantity and "
            "price, as the original notebook did."
        )
    else:
        said.append(
            f"The invoice amounts cover the {counted:,} purchase invoices whose total is above {currency()}0 "
            f"(the other {o['purchase_invoices'] - counted:,} total {currency()}0 or less)."
        )
    reversed_ = tables.get("reversed_invoices")
    if reversed_ is not None and reversed_.height:
        said.append(
            f"{reversed_.height:,} purchase invoices worth {money(reversed_['total'].sum())} "
            "were reversed in full by a later credit note: they count in placed sales and are "
            "cancelled out of net revenue."
        )
    return said


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def largest_reversal(tables: Tables) -> dict[str, object] | None:
    """The reversed_invoices row of the largest invoice total, when that invoice was reversed."""
    reversed_ = tables.get("reversed_invoices")
    amounts = tables["invoice_amounts"].filter(pl.col("view") == "all")
    if reversed_ is None or reversed_.height == 0 or amounts.height == 0:
        return None
    largest = amounts["max"][0]
    top = reversed_.row(0, named=True)
    if largest is None or round(top["total"], 2) != round(largest, 2):
        return None
    return top


def _covered(month: dt.date, first: dt.datetime, last: dt.datetime) -> str:
    start = first.day if (month.year, month.month) == (first.year, first.month) else 1
    end = (
        last.day
        if (month.year, month.month) == (last.year, last.month)
        else calendar.monthrange(month.year, month.month)[1]
    )
    return f"{start}–{end}" if start != end else f"{start}"


def month_label(month: dt.date, complete: bool, tables: Tables) -> str:
    """`Dec 2010`, or for a month the data covers only in part its days: `Dec 2011 (1–9)`."""
    if complete:
        return f"{month:%b %Y}"
    o = tables["overview"].row(0, named=True)
    return f"{month:%b %Y} ({_covered(month, o['first_invoice'], o['last_invoice'])})"


def labelled_months(tables: Tables) -> pl.DataFrame:
    """The monthly table with `label` (`month_label`) and `period`: "complete" or "partial"."""
    monthly = tables["monthly"]
    labels = [month_label(m, c, tables) for m, c in monthly.select("month", "complete").iter_rows()]
    return monthly.with_columns(
        label=pl.Series(labels, dtype=pl.String),
        period=pl.when(pl.col("complete")).then(pl.lit("complete")).otherwise(pl.lit("partial")),
    )


def partial_months(tables: Tables) -> list[str]:
    """The labels of the months the data covers only in part."""
    return labelled_months(tables).filter(~pl.col("complete"))["label"].to_list()


def segments_by_value(tables: Tables) -> pl.DataFrame:
    """The segment table, largest total net spend first (empty segments last, by name): the one
    order in which the report, its charts and the workbook list segments."""
    return tables["segments"].sort(
        [pl.col("customers") > 0, "total_monetary", "segment"],
        descending=[True, True, False],
        nulls_last=True,
    )
