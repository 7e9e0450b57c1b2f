"""What every chart shares: colours safe for colour blindness, the width, the money axis, and the table-to-data helpers."""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from lgs_fast.config import currency
from lgs_fast.outputs.wording import (
    labelled_months,
)

# Two-way comparisons use a dark and a light blue (ColorBrewer "Blues"), which also read apart
# in greyscale; falls and reversals take the orange, which no colour blindness confuses with
# blue. Months the data covers only in part are drawn faint.
DARK, LIGHT, ACCENT, GREY = "#08519c", "#9ecae1", "#d94801", "#bdbdbd"


PARTIAL_OPACITY = 0.4


# Paul Tol's "muted" scheme, nine colours built to stay distinct under every common colour
# blindness, plus its pale grey: one colour per segment, fixed by the segment map's order so a
# segment keeps its colour in every chart whatever order the chart lists it in.
SEGMENT_COLOURS = [
    "#DDDDDD", "#CC6677", "#882255", "#DDCC77", "#999933",
    "#117733", "#88CCEE", "#44AA99", "#332288", "#AA4499",
]  # fmt: skip


# Okabe and Ito's colour-blind-safe colours for the statistics drawn over a histogram.
STATISTIC_COLOURS = {
    "min": "#56B4E9", "mode": "#CC79A7", "median": "#009E73", "mean": "#E69F00", "max": "#D55E00",
}  # fmt: skip


WIDTH = 640


Tables = dict[str, pl.DataFrame]


def chart_data(frame: pl.DataFrame) -> alt.Data:
    # Dates as ISO strings: Vega-Lite parses them, and the JSON stays plain. A NaN is written
    # as null (JSON has no NaN; one made the whole analysis fail to draw its charts).
    rows = frame.with_columns(
        pl.col(pl.Date, pl.Datetime).dt.strftime("%Y-%m-%d"),
        pl.col(pl.Float32, pl.Float64).fill_nan(None),
    ).to_dicts()
    return alt.Data(values=rows)


def _dark(colour: str) -> bool:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * red + 0.587 * green + 0.114 * blue < 140


def pounds_axis(field: str, title: str) -> alt.Y:
    return alt.Y(f"{field}:Q", title=title, axis=alt.Axis(format=",.0f"))


def segment_colours(tables: Tables) -> dict[str, str]:
    """Each segment's colour, by its place in the segment map (`SEGMENT_COLOURS`, repeating)."""
    names = tables["segments"]["segment"].to_list()
    return {n: SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)] for i, n in enumerate(names)}


def ink(colours: dict[str, str]) -> dict[str, str]:
    """Text colour readable on each segment's colour."""
    return {s: "white" if _dark(c) else "black" for s, c in colours.items()}


def log_ticks(low: float, high: float) -> list[float]:
    """Decades 1, 10, 100, … spanning [low, high] (positive), for a labelled log axis."""
    ticks, tick = [], 10.0 ** math.floor(math.log10(max(low, 1e-2)))
    while tick <= high * 10:
        ticks.append(tick)
        tick *= 10
    return ticks


def month_axis(tables: Tables) -> tuple[pl.DataFrame, alt.X, alt.Tooltip]:
    """The complete months of the monthly table labelled by `labelled_months`, its x axis in
    month order, and a tooltip.

    A month the data covers only in part is left out of the monthly charts: a few days drawn
    beside whole months read as a collapse, whatever the label says. The charts' titles name
    what was left out (`left_out`). Where no month is complete, every month is drawn, named
    with the days it covers, `Dec 2011 (1–9)`, and faint.
    """
    labelled = labelled_months(tables)
    frame = labelled.filter(pl.col("complete")) if labelled["complete"].any() else labelled
    x = alt.X(
        "label:N", title="Month", sort=frame["label"].to_list(), axis=alt.Axis(labelAngle=-40)
    )
    return frame, x, alt.Tooltip("label:N", title="Month")


def left_out(tables: Tables, title: str) -> str | list[str]:
    """`title`, with a second line naming the partial months the chart leaves out."""
    labelled = labelled_months(tables)
    if not labelled["complete"].any():
        return title
    partial = labelled.filter(~pl.col("complete"))["label"].to_list()
    if not partial:
        return title
    return [title, f"{' and '.join(partial)} left out: only part of the month is in the data"]


PERIOD = alt.Opacity(
    "period:N",
    title="Month",
    scale=alt.Scale(domain=["complete", "partial"], range=[1.0, PARTIAL_OPACITY]),
    legend=alt.Legend(labelExpr="datum.label == 'partial' ? 'partial (days covered)' : 'complete'"),
)


def monthly_pair(frame: pl.DataFrame, labels: dict[str, str], value: str) -> pl.DataFrame:
    """Two monthly columns as long (label, period, kind, value) rows, kinds named by `labels`."""
    return frame.unpivot(
        index=["label", "period"], on=list(labels), variable_name="kind", value_name=value
    ).with_columns(pl.col("kind").replace(labels))


def segment_scale(tables: Tables, order: list[str]) -> alt.Scale:
    colours = segment_colours(tables)
    return alt.Scale(domain=order, range=[colours[s] for s in order])


def labelled_bars(
    frame: pl.DataFrame,
    value: str,
    title: str,
    y: alt.Y,
    colour: alt.Color | str,
    width: int,
) -> alt.LayerChart:
    """Horizontal bars of `value`, each with its `text` column written at its end.

    The axis is linear from 0 (or the smallest negative value), with room kept on the right
    for the labels, so a bar's length stays proportional to its value.
    """
    low = min(float(frame[value].min() or 0.0), 0.0)
    high = max(float(frame[value].max() or 0.0), 0.0)
    x = alt.X(
        f"{value}:Q",
        title=title,
        scale=alt.Scale(domain=[low, high * 1.5 if high > 0 else 1.0]),
        axis=alt.Axis(format=",.0f", labelOverlap=True),
    )
    base = alt.Chart(chart_data(frame)).encode(y=y)
    if isinstance(colour, str):
        bars = base.mark_bar(color=colour).encode(x=x)
    else:
        bars = base.mark_bar().encode(x=x, color=colour)
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(x=f"{value}:Q", text="text:N")
    return alt.layer(bars, labels).properties(width=width, height=22 * max(frame.height, 1))


def with_text(frame: pl.DataFrame, value: str, share: pl.Expr | None, pounds: bool) -> pl.DataFrame:
    """`frame` with `text`: the value (in whole pounds when `pounds`) and its share in %."""
    shown = pl.col(value).map_elements(
        (lambda v: f"{currency()}{v:,.0f}") if pounds else (lambda v: f"{v:,}"), pl.String
    )
    if share is None:
        return frame.with_columns(text=shown)
    return frame.with_columns(text=pl.format("{} ({}%)", shown, (share * 100).round(1)))


def product_bars(frame: pl.DataFrame, value: str, title: str, pounds: bool) -> alt.LayerChart:
    """Bars of `value` per product, in `frame`'s order, named by code and full description."""
    frame = with_text(frame, value, None, pounds=pounds).with_columns(
        label=pl.concat_str("stock_code", "description", separator=" ", ignore_nulls=True)
    )
    return labelled_bars(
        frame,
        value,
        title,
        alt.Y("label:N", title=None, sort=frame["label"].to_list(), axis=alt.Axis(labelLimit=0)),
        DARK,
        WIDTH - 330,
    )
