"""Property tests on small generated frames: both engines and pandas agree on every edge.

Prices are binary fractions so that every sum is exact whatever the order of addition: any
difference is then a difference of definition, not of floating point.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from lgs_fast.analyze import tables_of
from lgs_fast.config import UNCLASSIFIED, Options, SegmentRule
from tests.utils import START, check_agreement, frame, line


@st.composite
def invoice_lines(draw: st.DrawFn) -> list[dict[str, object]]:
    invoices = draw(
        st.lists(
            st.tuples(
                st.booleans() if draw(st.booleans()) else st.just(False),  # cancellation
                st.integers(0, 150),  # day offset: several months, some empty
                st.sampled_from([0, 0, 9, 17]),  # hour: ties in recency
                st.one_of(st.none(), st.integers(1, 8)),  # customer
                st.sampled_from(["United Kingdom", "France", "EIRE"]),
            ),
            min_size=1,
            max_size=12,
        )
    )
    rows: list[dict[str, object]] = []
    for number, (cancel, day, hour, customer, country) in enumerate(invoices):
        for _ in range(draw(st.integers(1, 4))):
            quantity = draw(st.integers(1, 12))
            rows.append(
                {
                    "invoice_no": f"{'C' if cancel else ''}{536000 + number}",
                    "stock_code": draw(st.sampled_from(["22423", "85123A", "POST", "M", "21212"])),
                    "description": draw(st.sampled_from(["CAKESTAND", "HEART", None])),
                    "quantity": -quantity if cancel else quantity,
                    "invoice_date": START + dt.timedelta(days=day, hours=hour),
                    "unit_price": draw(st.sampled_from([0.0, 0.5, 1.25, 2.0, 2.0, 8.0])),
                    "customer_id": customer,
                    "country": country,
                }
            )
    return rows + draw(echoes(rows, len(invoices)))


@st.composite
def echoes(draw: st.DrawFn, rows: list[dict[str, object]], first: int) -> list[dict[str, object]]:
    """Invoices that repeat an earlier one (the same lines again) or reverse it (a credit note of
    the negated lines), mostly exactly, sometimes a few minutes or days off, or with one line's
    quantity changed: the cases `reversed_invoices` must tell apart."""
    placed = sorted(
        {str(r["invoice_no"]) for r in rows if not str(r["invoice_no"]).startswith("C")}
    )
    if not placed:
        return []
    extra: list[dict[str, object]] = []
    kinds = st.sampled_from(["reverse", "reverse", "repeat"])
    for number, (kind, source, minutes) in enumerate(
        draw(
            st.lists(
                st.tuples(kinds, st.sampled_from(placed), st.sampled_from([-60, 0, 5, 60, 4_000])),
                max_size=4,
            )
        ),
        start=first,
    ):
        reverse = kind == "reverse"
        copied = [dict(r) for r in rows if r["invoice_no"] == source]
        if draw(st.integers(0, 4)) == 0:  # now and then, not quite the same
            copied[0]["quantity"] = int(copied[0]["quantity"]) + 1  # type: ignore[call-overload]
        for r in copied:
            r["invoice_no"] = f"{'C' if reverse else ''}{536000 + number}"
            r["invoice_date"] += dt.timedelta(minutes=minutes)  # type: ignore[operator]
            if reverse:
                r["quantity"] = -int(r["quantity"])  # type: ignore[call-overload]
        extra += copied
    return extra


# The shipped maps are made for 5 and 4 bins; tercile scores need a map of their own.
TERCILE_MAP = (
    SegmentRule(1, "Lapsed", "1[1-3]", "Win back."),
    SegmentRule(2, "Cooling", "2[1-2]", "Remind."),
    SegmentRule(3, "Steady", "23", "Keep."),
    SegmentRule(4, "Champions", "3[1-3]", "Reward."),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=invoice_lines(),
    preset=st.sampled_from(["standard", "notebook"]),
    bins=st.sampled_from([3, 4, 5]),
    # segment movement's T0: by default 90 days before T; else any day, before the first line
    # (everyone new) or after the last (T0 is T), often exactly at a line's time
    compare=st.one_of(st.none(), st.integers(-10, 170)),
    # recommendations for the default segments, which few generated customers fall in, or
    # for every customer
    everyone=st.booleans(),
)
def test_engines_agree_on_generated_lines(
    rows: list[dict[str, object]], preset: str, bins: int, compare: int | None, everyone: bool
) -> None:
    then = None if compare is None else START + dt.timedelta(days=compare)
    rules = TERCILE_MAP if bins == 3 else ()
    options = Options(preset=preset, bins=bins, compare_as_of=then, rules=rules)  # type: ignore[arg-type]
    if everyone:
        names = (*(rule.name for rule in options.rules), UNCLASSIFIED)
        options = replace(options, recommend_segments=names)
    tables = check_agreement(rows, options)
    reversed_ = tables["reversed_invoices"]
    assert reversed_["invoice_no"].is_unique().all() and reversed_["credit_note"].is_unique().all()
    assert (reversed_["credit_date"] >= reversed_["invoice_date"]).all()


def test_single_customer() -> None:
    tables = check_agreement([line("1", 0, 7), line("2", 10, 7)], Options())
    assert tables["rfm"].drop("country").rows() == [(7, 0, 2, 4.0, 5, 1, 1, "511", "New Customers")]
    assert tables["segments"].filter(pl.col("customers") > 0)["share"].to_list() == [1.0]


def test_all_values_equal() -> None:
    rows = [line(str(i), 3, c) for i, c in enumerate([1, 2, 3, 4, 5])]
    rfm = check_agreement(rows, Options())["rfm"]
    assert rfm["r_score"].to_list() == [5] * 5  # equal recency: every edge equal, lowest bin
    assert rfm["m_score"].to_list() == [1] * 5
    assert rfm["f_score"].to_list() == [1, 2, 3, 4, 5]  # frequency ties broken by customer_id


def test_ties_in_every_score() -> None:
    rows = [
        line(f"{c}{k}", day, c)
        for c, day in [(1, 0), (2, 0), (3, 5), (4, 5)]
        for k in range(1 + c % 2)
    ]
    rfm = check_agreement(rows, Options(bins=4))["rfm"]
    assert rfm.select("customer_id", "recency", "frequency", "r_score", "f_score", "m_score").rows() == [
        (1, 5, 2, 2, 3, 3), (2, 5, 1, 2, 1, 1), (3, 0, 2, 4, 4, 3), (4, 0, 1, 4, 2, 1),
    ]  # fmt: skip


def test_customer_with_only_cancellations() -> None:
    rows = [line("1", 0, 1), line("C2", 5, 2, quantity=-1), line("3", 9, None)]
    standard = check_agreement(rows, Options())["rfm"]
    assert standard["customer_id"].to_list() == [1]  # no purchase line: not an RFM customer
    notebook = check_agreement(rows, Options(preset="notebook"))["rfm"]
    assert notebook.select("customer_id", "recency", "frequency", "monetary").rows() == [
        (1, 5, 1, 2.0), (2, 0, 1, -2.0),
    ]  # fmt: skip


def test_no_customers_at_all() -> None:
    tables = check_agreement([line("1", 0, None), line("2", 40, None)], Options())
    assert tables["rfm"].height == 0
    assert tables["cohorts"].height == 0
    assert tables["monthly"]["active_customers"].to_list() == [0, 0]
    assert tables["segments"]["customers"].sum() == 0


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_no_lines(engine: str) -> None:
    tables = tables_of(frame([]), engine=engine)  # type: ignore[arg-type]
    overview = tables["overview"].row(0, named=True)
    assert tables["overview"].row(0)[:8] == (0,) * 8
    assert (overview["placed_sales"], overview["cancelled_value"], overview["net_revenue"]) == (
        0.0, 0.0, 0.0,
    )  # fmt: skip
    empty = ("monthly", "rfm", "cohorts", "top_countries", "top_products", "reversed_invoices")
    assert all(tables[name].height == 0 for name in empty)
    assert tables["invoice_amounts"]["count"].to_list() == [0, 0]
