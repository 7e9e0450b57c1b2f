"""Recommendations: for each customer of the chosen segments, the products they have not bought
that are bought most with what they did buy (DESIGN.md "recommendations").

baskets = the distinct product codes of each purchase invoice (purchase lines with quantity > 0,
non-product codes left out); co(a, p) = the purchase invoices holding both a and p (a ≠ p);
score(c, p) = Σ over a in B_c of co(a, p), for p not in B_c (the customer's products) and
score > 0. The N best per customer (`Options.recommendations`), ties by the purchase invoices
holding p (more first), then stock_code. `queries/recommendations.sql` is the DuckDB twin.

Scoring every product for every customer is a product of a customers × products matrix with a
products × products one: at 100M lines, some 10^10 terms. Only the few best are wanted, so each
product keeps its `NEIGHBOURS` strongest co-occurrences, with `next(a)`, the largest count it
left out. For a customer, those lists give a lower bound of each listed product's score and an
upper bound of every score (a product left out of a's list gains at most next(a) from a). Only
products whose upper bound reaches the N-th best lower bound can be among the N best, and only
those are scored exactly; a customer for whom some product missing from every list could still
reach it (R_c = Σ next(a) ≥ that bound) is scored in full. The result is exactly the definition;
the lists only decide how much is computed.
"""

from __future__ import annotations

from typing import Final, Literal

import polars as pl

from lgs_fast.definitions import NON_PRODUCT_PATTERN, Options
from lgs_fast.metrics import DEFAULT, HAS_CUSTOMER, IS_CANCELLATION, _count, descriptions, rfm

# Strongest co-occurrences kept per product. On the shipped data and on a generated lake of 1M
# lines every target customer is then settled from the lists (at 32, 138 of 829 and 1 of 1,436
# are scored in full); longer lists cost more joined rows per customer and code.
NEIGHBOURS: Final = 64

# Pairs of 32-bit ids (customer or code, code) travel as one 64-bit key: grouping and joining on
# one integer column is about three times faster in Polars than on two (co-occurrence at 1M
# lines: 1.4 s against 4.8 s).
_HIGH = 1 << 32

RECOMMENDATIONS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.Int64,
        "segment": pl.String,
        "rank": pl.Int64,
        "stock_code": pl.String,
        "description": pl.String,
        "score": pl.Int64,
    }
)


def _pair(high: str, low: str) -> pl.Expr:
    return pl.col(high).cast(pl.UInt64) * _HIGH + pl.col(low).cast(pl.UInt64)


def _low(key: str) -> pl.Expr:
    return (pl.col(key) % _HIGH).cast(pl.UInt32)


