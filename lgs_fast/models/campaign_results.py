"""Did a campaign work? The contacted customers of each list against those held back.

`lgs-fast analyze --control 10%` holds back a random tenth of every campaign list and records
who was on which side in `OUT/campaigns.json`, with the time the lists were made (the analysis'
reference time). Afterwards, the lake's invoices after that time tell, per list, how the two
groups behaved: the share who bought at all, purchase invoices per customer and net revenue per
customer, each as the difference contacted − held back with a 95% interval:

- the share who bought: the difference of two proportions, normal approximation (Wald);
- invoices and revenue per customer: Welch's t interval (unequal variances), whose
  t-distribution is a fair approximation for the mean of a skewed quantity once both groups
  have `MIN_GROUP` customers or more.

With fewer than `MIN_GROUP` customers on either side an interval would mean nothing, and the
row says so instead; a record made at or after the data's last invoice has nothing to measure
yet. The groups were drawn at random, so a difference is the campaign's effect, give or take
the interval; held-back customers of a list that was never sent show no difference but chance.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Final

import polars as pl

from lgs_fast.config import currency
from lgs_fast.errors import InputError
from lgs_fast.lake.layers import pounds

MIN_GROUP: Final = 30
LEVEL: Final = 0.95
MEASURES: Final = ("bought", "purchase_invoices", "net_revenue")
PROPORTIONS: Final = "difference of two proportions, normal approximation"
WELCH: Final = "Welch's t (unequal variances)"

RESULTS_SCHEMA: Final = {
    "segment": pl.String, "measure": pl.String, "contacted": pl.Int64, "held_back": pl.Int64,
    "contacted_value": pl.Float64, "held_back_value": pl.Float64, "difference": pl.Float64,
    "lo_95": pl.Float64, "hi_95": pl.Float64, "method": pl.String, "verdict": pl.String,
}  # fmt: skip


@dataclass(frozen=True)
class CampaignList:
    segment: str
    contact: tuple[int, ...]
    control: tuple[int, ...]


@dataclass(frozen=True)
class Campaigns:
    """What `OUT/campaigns.json` records: when the lists were made, and each list's groups."""

    sent: dt.datetime | None
    control: float | None
    seed: int
    lists: tuple[CampaignList, ...]


def read_campaigns(path: Path) -> Campaigns:
    """`OUT/campaigns.json`, checked: one line naming the file and what is wrong otherwise."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (analyze writes OUT/campaigns.json)") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a campaigns record ({err})") from None
    try:
        if raw["version"] != 1:
            raise ValueError(f"version {raw['version']!r}, expected 1")
        lists = tuple(
            CampaignList(
                str(item["segment"]),
                tuple(int(c) for c in item["contact"]),
                tuple(int(c) for c in item["control"]),
            )
            for item in raw["lists"]
        )
        sent = dt.datetime.fromisoformat(raw["sent"]) if raw["sent"] is not None else None
        return Campaigns(sent, raw["control"], int(raw["seed"]), lists)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not a campaigns record ({type(err).__name__}: {err})") from None


def outcomes(
    invoices: pl.LazyFrame, sent: dt.datetime, until: dt.datetime | None = None
) -> pl.LazyFrame:
    """Per customer with an invoice after `sent` (and before `until`): purchase_invoices (the
    distinct purchase invoices) and net_revenue (purchases and credit notes), from the invoice
    layer's rows."""
    after = invoices.filter(pl.col("invoice_date") > sent, pl.col("customer_id").is_not_null())
    if until is not None:
        after = after.filter(pl.col("invoice_date") < until)
    return after.group_by("customer_id").agg(
        purchase_invoices=pl.col("invoice_no").filter(~pl.col("cancellation")).n_unique(),
        net_revenue=pounds(pl.col("micro").sum()),
    )


def results(
    campaigns: Campaigns, per_customer: pl.DataFrame, data_end: dt.datetime | None
) -> pl.DataFrame:
    """The `campaign_results` table: per list and measure, both groups' sizes and values, the
    difference contacted − held back with its 95% interval, the method and a sentence."""
    rows: list[dict[str, object]] = []
    for item in campaigns.lists:
        groups = [_group(item.contact, per_customer), _group(item.control, per_customer)]
        for measure in MEASURES:
            rows.append(_compare(item.segment, measure, groups, campaigns, data_end))
    return pl.DataFrame(rows, schema=RESULTS_SCHEMA, orient="row")


