"""Altair charts: one function per chart, each fed an aggregated output table, never raw lines.

Every chart takes the tables `analyze` produced (dozens to a few hundred rows), so Altair's
5,000-row limit never bites and a spec is small enough to inline in the report.

In a notebook, each public function returns an Altair chart that Jupyter draws inline:

    import lgs_fast as lgs
    from lgs_fast.outputs import charts

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

from lgs_fast.config import currency
from lgs_fast.outputs.chart_style import (
    ACCENT,
    DARK,
    GREY,
    LIGHT,
    PERIOD,
    STATISTIC_COLOURS,
    WIDTH,
    Tables,
    chart_data,
    ink,
    labelled_bars,
    left_out,
    log_ticks,
    month_axis,
    monthly_pair,
    pounds_axis,
    product_bars,
    segment_colours,
    segment_scale,
    with_text,
)
from lgs_fast.outputs.model_charts import (
    campaign_results,
    clv_by_segment,
    clv_holdout,
    clv_matrix,
    recommended_products,
    sales_forecast,
    segment_transitions,
)
from lgs_fast.outputs.wording import (
    labelled_months,
    largest_reversal,
    money,
    segments_by_value,
    shown_tables,
)

__all__ = [
    "CHARTS",
    "Tables",
    "active_customers",
    "build_charts",
    "clv_by_segment",
    "clv_holdout",
    "clv_matrix",
    "campaign_results",
    "cohort_retention",
    "invoice_box",
    "invoice_distribution",
    "monthly_sales",
    "new_vs_existing",
    "orders_per_month",
    "recommended_products",
    "rf_grid",
    "sales_forecast",
    "sales_growth",
    "segment_sizes",
    "segment_transitions",
    "show_inline",
    "top_countries",
    "top_products",
    "write_charts",
]


STATISTICS = ["min", "mode", "median", "mean", "max"]


def invoice_distribution(tables: Tables, view: str = "all") -> alt.LayerChart:
    """Histogram of invoice totals with min / mode / median / mean / max rules.

    `view` is `"all"` (every invoice) or `"le_p85"` (invoices at or below the 85th percentile).
    When the largest invoice was reversed by a later credit note, the chart says so beside its
    rule: a cancelled order, not a best customer, stretches the axis.
    """
    hist = tables["invoice_histogram"].filter(pl.col("view") == view)
    stats = tables["invoice_amounts"].filter(pl.col("view") == view)
    label = "all invoices" if view == "all" else "invoices at or below the 85th percentile"
    bars = (
        alt.Chart(chart_data(hist))
        .mark_bar(color=DARK, binSpacing=0)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title=f"Invoice total ({currency()})"),
            x2="bin_end:Q",
            y=alt.Y("count:Q", title="Invoices"),
            tooltip=[
                alt.Tooltip("bin_start:Q", title=f"From {currency()}", format=",.2f"),
                alt.Tooltip("bin_end:Q", title=f"To {currency()}", format=",.2f"),
                alt.Tooltip("count:Q", title="Invoices", format=","),
            ],
        )
    )
    marks = stats.unpivot(
        index="view", on=STATISTICS, variable_name="statistic", value_name="amount"
    ).with_columns(text=pl.col("statistic") + " " + pl.col("amount").map_elements(money, str))
    rules = (
        alt.Chart(chart_data(marks))
        .mark_rule(strokeWidth=2)
        .encode(
            x="amount:Q",
            color=alt.Color(
                "statistic:N",
                title="Statistic",
                sort=STATISTICS,
                scale=alt.Scale(domain=STATISTICS, range=list(STATISTIC_COLOURS.values())),
            ),
            strokeDash=alt.StrokeDash(
                "statistic:N",
                sort=STATISTICS,
                title="Statistic",
                scale=alt.Scale(domain=STATISTICS, range=[[1, 0], [2, 2], [6, 2], [4, 4], [1, 0]]),
            ),
            tooltip=["statistic:N", alt.Tooltip("amount:Q", title=f"{currency()}", format=",.2f")],
        )
    )
    layers: list[alt.Chart] = [bars, rules]
    reversal = largest_reversal(tables) if view == "all" else None
    if reversal is not None:
        note = pl.DataFrame(
            {
                "amount": [reversal["total"]],
                "text": [
                    f"max {money(reversal['total'])}: invoice {reversal['invoice_no']}, "
                    f"reversed by credit note {reversal['credit_note']}"
                ],
            }
        )
        layers.append(
            alt.Chart(chart_data(note))
            .mark_text(align="right", baseline="top", dx=-6, dy=4, color=ACCENT, fontSize=11)
            .encode(x="amount:Q", y=alt.value(0), text="text:N")
        )
    return alt.layer(*layers).properties(width=WIDTH, height=260, title=f"Invoice totals, {label}")


def invoice_box(tables: Tables) -> alt.LayerChart:
    """Box plots (min, p25, median, p75, max) of invoice totals for both views, on a log axis
    labelled at every decade (£1, £10, £100, …), so the boxes and the far maximum both read."""
    stats = tables["invoice_amounts"].with_columns(
        pl.col("view").replace({"all": "All invoices", "le_p85": "≤ 85th percentile"})
    )
    positive = stats.filter(pl.col("min") > 0)
    ticks = (
        log_ticks(float(positive["min"].min()), float(positive["max"].max()))  # type: ignore[arg-type]
        if positive.height
        else [1.0]
    )
    axis = alt.Axis(
        values=ticks,
        labelExpr=f"'{currency()}' + format(datum.value, datum.value < 1 ? '.2~f' : ',')",
    )
    base = alt.Chart(chart_data(positive)).encode(y=alt.Y("view:N", title=None))
    scale = alt.Scale(type="log", domain=[ticks[0], ticks[-1]])
    whisker = base.mark_rule(color=DARK).encode(
        x=alt.X("min:Q", title=f"Invoice total ({currency()}, log scale)", scale=scale, axis=axis),
        x2="max:Q",
    )
    box = base.mark_bar(color=LIGHT, size=22).encode(x="p25:Q", x2="p75:Q", tooltip=[
        "view:N", alt.Tooltip("min:Q", format=",.2f"), alt.Tooltip("p25:Q", format=",.2f"),
        alt.Tooltip("median:Q", format=",.2f"), alt.Tooltip("p75:Q", format=",.2f"),
        alt.Tooltip("max:Q", format=",.2f"),
    ])  # fmt: skip
    median = base.mark_tick(color=ACCENT, size=22, thickness=3).encode(x="median:Q")
    return alt.layer(whisker, box, median).properties(
        width=WIDTH, height=120, title="Invoice totals: spread (log scale; orange = median)"
    )


def orders_per_month(tables: Tables) -> alt.Chart:
    """Purchase invoices and credit notes (distinct invoices) per month."""
    months, x, tip = month_axis(tables)
    names = {"placed_orders": "Purchase invoices", "cancelled_orders": "Credit notes"}
    frame = monthly_pair(months, names, "invoices")
    return (
        alt.Chart(chart_data(frame))
        .mark_bar()
        .encode(
            x=x,
            xOffset=alt.XOffset("kind:N", sort=list(names.values())),
            y=alt.Y("invoices:Q", title="Invoices"),
            color=alt.Color(
                "kind:N",
                title="Invoices",
                scale=alt.Scale(domain=list(names.values()), range=[DARK, ACCENT]),
            ),
            opacity=PERIOD,
            tooltip=[tip, "kind:N", alt.Tooltip("invoices:Q", format=",")],
        )
        .properties(
            width=WIDTH,
            height=260,
            title=left_out(tables, "Purchase invoices and credit notes per month"),
        )
    )


def monthly_sales(tables: Tables) -> alt.LayerChart:
    """Placed sales per month: a line through the complete months (partial ones left out)."""
    months, x, tip = month_axis(tables)
    base = alt.Chart(chart_data(months)).encode(
        x=x,
        y=pounds_axis("sales", f"Placed sales ({currency()})"),
        tooltip=[
            tip,
            alt.Tooltip("sales:Q", title=f"Placed sales {currency()}", format=",.2f"),
            "period:N",
        ],
    )
    line = base.mark_line(color=DARK)
    points = base.mark_point(size=60, color=DARK, strokeWidth=2).encode(
        fill=alt.Fill(
            "period:N",
            title="Month",
            scale=alt.Scale(domain=["complete", "partial"], range=[DARK, "white"]),
        )
    )
    return alt.layer(line, points).properties(
        width=WIDTH, height=260, title=left_out(tables, "Placed sales per month")
    )


def sales_growth(tables: Tables) -> alt.Chart:
    """Placed sales growth on the previous month in %, between complete months only: a change
    to or from a partial month compares days with a whole month, not trade (left out, named in
    the title)."""
    months, x, tip = month_axis(tables)
    frame = (
        labelled_months(tables)
        .with_columns(
            change=pl.when(~pl.col("complete") | ~pl.col("complete").shift(1).fill_null(True))
            .then(pl.lit("involves a partial month"))
            .when(pl.col("sales_growth_pct") >= 0)
            .then(pl.lit("rise"))
            .otherwise(pl.lit("fall"))
        )
        .drop_nulls("sales_growth_pct")
        .filter(pl.col("label").is_in(months["label"].implode()))
    )
    if months["complete"].all():
        frame = frame.filter(pl.col("change") != "involves a partial month")
    kinds = ["rise", "fall", "involves a partial month"][
        : 3 if (frame["change"] == "involves a partial month").any() else 2
    ]
    return (
        alt.Chart(chart_data(frame))
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sales_growth_pct:Q", title="Growth on previous month (%)"),
            color=alt.Color(
                "change:N",
                title="Change",
                scale=alt.Scale(domain=kinds, range=[DARK, ACCENT, GREY][: len(kinds)]),
            ),
            tooltip=[
                tip,
                alt.Tooltip("sales_growth_pct:Q", title="Growth %", format="+.1f"),
                alt.Tooltip("change:N", title="Change"),
            ],
        )
        .properties(
            width=WIDTH,
            height=220,
            title=left_out(tables, "Placed sales growth on the previous month"),
        )
    )


def active_customers(tables: Tables) -> alt.Chart:
    """Customers with a line in each month (complete months)."""
    months, x, tip = month_axis(tables)
    return (
        alt.Chart(chart_data(months))
        .mark_bar(color=DARK)
        .encode(
            x=x,
            y=alt.Y("active_customers:Q", title="Active customers"),
            opacity=PERIOD,
            tooltip=[tip, alt.Tooltip("active_customers:Q", format=",")],
        )
        .properties(width=WIDTH, height=220, title=left_out(tables, "Active customers per month"))
    )


def new_vs_existing(tables: Tables) -> alt.Chart:
    """New and existing customers per month, stacked. Where the table cannot tell them apart
    (the first month of the data: nobody's history is known), the month's active customers are
    one grey bar, "not known"."""
    months, x, tip = month_axis(tables)
    months = months.with_columns(
        unknown=pl.when(pl.col("new_customers").is_null()).then(pl.col("active_customers"))
    )
    names = {"existing_customers": "Existing", "new_customers": "New", "unknown": "Not known"}
    frame = monthly_pair(months, names, "customers").drop_nulls("customers")
    return (
        alt.Chart(chart_data(frame))
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("customers:Q", title="Customers", stack="zero"),
            color=alt.Color(
                "kind:N",
                title="Customers",
                scale=alt.Scale(domain=list(names.values()), range=[DARK, LIGHT, GREY]),
            ),
            order=alt.Order("kind:N"),
            opacity=PERIOD,
            tooltip=[tip, "kind:N", alt.Tooltip("customers:Q", format=",")],
        )
        .properties(
            width=WIDTH,
            height=240,
            title=left_out(
                tables, "New and existing customers per month (first month: history not known)"
            ),
        )
    )


def rf_grid(tables: Tables) -> alt.LayerChart:
    """The recency × frequency score grid, coloured by segment, labelled with customer counts;
    the legend lists segments by value, as the tables do."""
    grid = (
        tables["rfm"]
        .group_by("r_score", "f_score")
        .agg(customers=pl.len(), segment=pl.col("segment").first())
        .sort("r_score", "f_score")
    )
    order = segments_by_value(tables)["segment"].to_list()
    grid = grid.with_columns(
        ink=pl.col("segment").replace_strict(ink(segment_colours(tables)), default="black")
    )
    base = alt.Chart(chart_data(grid)).encode(
        x=alt.X(
            "r_score:O", title="Recency score (higher = more recent)", axis=alt.Axis(labelAngle=0)
        ),
        y=alt.Y("f_score:O", title="Frequency score (higher = more frequent)", sort="descending"),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "segment:N", title="Segment", sort=order, scale=segment_scale(tables, order)
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
    """Customers and net spend per segment, largest net spend first, each bar labelled with its
    value and share."""
    frame = segments_by_value(tables).filter(pl.col("customers") > 0)
    order = frame["segment"].to_list()
    y = alt.Y("segment:N", title=None, sort=order)
    colour = alt.Color("segment:N", scale=segment_scale(tables, order), legend=None)
    spend_share = pl.col("total_monetary") / pl.col("total_monetary").sum()
    customers = labelled_bars(
        with_text(frame, "customers", pl.col("share"), pounds=False),
        "customers", "Customers", y, colour, 220,
    ).properties(title="Customers per segment")  # fmt: skip
    spend = labelled_bars(
        with_text(frame, "total_monetary", spend_share, pounds=True),
        "total_monetary", f"Net spend ({currency()})", y, colour, 240,
    ).properties(title="Net spend per segment")  # fmt: skip
    return alt.hconcat(customers, spend)


def top_countries(tables: Tables) -> alt.LayerChart:
    """Placed sales per country, largest first, on a linear axis: every bar is labelled with its
    value and share, so the small ones read however long the first is."""
    frame = with_text(tables["top_countries"], "sales", pl.col("share"), pounds=True)
    return labelled_bars(
        frame,
        "sales",
        f"Placed sales ({currency()})",
        alt.Y("country:N", title=None, sort=frame["country"].to_list()),
        DARK,
        WIDTH - 180,
    ).properties(title="Top countries by placed sales (share of all placed sales)")


def top_products(tables: Tables) -> alt.LayerChart:
    """Net revenue per product (its lines, credit notes included), labelled with the full name."""
    return product_bars(
        tables["top_products"], "net_revenue", f"Net revenue ({currency()})", True
    ).properties(title="Top products by net revenue (credit notes included)")


def cohort_retention(tables: Tables) -> alt.LayerChart:
    """Share of each monthly cohort active again 1, 2, … months after its first month, every
    cell labelled. The first cohort holds everyone already a customer when the data starts. A
    cell in a month the data covers only in part gets no colour on the scale (a few days would
    read as customers lost): it says which days it covers instead."""
    first = pl.col("cohort") == pl.col("cohort").min()
    covered = labelled_months(tables).select(
        pl.col("month").alias("cell_month"),
        days=pl.col("label").str.extract(r"\((.*)\)"),
    )
    frame = (
        tables["cohorts"]
        .with_columns(
            label=pl.col("cohort").dt.strftime("%b %Y")
            + pl.when(first).then(pl.lit(" and before")).otherwise(pl.lit("")),
            cell_month=pl.col("cohort").dt.offset_by(pl.format("{}mo", pl.col("months_since"))),
        )
        .filter(pl.col("months_since") > 0)
        .join(covered, on="cell_month", how="left")
        .with_columns(
            text=pl.when(pl.col("complete"))
            .then(pl.lit(None, pl.String))
            .otherwise(pl.lit("days ") + pl.col("days").fill_null("?"))
        )
        .drop("cell_month", "days")
    )
    order = frame.sort("cohort")["label"].unique(maintain_order=True).to_list()
    complete = frame.filter(pl.col("complete"))
    strongest = float(complete["retention"].max() or 0.0)
    x = alt.X("months_since:O", title="Months after the first month", axis=alt.Axis(labelAngle=0))
    y = alt.Y("label:N", title="Cohort (first month)", sort=order)
    tooltip = [
        alt.Tooltip("label:N", title="Cohort"),
        "months_since:O",
        alt.Tooltip("retention:Q", format=".1%"),
        alt.Tooltip("customers:Q", format=","),
        alt.Tooltip("cohort_size:Q", format=","),
    ]
    base = alt.Chart(chart_data(complete)).encode(x=x, y=y)
    cells = base.mark_rect().encode(
        color=alt.Color(
            "retention:Q",
            title="Active again",
            scale=alt.Scale(scheme="blues"),
            legend=alt.Legend(format=".0%"),
        ),
        tooltip=tooltip,
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("retention:Q", format=".0%"),
        color=alt.condition(
            f"datum.retention > {strongest * 0.6}", alt.value("white"), alt.value("black")
        ),
    )
    partial = (
        alt.Chart(chart_data(frame.filter(~pl.col("complete"))))
        .mark_text(fontSize=9, color="#555")
        .encode(x=x, y=y, text="text:N", tooltip=tooltip)
    )
    return alt.layer(cells, text, partial).properties(
        width=WIDTH - 120,
        height=26 * max(len(order), 1),
        title=[
            "Monthly cohort retention",
            "A month the data covers only in part shows its days, not a share",
        ],
    )


# Charts drawn only when their table exists and has rows (the holdout needs --calibration-end).
OPTIONAL_CHARTS: dict[str, str] = {
    "campaign_results": "campaign_results",
    "clv_by_segment": "clv_segments",
    "clv_holdout": "clv_holdout_by_frequency",
    "clv_matrix": "clv_matrix",
    "segment_transitions": "segment_transitions",
    "recommended_products": "recommendations",
    "sales_forecast": "sales_forecast",
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
    "segment_transitions": segment_transitions,
    "recommended_products": recommended_products,
    "sales_forecast": sales_forecast,
    "clv_by_segment": clv_by_segment,
    "clv_holdout": clv_holdout,
    "clv_matrix": clv_matrix,
    "campaign_results": campaign_results,
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
    """Every chart of the report, by file name; an optional chart only where its table has rows
    (an empty chart tells a reader nothing); text as `shown_tables` shows it (one line, cut
    when long)."""
    tables = shown_tables(tables)
    return {
        name: make(tables)
        for name, make in CHARTS.items()
        if name not in OPTIONAL_CHARTS
        or tables.get(OPTIONAL_CHARTS[name], pl.DataFrame()).height > 0
    }


PNG_SCALE = 2


def write_charts(
    charts: dict[str, Any], directory: Path, *, svg: bool = False, png: bool = False
) -> dict[str, dict[str, Any]]:
    """`NAME.vl.json` per chart, with `svg` `NAME.svg` and with `png` `NAME.png` (vl-convert:
    no browser, no network); returns the specs.

    The report draws its charts itself, in the browser, from the specs; images are drawn on
    request only, as each costs about 0.1 s a chart (1.8 s of a 10 s run for the SVGs of the 18
    charts; vl-convert holds the interpreter while it draws, so threads do not help). The PNG is
    drawn at twice the SVG's size so it stays sharp on slides and in e-mails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name, chart in charts.items():
        spec = chart.to_dict()
        text = json.dumps(spec, indent=1)
        (directory / f"{name}.vl.json").write_text(text)
        if svg or png:
            import vl_convert as vlc

            if svg:
                (directory / f"{name}.svg").write_text(vlc.vegalite_to_svg(text))
            if png:
                (directory / f"{name}.png").write_bytes(vlc.vegalite_to_png(text, scale=PNG_SCALE))
        specs[name] = spec
    return specs
