"""The offline HTML report, from the output tables and charts only.

Nothing here computes a metric: it formats the tables `analyze` produced. Every string from
the data (countries, descriptions, segment names) is HTML-escaped; chart specs are inlined as
JSON with `<`, `>` and `&` escaped so no value can close a script element. The Vega, Vega-Lite
and Vega-Embed libraries are inlined too (vl-convert's bundle), so the page opens offline.
The campaign lists and CSV files the page links to are written by `lgs_fast.outputs.lists`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import html
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import polars as pl

from lgs_fast.config import (
    COMPARE_DAYS,
    MOVEMENT_NEW,
    Options,
    currency,
    current_presentation,
    load_segment_rules,
)
from lgs_fast.outputs.lists import campaign_note, campaign_overview
from lgs_fast.outputs.wording import (
    QUALITY_LABELS,
    headline,
    largest_reversal,
    money,
    partial_months,
    reconciliation,
    segments_by_value,
    shown_tables,
)

if TYPE_CHECKING:
    from lgs_fast.models.clv import ClvSettings

Tables = dict[str, pl.DataFrame]

_RENDER = """
for (const el of document.querySelectorAll("[data-spec]")) {
  const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
  vegaEmbed(el, spec, {renderer: "svg", actions: false}).catch((err) => console.error(err));
}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(frame: pl.DataFrame, columns: dict[str, str], numeric: dict[str, str]) -> str:
    """An HTML table of `frame`: `columns` maps column → heading, `numeric` column → format."""
    head = "".join(
        f'<th class="{"n" if c in numeric else ""}">{_e(t)}</th>' for c, t in columns.items()
    )
    rows = []
    for row in frame.select(list(columns)).iter_rows(named=True):
        cells = []
        for c in columns:
            value = row[c]
            if isinstance(value, bool):
                cells.append(f"<td>{'yes' if value else 'no'}</td>")
            elif c in numeric and value is not None:
                cells.append(f'<td class="n">{_e(format(value, numeric[c]))}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cards(tables: Tables) -> str:
    """Two rows of cards: the counts, then the money."""
    figures = headline(tables)
    rows = ([f for f in figures if not f.money], [f for f in figures if f.money])
    return "".join(
        '<div class="cards">'
        + "".join(
            f'<div class="card">{_e(f.label)}<b>{_e(f.value)}</b>'
            + (f"<small>{_e(f.detail)}</small>" if f.detail else "")
            + "</div>"
            for f in row
        )
        + "</div>"
        for row in rows
    )


@dataclass(frozen=True)
class ReportContext:
    """What the page says about its own making: when, over which options, beside which files."""

    generated: dt.datetime
    settings: tuple[tuple[str, str], ...] = ()
    files: tuple[str, ...] = ()
    preset: str = "standard"


NO_RECOMMENDATIONS = "none (--no-recommendations)"


def analysis_settings(
    options: Options,
    engine: str,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
    clv: ClvSettings | None,
) -> tuple[tuple[str, str], ...]:
    """The options an analysis ran with, as (name, value) rows for the report."""
    shipped = options.rules == load_segment_rules(bins=options.bins)
    rows = [
        ("Engine", engine),
        ("Preset", options.preset),
        ("Lines from", f"{start:%Y-%m-%d}" if start else "the first line"),
        ("Lines before", f"{end:%Y-%m-%d}" if end else "after the last line"),
        ("Reference time (--as-of)", f"{options.as_of:%Y-%m-%d %H:%M}" if options.as_of else
         "the latest invoice"),
        ("Segments compared with (--compare-as-of)",
         f"{options.compare_as_of:%Y-%m-%d %H:%M}" if options.compare_as_of else
         f"{COMPARE_DAYS} days before the reference time"),
        ("Score bins", f"{options.bins}"),
        ("Segment map", f"{'shipped' if shipped else 'custom'}, {len(options.rules)} segments"),
        ("Top countries and products", f"{options.top}"),
        ("Recommendations", f"{options.recommendations} to re-order and {options.recommendations} new, each, for {', '.join(options.recommend_segments)}"
         if options.recommend_segments else NO_RECOMMENDATIONS),
    ]  # fmt: skip
    if clv is not None:
        rows += [
            ("CLV model", clv.model),
            ("CLV horizon", f"{clv.months} months at {clv.monthly_discount:.1%} a month"),
            ("Expected purchases over", f"{clv.horizon_days} days"),
            ("Holdout from", f"{clv.calibration_end:%Y-%m-%d}" if clv.calibration_end else "none"),
        ]
    return tuple(rows)


def amounts_note(tables: Tables) -> str:
    """The sentence above the invoice charts: centre, spread, and what the largest one was."""
    amounts = {r["view"]: r for r in tables["invoice_amounts"].iter_rows(named=True)}
    everything, below = amounts["all"], amounts["le_p85"]
    if not everything["count"]:
        return f"No invoice totals above {currency()}0."
    text = (
        f"{everything['count']:,} invoices: median {money(everything['median'])}, mean "
        f"{money(everything['mean'])}, most common {money(everything['mode'])}. A few very large "
        f"invoices (up to {money(everything['max'])}) stretch the first chart, so the second "
        f"shows the {below['count']:,} at or below the 85th percentile ({money(everything['p85'])})."
    )
    reversal = largest_reversal(tables)
    if reversal is not None:
        text += (
            f" The largest, invoice {reversal['invoice_no']} of {reversal['invoice_date']:%d %b %Y}, "
            f"was reversed in full by credit note {reversal['credit_note']} "
            f"({reversal['credit_date']:%d %b %Y %H:%M}): a cancelled order, not a sale."
        )
    return text


def monthly_note(tables: Tables) -> str:
    """Which months the data covers only in part, and how the charts show them."""
    if tables["monthly"].height == 0:
        return "No months: no lines were analysed."
    partial = partial_months(tables)
    unknown = tables["monthly"]["new_customers"].null_count() > 0
    parts = []
    if partial:
        one = len(partial) == 1
        complete = bool(tables["monthly"]["complete"].any())
        how = (
            f"left out of the monthly charts and of growth (a few days cannot be compared with "
            f"a month); the tables keep {'it' if one else 'them'}, flagged as partial"
            if complete
            else "drawn faint, and growth to or from them is grey, not a rise or a fall"
        )
        parts.append(
            f"{' and '.join(partial)} {'is' if one else 'are'} covered only in part (the days in "
            f"brackets): {'that month is' if one else 'those months are'} {how}."
        )
    if unknown:
        parts.append(
            "In the first month of the data no customer's history is known, so its customers are "
            "not split into new and existing."
        )
    return " ".join(parts) or "Every month is covered in full."


def _about(context: ReportContext | None, tables: Tables) -> str:
    """The page's last section: when it was made, from what span, with which options; links."""
    o = tables["overview"].row(0, named=True)
    span = (
        f"{o['first_invoice']:%d %b %Y %H:%M} to {o['last_invoice']:%d %b %Y %H:%M}"
        if o["first_invoice"]
        else "no lines"
    )
    zone = current_presentation().time_zone
    rows = [("Data", f"{span} ({zone} time, as the lines record it)")]
    if context is not None:
        rows.insert(0, ("Generated", f"{context.generated:%d %b %Y %H:%M:%S %Z}".strip()))
        rows += list(context.settings)
    items = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    links = ""
    if context is not None and context.files:
        groups: dict[str, list[str]] = {}
        for name in context.files:
            groups.setdefault(name.split("/")[0] if "/" in name else "", []).append(name)
        links = "".join(
            f"<p><b>{_e(folder or 'files')}/</b> "
            + " · ".join(f'<a href="{_e(f)}">{_e(f.split("/")[-1])}</a>' for f in names)
            + "</p>"
            for folder, names in groups.items()
        )
    return f'<table class="about">{items}</table><div class="files">{links}</div>'


def _spec_json(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


_MONEY_CELL = ",.2f"


def rfm_box(tables: Tables) -> str:
    """How to read RFM, in a few plain sentences (the score range follows the bins)."""
    bins = int(tables["rfm"]["r_score"].max() or 5)
    return (
        f"How to read RFM: every customer gets three scores from 1 to {bins}, each against the "
        f"other customers ({bins} is the best {100 // bins}%): R, how recently they last bought; "
        "F, how often they bought; M, how much they spent net. The segments use R and F only "
        f"(M is on every list): Champions bought recently and often (R {bins}, F high), Can't "
        "Lose bought often but not for a long time (R low, F top), Hibernating neither."
    )


def week_lead(tables: Tables) -> str:
    """The report's first sentence: who to contact and what is at stake, per the lists."""
    overview = campaign_overview(tables)
    listed = overview.filter(pl.col("customers") > 0)
    if listed.height == 0:
        return f"No customer has a net spend above {currency()}0: there is nobody to contact yet."
    top = listed.sort("value_at_stake", descending=True).row(0, named=True)
    return (
        f"{int(listed['customers'].sum()):,} customers are on {listed.height} campaign lists, one "
        f"per segment, each with its action; the most at stake is {top['segment']} "
        f"({top['customers']:,} customers, {_pounds(top['value_at_stake'])} of "
        f"{top['value_kind']}). Lists are in segments/ and in the workbook."
    )


def campaign_table(tables: Tables) -> str:
    """Per campaign list: customers, value at stake, the action, and a link to the file."""
    overview = campaign_overview(tables)
    kinds = overview["value_kind"].unique().to_list()
    columns = {
        "segment": "Campaign (segment)",
        "customers": "Customers",
        # One kind of value for every list (the usual case) goes in the heading.
        "value_at_stake": f"Value at stake {currency()} ({kinds[0]})"
        if len(kinds) == 1
        else f"Value at stake {currency()}",
        "value_kind": "Value is",
        "action": "What to do",
        "file": "List",
    }
    if len(kinds) == 1:
        del columns["value_kind"]
    table = _table(overview, columns, {"customers": ",", "value_at_stake": ",.0f"})
    # The list's file name is ours (a slug), safe to link: every cell was escaped by _table.
    for path in overview["file"].to_list():
        table = table.replace(
            f"<td>{_e(path)}</td>", f'<td><a href="{_e(path)}">{_e(path)}</a></td>'
        )
    return table


# The page's sections, in reading order: what to do first, the detail last. (anchor, heading)
SECTIONS = (
    ("this-week", "This week: who to contact"),
    ("results", "Did the last campaign work?"),
    ("segments", "Customer segments"),
    ("movement", "Who moved between segments"),
    ("offers", "What to offer"),
    ("sales", "Sales month by month"),
    ("forecast", "Where sales are heading"),
    ("value", "Customer lifetime value"),
    ("where", "Where the sales come from"),
    ("cohorts", "Do customers come back?"),
    ("invoices", "Invoice amounts"),
    ("quality", "Data quality"),
    ("about", "About this report"),
)


def _anchored(anchor: str, html: str) -> str:
    """A section's HTML with its first heading given `anchor` as id (for the contents)."""
    return html.replace("<h2>", f'<h2 id="{anchor}">', 1)


def render_report(
    tables: Tables,
    specs: dict[str, dict[str, Any]],
    javascript: str,
    context: ReportContext | None = None,
) -> str:
    """The report page: contents, who to contact this week, segments and movement, offers,
    sales and forecast, customers' value, then the detail; (from `context`) when and how it
    was made, with a link to every output file.

    Text from the data is shown as `shown_tables` shows it: one line, cut when long.
    """
    tables = shown_tables(tables)
    o = tables["overview"].row(0, named=True)
    preset = context.preset if context else "standard"
    span = (
        f"{o['first_invoice']:%d %b %Y} to {o['last_invoice']:%d %b %Y}"
        if o["first_invoice"]
        else "no lines"
    )
    generated = f" Generated {context.generated:%d %b %Y %H:%M}." if context else ""
    quality = tables["data_quality"].with_columns(
        pl.col("check").replace(QUALITY_LABELS).alias("check")
    )
    headings = dict(SECTIONS)

    def plain(anchor: str, *parts: str) -> str:
        body = "\n".join(p for p in parts if p)
        return f'<h2 id="{anchor}">{_e(headings[anchor])}</h2>\n{body}'

    def chart(name: str) -> str:
        return _chart(name, specs)

    sections = {
        "this-week": plain(
            "this-week",
            f"<p>{_e(week_lead(tables))}</p>",
            f'<div class="wide">{campaign_table(tables)}</div>',
            f'<p class="muted">{_e(campaign_note(tables))}</p>',
            "<h3>The shop at a glance</h3>",
            _cards(tables),
            '<ul class="reconcile">'
            + "".join(f"<li>{_e(s)}</li>" for s in reconciliation(tables, preset))
            + "</ul>",
        ),
        "results": plain("results", campaign_results_section(tables, specs))
        if "campaign_results" in tables
        else "",
        "segments": plain(
            "segments",
            f'<p class="box">{_e(rfm_box(tables))}</p>',
            f"<p>{_e(rfm_note(tables))}</p>",
            chart("segment_sizes"),
            chart("rf_grid"),
            f'<div class="wide">{_segments_table(tables)}</div>',
        ),
        "movement": _anchored("movement", movement_section(tables, specs)),
        "offers": _anchored(
            "offers",
            recommendations_section(
                tables,
                specs,
                asked=context is None
                or dict(context.settings).get("Recommendations") != NO_RECOMMENDATIONS,
            ),
        ),
        "sales": plain(
            "sales",
            f"<p>{_e(monthly_note(tables))}</p>",
            *(chart(n) for n in ("monthly_sales", "sales_growth", "orders_per_month")),
            *(chart(n) for n in ("active_customers", "new_vs_existing")),
        ),
        "forecast": _anchored("forecast", forecast_section(tables, specs)),
        "value": _anchored(
            "value",
            clv_section(
                tables, specs, dict(context.settings).get("CLV horizon") if context else None
            ),
        ),
        "where": plain(
            "where",
            chart("top_countries"),
            f'<div class="wide">{_countries_table(tables)}</div>',
            chart("top_products"),
            "<p>Products are ranked by net revenue: their lines with the credit notes that "
            "cancelled them, so an order cancelled minutes after it was placed is not a best "
            "seller.</p>",
            f'<div class="wide">{_products_table(tables)}</div>',
            "<h3>Orders reversed by a credit note</h3>",
            f'<div class="wide">{_reversed_table(tables)}</div>',
        ),
        "cohorts": plain("cohorts", chart("cohort_retention")),
        "invoices": plain(
            "invoices",
            f"<p>{_e(amounts_note(tables))}</p>",
            *(chart(n) for n in ("invoice_amounts_all", "invoice_amounts_p85", "invoice_box")),
            f'<div class="wide">{_amounts_table(tables)}</div>',
        ),
        "quality": plain(
            "quality",
            "<p>Counts over the lines analysed; none are dropped unless the lake was imported "
            "with <code>--dedupe</code>.</p>",
            _table(quality, {"check": "Check", "count": "Count"}, {"count": ","}),
        ),
        "about": plain("about", _about(context, tables)),
    }
    present = [(a, t) for a, t in SECTIONS if sections[a]]
    toc = " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in present)
    template = Template(
        resources.files("lgs_fast.outputs").joinpath("templates/report.html").read_text()
    )
    return template.substitute(
        title=_e(current_presentation().title),
        subtitle=_e(f"{o['lines']:,} invoice lines, {span}.{generated}"),
        toc=toc,
        body="\n\n".join(f"<section>{sections[a]}</section>" for a, _ in present),
        specs="\n".join(
            f'<script type="application/json" id="spec-{_e(name)}">{_spec_json(spec)}</script>'
            for name, spec in specs.items()
        ),
        javascript=javascript,
    )


def campaign_results_section(tables: Tables, specs: dict[str, dict[str, Any]]) -> str:
    """The last campaign's lists, contacted against held back (`analyze --campaign-results`):
    a sentence per list on who bought, the chart, and the whole table for analysts."""
    results = tables["campaign_results"]
    bought = results.filter(pl.col("measure") == "bought")
    sentences = "".join(f"<li>{_e(v[0].upper() + v[1:])}.</li>" for v in bought["verdict"])
    table = _table(
        results.select(
            "segment", "measure", "contacted", "held_back", "difference", "lo_95", "hi_95"
        ),
        {
            "segment": "List", "measure": "Measure", "contacted": "Contacted",
            "held_back": "Held back", "difference": "Difference", "lo_95": "95% from",
            "hi_95": "95% to",
        },
        {
            "contacted": ",", "held_back": ",", "difference": ",.3f", "lo_95": ",.3f",
            "hi_95": ",.3f",
        },
    )  # fmt: skip
    return "\n".join(
        [
            "<p>Each list's customers were split at random when it was made: some contacted, "
            "some held back. What they did since, side by side:</p>",
            f"<ul>{sentences}</ul>",
            _chart("campaign_results", specs) if "campaign_results" in specs else "",
            _details(
                "For analysts: every measure",
                [
                    "<p>Who bought: the difference of two proportions, normal approximation; "
                    "purchase invoices and net revenue per customer: Welch's t. The means of "
                    "both groups are in tables/campaign_results.</p>",
                    f'<div class="wide">{table}</div>',
                ],
            ),
        ]
    )


def rfm_note(tables: Tables) -> str:
    return (
        f"{tables['rfm'].height:,} customers scored 1–{tables['rfm']['r_score'].max() or 5} on "
        "recency, frequency and monetary value; segments follow from the recency and frequency "
        "scores and are listed by their total net spend, here and in every file."
    )


def _segments_table(tables: Tables) -> str:
    return _table(
        segments_by_value(tables),
        {
            "segment": "Segment",
            "customers": "Customers",
            "share": "Share",
            "mean_recency": "Mean recency (days)",
            "mean_frequency": "Mean frequency",
            "mean_monetary": f"Mean net spend {currency()}",
            "total_monetary": f"Total net spend {currency()}",
            "action": "What to do",
        },
        {
            "customers": ",",
            "share": ".1%",
            "mean_recency": ",.0f",
            "mean_frequency": ",.1f",
            "mean_monetary": _MONEY_CELL,
            "total_monetary": _MONEY_CELL,
        },
    )


def _countries_table(tables: Tables) -> str:
    return _table(
        tables["top_countries"],
        {
            "rank": "#",
            "country": "Country",
            "sales": f"Placed sales {currency()}",
            "share": "Share",
            "orders": "Purchase invoices",
            "customers": "Customers",
        },
        {"sales": _MONEY_CELL, "share": ".1%", "orders": ",", "customers": ","},
    )


def _products_table(tables: Tables) -> str:
    return _table(
        tables["top_products"],
        {
            "rank": "#",
            "stock_code": "Code",
            "description": "Description",
            "net_revenue": f"Net revenue {currency()}",
            "placed_sales": f"Placed sales {currency()}",
            "cancelled_value": f"Cancelled value {currency()}",
            "quantity": "Units",
            "purchase_invoices": "Purchase invoices",
        },
        {
            "net_revenue": _MONEY_CELL,
            "placed_sales": _MONEY_CELL,
            "cancelled_value": _MONEY_CELL,
            "quantity": ",",
            "purchase_invoices": ",",
        },
    )


def _amounts_table(tables: Tables) -> str:
    return _table(
        tables["invoice_amounts"].with_columns(
            pl.col("view").replace({"all": "all invoices", "le_p85": "≤ 85th percentile"})
        ),
        {
            "view": "View",
            "count": "Count",
            "min": f"Min {currency()}",
            "p25": f"P25 {currency()}",
            "median": f"Median {currency()}",
            "mean": f"Mean {currency()}",
            "mode": f"Mode {currency()}",
            "p75": f"P75 {currency()}",
            "p95": f"P95 {currency()}",
            "max": f"Max {currency()}",
        },
        {
            "count": ",",
            **dict.fromkeys(
                ("min", "p25", "median", "mean", "mode", "p75", "p95", "max"), _MONEY_CELL
            ),
        },
    )


REVERSED_SHOWN = 10


def _reversed_table(tables: Tables) -> str:
    """The largest reversed invoices, with the sentence that says how many there are."""
    reversed_ = tables.get("reversed_invoices")
    if reversed_ is None or reversed_.height == 0:
        return "<p>No purchase invoice was reversed in full by a later credit note.</p>"
    shown = min(reversed_.height, REVERSED_SHOWN)
    intro = (
        f"<p>{reversed_.height:,} purchase invoices, {money(reversed_['total'].sum())} in all, "
        f"were reversed in full by a later credit note of the same customer; the {shown:,} "
        "largest (all of them in tables/reversed_invoices.csv):</p>"
    )
    when = "%d %b %Y %H:%M"
    rows = reversed_.head(shown).with_columns(
        pl.col("invoice_date").dt.strftime(when), pl.col("credit_date").dt.strftime(when)
    )
    return intro + _table(
        rows,
        {
            "invoice_no": "Invoice", "invoice_date": "Placed", "credit_note": "Credit note",
            "credit_date": "Reversed", "customer_id": "Customer", "total": f"Total {currency()}",
        },
        {"total": _MONEY_CELL},
    )  # fmt: skip


MOVES_SHOWN = 8


def movement_sentences(tables: Tables) -> list[str]:
    """How many stayed, moved and are new, then the largest moves between two segments."""
    moves = tables["segment_transitions"]
    total = int(moves["customers"].sum())
    new = int(moves.filter(pl.col("segment_then") == MOVEMENT_NEW)["customers"].sum())
    stayed = int(moves.filter(pl.col("segment_then") == pl.col("segment"))["customers"].sum())
    said = [
        f"Of the {total:,} customers scored now, {stayed:,} are in the same segment as then, "
        f"{total - stayed - new:,} moved and {new:,} are new (no purchase by then). Each "
        "campaign list has a movement column."
    ]
    largest = (
        moves.filter(
            (pl.col("segment_then") != pl.col("segment")) & (pl.col("segment_then") != MOVEMENT_NEW)
        )
        .sort(["customers", "segment_then", "segment"], descending=[True, False, False])
        .head(MOVES_SHOWN)
    )
    if largest.height:
        said.append(
            "The largest moves: "
            + "; ".join(
                f"{r['segment_then']} → {r['segment']} {r['customers']:,} "
                f"({money(r['net_revenue'])} net spend)"
                for r in largest.iter_rows(named=True)
            )
            + "."
        )
    return said


def movement_section(tables: Tables, specs: dict[str, dict[str, Any]]) -> str:
    """Who moved between segments (nothing when the movement was not computed)."""
    if "segment_transitions" not in tables:
        return ""
    return _section(
        "Who moved between segments", movement_sentences(tables), specs, "segment_transitions"
    )


def recommendations_section(
    tables: Tables, specs: dict[str, dict[str, Any]], *, asked: bool = True
) -> str:
    """What to offer the customers to win back: both kinds in a sentence each, and how often
    each held a product of the next order (nothing when not computed or not asked for)."""
    if "recommendations" not in tables or not asked:
        return ""
    recs = tables["recommendations"]
    customers = recs["customer_id"].n_unique()
    by_segment = recs.group_by("segment").agg(customers=pl.col("customer_id").n_unique())
    where = ", ".join(
        f"{r['segment']} {r['customers']:,}"
        for r in by_segment.sort(["customers", "segment"], descending=[True, False]).iter_rows(
            named=True
        )
    )
    each = recs.filter(pl.col("kind") == "reorder")["rank"].max() or 0
    sentences = (
        [
            f"{customers:,} customers ({where}) get two short lists of up to {each} products, "
            "in their campaign lists (reorder_1, …, new_1, …).",
            "Order again: the products they bought on the most orders, to remind them of; "
            "wholesalers mostly re-order what sold for them before.",
            "New to you: products they have not bought that customers with a similar range "
            "buy most, to widen what they stock.",
        ]
        if customers
        else ["No customer of the segments to win back has a product to recommend."]
    )
    parts = [_section("What to offer", sentences, specs, "recommended_products")]
    holdout = tables.get("recommendation_holdout")
    if customers and holdout is not None and holdout.height:
        n = holdout["customers"][0]
        parts.append(
            f"<p>{_e(f'Checked on this data: hiding the last order of {n:,} of these customers and recommending from what came before, the share whose hidden order held at least one recommended product:')}</p>"
        )
        shown = holdout.with_columns(
            method=pl.col("method")
            .replace({"reorder": "Order again", "new": "New to you"})
            .str.replace(r"^best sellers", "Best sellers")
        )
        parts.append(
            _table(
                shown,
                {"method": "List", "hits": "Customers", "hit_rate": "Share"},
                {"hits": ",", "hit_rate": ".1%"},
            )
        )
    return "\n".join(parts)


BACKTEST_HORIZONS = (1, 4, 12)


# How each forecast method is said to a reader (forecast_backtest's `method`).
FORECAST_WORDS = {
    "naive": "repeating the last complete week",
    "mean of last 4 weeks": "the average of the last 4 complete weeks",
    "ETS": "exponential smoothing",
    "Theta": "a smoothed recent level plus half the year's trend (the Theta method)",
    "mean of the four": "the average of four methods' forecasts",
}


def forecast_section(tables: Tables, specs: dict[str, dict[str, Any]]) -> str:
    """Where weekly sales are heading, and how well each method did on the past."""
    if "sales_forecast" not in tables:
        return ""
    parts = [
        _section("Where sales are heading", forecast_sentences(tables), specs, "sales_forecast")
    ]
    backtest = tables.get("forecast_backtest")
    if backtest is not None and backtest.height:
        explained = (
            "<p>The backtest of every method (MASE below 1 beats the average week-to-week "
            "change; the published one is marked):</p>"
        )
        shown = (
            backtest.filter(
                pl.col("horizon").is_null() | pl.col("horizon").is_in(BACKTEST_HORIZONS)
            )
            .sort("horizon", nulls_last=False, maintain_order=True)
            .with_columns(
                pl.when(pl.col("chosen"))
                .then(pl.col("method") + " (published)")
                .otherwise(pl.col("method"))
                .alias("method"),
                pl.col("horizon").cast(pl.String).fill_null("1–12 (all)"),
            )
        )
        table = (
            _table(
                shown,
                {
                    "horizon": "Weeks ahead",
                    "method": "Forecast",
                    "origins": "Origins",
                    "mase": "MASE",
                    "smape": "sMAPE %",
                    "mae": f"Mean abs. error {currency()}",
                },
                {"origins": ",", "mase": ".2f", "smape": ".1f", "mae": ",.0f"},
            )  # fmt: skip
        )
        parts.append(
            _details("For analysts: how each method forecast the past", [explained, table])
        )
    return "\n".join(p for p in parts if p)


def _pounds(value: float) -> str:
    """Money in prose: whole pounds (a forecast is not exact to the penny)."""
    return f"-{currency()}{-value:,.0f}" if value < 0 else f"{currency()}{value:,.0f}"


def forecast_sentences(tables: Tables) -> list[str]:
    """The forecast and its backtest in words, from the forecast tables."""
    ahead = tables["sales_forecast"].filter(pl.col("kind") == "forecast")
    if ahead.height == 0:
        notes = tables["forecast_models"]["note"].to_list()
        return [notes[0] if notes else "No forecast was made."]
    first, last = ahead.row(0, named=True), ahead.row(-1, named=True)
    said = [
        f"Expected net revenue: about {_pounds(first['net_revenue'])} in the week of "
        f"{first['week']:%d %b %Y} (95% range {_pounds(first['lo_95'])} to "
        f"{_pounds(first['hi_95'])}), and {_pounds(last['net_revenue'])} in the week of "
        f"{last['week']:%d %b %Y} (95% range {_pounds(last['lo_95'])} to "
        f"{_pounds(last['hi_95'])})."
    ]
    backtest = tables.get("forecast_backtest")
    overall = (
        {}
        if backtest is None
        else {
            r["method"]: r
            for r in backtest.filter(pl.col("horizon").is_null()).iter_rows(named=True)
        }
    )
    chosen = next((r for r in overall.values() if r["chosen"]), None)
    if chosen is not None and "naive" in overall:
        naive = overall["naive"]
        how = FORECAST_WORDS.get(chosen["method"], chosen["method"])
        if chosen["method"] == "naive":
            said.append(
                f"It repeats the last complete week: tested on {naive['origins']} past weeks, "
                "forecasting 1 to 12 weeks ahead, no other method did better."
            )
        else:
            gain = 1 - chosen["mase"] / naive["mase"]
            said.append(
                f"It is {how}, the method that forecast the past best: tested on "
                f"{chosen['origins']} past weeks, forecasting 1 to 12 weeks ahead, its errors were "
                f"{gain:.0%} smaller than repeating the last week's sales, and it did better in "
                f"{chosen['beats_naive']} of the {chosen['origins']}."
            )
    else:
        said.append(
            "Too few weeks to test methods on the past: the forecast is exponential smoothing, "
            "chosen by how well it fits."
        )
    said.append(
        "One year of data cannot teach a model the yearly season (the autumn peak, the Christmas "
        "closure): read the forecast as where the level is now and how uncertain it is, not as a "
        "seasonal prediction."
    )
    return said


def _section(title: str, sentences: list[str], specs: dict[str, dict[str, Any]], chart: str) -> str:
    """A report section: its heading, a paragraph per sentence, then its chart."""
    parts = [f"<h2>{_e(title)}</h2>", *(f"<p>{_e(s)}</p>" for s in sentences), _chart(chart, specs)]
    return "\n".join(p for p in parts if p)


def _chart(name: str, specs: dict[str, dict[str, Any]]) -> str:
    return f'<div class="chart" data-spec="spec-{_e(name)}"></div>' if name in specs else ""


def clv_verdicts(tables: Tables) -> list[str]:
    """Plain sentences: which models fit, which one the predictions use, or that none may."""
    models = tables["clv_models"]
    said = models.unique("model", maintain_order=True)["verdict"].to_list()
    used = models.filter(pl.col("used") & (pl.col("model") != "gamma_gamma"))
    if used.height == 0:
        said.append(
            "No purchase model fits these data, so no customer is given a probability of being "
            "alive, expected purchases or a CLV: the columns are left empty rather than filled "
            "with numbers the data do not support."
        )
    else:
        row = used.row(0, named=True)
        caveat = "" if row["identified"] else ", although it does not fit: treat them as unreliable"
        said.append(f"Predictions use {row['model_name']}{caveat}.")
        if row["model"] == "nbd":
            said.append(
                "Customers here rarely stop buying for good, as far as the data can tell: "
                "expected purchases assume each keeps their own pace, and every customer's "
                "probability of still buying is 1."
            )
    return said


def holdout_sentences(tables: Tables) -> list[str]:
    """The holdout check in plain words (needs --calibration-end): what the model in use
    expected against what customers did, then the two simple rules it has to beat."""
    rows = {h["model"]: h for h in tables["clv_holdout"].iter_rows(named=True)}
    used = tables["clv_models"].filter(pl.col("used") & (pl.col("model") != "gamma_gamma"))
    name = used["model"][0] if used.height else None
    if name not in rows:
        return ["No purchase model is used; the table below has each one's holdout check."]
    h = rows[name]
    said = [
        f"Checked on the {h['holdout_days']} days after the calibration end: the model in use, "
        f"{h['model_name']}, fitted on the {h['calibration_customers']:,} customers known "
        f"then, expected {h['predicted_purchases']:,.0f} purchase days; they made "
        f"{h['actual_purchases']:,.0f}"
        + (f" ({h['total_error_pct']:+.0f}%)" if h["total_error_pct"] is not None else "")
        + (
            f". The tenth of customers it expected most from made {h['top_decile_share']:.0%} "
            "of them."
            if h["top_decile_share"] is not None
            else "."
        )
    ]
    baselines = [
        f"{words} gave {rows[key]['predicted_purchases']:,.0f} (mean error per customer "
        f"{rows[key]['mae']:.2f}, the model's {h['mae']:.2f})"
        for key, words in HOLDOUT_BASELINES.items()
        if key in rows
    ]
    if baselines:
        said.append("For comparison, " + " and ".join(baselines) + ".")
    return said


# The holdout's simple rules, as a reader is told them (clv_holdout's `model`).
HOLDOUT_BASELINES = {
    "own_rate": "each customer's own past pace",
    "equal_window": "repeating each customer's purchase days of the same span before",
}
HOLDOUT_COLUMNS = {
    "model_name": "Model or rule",
    "identified": "Fits",
    "predicted_purchases": "Predicted",
    "actual_purchases": "Actual",
    "mae": "Mean abs. error",
    "rmse": "RMSE",
    "spearman": "Rank correlation",
    "top_decile_share": "Top 10% share",
}
HOLDOUT_FORMATS = {
    "predicted_purchases": ",.0f",
    "actual_purchases": ",.0f",
    "mae": ".3f",
    "rmse": ".3f",
    "spearman": ".3f",
    "top_decile_share": ".1%",
}


def clv_lead(tables: Tables, horizon: str | None) -> list[str]:
    """The CLV section's first sentences, in plain words: what the customers are expected to be
    worth, which segment holds most of it, and the one assumption a reader must know."""
    clv_table = tables.get("clv")
    used = tables["clv_models"].filter(pl.col("used") & (pl.col("model") != "gamma_gamma"))
    if clv_table is None or used.height == 0 or clv_table["clv"].null_count() == clv_table.height:
        return [
            "No model of how often customers buy fits these data, so no customer is given "
            "expected purchases or a lifetime value: the columns are left empty rather than "
            "filled with numbers the data do not support."
        ]
    valued = clv_table.filter(pl.col("clv").is_not_null())
    over = f"over the next {horizon}" if horizon else "over the CLV horizon"
    said = [
        f"{valued.height:,} customers are expected to bring about {_pounds(valued['clv'].sum())} "
        f"{over} (each customer's expected purchases times their expected spend, discounted)."
    ]
    segments = tables.get("clv_segments")
    if segments is not None and segments["total_clv"].drop_nulls().len():
        top = segments.sort("total_clv", descending=True, nulls_last=True).row(0, named=True)
        said.append(
            f"{top['segment']} customers ({top['customers']:,}) hold the most: "
            f"{_pounds(top['total_clv'])}, {_pounds(top['mean_clv'])} each on average."
        )
    if used["model"][0] == "nbd":
        said.append(
            "Customers here rarely stop buying for good, as far as the data can tell: expected "
            "purchases assume each keeps their own pace, and every customer's probability of "
            "still buying is 1."
        )
    elif not used["identified"][0]:
        said.append("The model in use does not fit these data: treat its figures as unreliable.")
    return said


def _details(summary: str, parts: list[str]) -> str:
    """Technical detail folded under a one-line summary, for analysts."""
    body = "\n".join(p for p in parts if p)
    return f"<details><summary>{_e(summary)}</summary>\n{body}\n</details>" if body else ""


def clv_section(
    tables: Tables, specs: dict[str, dict[str, Any]], horizon: str | None = None
) -> str:
    """The report's CLV section, from the clv tables (nothing when no model was fitted): the
    plain lead, value by segment, the expectation matrix and the holdout, then for analysts the
    models' verdicts, the holdout table and the estimates."""
    if "clv_models" not in tables:
        return ""
    parts = [
        _section("Customer lifetime value", clv_lead(tables, horizon), specs, "clv_by_segment")
    ]
    if "clv_segments" in tables:
        parts.append(
            _table(
                tables["clv_segments"],
                {
                    "segment": "Segment",
                    "customers": "Customers",
                    "mean_probability_alive": "Still buying (mean)",
                    "expected_purchases": "Expected purchase days",
                    "mean_clv": f"Mean CLV {currency()}",
                    "total_clv": f"Total CLV {currency()}",
                },
                {
                    "customers": ",",
                    "mean_probability_alive": ".1%",
                    "expected_purchases": ",.0f",
                    "mean_clv": ",.0f",
                    "total_clv": ",.0f",
                },
            )  # fmt: skip
        )
    parts.append(_chart("clv_matrix", specs))
    technical = [f"<p>{_e(s)}</p>" for s in clv_verdicts(tables)]
    if "clv_holdout" in tables:
        parts.append("<h3>Holdout check</h3>")
        parts += [f'<p class="proposition">{_e(s)}</p>' for s in holdout_sentences(tables)]
        parts.append(_chart("clv_holdout", specs))
        technical.append(_table(tables["clv_holdout"], HOLDOUT_COLUMNS, HOLDOUT_FORMATS))
    technical.append(
        _table(
            tables["clv_models"],
            {
                "model_name": "Model",
                "parameter": "Parameter",
                "estimate": "Estimate",
                "standard_error": "Standard error",
                "identified": "Fits",
                "used": "Used",
            },
            {"estimate": ",.4g", "standard_error": ",.3g"},
        )  # fmt: skip
    )
    parts.append(_details("For analysts: the models, their fit and the holdout table", technical))
    return "\n".join(p for p in parts if p)


def vega_javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed in one inline module that renders every chart.

    vl-convert takes 1.4 s to bundle it, and the bundle depends only on vl-convert's version
    and `_RENDER`: it is kept in the user's cache directory under a name made of both, with the
    SHA-256 of its text on its first line. A cached bundle that does not match its checksum, or
    a cache that cannot be read or written, means the bundle is built again, never shown wrong.
    """
    import vl_convert as vlc

    key = hashlib.sha256(f"{vlc.__version__}\n{_RENDER}".encode()).hexdigest()[:16]
    path = cache_directory() / f"vega-{key}.js"
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        first, text = path.read_text().split("\n", 1)
        if first == f"// sha256:{hashlib.sha256(text.encode()).hexdigest()}":
            return text
    text = str(vlc.javascript_bundle(_RENDER))
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(f"// sha256:{hashlib.sha256(text.encode()).hexdigest()}\n{text}")
        os.replace(partial, path)  # whole or not at all, whatever runs at the same time
    return text


def cache_directory() -> Path:
    """Where lgs_fast keeps what it can rebuild: $XDG_CACHE_HOME/lgs_fast, else
    ~/.cache/lgs_fast."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lgs_fast"
