"""Altair charts: one function per chart, each fed an aggregated output table, never raw lines.

Every chart takes the tables `analyze` produced (dozens to a few hundred rows), so Altair's
5,000-row limit never bites and a spec is small enough to inline in the report.

In a notebook, each public function returns an Altair chart that Jupyter draws inline:

    import lgs_fast as lgs
    from lgs_fast import charts

    tables = lgs.compute_tables(lgs.find_lake().path)   # or lgs_fast.analyze.tables_of(lines)
    charts.show_inline()                                # once: draw without network access
    charts.monthly_sales(tables)

`CHARTS` maps each of the report's chart files to its function; `build_charts` and
`write_charts` are what `lgs-fast analyze` uses to draw them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

# A sequential blue palette (ColorBrewer "Blues") reads in greyscale by lightness; the two-way
# comparisons use a dark and a light shade of it for the same reason.
DARK, LIGHT, ACCENT = "#08519c", "#9ecae1", "#d94801"
SEGMENT_COLOURS = [
    "#08306b", "#08519c", "#2171b5", "#4292c6", "#6baed6",
    "#9ecae1", "#c6dbef", "#fdae6b", "#f16913", "#a63603",
]  # fmt: skip
WIDTH = 640

Tables = dict[str, pl.DataFrame]

__all__ = [
    "CHARTS",
    "Tables",
    "active_customers",
    "build_charts",
    "clv_by_segment",
    "clv_holdout",
    "cohort_retention",
    "invoice_box",
    "invoice_distribution",
    "monthly_sales",
    "new_vs_existing",
    "orders_per_month",
    "rf_grid",
    "sales_growth",
    "segment_sizes",
    "show_inline",
    "top_countries",
    "top_products",
    "write_charts",
]


def _data(frame: pl.DataFrame) -> alt.Data:
    # Dates as ISO strings: Vega-Lite parses them, and the JSON stays plain.
    rows = frame.with_columns(pl.col(pl.Date, pl.Datetime).dt.strftime("%Y-%m-%d")).to_dicts()
    return alt.Data(values=rows)


def _dark(colour: str) -> bool:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * red + 0.587 * green + 0.114 * blue < 140


def _pounds(field: str, title: str) -> alt.Y:
    return alt.Y(f"{field}:Q", title=title, axis=alt.Axis(format=",.0f"))


def invoice_distribution(tables: Tables, view: str = "all") -> alt.LayerChart:
    """Histogram of invoice totals with min / mean / median / mode / max rules.

    `view` is `"all"` (every invoice) or `"le_p85"` (invoices at or below the 85th percentile).
    """
    hist = tables["invoice_histogram"].filter(pl.col("view") == view)
    stats = tables["invoice_amounts"].filter(pl.col("view") == view)
    label = "all invoices" if view == "all" else "invoices at or below the 85th percentile"
    bars = (
        alt.Chart(_data(hist))
        .mark_bar(color=DARK, binSpacing=0)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="Invoice total (£)"),
            x2="bin_end:Q",
            y=alt.Y("count:Q", title="Invoices"),
            tooltip=[
                alt.Tooltip("bin_start:Q", title="From £", format=",.2f"),
                alt.Tooltip("bin_end:Q", title="To £", format=",.2f"),
                alt.Tooltip("count:Q", title="Invoices", format=","),
            ],
        )
    )
    marks = stats.unpivot(
        index="view",
        on=["min", "mean", "median", "mode", "max"],
        variable_name="statistic",
        value_name="amount",
    )
    rules = (
        alt.Chart(_data(marks))
        .mark_rule(strokeWidth=2, strokeDash=[4, 3])
        .encode(
            x="amount:Q",
            color=alt.Color(
                "statistic:N",
                title="Statistic",
                scale=alt.Scale(range=[LIGHT, ACCENT, "#6baed6", "#fd8d3c", "#08306b"]),
            ),
            tooltip=["statistic:N", alt.Tooltip("amount:Q", title="£", format=",.2f")],
        )
    )
    return alt.layer(bars, rules).properties(
        width=WIDTH, height=260, title=f"Invoice totals, {label}"
    )


def invoice_box(tables: Tables) -> alt.LayerChart:
    """Box plots (min, p25, median, p75, max) of invoice totals for both views, from the stats."""
    stats = tables["invoice_amounts"].with_columns(
        pl.col("view").replace({"all": "All invoices", "le_p85": "≤ 85th percentile"})
    )
    base = alt.Chart(_data(stats)).encode(y=alt.Y("view:N", title=None))
    whisker = base.mark_rule(color=DARK).encode(
        x=alt.X("min:Q", title="Invoice total (£)", scale=alt.Scale(type="symlog")), x2="max:Q"
    )
    box = base.mark_bar(color=LIGHT, size=22).encode(x="p25:Q", x2="p75:Q", tooltip=[
        "view:N", alt.Tooltip("min:Q", format=",.2f"), alt.Tooltip("p25:Q", format=",.2f"),
        alt.Tooltip("median:Q", format=",.2f"), alt.Tooltip("p75:Q", format=",.2f"),
        alt.Tooltip("max:Q", format=",.2f"),
    ])  # fmt: skip
    median = base.mark_tick(color=ACCENT, size=22, thickness=3).encode(x="median:Q")
    return alt.layer(whisker, box, median).properties(
        width=WIDTH, height=120, title="Invoice totals: spread (symlog scale)"
    )


MONTH = alt.X("yearmonth(month):O", title="Month")
MONTH_TIP = alt.Tooltip("yearmonth(month):O", title="Month")


def _monthly_pair(tables: Tables, labels: dict[str, str], value: str) -> pl.DataFrame:
    """Two monthly columns as long (month, kind, value) rows, the kinds named by `labels`."""
    return (
        tables["monthly"]
        .unpivot(index="month", on=list(labels), variable_name="kind", value_name=value)
        .with_columns(pl.col("kind").replace(labels))
    )


def orders_per_month(tables: Tables) -> alt.Chart:
    """Placed vs cancelled orders (distinct invoices) per month."""
    frame = _monthly_pair(
        tables, {"placed_orders": "Placed", "cancelled_orders": "Cancelled"}, "orders"
    )
    return (
        alt.Chart(_data(frame))
        .mark_bar()
        .encode(
            x=MONTH,
            xOffset="kind:N",
            y=alt.Y("orders:Q", title="Orders (invoices)"),
            color=alt.Color(
                "kind:N",
                title="Orders",
                scale=alt.Scale(domain=["Placed", "Cancelled"], range=[DARK, LIGHT]),
            ),
            tooltip=[
                MONTH_TIP,
                "kind:N",
                alt.Tooltip("orders:Q", format=","),
            ],
        )
        .properties(width=WIDTH, height=260, title="Placed and cancelled orders per month")
    )


def monthly_sales(tables: Tables) -> alt.Chart:
    """Sales per month (the `monthly` table), a line with a point per month."""
    return (
        alt.Chart(_data(tables["monthly"]))
        .mark_line(point=True, color=DARK)
        .encode(
            x=MONTH,
            y=_pounds("sales", "Sales (£)"),
            tooltip=[
                MONTH_TIP,
                alt.Tooltip("sales:Q", title="Sales £", format=",.2f"),
            ],
        )
        .properties(width=WIDTH, height=260, title="Monthly sales")
    )


def sales_growth(tables: Tables) -> alt.Chart:
    """Sales growth on the previous month in %, falls in the accent colour."""
    return (
        alt.Chart(_data(tables["monthly"].drop_nulls("sales_growth_pct")))
        .mark_bar()
        .encode(
            x=MONTH,
            y=alt.Y("sales_growth_pct:Q", title="Growth on previous month (%)"),
            color=alt.condition("datum.sales_growth_pct >= 0", alt.value(DARK), alt.value(ACCENT)),
            tooltip=[
                MONTH_TIP,
                alt.Tooltip("sales_growth_pct:Q", title="Growth %", format="+.1f"),
            ],
        )
        .properties(width=WIDTH, height=220, title="Monthly sales growth")
    )


def active_customers(tables: Tables) -> alt.Chart:
    """Customers with a line in each month."""
    return (
        alt.Chart(_data(tables["monthly"]))
        .mark_bar(color=DARK)
        .encode(
            x=MONTH,
            y=alt.Y("active_customers:Q", title="Active customers"),
            tooltip=[
                MONTH_TIP,
                alt.Tooltip("active_customers:Q", format=","),
            ],
        )
        .properties(width=WIDTH, height=220, title="Active customers per month")
    )


def new_vs_existing(tables: Tables) -> alt.Chart:
    """New and existing customers per month, stacked."""
    frame = _monthly_pair(
        tables, {"new_customers": "New", "existing_customers": "Existing"}, "customers"
    )
    return (
        alt.Chart(_data(frame))
        .mark_bar()
        .encode(
            x=MONTH,
            y=alt.Y("customers:Q", title="Customers", stack="zero"),
            color=alt.Color(
                "kind:N",
                title="Customers",
                scale=alt.Scale(domain=["Existing", "New"], range=[DARK, LIGHT]),
            ),
            tooltip=[
                MONTH_TIP,
                "kind:N",
                alt.Tooltip("customers:Q", format=","),
            ],
        )
        .properties(width=WIDTH, height=240, title="New and existing customers per month")
    )


def rf_grid(tables: Tables) -> alt.LayerChart:
    """The recency × frequency score grid, coloured by segment, labelled with customer counts."""
    grid = (
        tables["rfm"]
        .group_by("r_score", "f_score")
        .agg(customers=pl.len(), segment=pl.col("segment").first())
        .sort("r_score", "f_score")
    )
    order = tables["segments"]["segment"].to_list()
    colours = dict(zip(order, SEGMENT_COLOURS, strict=False))
    grid = grid.with_columns(
        ink=pl.col("segment").replace_strict(
            {s: "white" if _dark(c) else "black" for s, c in colours.items()}, default="black"
        )
    )
    base = alt.Chart(_data(grid)).encode(
        x=alt.X(
            "r_score:O", title="Recency score (higher = more recent)", axis=alt.Axis(labelAngle=0)
        ),
        y=alt.Y("f_score:O", title="Frequency score (higher = more frequent)", sort="descending"),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "segment:N",
            title="Segment",
            sort=order,
            scale=alt.Scale(domain=order, range=SEGMENT_COLOURS[: len(order)]),
        ),
        tooltip=["segment:N", "r_score:O", "f_score:O", alt.Tooltip("customers:Q", format=",")],
    )
    labels = base.mark_text(fontSize=12).encode(
        text=alt.Text("customers:Q", format=","),
        color=alt.Color("ink:N", scale=None),
    )
    return alt.layer(cells, labels).properties(
        width=360, height=360, title="Customers by recency and frequency score"
    )


def segment_sizes(tables: Tables) -> alt.HConcatChart:
    """Customers and revenue (net spend) per segment."""
    frame = tables["segments"].filter(pl.col("customers") > 0)
    order = frame["segment"].to_list()
    base = alt.Chart(_data(frame)).encode(y=alt.Y("segment:N", title=None, sort=order))
    customers = (
        base.mark_bar(color=DARK)
        .encode(
            x=alt.X("customers:Q", title="Customers"),
            tooltip=[
                "segment:N",
                alt.Tooltip("customers:Q", format=","),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(width=280, height=280, title="Customers per segment")
    )
    revenue = (
        base.mark_bar(color=LIGHT)
        .encode(
            x=alt.X("total_monetary:Q", title="Revenue (£)", axis=alt.Axis(format=",.0f")),
            tooltip=[
                "segment:N",
                alt.Tooltip("total_monetary:Q", title="Revenue £", format=",.0f"),
            ],
        )
        .properties(width=280, height=280, title="Revenue per segment")
    )
    return alt.hconcat(customers, revenue)


def top_countries(tables: Tables) -> alt.Chart:
    """Sales per country (the `top_countries` table), largest first."""
    frame = tables["top_countries"]
    return (
        alt.Chart(_data(frame))
        .mark_bar(color=DARK)
        .encode(
            x=alt.X(
                "sales:Q",
                title="Sales (£)",
                axis=alt.Axis(format=",.0f"),
                scale=alt.Scale(type="symlog"),
            ),
            y=alt.Y("country:N", title=None, sort=frame["country"].to_list()),
            tooltip=[
                "country:N",
                alt.Tooltip("sales:Q", format=",.0f"),
                alt.Tooltip("share:Q", format=".1%"),
                "orders:Q",
                "customers:Q",
            ],
        )
        .properties(
            width=WIDTH - 160,
            height=22 * max(frame.height, 1),
            title="Top countries by sales (symlog scale)",
        )
    )


def top_products(tables: Tables) -> alt.Chart:
    """Sales per product (the `top_products` table), labelled with stock code and name."""
    frame = tables["top_products"].with_columns(
        label=pl.col("stock_code") + " " + pl.col("description").fill_null("")
    )
    return (
        alt.Chart(_data(frame))
        .mark_bar(color=DARK)
        .encode(
            x=alt.X("sales:Q", title="Sales (£)", axis=alt.Axis(format=",.0f")),
            y=alt.Y("label:N", title=None, sort=frame["label"].to_list()),
            tooltip=[
                "stock_code:N",
                "description:N",
                alt.Tooltip("sales:Q", format=",.0f"),
                alt.Tooltip("quantity:Q", format=","),
                "orders:Q",
            ],
        )
        .properties(
            width=WIDTH - 200, height=22 * max(frame.height, 1), title="Top products by sales"
        )
    )


def cohort_retention(tables: Tables) -> alt.Chart:
    """Share of each monthly cohort buying again 1, 2, … months after its first purchase."""
    frame = tables["cohorts"].filter(pl.col("months_since") > 0)
    return (
        alt.Chart(_data(frame))
        .mark_rect()
        .encode(
            x=alt.X("months_since:O", title="Months after first purchase"),
            y=alt.Y("yearmonth(cohort):O", title="Cohort (first month)"),
            color=alt.Color(
                "retention:Q",
                title="Retained",
                scale=alt.Scale(scheme="blues"),
                legend=alt.Legend(format=".0%"),
            ),
            tooltip=[
                alt.Tooltip("yearmonth(cohort):O", title="Cohort"),
                "months_since:O",
                alt.Tooltip("retention:Q", format=".1%"),
                "customers:Q",
                "cohort_size:Q",
            ],
        )
        .properties(
            width=WIDTH - 100,
            height=24 * max(frame["cohort"].n_unique(), 1),
            title="Monthly cohort retention",
        )
    )


def clv_by_segment(tables: Tables) -> alt.Chart:
    """Total CLV per RFM segment (empty, and titled so, when no purchase model fits)."""
    frame = tables["clv_segments"]
    fitted = frame["total_clv"].null_count() < frame.height
    title = "CLV by segment" if fitted else "CLV by segment: none, no purchase model fits"
    return (
        alt.Chart(_data(frame.with_columns(pl.col("total_clv").fill_null(0.0))))
        .mark_bar(color=DARK)
        .encode(
            x=alt.X("total_clv:Q", title="Total CLV (£)", axis=alt.Axis(format=",.0f")),
            y=alt.Y("segment:N", title=None, sort="-x"),
            tooltip=[
                "segment:N",
                alt.Tooltip("customers:Q", format=","),
                alt.Tooltip("total_clv:Q", title="Total CLV £", format=",.0f"),
                alt.Tooltip("mean_clv:Q", title="Mean CLV £", format=",.2f"),
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
        alt.Chart(_data(long))
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


# Charts drawn only when their table exists (the holdout needs --calibration-end).
OPTIONAL_CHARTS: dict[str, str] = {
    "clv_by_segment": "clv_segments",
    "clv_holdout": "clv_holdout_by_frequency",
}

CHARTS: dict[str, Callable[[Tables], Any]] = {
    "invoice_amounts_all": lambda t: invoice_distribution(t, "all"),
    "invoice_amounts_p85": lambda t: invoice_distribution(t, "le_p85"),
    "invoice_box": invoice_box,
    "orders_per_month": orders_per_month,
    "monthly_sales": monthly_sales,
    "sales_growth": sales_growth,
    "active_customers": active_customers,
    "new_vs_existing": new_vs_existing,
    "rf_grid": rf_grid,
    "segment_sizes": segment_sizes,
    "top_countries": top_countries,
    "top_products": top_products,
    "cohort_retention": cohort_retention,
    "clv_by_segment": clv_by_segment,
    "clv_holdout": clv_holdout,
}


def notebook_bundle(spec: dict[str, Any], **_: Any) -> dict[str, Any]:
    """An Altair renderer: the chart's Vega-Lite spec, and the same chart as SVG.

    Altair's default renderer fetches Vega from a CDN, and JupyterLab 4 draws Vega-Lite up to
    version 5 itself while Altair 6 writes version 6; the SVG (drawn here by vl-convert, like
    the report's files) shows the chart offline in any frontend, and a frontend that draws this
    Vega-Lite version picks the spec.
    """
    import vl_convert as vlc

    major = alt.SCHEMA_VERSION.lstrip("v").split(".")[0]
    return {
        f"application/vnd.vegalite.v{major}+json": spec,
        "image/svg+xml": vlc.vegalite_to_svg(spec),
        "text/plain": f"<Altair chart: {spec.get('title', 'untitled')}>",
    }


def show_inline() -> None:
    """Draw charts in notebooks with `notebook_bundle` from now on (no network needed)."""
    alt.renderers.register("lgs_fast", notebook_bundle)
    alt.renderers.enable("lgs_fast")


def build_charts(tables: Tables) -> dict[str, Any]:
    """Every chart of the report, by file name."""
    return {
        name: make(tables)
        for name, make in CHARTS.items()
        if OPTIONAL_CHARTS.get(name, "overview") in tables
    }


PNG_SCALE = 2


def write_charts(charts: dict[str, Any], directory: Path) -> dict[str, dict[str, Any]]:
    """`NAME.vl.json`, `NAME.svg` and `NAME.png` (vl-convert: no browser, no network) per chart.

    The PNG is drawn at twice the SVG's size so it stays sharp on slides and in e-mails.
    """
    import vl_convert as vlc

    directory.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name, chart in charts.items():
        spec = chart.to_dict()
        text = json.dumps(spec, indent=1)
        (directory / f"{name}.vl.json").write_text(text)
        (directory / f"{name}.svg").write_text(vlc.vegalite_to_svg(text))
        (directory / f"{name}.png").write_bytes(vlc.vegalite_to_png(text, scale=PNG_SCALE))
        specs[name] = spec
    return specs
