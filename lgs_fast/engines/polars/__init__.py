"""The Polars engine: one pure function per analysis, LazyFrame in, LazyFrame out.

Every function follows DESIGN.md ("Definitions") to the letter; `queries/*.sql` is the DuckDB
twin of each, and `benchmarks/pandas_reference.py` the third opinion. Nothing here collects.

Each takes the lake's `Layers` (`lgs_fast.lake.scan_layers`), reading the invoice and product
layers where they hold what it needs and the lines only where nothing else does; any LazyFrame
of lines is accepted too, its layers then computed from it (`lgs_fast.lake.layers.of_lines`).
"""

from __future__ import annotations

import polars as pl

from lgs_fast.catalog import ANALYSES
from lgs_fast.config import NON_PRODUCT_PATTERN, Options

# The customers' tables, public here beside the rest of the engine's functions.
from lgs_fast.engines.polars.customers import clv_summary as clv_summary
from lgs_fast.engines.polars.customers import reference_time as reference_time
from lgs_fast.engines.polars.customers import rfm as rfm
from lgs_fast.engines.polars.customers import rfm_at as rfm_at
from lgs_fast.engines.polars.customers import segments as segments
from lgs_fast.engines.polars.expressions import (
    CANCELLATION,
    DEFAULT,
    HAS_CUSTOMER,
    IS_CANCELLATION,
    MICRO_PER_PENNY,
    MONTH,
    RANK,
    Data,
    as_count,
    distinct_count,
    mean_money,
    money_sum,
    month_index,
    pence_of_micro,
    pounds,
    share,
    yyyymm,
)
from lgs_fast.engines.polars.movement import segment_movement, segment_transitions
from lgs_fast.lake.layers import LINE_MICRO, as_layers


