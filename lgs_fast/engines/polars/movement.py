"""Segment movement: where each customer's segment was at an earlier time T0 and where it is at
the reference time T (DESIGN.md "segment movement"), per customer and as a table of transitions.

Both times are scored by the one RFM definition (`metrics.rfm_at`), each over the lines up to
it; `queries/segment_movement.sql` and `queries/segment_transitions.sql` are the DuckDB twins.
"""

from __future__ import annotations

import polars as pl

from lgs_fast.config import (
    COMPARE_DAYS,
    MOVEMENT_ARROW,
    MOVEMENT_NEW,
    MOVEMENT_SAME,
    Options,
)
from lgs_fast.engines.polars.customers import reference_time, rfm, rfm_at
from lgs_fast.engines.polars.expressions import DEFAULT, Data, as_micro, money_sum
from lgs_fast.lake.layers import as_layers


def compare_time(rows: pl.LazyFrame, options: Options = DEFAULT) -> pl.LazyFrame:
    """One row, `t`: T0 = `compare_as_of`, else `COMPARE_DAYS` before the reference time T.

    Never after T: a T0 at or after T (possible only when T comes from the data) is T itself,
    so that everyone is `same` rather than compared with lines they do not have.
    """
    now = pl.col("t")
    if options.compare_as_of is None:
        then = now - pl.duration(days=COMPARE_DAYS)
    else:
        then = pl.lit(options.compare_as_of, dtype=pl.Datetime("us"))
    return reference_time(rows, options).select(t=pl.min_horizontal(then, now))


def segment_movement(
    data: Data, options: Options = DEFAULT, rfm_now: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """Per customer of `rfm` at T: customer_id, segment_then (at T0, `new` without a purchase by
    then; notebook: without a line), segment (at T), and movement: `new`, `same` or `THEN → NOW`.

    `rfm_now`, when given, is `rfm(data, options)` already computed.
    """
    rows = as_layers(data).invoices
    now = rfm(data, options) if rfm_now is None else rfm_now
    t0 = compare_time(rows, options)
    # Cut by a join rather than a literal: by default T0 comes from the data.
    before = rows.join(t0, how="cross").filter(pl.col("invoice_date") <= pl.col("t")).drop("t")
    then = rfm_at(before, options, t0).select("customer_id", segment_then="segment")
    segment_then, segment = pl.col("segment_then"), pl.col("segment")
    return (
        now.select("customer_id", "segment")
        .join(then, on="customer_id", how="left")
        .select(
            "customer_id",
            segment_then.fill_null(MOVEMENT_NEW),
            "segment",
            movement=pl.when(segment_then.is_null())
            .then(pl.lit(MOVEMENT_NEW))
            .when(segment_then == segment)
            .then(pl.lit(MOVEMENT_SAME))
            .otherwise(pl.concat_str(segment_then, pl.lit(MOVEMENT_ARROW), segment)),
        )
        .sort("customer_id")
    )


def segment_transitions(movement: pl.LazyFrame, rfm_now: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (segment_then, segment) that occurs in `movement`: customers, and net_revenue,
    their net spend up to T (`monetary` of `rfm_now`, the rfm the movement was computed with).
    Sorted by segment_then, then segment (code point order, so `new` comes after the segments'
    capitalised names)."""
    return (
        movement.join(rfm_now.select("customer_id", "monetary"), on="customer_id")
        .group_by("segment_then", "segment")
        .agg(customers=pl.len().cast(pl.Int64), net_revenue=money_sum(as_micro(pl.col("monetary"))))
        .sort("segment_then", "segment")
    )