def _group(customers: tuple[int, ...], per_customer: pl.DataFrame) -> pl.DataFrame:
    """Every customer of a group with their outcome; no invoice after the date counts as 0."""
    ids = pl.DataFrame({"customer_id": list(customers)}, schema={"customer_id": pl.Int64})
    return (
        ids.join(per_customer, on="customer_id", how="left")
        .fill_null(0)
        .with_columns(bought=(pl.col("purchase_invoices") > 0).cast(pl.Float64))
    )


def _compare(
    segment: str,
    measure: str,
    groups: list[pl.DataFrame],
    campaigns: Campaigns,
    data_end: dt.datetime | None,
) -> dict[str, object]:
    contact, control = (g[measure].cast(pl.Float64) for g in groups)
    n1, n0 = contact.len(), control.len()
    m1 = float(contact.mean()) if n1 else None  # type: ignore[arg-type]
    m0 = float(control.mean()) if n0 else None  # type: ignore[arg-type]
    row: dict[str, object] = {
        "segment": segment, "measure": measure, "contacted": n1, "held_back": n0,
        "contacted_value": m1, "held_back_value": m0, "difference": None,
        "lo_95": None, "hi_95": None, "method": None,
    }  # fmt: skip
    sent = campaigns.sent
    if sent is None or data_end is None or data_end <= sent:
        ends = f"{data_end:%Y-%m-%d %H:%M}" if data_end else "no data"
        made = f"{sent:%Y-%m-%d %H:%M}" if sent else "with no data"
        return row | {
            "verdict": f"nothing to measure yet: the lists were made {made} and the data ends {ends}"
        }
    if n0 < MIN_GROUP or n1 < MIN_GROUP:
        return row | {
            "verdict": f"too few customers to tell: {n1:,} contacted and {n0:,} held back "
            f"(at least {MIN_GROUP} on each side)"
        }
    assert m1 is not None and m0 is not None
    difference = m1 - m0
    if measure == "bought":
        se = math.sqrt(m1 * (1 - m1) / n1 + m0 * (1 - m0) / n0)
        z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
        lo, hi, method = difference - z * se, difference + z * se, PROPORTIONS
    else:
        v1, v0 = float(contact.var()) / n1, float(control.var()) / n0  # type: ignore[arg-type]
        se = math.sqrt(v1 + v0)
        lo, hi = _welch(difference, v1, v0, n1, n0)
        method = WELCH
    row |= {"difference": difference, "lo_95": lo, "hi_95": hi, "method": method}
    return row | {"verdict": _verdict(segment, measure, m1, m0, difference, lo, hi)}


def _welch(difference: float, v1: float, v0: float, n1: int, n0: int) -> tuple[float, float]:
    """The Welch interval of a difference of means, from each mean's variance."""
    from scipy.stats import t

    se = math.sqrt(v1 + v0)
    if se == 0:
        return difference, difference
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
    half = float(t.ppf(0.5 + LEVEL / 2, df)) * se
    return difference - half, difference + half


def _verdict(
    segment: str, measure: str, m1: float, m0: float, d: float, lo: float, hi: float
) -> str:
    """The row in one plain sentence: the difference if the interval leaves out 0, else none."""
    clear = lo > 0 or hi < 0
    if measure == "bought":
        amounts = f"{m1:.0%} against {m0:.0%}; 95% interval {_points(lo)} to {_points(hi)} points"
        if clear:
            way = "more" if d > 0 else "less"
            return (
                f"contacted {segment} customers bought {abs(d) * 100:.0f} points {way} often "
                f"than those held back ({amounts})"
            )
        return f"no clear difference in who bought among {segment} ({amounts})"
    if measure == "purchase_invoices":
        unit, shown = "purchase invoices per customer", (lambda v: f"{v:.2f}")
    else:
        unit, shown = "net revenue per customer", _pounds
    amounts = f"{shown(m1)} against {shown(m0)}; 95% interval {shown(lo)} to {shown(hi)}"
    if clear:
        way = "more" if d > 0 else "less"
        return f"contacted {segment} customers: {shown(abs(d))} {way} {unit} ({amounts})"
    return f"no clear difference in {unit} among {segment} ({amounts})"


def _pounds(value: float) -> str:
    return f"{'−' if round(value) < 0 else ''}{currency()}{abs(value):,.0f}"


def _points(share: float) -> str:
    """A difference of shares in percentage points, signed, with a true minus: `−8`, `+13`."""
    value = round(share * 100)
    return f"{'−' if value < 0 else '+'}{abs(value)}"
