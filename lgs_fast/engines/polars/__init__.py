"""The Polars engine: one pure function per analysis, LazyFrame in, LazyFrame out.

Every function follows DESIGN.md ("Definitions") to the letter; `queries/*.sql` is the DuckDB
twin of each, and `benchmarks/pandas_reference.py` the third opinion. Nothing here collects.

Each takes the lake's `Layers` (`lgs_fast.lake.scan_layers`), reading the invoice and product
layers where they hold what it needs and the lines only where nothing else does; any LazyFrame
of lines is accepted too, its layers then computed from it (`lgs_fast.lake.layers.of_lines`).
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from lgs_fast.config import NON_PRODUCT_PATTERN, UNCLASSIFIED, Options, segment_rules_frame
from lgs_fast.lake.layers import Layers, as_layers

Data = pl.LazyFrame | Layers  # the lake's layers, or lines to derive them from

AMOUNT = (pl.col("quantity").cast(pl.Float64) * pl.col("unit_price")).alias("amount")
IS_CANCELLATION = pl.col("invoice_no").str.starts_with("C")
CANCELLATION = pl.col("cancellation")  # IS_CANCELLATION, as the invoice layer stores it
HAS_CUSTOMER = pl.col("customer_id").is_not_null()
MONTH = pl.col("invoice_date").dt.truncate("1mo").dt.date().alias("month")
_DAY_US = 86_400_000_000

_RANK = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank")

DEFAULT = Options()


def _count(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Int64)


def _month_index(col: str | pl.Expr) -> pl.Expr:
    date = pl.col(col) if isinstance(col, str) else col
    return date.dt.year().cast(pl.Int32) * 12 + date.dt.month().cast(pl.Int32)


def _yyyymm(col: str) -> pl.Expr:
    return (
        pl.col(col).dt.year().cast(pl.Int32) * 100 + pl.col(col).dt.month().cast(pl.Int32)
    ).alias("yyyymm")


def _distinct(lines: pl.LazyFrame, column: str, name: str) -> pl.LazyFrame:
    # unique() then a count streams in bounded memory; the n_unique() expression holds the
    # whole column first (measured: 4.6 GiB for invoice_no at 100M lines).
    return lines.select(column).drop_nulls().unique().select(_count(pl.len()).alias(name))


def overview(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """One row: counts of lines, invoices (purchase invoices and credit notes), customers (and
    those with a purchase), stock codes and countries; the date span; placed sales, cancelled
    value and net revenue; the mean invoice total over invoices whose total > 0."""
    layers = as_layers(data)
    rows = layers.invoices
    amount, cancel = pl.col("amount"), CANCELLATION
    scalars = rows.select(
        lines=pl.col("lines").sum(),
        first_invoice=pl.col("invoice_date").min(),
        last_invoice=pl.col("invoice_date").max(),
        placed_sales=amount.filter(~cancel).sum(),
        cancelled_value=amount.filter(cancel).sum(),
        net_revenue=amount.sum(),
    )
    total = pl.col("total")
    invoices = (
        rows.group_by("invoice_no", "cancellation")
        .agg(amount.sum().alias("total"))
        .select(
            invoices=_count(pl.len()),
            purchase_invoices=_count((~cancel).sum()),
            credit_notes=_count(cancel.sum()),
            mean_invoice_total=total.filter(total > 0).mean(),
        )
    )
    distinct = [
        _distinct(rows, "customer_id", "customers"),
        _distinct(rows.filter(~cancel), "customer_id", "customers_with_purchase"),
        _distinct(layers.products, "stock_code", "stock_codes"),
        _distinct(rows, "country", "countries"),
    ]
    return pl.concat([scalars, invoices, *distinct], how="horizontal").select(
        _count(pl.col("lines")),
        "invoices", "purchase_invoices", "credit_notes", "customers",
        "customers_with_purchase", "stock_codes", "countries", "first_invoice", "last_invoice",
        "placed_sales", "cancelled_value", "net_revenue", "mean_invoice_total",
    )  # fmt: skip


def invoice_totals(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """The values whose distribution is reported, one column `amount`.

    standard: invoice totals of non-cancellation invoices with total > 0 (from the invoice
    layer); notebook: line amounts with quantity > 0 and unit_price > 0 (from the lines).
    """
    layers = as_layers(data)
    if options.preset == "notebook":
        return layers.lines.filter(pl.col("quantity") > 0, pl.col("unit_price") > 0).select(AMOUNT)
    return (
        layers.invoices.filter(~CANCELLATION)
        .group_by("invoice_no")
        .agg(pl.col("amount").sum())
        .filter(pl.col("amount") > 0)
        .select("amount")
    )


def _below_p85(values: pl.LazyFrame) -> pl.LazyFrame:
    return values.filter(pl.col("amount") <= pl.col("amount").quantile(0.85, "linear"))


# Whole pence, half away from zero (DuckDB's `round`), from the one float product amount * 100.
_PENCE = (pl.col("amount") * 100).round(0, mode="half_away_from_zero").cast(pl.Int64).alias("pence")
_QUANTILES = {"median": 0.5, "p25": 0.25, "p75": 0.75, "p85": 0.85, "p95": 0.95, "p99": 0.99}


def _distribution(values: pl.LazyFrame, view: str) -> pl.LazyFrame:
    amount = pl.col("amount")
    stats = values.select(
        view=pl.lit(view),
        count=_count(pl.len()),
        min=amount.min(),
        mean=amount.mean(),
        **{name: amount.quantile(q, "linear") for name, q in _QUANTILES.items()},
        max=amount.max(),
    )
    # Mode in whole pence, smallest on ties, so float noise cannot split a popular total.
    mode = (
        values.group_by(_PENCE)
        .agg(n=pl.len())
        .select(
            mode=pl.col("pence").sort_by(["n", "pence"], descending=[True, False]).first() / 100
        )
    )
    return pl.concat([stats, mode], how="horizontal").select(
        "view", "count", "min", "mean", "median", "mode", "max", "p25", "p75", "p85", "p95", "p99"
    )


def invoice_amounts(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Distribution statistics of invoice totals: view `all`, and view `le_p85` (totals ≤ p85)."""
    return amount_distribution(invoice_totals(data, options))


