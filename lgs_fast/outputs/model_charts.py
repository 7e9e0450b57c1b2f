"""The charts of what the models found: segment transitions, recommended products, the sales forecast, customers' value (CLV by segment, its holdout, the expectation matrix) and the last campaign's results."""

from __future__ import annotations

import altair as alt
import polars as pl

from lgs_fast.config import MOVEMENT_NEW, currency
from lgs_fast.outputs.chart_style import (
    ACCENT,
    DARK,
    GREY,
    LIGHT,
    WIDTH,
    Tables,
    chart_data,
    pounds_axis,
    product_bars,
)
from lgs_fast.outputs.wording import (
    segments_by_value,
)


def segment_transitions(tables: Tables) -> alt.LayerChart:
    """Customers by segment then (rows, `new` first) and segment now (columns), each cell
    labelled; the diagonal is who stayed, everything off it moved."""
    frame = tables["segment_transitions"]
    now = segments_by_value(tables)["segment"].to_list()
    then = [MOVEMENT_NEW, *now]
    strongest = float(frame["customers"].max() or 0)
    base = alt.Chart(chart_data(frame)).encode(
        x=alt.X(
            "segment:N", title="Segment now", sort=now, axis=alt.Axis(labelAngle=-40, labelLimit=0)
        ),
        y=alt.Y("segment_then:N", title="Segment then", sort=then, axis=alt.Axis(labelLimit=0)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("customers:Q", title="Customers", scale=alt.Scale(scheme="blues")),
        tooltip=[
            alt.Tooltip("segment_then:N", title="Then"),
            alt.Tooltip("segment:N", title="Now"),
            alt.Tooltip("customers:Q", format=","),
            alt.Tooltip("net_revenue:Q", title=f"Their net spend {currency()}", format=",.2f"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("customers:Q", format=","),
        color=alt.condition(
            f"datum.customers > {strongest * 0.6}", alt.value("white"), alt.value("black")
        ),
    )
    return alt.layer(cells, text).properties(
        width=36 * len(now), height=24 * len(then), title="Who moved between segments"
    )


def recommended_products(tables: Tables) -> alt.LayerChart:
    """The new-to-you products recommended most often, by how many customers of the target
    segments get each (the `recommendations` table of kind `new`, counted)."""
    frame = (
        tables["recommendations"]
        .filter(pl.col("kind") == "new")
        .group_by("stock_code", "description")
        .agg(customers=pl.col("customer_id").n_unique().cast(pl.Int64))
        .sort(["customers", "stock_code"], descending=[True, False])
        .head(15)
    )
    return product_bars(frame, "customers", "Customers it is recommended to", False).properties(
        title="New-to-you products recommended most often"
    )


def sales_forecast(tables: Tables) -> alt.LayerChart:
    """Weekly net revenue, then the forecast with its 80% and 95% intervals as bands."""
    frame = tables["sales_forecast"]
    x = alt.X("week:T", title="Week", axis=alt.Axis(format="%b %Y"))
    base = alt.Chart(chart_data(frame))
    ahead = base.transform_filter("datum.kind == 'forecast'")
    band95 = ahead.mark_area(color=LIGHT, opacity=0.45).encode(
        x=x, y=alt.Y("lo_95:Q"), y2="hi_95:Q"
    )
    band80 = ahead.mark_area(color=LIGHT, opacity=0.9).encode(x=x, y="lo_80:Q", y2="hi_80:Q")
    line = base.mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=x,
        y=pounds_axis("net_revenue", f"Net revenue per week ({currency()})"),
        color=alt.Color(
            "kind:N",
            title=None,
            scale=alt.Scale(domain=["actual", "forecast"], range=[DARK, ACCENT]),
        ),
        tooltip=[
            alt.Tooltip("week:T", title="Week of", format="%d %b %Y"),
            "kind:N",
            alt.Tooltip("net_revenue:Q", title=f"Net revenue {currency()}", format=",.0f"),
            alt.Tooltip("lo_80:Q", title=f"80% from {currency()}", format=",.0f"),
            alt.Tooltip("hi_80:Q", title=f"80% to {currency()}", format=",.0f"),
            alt.Tooltip("lo_95:Q", title=f"95% from {currency()}", format=",.0f"),
            alt.Tooltip("hi_95:Q", title=f"95% to {currency()}", format=",.0f"),
        ],
    )
    return alt.layer(band95, band80, line).properties(
        width=WIDTH, height=260, title="Weekly net revenue and forecast (bands: 80% and 95%)"
    )


def clv_by_segment(tables: Tables) -> alt.Chart:
    """Total CLV per RFM segment (empty, and titled so, when no purchase model fits)."""
    frame = tables["clv_segments"]
    fitted = frame["total_clv"].null_count() < frame.height
    title = "CLV by segment" if fitted else "CLV by segment: none, no purchase model fits"
    return (
        alt.Chart(chart_data(frame.with_columns(pl.col("total_clv").fill_null(0.0))))
        .mark_bar(color=DARK)
        .encode(
            x=alt.X("total_clv:Q", title=f"Total CLV ({currency()})", axis=alt.Axis(format=",.0f")),
            y=alt.Y("segment:N", title=None, sort="-x"),
            tooltip=[
                "segment:N",
                alt.Tooltip("customers:Q", format=","),
                alt.Tooltip("total_clv:Q", title=f"Total CLV {currency()}", format=",.0f"),
                alt.Tooltip("mean_clv:Q", title=f"Mean CLV {currency()}", format=",.2f"),
                alt.Tooltip("mean_probability_alive:Q", title="P(alive)", format=".1%"),
            ],
        )
        .properties(width=WIDTH - 200, height=22 * max(frame.height, 1), title=title)
    )


def clv_holdout(tables: Tables) -> alt.Chart:
    """Holdout purchases per customer, actual against each model's prediction, by the
    customer's repeat purchases in the calibration period (the papers' conditional check)."""
    frame = tables["clv_holdout_by_frequency"]
    long = pl.concat(
        [
            frame.select(
                "calibration_frequency", series=pl.lit("actual"), purchases="actual_purchases"
            ).unique(),
            frame.select(
                "calibration_frequency",
                series=pl.col("model"),
                purchases="predicted_purchases",
            ),
        ]
    ).sort("series", "calibration_frequency")
    return (
        alt.Chart(chart_data(long))
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "calibration_frequency:O",
                title="Repeat purchase days before the holdout (7 = 7 or more)",
            ),
            y=alt.Y("purchases:Q", title="Mean purchase days in the holdout"),
            color=alt.Color("series:N", title=None, scale=alt.Scale(range=[ACCENT, DARK, LIGHT])),
            tooltip=[
                "series:N",
                "calibration_frequency:O",
                alt.Tooltip("purchases:Q", format=".2f"),
            ],
        )
        .properties(
            width=WIDTH - 100, height=260, title="Holdout: actual against predicted purchases"
        )
    )