def _high(key: str) -> pl.Expr:
    return (pl.col(key) // _HIGH).cast(pl.UInt32)


def purchase_lines(lines: pl.LazyFrame, options: Options = DEFAULT) -> pl.LazyFrame:
    """The lines baskets are made of: purchase lines with quantity > 0 and a product code;
    `as_of` drops later lines, as it does for `rfm`."""
    if options.as_of is not None:
        lines = lines.filter(pl.col("invoice_date") <= options.as_of)
    return lines.filter(
        HAS_CUSTOMER,
        ~IS_CANCELLATION,
        pl.col("quantity") > 0,
        ~pl.col("stock_code").str.contains(NON_PRODUCT_PATTERN),
    )


def baskets(lines: pl.LazyFrame, options: Options = DEFAULT) -> pl.LazyFrame:
    """Distinct (invoice_no, customer_id, stock_code) of `purchase_lines`, with `code`, the
    stock code's rank among them (UInt32, from 0), for the joins and groupings that follow."""
    distinct = (
        purchase_lines(lines, options).select("invoice_no", "customer_id", "stock_code").unique()
    )
    codes = distinct.select("stock_code").unique().sort("stock_code").with_row_index("code").cache()
    return distinct.join(codes, on="stock_code", how="left")


def co_occurrence(baskets: pl.LazyFrame) -> pl.LazyFrame:
    """co(a, p) > 0 for a ≠ p, as (pair, code = a, other = p, co), pair = a · 2^32 + p: the
    purchase invoices holding both. The pairs made grow with the square of codes per invoice,
    so each is counted once, as a < p, and then mirrored: half the work."""
    half = (
        baskets.select("invoice_no", "code")
        .join(baskets.select("invoice_no", other="code"), on="invoice_no")
        .filter(pl.col("code") < pl.col("other"))
        .group_by(_pair("code", "other").alias("pair"))
        .agg(co=_count(pl.len()))
        .select("co", code=_high("pair"), other=_low("pair"))
        .cache()
    )
    both = pl.concat([half, half.select("co", code="other", other="code")])
    return both.with_columns(pair=_pair("code", "other"))


def scores(
    bought: pl.LazyFrame, co: pl.LazyFrame, top: int, keep: int = NEIGHBOURS
) -> pl.LazyFrame:
    """(key = customer · 2^32 + p, score) with the exact score of every product p that can be
    among a customer's `top` best (maybe a few more); `bought` = the customers' (customer,
    code) as UInt32 ids, `co` = `co_occurrence`."""
    # next(a): the (keep + 1)-th largest co(a, ·), 0 when a has no more partners; a keeps the
    # partners above it (at most `keep`), and any other partner p has co(a, p) <= next(a).
    # Lookups of one row per key are left joins: Polars reorders chains of inner joins by
    # estimated sizes, and once joined every customer's full co-occurrence rows (10^8 at 1M
    # lines) before the filter that leaves a few candidates.
    cut = (
        co.group_by("code")
        .agg(next=pl.when(pl.len() > keep).then(pl.col("co").top_k(keep + 1).min()).otherwise(0))
        .cache()
    )
    kept = co.join(cut, on="code", how="left").filter(pl.col("co") > pl.col("next"))
    owned = bought.select(key=_pair("customer", "code"))
    # low = the score from the lists, a lower bound; with `listed` (Σ next(a) over the lists
    # holding p), low + reach - listed bounds it from above.
    bounds = (
        bought.join(kept, on="code")
        .group_by(_pair("customer", "other").alias("key"))
        .agg(low=pl.col("co").sum(), listed=pl.col("next").sum())
        .join(owned, on="key", how="anti")
        .with_columns(customer=_high("key"))
        .cache()
    )
    # bar = the N-th best lower bound, which the N-th best score reaches (1 with fewer
    # candidates: scores must be > 0); reach = Σ next(a), the most a product on none of the
    # customer's lists can score.
    bar = bounds.group_by("customer").agg(
        bar=pl.when(pl.len() >= top).then(pl.col("low").top_k(top).min()).otherwise(1)
    )
    customers = (
        bought.join(cut, on="code", how="left")
        .group_by("customer")
        .agg(reach=pl.col("next").sum())
        .join(bar, on="customer", how="left")
        .with_columns(pl.col("bar").fill_null(1))
        .cache()
    )
    settled = pl.col("reach") < pl.col("bar")
    listed = (
        bounds.join(customers, on="customer", how="left")
        .filter(settled, pl.col("low") + pl.col("reach") - pl.col("listed") >= pl.col("bar"))
        .select("customer", other=_low("key"))
    )
    # A customer the lists do not settle has every product as a candidate.
    everyone = (
        customers.filter(~settled)
        .select("customer")
        .join(co.select(pl.col("other").unique()), how="cross")
    )
    return (
        pl.concat([listed, everyone])
        .with_columns(key=_pair("customer", "other"))
        .join(owned, on="key", how="anti")
        .join(bought, on="customer")
        .with_columns(pair=_pair("code", "other"))
        .join(co.select("pair", "co"), on="pair", how="left")
        .group_by("key")
        .agg(score=pl.col("co").sum())
        .filter(pl.col("score") > 0)
    )


def _products(lines: pl.LazyFrame, basket: pl.LazyFrame) -> pl.LazyFrame:
    """Per code of `basket`: stock_code, invoices (the purchase invoices holding it) and the
    most frequent non-null description over its basket lines in `lines` (smallest on ties)."""
    return (
        basket.group_by("code")
        .agg(pl.col("stock_code").first(), invoices=_count(pl.len()))
        .join(descriptions(lines), on="stock_code", how="left")
    )


def recommendations(
    lines: pl.LazyFrame,
    options: Options = DEFAULT,
    rfm_table: pl.LazyFrame | None = None,
    *,
    keep: int = NEIGHBOURS,
) -> pl.LazyFrame:
    """customer_id, segment, rank, stock_code, description, score for the customers of
    `options.recommend_segments` in `rfm_table` (computed when not given), sorted by customer
    and rank. description = the code's most frequent non-null description over the lines its
    baskets are made of (smallest on ties). `keep` changes how much is computed, never the
    result. No segment to recommend to: an empty table, and nothing read."""
    if not options.recommend_segments:
        return pl.LazyFrame(schema=RECOMMENDATIONS_SCHEMA)
    table = rfm(lines, options) if rfm_table is None else rfm_table
    targets = (
        table.filter(pl.col("segment").is_in(list(options.recommend_segments)))
        .select("customer_id", "segment")
        # A rank, not a row number: targets are read more than once, maybe in another order.
        .with_columns(customer=pl.col("customer_id").rank("dense").cast(pl.UInt32))
    )
    basket = baskets(lines, options)
    bought = (
        basket.join(targets.select("customer_id", "customer"), on="customer_id")
        .select("customer", "code")
        .unique()
        .cache()
    )
    # The frames read more than once are cached (`.cache()`, here and in `scores`): Polars'
    # common-subplan elimination does not match their readers (the co-occurrences were counted
    # ten times over and the lines scanned 54 times: 10 s instead of 3 on the shipped data),
    # and does not run at all where analyze turns it off.
    co = co_occurrence(basket).cache()
    n = options.recommendations
    return (
        scores(bought, co, n, keep)
        .with_columns(customer=_high("key"), code=_low("key"))
        .join(_products(purchase_lines(lines, options), basket), on="code", how="left")
        .join(targets, on="customer", how="left")
        .sort(
            ["customer_id", "score", "invoices", "stock_code"],
            descending=[False, True, True, False],
        )
        .group_by("customer_id", maintain_order=True)
        .head(n)
        .select(
            "customer_id",
            "segment",
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("customer_id").alias("rank"),
            "stock_code",
            "description",
            "score",
        )
    )


def _hidden_invoices(lines: pl.LazyFrame, customers: pl.LazyFrame) -> pl.LazyFrame:
    """(customer_id, invoice_no): the last purchase invoice (latest date, then greatest number)
    of each customer of `customers` with at least two purchase invoices."""
    invoices = (
        lines.filter(HAS_CUSTOMER, ~IS_CANCELLATION)
        .join(customers.select("customer_id"), on="customer_id")
        .group_by("customer_id", "invoice_no")
        .agg(date=pl.col("invoice_date").min())
    )
    return (
        invoices.sort("customer_id", "date", "invoice_no")
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("invoice_no").last(), invoices=pl.len())
        .filter(pl.col("invoices") >= 2)
        .select("customer_id", "invoice_no")
    )