def amount_distribution(values: pl.LazyFrame) -> pl.LazyFrame:
    """`invoice_amounts` of the `amount` column of `invoice_totals`."""
    return pl.concat([_distribution(values, "all"), _distribution(_below_p85(values), "le_p85")])


def _histogram(values: pl.LazyFrame, view: str, bins: int) -> pl.LazyFrame:
    # Binned in whole pence with integer arithmetic: engines round float division differently
    # (Polars turns floor(a / b) into an exact floor division, and a * b + c into a fused
    # multiply-add), so a float formula would put edge values in different bins.
    pence = values.select(_PENCE)
    bounds = pence.select(
        lo=pl.col("pence").min(), span=pl.col("pence").max() - pl.col("pence").min()
    )
    binned = (
        pence.join(bounds, how="cross")
        .select(
            bin=pl.when(pl.col("span") > 0)
            .then(
                ((pl.col("pence") - pl.col("lo")) * bins // pl.col("span")).clip(
                    upper_bound=bins - 1
                )
            )
            .otherwise(0)
            .cast(pl.Int32)
        )
        .group_by("bin")
        .agg(count=_count(pl.len()))
    )
    grid = bounds.filter(pl.col("lo").is_not_null()).join(
        pl.LazyFrame({"bin": pl.int_range(0, bins, eager=True).cast(pl.Int32)}), how="cross"
    )
    edge = pl.col("lo") + pl.col("span") / bins * pl.col("bin")
    return (
        grid.join(binned, on="bin", how="left")
        .select(
            view=pl.lit(view),
            bin=pl.col("bin"),
            bin_start=edge / 100,
            bin_end=(edge + pl.col("span") / bins) / 100,
            count=pl.col("count").fill_null(0),
        )
        .sort("bin")
    )


