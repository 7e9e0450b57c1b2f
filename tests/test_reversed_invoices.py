"""Reversed invoices: real values on both engines, and hand-built edges on all three engines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import lgs_fast as lgs
from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options
from lgs_fast.engines import duckdb as sql
from tests.utils import check_agreement, frame, line

COLUMNS = {
    "invoice_no": pl.String,
    "credit_note": pl.String,
    "customer_id": pl.Int64,
    "invoice_date": pl.Datetime("us"),
    "credit_date": pl.Datetime("us"),
    "total": pl.Float64,
}


def test_real_reversed_invoices(retail_lake: Path, engine: str) -> None:
    reversed_ = compute_tables(retail_lake, engine=engine)["reversed_invoices"]  # type: ignore[arg-type]
    assert dict(reversed_.schema) == COLUMNS
    assert reversed_.height == 130
    assert reversed_.row(0) == (
        "581483", "C581484", 16446,
        dt.datetime(2011, 12, 9, 9, 15), dt.datetime(2011, 12, 9, 9, 27), 168_469.6,
    )  # fmt: skip
    assert reversed_.row(1) == (
        "541431", "C541433", 12346,
        dt.datetime(2011, 1, 18, 10, 1), dt.datetime(2011, 1, 18, 10, 17), 77_183.6,
    )  # fmt: skip
    assert reversed_["total"].is_sorted(descending=True)
    assert reversed_["total"].sum() == pytest.approx(316_052.11)
    assert reversed_["invoice_no"].is_unique().all() and reversed_["credit_note"].is_unique().all()
    assert (reversed_["credit_date"] >= reversed_["invoice_date"]).all()
    pairs = dict(reversed_.select("invoice_no", "credit_note").iter_rows())
    # C562375 matches 561645 and 562374 alike: it reverses the later one only.
    assert pairs["562374"] == "C562375" and "561645" not in pairs
    # C570853 and C570854 both match 570441, 570844 and 570848: each credit note takes the
    # latest, 570848, which keeps the earlier credit note; the other two stay unreversed.
    assert pairs["570848"] == "C570853"
    assert not {"570441", "570844"} & set(pairs) and "C570854" not in pairs.values()


def _reversed(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """(invoice_no, credit_note) of each reversed invoice, the three engines agreeing, both
    presets giving the same."""
    found = [
        check_agreement(rows, Options(preset=preset))["reversed_invoices"]  # type: ignore[arg-type]
        .select("invoice_no", "credit_note")
        .rows()
        for preset in ("standard", "notebook")
    ]
    assert found[0] == found[1]
    return found[0]


def _invoice(
    number: str, day: int, customer: int | None = 7, sign: int = 1
) -> list[dict[str, object]]:
    """Two stock codes, 2 × £1.25 and 1 × £8 (£10.50); `sign` -1 for the credit note."""
    return [
        line(number, day, customer, quantity=2 * sign, price=1.25),
        line(number, day, customer, quantity=sign, price=8.0, stock_code="85123A"),
    ]


def _credit(number: str, day: int, customer: int | None = 7) -> list[dict[str, object]]:
    return _invoice(number, day, customer, sign=-1)


def test_an_invoice_and_its_credit_note() -> None:
    rows = _invoice("1", 0) + _credit("C2", 3)
    tables = check_agreement(rows, Options())
    assert tables["reversed_invoices"].row(0) == (
        "1", "C2", 7, line("1", 0, 7)["invoice_date"], line("C2", 3, 7)["invoice_date"], 10.5,
    )  # fmt: skip
    # The invoice stays in every other table: it was placed.
    overview = tables["overview"].row(0, named=True)
    assert (overview["placed_sales"], overview["cancelled_value"], overview["net_revenue"]) == (
        10.5, -10.5, 0.0,
    )  # fmt: skip
    assert (overview["purchase_invoices"], overview["credit_notes"]) == (1, 1)


def test_a_credit_note_matching_two_identical_invoices_reverses_the_later() -> None:
    rows = _invoice("1", 0) + _invoice("2", 2) + _credit("C3", 5)
    assert _reversed(rows) == [("2", "C3")]


def test_same_date_ties_go_to_the_greatest_invoice_number() -> None:
    rows = _invoice("10", 2) + _invoice("9", 2) + _credit("C3", 5)
    assert _reversed(rows) == [("9", "C3")]  # "9" > "10" as text


def test_an_invoice_credited_twice_is_listed_once_with_the_earlier_credit_note() -> None:
    rows = _invoice("1", 0) + _credit("C3", 4) + _credit("C2", 4) + _credit("C4", 1)
    assert _reversed(rows) == [("1", "C4")]
    same_day = _invoice("1", 0) + _credit("C3", 4) + _credit("C2", 4)
    assert _reversed(same_day) == [("1", "C2")]


def test_two_credit_notes_for_two_identical_invoices_both_take_the_later() -> None:
    # Each credit note reverses the latest matching invoice, whether or not another credit
    # note reverses it too: the earlier invoice is not reversed.
    rows = _invoice("1", 0) + _invoice("2", 1) + _credit("C3", 2) + _credit("C4", 3)
    assert _reversed(rows) == [("2", "C3")]


def test_a_credit_note_split_over_several_lines_still_matches() -> None:
    split = [
        line("C2", 3, 7, quantity=-1, price=1.25),
        line("C2", 3, 7, quantity=-1, price=1.25),
        line("C2", 3, 7, quantity=-1, price=8.0, stock_code="85123A"),
    ]
    assert _reversed(_invoice("1", 0) + split) == [("1", "C2")]


def test_totals_match_to_the_penny() -> None:
    # £8.004 and £8.001 are both 800 pence (half away from zero): the same total to the penny.
    rows = [line("1", 0, 7, price=8.004), line("C2", 1, 7, quantity=-1, price=8.001)]
    assert _reversed(rows) == [("1", "C2")]
    apart = [line("1", 0, 7, price=8.004), line("C2", 1, 7, quantity=-1, price=8.006)]
    assert _reversed(apart) == []


@pytest.mark.parametrize(
    "credit",
    [
        # the same total, but not the same stock codes
        [line("C2", 3, 7, quantity=-21, price=0.5)],
        # every stock code negated, and one more (at no charge)
        _credit("C2", 3) + [line("C2", 3, 7, quantity=-1, price=0.0, stock_code="21212")],
        # one stock code only: a partial cancellation
        [line("C2", 3, 7, quantity=-2, price=1.25)],
        # the same stock codes, the quantities swapped round at other prices: same total
        [
            line("C2", 3, 7, quantity=-1, price=2.5),
            line("C2", 3, 7, quantity=-2, price=4.0, stock_code="85123A"),
        ],
        # the negated quantities, refunded at a discount
        [
            line("C2", 3, 7, quantity=-2, price=1.0),
            line("C2", 3, 7, quantity=-1, price=8.0, stock_code="85123A"),
        ],
        # before the invoice
        _credit("C2", -1),
        # another customer, or none
        _credit("C2", 3, customer=8),
        _credit("C2", 3, customer=None),
    ],
    ids=[
        "other-codes", "extra-code", "partial", "other-quantities", "discount", "earlier",
        "other-customer", "no-customer",
    ],
)  # fmt: skip
def test_what_does_not_reverse_an_invoice(credit: list[dict[str, object]]) -> None:
    assert _reversed(_invoice("1", 0) + credit) == []


def test_an_invoice_without_a_customer_is_not_reversed() -> None:
    assert _reversed(_invoice("1", 0, customer=None) + _credit("C2", 3, customer=None)) == []


def test_same_minute_counts_as_at_or_after() -> None:
    assert _reversed(_invoice("1", 0) + _credit("C2", 0)) == [("1", "C2")]


def test_public_function_and_query() -> None:
    lines = frame(_invoice("1", 0) + _credit("C2", 3))
    assert lgs.reversed_invoices(lines).collect()["credit_note"].to_list() == ["C2"]
    con = sql.connect(lines=lines)
    assert sql.query(con, "reversed_invoices").pl()["invoice_no"].to_list() == ["1"]
