"""Customers in the Polars engine: RFM scores and segments (DESIGN.md "RFM"), the reference
time T, and the CLV summary; `lgs_fast.engines.polars.movement` builds on them."""

from __future__ import annotations

import polars as pl

from lgs_fast.config import UNCLASSIFIED, Options, segment_rules_frame
from lgs_fast.engines.polars.expressions import (
    CANCELLATION,
    DAY_US,
    DEFAULT,
    HAS_CUSTOMER,
    Data,
    as_count,
    as_micro,
    mean_money,
    money_sum,
    pence_of_micro,
    pounds,
    share,
)
from lgs_fast.lake.layers import as_layers


def _score_bin(x: pl.Expr, bins: int) -> pl.Expr:
    """bin = smallest i ≥ 1 with x ≤ e_i, e_i = quantile(x, i/B) (linear), exactly, on integers.

    With the n values sorted, v_0 ≤ … ≤ v_{n-1}, and k(n − 1) = jB + r (0 ≤ r < B), the edge is
    e_k = v_j + (r/B)(v_{j+1} − v_j), so x ≤ e_k  ⟺  B(x − v_j) ≤ r(v_{j+1} − v_j): integers
    only, no float position or interpolation that could land a value on either side of its
    edge (queries/rfm.sql does the same). bin = 1 + #{inner edges k with x > e_k}.
    """
    n = pl.len().cast(pl.Int64)
    ordered = x.sort()
    above = []
    for k in range(1, bins):
        j = k * (n - 1) // bins
        r = k * (n - 1) % bins
        # slice + first, not get: a plan holding `get` panics in Polars' streaming engine (2.1)
        # when a join reading it stops early (one side empty).
        lo = ordered.slice(j, 1).first()
        hi = ordered.slice(pl.min_horizontal(j + 1, n - 1), 1).first()
        above.append((bins * (x - lo) > r * (hi - lo)).cast(pl.Int32))
    return (1 + pl.sum_horizontal(above)).cast(pl.Int32)


def _segment(rf: pl.Expr, options: Options) -> pl.Expr:
    expr: pl.Expr = pl.lit(UNCLASSIFIED)
    for rule in reversed(options.rules):
        expr = pl.when(rf.str.contains(rule.regex)).then(pl.lit(rule.name)).otherwise(expr)
    return expr


def reference_time(rows: pl.LazyFrame, options: Options) -> pl.LazyFrame:
    """One row, `t`: T of DESIGN.md, from invoice rows (or lines: both have what it reads)."""
    if options.as_of is not None:
        return pl.LazyFrame({"t": [options.as_of]}, schema={"t": pl.Datetime("us")})
    scope = rows.filter(HAS_CUSTOMER) if options.preset == "notebook" else rows
    return scope.select(t=pl.col("invoice_date").max())


def _main_country(customers: pl.LazyFrame) -> pl.LazyFrame:
    """Each customer's country with the most lines, alphabetically first on ties (from the
    customers' invoice rows)."""
    return (
        customers.group_by("customer_id", "country")
        .agg(n=pl.col("lines").sum())
        .sort(["customer_id", "n", "country"], descending=[False, True, False], nulls_last=True)
        .unique("customer_id", keep="first", maintain_order=True)
        .select("customer_id", "country")
    )