def invoice_histogram(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Equal-width histogram bins over [min, max] of the invoice totals in pence, both views.

    A total of p pence is in bin floor((p - min) * bins / (max - min)), the last bin closed.
    """
    return amount_histogram(invoice_totals(data, options), options.histogram_bins)


def amount_histogram(values: pl.LazyFrame, bins: int) -> pl.LazyFrame:
    """`invoice_histogram` of the `amount` column of `invoice_totals`."""
    return pl.concat(
        [_histogram(values, "all", bins), _histogram(_below_p85(values), "le_p85", bins)]
    )


def _coverage(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row, of lines or invoice rows: the month indexes of the first and last, and whether the lines cover the
    first month from its first day (`starts_whole`) and the last to its last day (`ends_whole`)."""
    first, last = pl.col("invoice_date").min(), pl.col("invoice_date").max()
    return lines.select(
        first_month=_month_index(first),
        last_month=_month_index(last),
        starts_whole=first.dt.day() == 1,
        ends_whole=last.dt.offset_by("1d").dt.day() == 1,
    )


def _complete(index: pl.Expr, first: str = "first_month", last: str = "last_month") -> pl.Expr:
    """Whether the month of `index` is complete (DESIGN.md), beside `_coverage`'s columns: every
    month between the first and the last is; those two are when the data reaches their ends.
    Weeks are judged the same way, beside `_week_coverage`'s columns."""
    return ((index > pl.col(first)) | pl.col("starts_whole")) & (
        (index < pl.col(last)) | pl.col("ends_whole")
    )


def monthly(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """One row per calendar month, first to last, empty months as zeros (DESIGN.md "monthly").

    standard: new and existing customers are unknown (null) in the first month, where nobody's
    history is known; notebook: all of that month's customers are new.
    """
    rows = as_layers(data).invoices
    dated = rows.with_columns(MONTH)
    cancel = CANCELLATION
    # Distinct invoices and customers as unique pairs, then counted: a grouped n_unique holds
    # its column per group.
    orders = (
        dated.select("month", "invoice_no", "cancellation")
        .unique()
        .group_by("month")
        .agg(placed_orders=_count((~cancel).sum()), cancelled_orders=_count(cancel.sum()))
    )
    active = (
        dated.filter(HAS_CUSTOMER)
        .select("month", "customer_id")
        .unique()
        .group_by("month")
        .agg(active_customers=_count(pl.len()))
    )
    per_month = (
        dated.group_by("month")
        .agg(
            placed_lines=_count(pl.col("lines").filter(~cancel).sum()),
            cancelled_lines=_count(pl.col("lines").filter(cancel).sum()),
            sales=pl.col("amount").filter(~cancel).sum(),
        )
        .join(orders, on="month", how="left")
        .join(active, on="month", how="left")
    )
    new = (
        dated.filter(HAS_CUSTOMER)
        .group_by("customer_id")
        .agg(pl.col("month").min())
        .group_by("month")
        .agg(new_customers=_count(pl.len()))
    )
    # Month numbers, not date_range, so an empty input gives an empty spine rather than an error.
    spine = (
        _coverage(rows)
        .with_columns(i=pl.int_ranges(pl.col("first_month"), pl.col("last_month") + 1))
        .explode("i")
        .drop_nulls("i")
        .with_columns(month=pl.date((pl.col("i") - 1) // 12, (pl.col("i") - 1) % 12 + 1, 1))
    )
    counts = [
        "placed_orders", "cancelled_orders", "placed_lines", "cancelled_lines",
        "active_customers", "new_customers",
    ]  # fmt: skip
    previous = pl.col("sales").shift(1)
    known = pl.lit(options.preset == "notebook") | (pl.col("i") > pl.col("first_month"))
    return (
        spine.join(per_month, on="month", how="left")
        .join(new, on="month", how="left")
        .with_columns(pl.col(counts).fill_null(0), pl.col("sales").fill_null(0.0))
        .sort("month")
        .select(
            "month",
            _yyyymm("month"),
            *counts[:4],
            "sales",
            sales_growth_pct=pl.when(previous != 0).then(100 * (pl.col("sales") / previous - 1)),
            active_customers=pl.col("active_customers"),
            new_customers=pl.when(known).then(pl.col("new_customers")),
            existing_customers=pl.when(known).then(
                pl.col("active_customers") - pl.col("new_customers")
            ),
            complete=_complete(pl.col("i")),
        )
    )


def _week_coverage(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row: the Mondays of the first and last lines' weeks, and whether the lines cover the
    first week from its Monday (`starts_whole`) and the last to its Sunday (`ends_whole`)."""
    first, last = pl.col("invoice_date").min(), pl.col("invoice_date").max()
    return lines.select(
        first_week=first.dt.truncate("1w").dt.date(),
        last_week=last.dt.truncate("1w").dt.date(),
        starts_whole=first.dt.weekday() == 1,
        ends_whole=last.dt.weekday() == 7,
    )


def weekly_sales(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """One row per Monday-starting week, first to last, empty weeks as zeros (DESIGN.md "weekly
    sales and forecast"): net revenue (all lines), placed sales, distinct invoices, and
    `complete` when the data covers the week's seven days. The forecast reads complete weeks."""
    rows = as_layers(data).invoices
    dated = rows.with_columns(week=pl.col("invoice_date").dt.truncate("1w").dt.date())
    per_week = dated.group_by("week").agg(
        net_revenue=pl.col("amount").sum(),
        placed_sales=pl.col("amount").filter(~CANCELLATION).sum(),
    )
    invoices = (
        dated.select("week", "invoice_no").unique().group_by("week").agg(invoices=_count(pl.len()))
    )
    # An empty input has null ends: no range, an empty spine rather than an error.
    spine = (
        _week_coverage(rows)
        .with_columns(week=pl.date_ranges("first_week", "last_week", "1w"))
        .explode("week")
        .drop_nulls("week")
    )
    return (
        spine.join(per_week, on="week", how="left")
        .join(invoices, on="week", how="left")
        .sort("week")
        .select(
            "week",
            pl.col("net_revenue", "placed_sales").fill_null(0.0),
            pl.col("invoices").fill_null(0),
            complete=_complete(pl.col("week"), "first_week", "last_week"),
        )
    )


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


# Net spend is added up exactly: each line's amount in whole millionths of a pound (the invoice
# layer's `micro`, `lgs_fast.lake.layers`; exact for
# prices of up to six decimals; the real data has at most three), summed as integers, which give
# the same total in any order. A float sum depends on the order of addition, which differs
# between engines and between runs: a spend that is mathematically zero came out as 3.3e-13, and
# equal spends could fall on either side of a score edge. `monetary` is that exact total as the
# nearest float (full precision, not rounded to the penny; DuckDB divides, and Polars, which
# divides by a constant through its reciprocal, goes through a decimal so as to round the same
# way); the m_score compares the total in whole pence, half away from zero, the money an analyst
# sees. `conform` bounds a line's amount, and the sums are taken in 128 bits: no overflow.
_MICRO = 1_000_000
_MICRO_PER_PENNY = _MICRO // 100


def _pounds_of_micro(micro: pl.Expr) -> pl.Expr:
    """micro / 10^6, correctly rounded (a decimal with 6 places, then the nearest float)."""
    return (micro.cast(pl.Decimal(38, 0)) * pl.lit(Decimal(1) / _MICRO)).cast(pl.Float64)


def _pence_of_micro(micro: pl.Expr) -> pl.Expr:
    """Whole pence of an exact amount in millionths of a pound, half away from zero."""
    half = _MICRO_PER_PENNY // 2
    return (
        pl.when(micro >= 0)
        .then((micro + half) // _MICRO_PER_PENNY)
        # -((half - micro) // p) written as a ceiling: Polars has no negation for 128 bits.
        .otherwise((micro - half + _MICRO_PER_PENNY - 1) // _MICRO_PER_PENNY)
    )


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
            frequency=_count(pl.col("lines").sum()),
            micro=pl.col("micro").cast(pl.Int128).sum(),
        )
    else:
        purchases = (
            customers.filter(~CANCELLATION)
            .group_by("customer_id")
            .agg(
                last=pl.col("invoice_date").max(),
                frequency=_count(pl.col("invoice_no").n_unique()),
            )
        )
        spend = customers.group_by("customer_id").agg(pl.col("micro").cast(pl.Int128).sum())
        per_customer = purchases.join(spend, on="customer_id", how="left")
    b = options.bins
    scored = (
        per_customer.join(reference, how="cross")
        .with_columns(
            recency=((pl.col("t") - pl.col("last")).dt.total_microseconds() // _DAY_US).cast(
                pl.Int64
            ),
            monetary=_pounds_of_micro(pl.col("micro")),
            pence=_pence_of_micro(pl.col("micro")).cast(pl.Int64),
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
        customers=_count(pl.len()),
        mean_recency=pl.col("recency").mean(),
        mean_frequency=pl.col("frequency").mean(),
        mean_monetary=pl.col("monetary").mean(),
        total_monetary=pl.col("monetary").sum(),
    )
    return (
        rules.join(sized, on="segment", how="full", coalesce=True)
        .with_columns(
            pl.col("customers").fill_null(0),
            pl.col("total_monetary").fill_null(0.0),
            pl.col("action").fill_null(""),
        )
        .with_columns(
            share=pl.when(pl.col("customers").sum() > 0).then(
                pl.col("customers") / pl.col("customers").sum()
            )
        )
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
        frequency=_count(pl.len()) - 1,
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
                _pounds_of_micro(pl.col("repeat_micro")) / pl.col("frequency")
            ),
        )
        .sort("customer_id")
    )


def top_countries(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Countries by sales (non-cancellation lines), with orders, customers and share of sales."""
    placed = as_layers(data).invoices.filter(~CANCELLATION)
    return (
        placed.group_by("country")
        .agg(
            sales=pl.col("amount").sum(),
            orders=_count(pl.col("invoice_no").n_unique()),
            customers=_count(pl.col("customer_id").drop_nulls().n_unique()),
        )
        .with_columns(share=pl.col("sales") / pl.col("sales").sum())
        .sort(["sales", "country"], descending=[True, False], nulls_last=True)
        .head(options.top)
        .select(_RANK, "country", "sales", "share", "orders", "customers")
    )


def descriptions(lines: pl.LazyFrame) -> pl.LazyFrame:
    """(stock_code, description): each code's most frequent non-null description over `lines`,
    the smallest on ties (the name `top_products` and `recommendations` show)."""
    return (
        lines.filter(pl.col("description").is_not_null())
        .group_by("stock_code", "description")
        .agg(n=pl.len())
        .sort(["stock_code", "n", "description"], descending=[False, True, False])
        .unique("stock_code", keep="first", maintain_order=True)
        .select("stock_code", "description")
    )


def top_products(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Products (non-product codes excluded) by net revenue: the amount of all their lines,
    cancellations and stock adjustments included, ties by stock_code; beside it placed sales,
    cancelled value, units (quantity over non-cancellation lines), purchase invoices and the
    most frequent description.

    The top products are chosen on the products layer first; purchase invoices and the name
    are then found in the lines of those few only, so no per-product set of invoices is built
    for the thousands of others.
    """
    layers = as_layers(data)
    money = ["net_revenue", "placed_sales", "cancelled_value", "quantity"]
    top = (
        layers.products.filter(~pl.col("stock_code").str.contains(NON_PRODUCT_PATTERN))
        .group_by("stock_code")
        .agg(pl.col(money).sum())
        .sort(["net_revenue", "stock_code"], descending=[True, False])
        .head(options.top)
    )
    chosen = layers.lines.join(top.select("stock_code"), on="stock_code", how="semi")
    invoices = (
        chosen.filter(~IS_CANCELLATION)
        .group_by("stock_code")
        .agg(purchase_invoices=_count(pl.col("invoice_no").n_unique()))
    )
    return (
        top.join(invoices, on="stock_code", how="left", maintain_order="left")
        .join(descriptions(chosen), on="stock_code", how="left", maintain_order="left")
        .select(
            _RANK,
            "stock_code",
            "description",
            "net_revenue",
            "placed_sales",
            "cancelled_value",
            "quantity",
            pl.col("purchase_invoices").fill_null(0),
        )  # fmt: skip
    )


def reversed_invoices(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Purchase invoices reversed by a credit note (DESIGN.md "reversed invoices").

    A credit note of the same customer, dated at or after the invoice (each dated by its
    earliest line), whose net quantity per stock code is the negation of the invoice's (the same
    stock codes on both) and whose total in whole pence is the negation of the invoice's. Each
    credit note reverses the latest such invoice (then the greatest invoice_no); an invoice
    reversed by several is listed once, with the earliest (then least numbered) credit note.
    Totals are summed exactly, in millionths of a pound as `rfm` does, so that rounding to the
    penny does not depend on the order of addition. Pairs are first found by customer and total,
    which leaves few, and only those few are compared stock code by stock code.
    """
    layers = as_layers(data)
    known = layers.lines.filter(HAS_CUSTOMER)
    documents = (
        layers.invoices.filter(HAS_CUSTOMER)
        .group_by("invoice_no", "customer_id")
        .agg(date=pl.col("invoice_date").min(), micro=pl.col("micro").cast(pl.Int128).sum())
        .with_columns(pence=_pence_of_micro(pl.col("micro")).cast(pl.Int64))
    )
    invoices = documents.filter(~IS_CANCELLATION).rename({"date": "invoice_date"})
    credits = documents.filter(IS_CANCELLATION).select(
        "customer_id", credit_note="invoice_no", credit_date="date", pence=-pl.col("pence")
    )
    candidates = invoices.join(credits, on=["customer_id", "pence"]).filter(
        pl.col("credit_date") >= pl.col("invoice_date")
    )
    named = pl.concat(
        [candidates.select("invoice_no"), candidates.select(invoice_no="credit_note")]
    )
    codes = (
        known.join(named, on="invoice_no", how="semi")
        .group_by("invoice_no", "stock_code")
        .agg(quantity=pl.col("quantity").cast(pl.Int64).sum())
    )
    sizes = codes.group_by("invoice_no").agg(codes=pl.len())
    credited = codes.select(credit_note="invoice_no", stock_code="stock_code", credited="quantity")
    agreeing = (
        candidates.select("invoice_no", "credit_note")
        .join(codes, on="invoice_no")
        .join(credited, on=["credit_note", "stock_code"])
        .filter(pl.col("credited") == -pl.col("quantity"))
        .group_by("invoice_no", "credit_note")
        .agg(agreeing=pl.len())
    )
    return (
        candidates.join(agreeing, on=["invoice_no", "credit_note"])
        .join(sizes, on="invoice_no")
        .join(sizes.select(credit_note="invoice_no", credit_codes="codes"), on="credit_note")
        .filter(pl.col("agreeing") == pl.col("codes"), pl.col("agreeing") == pl.col("credit_codes"))
        .sort(["credit_note", "invoice_date", "invoice_no"], descending=[False, True, True])
        .unique("credit_note", keep="first", maintain_order=True)
        .sort(["invoice_no", "credit_date", "credit_note"])
        .unique("invoice_no", keep="first", maintain_order=True)
        .select(
            "invoice_no",
            "credit_note",
            "customer_id",
            "invoice_date",
            "credit_date",
            total=_pounds_of_micro(pl.col("micro")),
        )  # fmt: skip
        .sort(["total", "invoice_no"], descending=[True, False])
    )


def cohorts(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Monthly cohort retention: cohort = month of a customer's first line; share active k months
    on; `complete`, the activity month's flag (as in `monthly`)."""
    rows = as_layers(data).invoices
    active = rows.filter(HAS_CUSTOMER).select("customer_id", MONTH).unique()
    first = active.group_by("customer_id").agg(cohort=pl.col("month").min())
    last_index = active.select(last=_month_index("month").max())
    sizes = first.group_by("cohort").agg(cohort_size=_count(pl.len()))
    grid = (
        sizes.join(last_index, how="cross")
        .with_columns(months_since=pl.int_ranges(0, pl.col("last") - _month_index("cohort") + 1))
        .explode("months_since")
        .with_columns(pl.col("months_since").cast(pl.Int32))
    )
    kept = (
        active.join(first, on="customer_id")
        .with_columns(months_since=(_month_index("month") - _month_index("cohort")).cast(pl.Int32))
        .group_by("cohort", "months_since")
        .agg(customers=_count(pl.len()))
    )
    return (
        grid.join(kept, on=["cohort", "months_since"], how="left")
        .join(_coverage(rows), how="cross")
        .with_columns(pl.col("customers").fill_null(0))
        .select(
            "cohort",
            _yyyymm("cohort").alias("cohort_yyyymm"),
            "months_since",
            "cohort_size",
            "customers",
            retention=pl.col("customers") / pl.col("cohort_size"),
            complete=_complete(_month_index("cohort") + pl.col("months_since")),
        )
        .sort("cohort", "months_since")
    )


def data_quality(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """The data-quality counts of `tests/data/README.md`, as (check, count) rows: the quality
    layer's counts added up, and credit notes (distinct cancellation invoices) from the
    invoice layer."""
    layers = as_layers(data)
    counts = layers.quality.select(pl.all().sum())
    cancelled = _distinct(layers.invoices.filter(CANCELLATION), "invoice_no", "cancelled_invoices")
    return (
        pl.concat([counts, cancelled], how="horizontal")
        .select(
            "lines",
            "no_customer_id",
            "no_description",
            "cancellation_lines",
            "cancelled_invoices",
            "stock_adjustment_lines",
            "zero_price_lines",
            "negative_price_lines",
            "non_product_lines",
            "exact_duplicate_lines",
        )  # fmt: skip
        .with_columns(pl.all().cast(pl.Int64))
        .unpivot(variable_name="check", value_name="count")
    )


def purchase_lines(lines: pl.LazyFrame, options: Options = DEFAULT) -> pl.LazyFrame:
    """The lines recommendations are made from: purchase lines with quantity > 0 and a product
    code; `as_of` drops later lines, as it does for `rfm`."""
    if options.as_of is not None:
        lines = lines.filter(pl.col("invoice_date") <= options.as_of)
    return lines.filter(
        HAS_CUSTOMER,
        ~IS_CANCELLATION,
        pl.col("quantity") > 0,
        ~pl.col("stock_code").str.contains(NON_PRODUCT_PATTERN),
    )


def last_purchase_invoices(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """(customer_id, invoice_no): each customer's last purchase invoice, the latest by date,
    then the greatest number, from the invoice layer (none after `as_of`)."""
    rows = as_layers(data).invoices.filter(HAS_CUSTOMER, ~CANCELLATION)
    if options.as_of is not None:
        rows = rows.filter(pl.col("invoice_date") <= options.as_of)
    return rows.group_by("customer_id").agg(
        pl.col("invoice_no").sort_by("invoice_date", "invoice_no").last()
    )


CUSTOMER_PRODUCTS_SCHEMA = pl.Schema(
    {
        "customer_id": pl.Int64,
        "stock_code": pl.String,
        "invoices": pl.Int64,
        "last_purchase": pl.Date,
        "on_last_invoice": pl.Boolean,
    }
)


def customer_products(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Per (customer, product) of `purchase_lines`: invoices = the purchase invoices holding it,
    last_purchase = the day of the latest, on_last_invoice = whether the customer's last
    purchase invoice holds it (the recommendations' holdout hides that invoice). The input of
    the recommendation model (`lgs_fast.models.recommend`); rows in no set order (`UNORDERED`);
    empty, and nothing read, when no segment gets recommendations."""
    if not options.recommend_segments:
        return pl.LazyFrame(schema=CUSTOMER_PRODUCTS_SCHEMA)
    layers = as_layers(data)
    last = last_purchase_invoices(layers, options).with_columns(last=pl.lit(True))
    return (
        purchase_lines(layers.lines, options)
        .join(last, on=["customer_id", "invoice_no"], how="left")
        .group_by("customer_id", "stock_code")
        .agg(
            invoices=_count(pl.col("invoice_no").n_unique()),
            last_purchase=pl.col("invoice_date").max().dt.date(),
            on_last_invoice=pl.col("last").any().fill_null(False),
        )
    )


def product_names(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """(stock_code, description) of every product in `customer_products`: its most frequent
    non-null description over `purchase_lines` (smallest on ties; null when it has none)."""
    if not options.recommend_segments:
        return pl.LazyFrame(schema={"stock_code": pl.String, "description": pl.String})
    bought = purchase_lines(as_layers(data).lines, options)
    return (
        bought.select("stock_code")
        .unique()
        .join(descriptions(bought), on="stock_code", how="left")
        .sort("stock_code")
    )


ANALYSES = (
    "overview", "invoice_amounts", "invoice_histogram", "monthly", "rfm", "segments",
    "segment_movement", "segment_transitions", "top_countries", "top_products",
    "reversed_invoices", "cohorts", "data_quality",
    "clv_summary", "weekly_sales", "customer_products", "product_names",
)  # fmt: skip
# Tables only the recommendation model reads: `analyze` does not write them (customer_products
# has a row per customer and product, millions on a large lake); `compute_tables` returns them.
MODEL_INPUTS = ("customer_products", "product_names")
# Tables whose rows come in no set order, with the key that identifies a row: sorting millions
# of (customer, product) rows would cost more than computing them (0.9 s of 2.5 at 10M lines),
# and the model builds its matrix the same from any order. Compare them sorted by the key.
UNORDERED: dict[str, tuple[str, ...]] = {"customer_products": ("customer_id", "stock_code")}


def tables(
    data: Data,
    options: Options = DEFAULT,
    *,
    totals: pl.LazyFrame | None = None,
    rfm_table: pl.LazyFrame | None = None,
) -> dict[str, pl.LazyFrame]:
    """Every analysis as a LazyFrame, keyed by table name (collect them together to share scans).

    `totals` (`invoice_totals`) and `rfm_table`, when given, are those already computed: the
    tables that read them then start from them instead of from the layers.
    """
    layers = as_layers(data)
    totals = invoice_totals(layers, options) if totals is None else totals
    table = rfm(layers, options) if rfm_table is None else rfm_table
    # Imported here: lgs_fast.engines.polars.movement builds on this module's rfm.
    from lgs_fast.engines.polars.movement import segment_movement, segment_transitions

    movement = segment_movement(layers, options, rfm_now=table)
    derived = {
        "invoice_amounts": amount_distribution(totals),
        "invoice_histogram": amount_histogram(totals, options.histogram_bins),
        "rfm": table,
        "segments": segments(table, options),
        "segment_movement": movement,
        "segment_transitions": segment_transitions(movement, table),
    }
    return {
        name: derived[name] if name in derived else globals()[name](layers, options)
        for name in ANALYSES
    }