def overview(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """One row: counts of lines, invoices (purchase invoices and credit notes), customers (and
    those with a purchase), stock codes and countries; the date span; placed sales, cancelled
    value and net revenue; the mean invoice total over invoices whose total > 0."""
    layers = as_layers(data)
    rows = layers.invoices
    micro, cancel = pl.col("micro"), CANCELLATION
    scalars = rows.select(
        lines=pl.col("lines").sum(),
        first_invoice=pl.col("invoice_date").min(),
        last_invoice=pl.col("invoice_date").max(),
        placed_sales=money_sum(micro.filter(~cancel)),
        cancelled_value=money_sum(micro.filter(cancel)),
        net_revenue=money_sum(micro),
    )
    positive = pl.col("total").filter(pl.col("total") > 0)
    invoices = (
        rows.group_by("invoice_no", "cancellation")
        .agg(micro.sum().alias("total"))
        .select(
            invoices=as_count(pl.len()),
            purchase_invoices=as_count((~cancel).sum()),
            credit_notes=as_count(cancel.sum()),
            mean_invoice_total=mean_money(positive),
        )
    )
    distinct = [
        distinct_count(rows, "customer_id", "customers"),
        distinct_count(rows.filter(~cancel), "customer_id", "customers_with_purchase"),
        distinct_count(layers.products, "stock_code", "stock_codes"),
        distinct_count(rows, "country", "countries"),
    ]
    return pl.concat([scalars, invoices, *distinct], how="horizontal").select(
        as_count(pl.col("lines")),
        "invoices", "purchase_invoices", "credit_notes", "customers",
        "customers_with_purchase", "stock_codes", "countries", "first_invoice", "last_invoice",
        "placed_sales", "cancelled_value", "net_revenue", "mean_invoice_total",
    )  # fmt: skip


def invoice_totals(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """The values whose distribution is reported, one column `micro` (exact, in millionths),
    sorted: the quantiles read positions in it (`quantile_x100`), so it is sorted once here.

    standard: invoice totals of non-cancellation invoices with total > 0 (from the invoice
    layer); notebook: line amounts with quantity > 0 and unit_price > 0 (from the lines).
    """
    layers = as_layers(data)
    if options.preset == "notebook":
        values = layers.lines.filter(pl.col("quantity") > 0, pl.col("unit_price") > 0).select(
            micro=LINE_MICRO.cast(pl.Int128)
        )
    else:
        values = (
            layers.invoices.filter(~CANCELLATION)
            .group_by("invoice_no")
            .agg(pl.col("micro").sum())
            .filter(pl.col("micro") > 0)
            .select("micro")
        )
    return values.sort("micro")


def quantile_x100(sorted_micro: pl.Expr, percent: int) -> pl.Expr:
    """100 × the `percent`th percentile of a sorted integer column, exactly (docs/analysis.md,
    "Quantiles"): with the n values v_0 <= ... <= v_{n-1} and (n - 1) × percent = 100 j + r,
    it is 100 v_j + r (v_{j+1} - v_j), linear interpolation in integers; null when n = 0."""
    n = sorted_micro.len().cast(pl.Int64)
    j, r = (n - 1) * percent // 100, (n - 1) * percent % 100
    lo = sorted_micro.get(j, null_on_oob=True)
    hi = sorted_micro.get(pl.min_horizontal(j + 1, n - 1), null_on_oob=True)
    return 100 * lo + r * (hi - lo)


def _below_p85(values: pl.LazyFrame) -> pl.LazyFrame:
    """The sorted `values` at or below their 85th percentile (still sorted)."""
    micro = pl.col("micro")
    return values.filter(100 * micro <= quantile_x100(micro, 85))


_QUANTILES = {"median": 50, "p25": 25, "p75": 75, "p85": 85, "p95": 95, "p99": 99}
_PENCE = pence_of_micro(pl.col("micro")).cast(pl.Int64).alias("pence")


def _distribution(values: pl.LazyFrame, view: str) -> pl.LazyFrame:
    micro = pl.col("micro")
    stats = values.select(
        view=pl.lit(view),
        count=as_count(pl.len()),
        min=pounds(micro.min()),
        mean=mean_money(micro),
        **{name: pounds(quantile_x100(micro, q), 8) for name, q in _QUANTILES.items()},
        max=pounds(micro.max()),
    )
    # Mode in whole pence, smallest on ties, so a popular total is not split by its millionths.
    mode = (
        values.group_by(_PENCE)
        .agg(n=pl.len())
        .select(
            mode=pounds(
                pl.col("pence").sort_by(["n", "pence"], descending=[True, False]).first(), 2
            )
        )
    )
    return pl.concat([stats, mode], how="horizontal").select(
        "view", "count", "min", "mean", "median", "mode", "max", "p25", "p75", "p85", "p95", "p99"
    )


def invoice_amounts(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Distribution statistics of invoice totals: view `all`, and view `le_p85` (totals ≤ p85)."""
    return amount_distribution(invoice_totals(data, options))


def amount_distribution(values: pl.LazyFrame) -> pl.LazyFrame:
    """`invoice_amounts` of the sorted `micro` column of `invoice_totals`."""
    return pl.concat([_distribution(values, "all"), _distribution(_below_p85(values), "le_p85")])


def _histogram(values: pl.LazyFrame, view: str, bins: int) -> pl.LazyFrame:
    # Binned in whole pence with integer arithmetic: engines round float division differently
    # (Polars turns floor(a / b) into an exact floor division, and a * b + c into a fused
    # multiply-add), so a float formula would put edge values in different bins. Edges are
    # whole millionths, lo + k × span / bins rounded half up, in integers too.
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
        .agg(count=as_count(pl.len()))
    )
    grid = bounds.filter(pl.col("lo").is_not_null()).join(
        pl.LazyFrame({"bin": pl.int_range(0, bins, eager=True).cast(pl.Int32)}), how="cross"
    )

    def edge(k: pl.Expr) -> pl.Expr:
        micro = pl.col("lo").cast(pl.Int128) * MICRO_PER_PENNY
        return pounds(micro + (pl.col("span") * k * MICRO_PER_PENNY + bins // 2) // bins)

    return (
        grid.join(binned, on="bin", how="left")
        .select(
            view=pl.lit(view),
            bin=pl.col("bin"),
            bin_start=edge(pl.col("bin").cast(pl.Int128)),
            bin_end=edge(pl.col("bin").cast(pl.Int128) + 1),
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
    """`invoice_histogram` of the sorted `micro` column of `invoice_totals`."""
    return pl.concat(
        [_histogram(values, "all", bins), _histogram(_below_p85(values), "le_p85", bins)]
    )


def _coverage(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row, of lines or invoice rows: the month indexes of the first and last, and whether the lines cover the
    first month from its first day (`starts_whole`) and the last to its last day (`ends_whole`)."""
    first, last = pl.col("invoice_date").min(), pl.col("invoice_date").max()
    return lines.select(
        first_month=month_index(first),
        last_month=month_index(last),
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
        .agg(placed_orders=as_count((~cancel).sum()), cancelled_orders=as_count(cancel.sum()))
    )
    active = (
        dated.filter(HAS_CUSTOMER)
        .select("month", "customer_id")
        .unique()
        .group_by("month")
        .agg(active_customers=as_count(pl.len()))
    )
    per_month = (
        dated.group_by("month")
        .agg(
            placed_lines=as_count(pl.col("lines").filter(~cancel).sum()),
            cancelled_lines=as_count(pl.col("lines").filter(cancel).sum()),
            sales=money_sum(pl.col("micro").filter(~cancel)),
        )
        .join(orders, on="month", how="left")
        .join(active, on="month", how="left")
    )
    new = (
        dated.filter(HAS_CUSTOMER)
        .group_by("customer_id")
        .agg(pl.col("month").min())
        .group_by("month")
        .agg(new_customers=as_count(pl.len()))
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
            yyyymm("month"),
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
        net_revenue=money_sum(pl.col("micro")),
        placed_sales=money_sum(pl.col("micro").filter(~CANCELLATION)),
    )
    invoices = (
        dated.select("week", "invoice_no")
        .unique()
        .group_by("week")
        .agg(invoices=as_count(pl.len()))
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


def top_countries(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Countries by sales (non-cancellation lines), with orders, customers and share of sales."""
    placed = as_layers(data).invoices.filter(~CANCELLATION)
    return (
        placed.group_by("country")
        .agg(
            micro=pl.col("micro").sum(),
            orders=as_count(pl.col("invoice_no").n_unique()),
            customers=as_count(pl.col("customer_id").drop_nulls().n_unique()),
        )
        .with_columns(
            sales=pounds(pl.col("micro")),
            share=share(pl.col("micro")),
        )
        .sort(["micro", "country"], descending=[True, False], nulls_last=True)
        .head(options.top)
        .select(RANK, "country", "sales", "share", "orders", "customers")
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
    summed = ["net_micro", "placed_micro", "cancelled_micro", "quantity"]
    top = (
        layers.products.filter(~pl.col("stock_code").str.contains(NON_PRODUCT_PATTERN))
        .group_by("stock_code")
        .agg(pl.col(summed).sum())
        .sort(["net_micro", "stock_code"], descending=[True, False])
        .head(options.top)
    )
    chosen = layers.lines.join(top.select("stock_code"), on="stock_code", how="semi")
    invoices = (
        chosen.filter(~IS_CANCELLATION)
        .group_by("stock_code")
        .agg(purchase_invoices=as_count(pl.col("invoice_no").n_unique()))
    )
    return (
        top.join(invoices, on="stock_code", how="left", maintain_order="left")
        .join(descriptions(chosen), on="stock_code", how="left", maintain_order="left")
        .select(
            RANK,
            "stock_code",
            "description",
            net_revenue=pounds(pl.col("net_micro")),
            placed_sales=pounds(pl.col("placed_micro")),
            cancelled_value=pounds(pl.col("cancelled_micro")),
            quantity=pl.col("quantity"),
            purchase_invoices=pl.col("purchase_invoices").fill_null(0),
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
        .with_columns(pence=pence_of_micro(pl.col("micro")).cast(pl.Int64))
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
            total=pounds(pl.col("micro")),
        )  # fmt: skip
        .sort(["total", "invoice_no"], descending=[True, False])
    )


def cohorts(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """Monthly cohort retention: cohort = month of a customer's first line; share active k months
    on; `complete`, the activity month's flag (as in `monthly`)."""
    rows = as_layers(data).invoices
    active = rows.filter(HAS_CUSTOMER).select("customer_id", MONTH).unique()
    first = active.group_by("customer_id").agg(cohort=pl.col("month").min())
    last_index = active.select(last=month_index("month").max())
    sizes = first.group_by("cohort").agg(cohort_size=as_count(pl.len()))
    grid = (
        sizes.join(last_index, how="cross")
        .with_columns(months_since=pl.int_ranges(0, pl.col("last") - month_index("cohort") + 1))
        .explode("months_since")
        .with_columns(pl.col("months_since").cast(pl.Int32))
    )
    kept = (
        active.join(first, on="customer_id")
        .with_columns(months_since=(month_index("month") - month_index("cohort")).cast(pl.Int32))
        .group_by("cohort", "months_since")
        .agg(customers=as_count(pl.len()))
    )
    return (
        grid.join(kept, on=["cohort", "months_since"], how="left")
        .join(_coverage(rows), how="cross")
        .with_columns(pl.col("customers").fill_null(0))
        .select(
            "cohort",
            yyyymm("cohort").alias("cohort_yyyymm"),
            "months_since",
            "cohort_size",
            "customers",
            retention=pl.col("customers") / pl.col("cohort_size"),
            complete=_complete(month_index("cohort") + pl.col("months_since")),
        )
        .sort("cohort", "months_since")
    )


def data_quality(data: Data, options: Options = DEFAULT) -> pl.LazyFrame:
    """The data-quality counts of `tests/data/README.md`, as (check, count) rows: the quality
    layer's counts added up, and credit notes (distinct cancellation invoices) from the
    invoice layer."""
    layers = as_layers(data)
    counts = layers.quality.select(pl.all().sum())
    cancelled = distinct_count(
        layers.invoices.filter(CANCELLATION), "invoice_no", "cancelled_invoices"
    )
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
            invoices=as_count(pl.col("invoice_no").n_unique()),
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