def rfm(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Per customer: recency (days), frequency, monetary, quintile scores, rfm_score, segment.

    standard: customers with a purchase line; recency from the last purchase; frequency =
    distinct purchase invoices; monetary = net spend over all lines. notebook: every customer
    with any line, recency from any line, frequency = lines. `as_of` drops later lines.
    """
    rows = as_layers(data).invoices
    if options.as_of is not None:
        rows = rows.filter(pl.col("invoice_date") <= options.as_of)
    return rfm_at(rows, options, reference_time(rows, options))


def rfm_at(invoices: pl.LazyFrame, options: Options, reference: pl.LazyFrame) -> pl.LazyFrame:
    """`rfm` at the time in `reference` (one row, column `t`), over invoice-layer rows none of
    which is later: segment movement scores the same customers at two times with this one
    definition."""
    customers = invoices.filter(HAS_CUSTOMER)
    if options.preset == "notebook":
        per_customer = customers.group_by("customer_id").agg(
            last=pl.col("invoice_date").max(),
            frequency=as_count(pl.col("lines").sum()),
            micro=pl.col("micro").cast(pl.Int128).sum(),
        )
    else:
        purchases = (
            customers.filter(~CANCELLATION)
            .group_by("customer_id")
            .agg(
                last=pl.col("invoice_date").max(),
                frequency=as_count(pl.col("invoice_no").n_unique()),
            )
        )
        spend = customers.group_by("customer_id").agg(pl.col("micro").cast(pl.Int128).sum())
        per_customer = purchases.join(spend, on="customer_id", how="left")
    b = options.bins
    scored = (
        per_customer.join(reference, how="cross")
        .with_columns(
            recency=((pl.col("t") - pl.col("last")).dt.total_microseconds() // DAY_US).cast(
                pl.Int64
            ),
            monetary=pounds(pl.col("micro")),
            pence=pence_of_micro(pl.col("micro")).cast(pl.Int64),
        )
        .sort(["frequency", "customer_id"])
        .with_columns(f_rank=pl.int_range(1, pl.len() + 1))
        .with_columns(
            r_score=(b + 1 - _score_bin(pl.col("recency"), b)).cast(pl.Int32),
            f_score=_score_bin(pl.col("f_rank"), b),
            m_score=_score_bin(pl.col("pence"), b),
        )
        .with_columns(
            rfm_score=pl.concat_str(pl.col("r_score", "f_score", "m_score").cast(pl.String)),
            segment=_segment(pl.concat_str(pl.col("r_score", "f_score").cast(pl.String)), options),
        )
    )
    return (
        scored.join(_main_country(customers), on="customer_id", how="left")
        .select(
            "customer_id",
            "country",
            "recency",
            "frequency",
            "monetary",
            "r_score",
            "f_score",
            "m_score",
            "rfm_score",
            "segment",
        )  # fmt: skip
        .sort("customer_id")
    )


def segments(rfm_table: pl.LazyFrame, options: Options = DEFAULT) -> pl.LazyFrame:
    """Segment summary from an `rfm` table: size, share, means, total monetary, action.

    Every segment of the map appears, empty ones with 0 customers, customers no rule matches
    counted as `Unclassified`; largest total net spend first, then the empty ones by name: the
    one order of segments in every table, list, sheet and chart.
    """
    rules = (
        segment_rules_frame(options.rules)
        .lazy()
        .group_by("segment")
        .agg(pl.col("priority").min(), pl.col("action").first())
    )
    sized = rfm_table.group_by("segment").agg(
        customers=as_count(pl.len()),
        mean_recency=pl.col("recency").mean(),
        mean_frequency=pl.col("frequency").mean(),
        mean_monetary=mean_money(as_micro(pl.col("monetary"))),
        total_monetary=money_sum(as_micro(pl.col("monetary"))),
    )
    return (
        rules.join(sized, on="segment", how="full", coalesce=True)
        .with_columns(
            pl.col("customers").fill_null(0),
            pl.col("total_monetary").fill_null(0.0),
            pl.col("action").fill_null(""),
        )
        .with_columns(share=pl.when(pl.col("customers").sum() > 0).then(share(pl.col("customers"))))
        .sort(
            [pl.col("customers") > 0, "total_monetary", "segment"],
            descending=[True, True, False],
        )
        .select(
            "segment",
            "customers",
            "share",
            "mean_recency",
            "mean_frequency",
            "mean_monetary",
            "total_monetary",
            "action",
        )  # fmt: skip
    )


def clv_summary(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Per customer with a purchase, the input of the CLV models, in days (DESIGN.md "CLV summary").

    purchase days = distinct calendar days with a purchase line; frequency = purchase days − 1;
    recency = days from the first to the last purchase day; T = days from the first purchase
    day to the reference time's day (`rfm`'s T; `as_of` drops later lines); monetary_value =
    mean over the repeat purchase days (all but the first) of the day's placed sales, null when
    there is none. A day's sales are summed exactly in millionths of a pound, as `rfm` does, so
    both engines divide the same two numbers.
    """
    rows = as_layers(data).invoices
    if options.as_of is not None:
        rows = rows.filter(pl.col("invoice_date") <= options.as_of)
    days = (
        rows.filter(HAS_CUSTOMER, ~CANCELLATION)
        .with_columns(day=pl.col("invoice_date").dt.date())
        .group_by("customer_id", "day")
        .agg(pl.col("micro").cast(pl.Int128).sum())
    )
    day = pl.col("day")
    per_customer = days.group_by("customer_id").agg(
        first_purchase=day.min(),
        last_purchase=day.max(),
        frequency=as_count(pl.len()) - 1,
        repeat_micro=pl.col("micro").sum() - pl.col("micro").get(day.arg_min()),
    )
    end = reference_time(rows, options).select(end=pl.col("t").dt.date())
    first = pl.col("first_purchase")
    return (
        per_customer.join(end, how="cross")
        .select(
            "customer_id",
            "first_purchase",
            "last_purchase",
            "frequency",
            recency=(pl.col("last_purchase") - first).dt.total_days().cast(pl.Int64),
            T=(pl.col("end") - first).dt.total_days().cast(pl.Int64),
            monetary_value=pl.when(pl.col("frequency") > 0).then(
                pounds(pl.col("repeat_micro")) / pl.col("frequency")
            ),
        )
        .sort("customer_id")
    )