def clv_matrix(tables: Tables) -> alt.Chart:
    """What the model in use expects of a customer, by repeat purchase days and days since the
    last purchase (lifetimes' frequency/recency matrix), for customers as old as the oldest."""
    frame = tables["clv_matrix"]
    age = int(frame["age"][0]) if frame.height else 0
    horizon = int(frame["horizon_days"][0]) if frame.height else 0
    return (
        alt.Chart(chart_data(frame))
        .mark_rect()
        .encode(
            x=alt.X("days_since_last:O", title="Days since the last purchase"),
            y=alt.Y("frequency:O", title="Repeat purchase days so far", sort="descending"),
            color=alt.Color(
                "expected_purchases:Q",
                title=f"Purchase days, next {horizon} days",
                scale=alt.Scale(scheme="blues"),
            ),
            tooltip=[
                alt.Tooltip("frequency:O", title="Repeat purchase days"),
                alt.Tooltip("days_since_last:O", title="Days since the last"),
                alt.Tooltip("expected_purchases:Q", title="Expected purchase days", format=".2f"),
                alt.Tooltip("probability_alive:Q", title="Still buying", format=".0%"),
            ],
        )
        .properties(
            width=WIDTH - 200,
            height=12 * max(frame["frequency"].n_unique(), 1),
            title=f"What the model expects of a customer who first bought {age} days ago",
        )
    )


def campaign_results(tables: Tables) -> alt.Chart:
    """Per list, how many more of the contacted than of the held back bought (points), with
    its 95% interval; lists too small to tell are left out (the report says so)."""
    frame = (
        tables["campaign_results"]
        .filter(pl.col("measure") == "bought", pl.col("lo_95").is_not_null())
        .select(
            "segment",
            points=pl.col("difference") * 100,
            lo=pl.col("lo_95") * 100,
            hi=pl.col("hi_95") * 100,
        )
    )
    base = alt.Chart(chart_data(frame)).encode(
        y=alt.Y("segment:N", title=None, sort=frame["segment"].to_list())
    )
    bars = base.mark_rule(strokeWidth=2, color=DARK).encode(
        x=alt.X("lo:Q", title="Contacted − held back who bought (points, 95% interval)"),
        x2="hi:Q",
    )
    dots = base.mark_point(filled=True, size=60, color=DARK).encode(
        x="points:Q",
        tooltip=[
            alt.Tooltip("segment:N", title="List"),
            alt.Tooltip("points:Q", title="Difference (points)", format="+.1f"),
            alt.Tooltip("lo:Q", title="95% from", format="+.1f"),
            alt.Tooltip("hi:Q", title="95% to", format="+.1f"),
        ],
    )
    zero = alt.Chart(chart_data(pl.DataFrame({"x": [0.0]}))).mark_rule(color=GREY).encode(x="x:Q")
    return (zero + bars + dots).properties(
        width=WIDTH - 200,
        height=28 * max(frame.height, 1),
        title="Did contacting them make them buy?",
    )
