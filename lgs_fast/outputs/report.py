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
import os
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

import polars as pl

from lgs_fast.config import (
    COMPARE_DAYS,
    Options,
    cache_directory,
    currency,
    current_presentation,
    load_segment_rules,
)
from lgs_fast.outputs.lists import campaign_note, campaign_overview
from lgs_fast.outputs.report_html import (
    RENDER_SCRIPT,
    Tables,
    anchored,
    esc,
    html_cards,
    html_chart,
    html_table,
    pounds,
    spec_json,
)
from lgs_fast.outputs.report_sections import (
    amounts_table,
    campaign_results_section,
    clv_section,
    countries_table,
    forecast_section,
    movement_section,
    products_table,
    recommendations_section,
    reversed_table,
    rfm_note,
    segments_table,
)
from lgs_fast.outputs.wording import (
    QUALITY_LABELS,
    largest_reversal,
    money,
    partial_months,
    reconciliation,
    shown_tables,
)

if TYPE_CHECKING:
    from lgs_fast.models.clv import ClvSettings


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
    items = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    links = ""
    if context is not None and context.files:
        groups: dict[str, list[str]] = {}
        for name in context.files:
            groups.setdefault(name.split("/")[0] if "/" in name else "", []).append(name)
        links = "".join(
            f"<p><b>{esc(folder or 'files')}/</b> "
            + " · ".join(f'<a href="{esc(f)}">{esc(f.split("/")[-1])}</a>' for f in names)
            + "</p>"
            for folder, names in groups.items()
        )
    return f'<table class="about">{items}</table><div class="files">{links}</div>'


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
        f"({top['customers']:,} customers, {pounds(top['value_at_stake'])} of "
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
    table = html_table(overview, columns, {"customers": ",", "value_at_stake": ",.0f"})
    # The list's file name is ours (a slug), safe to link: every cell was escaped by html_table.
    for path in overview["file"].to_list():
        table = table.replace(
            f"<td>{esc(path)}</td>", f'<td><a href="{esc(path)}">{esc(path)}</a></td>'
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
        return f'<h2 id="{anchor}">{esc(headings[anchor])}</h2>\n{body}'

    def chart(name: str) -> str:
        return html_chart(name, specs)

    sections = {
        "this-week": plain(
            "this-week",
            f"<p>{esc(week_lead(tables))}</p>",
            f'<div class="wide">{campaign_table(tables)}</div>',
            f'<p class="muted">{esc(campaign_note(tables))}</p>',
            "<h3>The shop at a glance</h3>",
            html_cards(tables),
            '<ul class="reconcile">'
            + "".join(f"<li>{esc(s)}</li>" for s in reconciliation(tables, preset))
            + "</ul>",
        ),
        "results": plain("results", campaign_results_section(tables, specs))
        if "campaign_results" in tables
        else "",
        "segments": plain(
            "segments",
            f'<p class="box">{esc(rfm_box(tables))}</p>',
            f"<p>{esc(rfm_note(tables))}</p>",
            chart("segment_sizes"),
            chart("rf_grid"),
            f'<div class="wide">{segments_table(tables)}</div>',
        ),
        "movement": anchored("movement", movement_section(tables, specs)),
        "offers": anchored(
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
            f"<p>{esc(monthly_note(tables))}</p>",
            *(chart(n) for n in ("monthly_sales", "sales_growth", "orders_per_month")),
            *(chart(n) for n in ("active_customers", "new_vs_existing")),
        ),
        "forecast": anchored("forecast", forecast_section(tables, specs)),
        "value": anchored(
            "value",
            clv_section(
                tables, specs, dict(context.settings).get("CLV horizon") if context else None
            ),
        ),
        "where": plain(
            "where",
            chart("top_countries"),
            f'<div class="wide">{countries_table(tables)}</div>',
            chart("top_products"),
            "<p>Products are ranked by net revenue: their lines with the credit notes that "
            "cancelled them, so an order cancelled minutes after it was placed is not a best "
            "seller.</p>",
            f'<div class="wide">{products_table(tables)}</div>',
            "<h3>Orders reversed by a credit note</h3>",
            f'<div class="wide">{reversed_table(tables)}</div>',
        ),
        "cohorts": plain("cohorts", chart("cohort_retention")),
        "invoices": plain(
            "invoices",
            f"<p>{esc(amounts_note(tables))}</p>",
            *(chart(n) for n in ("invoice_amounts_all", "invoice_amounts_p85", "invoice_box")),
            f'<div class="wide">{amounts_table(tables)}</div>',
        ),
        "quality": plain(
            "quality",
            "<p>Counts over the lines analysed; none are dropped unless the lake was imported "
            "with <code>--dedupe</code>.</p>",
            html_table(quality, {"check": "Check", "count": "Count"}, {"count": ","}),
        ),
        "about": plain("about", _about(context, tables)),
    }
    present = [(a, t) for a, t in SECTIONS if sections[a]]
    toc = " · ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in present)
    template = Template(
        resources.files("lgs_fast.outputs").joinpath("templates/report.html").read_text()
    )
    return template.substitute(
        title=esc(current_presentation().title),
        subtitle=esc(f"{o['lines']:,} invoice lines, {span}.{generated}"),
        toc=toc,
        body="\n\n".join(f"<section>{sections[a]}</section>" for a, _ in present),
        specs="\n".join(
            f'<script type="application/json" id="spec-{esc(name)}">{spec_json(spec)}</script>'
            for name, spec in specs.items()
        ),
        javascript=javascript,
    )


def vega_javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed in one inline module that renders every chart.

    vl-convert takes 1.4 s to bundle it, and the bundle depends only on vl-convert's version
    and `RENDER_SCRIPT`: it is kept in the user's cache directory under a name made of both, with the
    SHA-256 of its text on its first line. A cached bundle that does not match its checksum, or
    a cache that cannot be read or written, means the bundle is built again, never shown wrong.
    """
    import vl_convert as vlc

    key = hashlib.sha256(f"{vlc.__version__}\n{RENDER_SCRIPT}".encode()).hexdigest()[:16]
    path = cache_directory() / f"vega-{key}.js"
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        first, text = path.read_text().split("\n", 1)
        if first == f"// sha256:{hashlib.sha256(text.encode()).hexdigest()}":
            return text
    text = str(vlc.javascript_bundle(RENDER_SCRIPT))
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(f"// sha256:{hashlib.sha256(text.encode()).hexdigest()}\n{text}")
        os.replace(partial, path)  # whole or not at all, whatever runs at the same time
    return text