def _best_sellers(basket: pl.LazyFrame, customers: pl.LazyFrame, top: int) -> pl.LazyFrame:
    """(customer_id, stock_code): per customer of `basket`'s customers in `customers`, the `top`
    codes held by most purchase invoices (then smallest code) that they have not bought."""
    owned = basket.join(customers, on="customer_id").select("customer_id", "stock_code").unique()
    # At most |B_c| of the best sellers are the customer's own: the first top + max |B_c| hold
    # the answer for everyone.
    enough = owned.group_by("customer_id").agg(n=pl.len()).select(pl.col("n").max() + top)
    ranked = (
        basket.group_by("stock_code")
        .agg(invoices=pl.len())
        .sort(["invoices", "stock_code"], descending=[True, False])
        .with_row_index("seller")
        .join(enough, how="cross")
        .filter(pl.col("seller") < pl.col("n"))
        .select("seller", "stock_code")
    )
    return (
        customers.select("customer_id")
        .join(ranked, how="cross")
        .join(owned, on=["customer_id", "stock_code"], how="anti")
        .sort("customer_id", "seller")
        .group_by("customer_id", maintain_order=True)
        .head(top)
        .select("customer_id", "stock_code")
    )


def holdout_hit_rate(
    lines: pl.LazyFrame,
    options: Options = DEFAULT,
    *,
    engine: Literal["polars", "duckdb"] = "polars",
) -> dict[str, int | float]:
    """How often a recommendation is bought next, against recommending the best sellers.

    The customers of `options.recommend_segments` (by `rfm` over all the lines) with at least
    two purchase invoices each have their last purchase invoice hidden (all its lines dropped);
    recommendations are computed by `engine` ("polars" or "duckdb") on the remaining lines
    for those customers, and the baseline recommends the same number of best sellers (most
    purchase invoices among the remaining baskets) they have not bought. A hit is a customer
    whose hidden invoice holds at least one of their recommended products. Returns customers,
    hits, hit_rate, baseline_hits, baseline_hit_rate.
    """
    if options.as_of is not None:
        lines = lines.filter(pl.col("invoice_date") <= options.as_of)
    lines = lines.collect().lazy()  # read once: every step below starts from them
    table = rfm(lines, options)
    wanted = table.filter(pl.col("segment").is_in(list(options.recommend_segments)))
    hidden = _hidden_invoices(lines, wanted).collect().lazy()
    customers = wanted.join(hidden, on="customer_id").select("customer_id", "segment")
    rest = lines.join(hidden.select("invoice_no"), on="invoice_no", how="anti")
    if engine == "duckdb":
        from lgs_fast import sql

        made = sql.recommendations_for(rest, options, customers.collect()).lazy()
    else:
        made = recommendations(rest, options, customers)
    held = baskets(lines, options).join(hidden, on=["customer_id", "invoice_no"])
    baseline = _best_sellers(baskets(rest, options), customers, options.recommendations)
    n = customers.select(pl.len()).collect().item()

    def hits(chosen: pl.LazyFrame) -> int:
        return (
            chosen.join(held, on=["customer_id", "stock_code"])
            .select(pl.col("customer_id").n_unique())
            .collect()
            .item()
        )

    made_hits, baseline_hits = hits(made), hits(baseline)
    return {
        "customers": n,
        "hits": made_hits,
        "hit_rate": made_hits / n if n else float("nan"),
        "baseline_hits": baseline_hits,
        "baseline_hit_rate": baseline_hits / n if n else float("nan"),
    }
