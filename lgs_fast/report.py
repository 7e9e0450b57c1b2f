"""The offline HTML report and the marketing exports, from the output tables and charts only.

Nothing here computes a metric: it formats the tables `analyze` produced. Every string from
the data (countries, descriptions, segment names) is HTML-escaped; chart specs are inlined as
JSON with `<`, `>` and `&` escaped so no value can close a script element. The Vega, Vega-Lite
and Vega-Embed libraries are inlined too (vl-convert's bundle), so the page opens offline.
Every CSV lgs_fast writes goes through `write_csv`: money to the penny, and no text cell that a
spreadsheet would run as a formula.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import polars as pl

from lgs_fast.definitions import MONEY_COLUMNS, SegmentRule, check_segment_files, segment_slug
from lgs_fast.errors import InputError

Tables = dict[str, pl.DataFrame]

_RENDER = """
for (const el of document.querySelectorAll("[data-spec]")) {
  const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
  vegaEmbed(el, spec, {renderer: "svg", actions: false}).catch((err) => console.error(err));
}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _money(value: float | None) -> str:
    return "–" if value is None else f"£{value:,.2f}"


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
            if c in numeric and value is not None:
                cells.append(f'<td class="n">{_e(format(value, numeric[c]))}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cards(tables: Tables) -> str:
    o = tables["overview"].row(0, named=True)
    items = [
        ("Lines", f"{o['lines']:,}"),
        ("Invoices", f"{o['invoices']:,}"),
        ("Customers", f"{o['customers']:,}"),
        ("Products", f"{o['stock_codes']:,}"),
        ("Countries", f"{o['countries']:,}"),
        ("Revenue", _money(o["revenue"])),
        ("Mean invoice", _money(o["mean_invoice_total"])),
    ]
    return "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in items)


def propositions(tables: Tables) -> list[str]:
    """One sentence per non-empty segment, written from the segment table (plain text)."""
    out = []
    for s in tables["segments"].filter(pl.col("customers") > 0).iter_rows(named=True):
        out.append(
            f"{s['segment']}: {s['customers']:,} customers ({s['share']:.1%}) spent "
            f"{_money(s['total_monetary'])} in total ({_money(s['mean_monetary'])} each), "
            f"bought {s['mean_frequency']:.1f} times on average, last {s['mean_recency']:.0f} days ago. "
            f"Action: {s['action'] or 'none set'}"
        )
    return out


def _spec_json(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_report(tables: Tables, specs: dict[str, dict[str, Any]], javascript: str) -> str:
    """The report page: overview, every chart, segment table, propositions, data quality."""
    o = tables["overview"].row(0, named=True)
    amounts = {r["view"]: r for r in tables["invoice_amounts"].iter_rows(named=True)}
    everything = amounts["all"]
    span = (
        f"{o['first_invoice']:%d %b %Y} to {o['last_invoice']:%d %b %Y}"
        if o["first_invoice"]
        else "no lines"
    )
    template = Template(resources.files("lgs_fast").joinpath("templates/report.html").read_text())
    return template.substitute(
        subtitle=_e(f"{o['lines']:,} invoice lines, {span}."),
        cards=_cards(tables),
        amounts_note=_e(
            f"{everything['count']:,} invoices: median {_money(everything['median'])}, mean "
            f"{_money(everything['mean'])}, most common {_money(everything['mode'])}; a few very large "
            f"invoices (up to {_money(everything['max'])}) stretch the first chart, so the second "
            f"shows the {amounts['le_p85']['count']:,} at or below the 85th percentile "
            f"({_money(everything['p85'])})."
        ),
        amounts_table=_table(
            tables["invoice_amounts"].with_columns(
                pl.col("view").replace({"all": "all invoices", "le_p85": "≤ 85th percentile"})
            ),
            {
                "view": "View",
                "count": "Count",
                "min": "Min £",
                "p25": "P25 £",
                "median": "Median £",
                "mean": "Mean £",
                "mode": "Mode £",
                "p75": "P75 £",
                "p95": "P95 £",
                "max": "Max £",
            },
            {
                "count": ",",
                "min": ",.2f",
                "p25": ",.2f",
                "median": ",.2f",
                "mean": ",.2f",
                "mode": ",.2f",
                "p75": ",.2f",
                "p95": ",.2f",
                "max": ",.2f",
            },
        ),  # fmt: skip
        rfm_note=_e(
            f"{tables['rfm'].height:,} customers scored 1–5 on recency, frequency and monetary "
            "value (quintiles); segments follow from the recency and frequency scores."
        ),
        segments_table=_table(
            tables["segments"],
            {
                "segment": "Segment",
                "customers": "Customers",
                "share": "Share",
                "mean_recency": "Mean recency (days)",
                "mean_frequency": "Mean frequency",
                "mean_monetary": "Mean spend £",
                "total_monetary": "Total spend £",
                "action": "Recommended action",
            },
            {
                "customers": ",",
                "share": ".1%",
                "mean_recency": ",.0f",
                "mean_frequency": ",.1f",
                "mean_monetary": ",.2f",
                "total_monetary": ",.0f",
            },
        )  # fmt: skip
        + f"<p>{_e(campaign_note(tables))}</p>",
        propositions="".join(f'<p class="proposition">{_e(p)}</p>' for p in propositions(tables)),
        products_table=_table(
            tables["top_products"],
            {
                "rank": "#",
                "stock_code": "Code",
                "description": "Description",
                "sales": "Sales £",
                "quantity": "Units",
                "orders": "Orders",
            },
            {"sales": ",.0f", "quantity": ",", "orders": ","},
        ),
        clv_section=clv_section(tables, specs),
        quality_table=_table(
            tables["data_quality"], {"check": "Check", "count": "Lines"}, {"count": ","}
        ),
        specs="\n".join(
            f'<script type="application/json" id="spec-{_e(name)}">{_spec_json(spec)}</script>'
            for name, spec in specs.items()
        ),
        javascript=javascript,
    )


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
    return said


def holdout_sentences(tables: Tables) -> list[str]:
    """One sentence per purchase model on its holdout check (needs --calibration-end)."""
    out = []
    for h in tables["clv_holdout"].iter_rows(named=True):
        fits = "fits" if h["identified"] else "does not fit the calibration data"
        error = h["total_error_pct"]
        out.append(
            f"{h['model_name']} ({fits}), fitted on the {h['calibration_customers']:,} customers "
            f"before the holdout, predicted {h['predicted_purchases']:,.0f} purchase days in the "
            f"{h['holdout_days']} days after it against {h['actual_purchases']:,.0f} actual"
            + (f" ({error:+.1f}%)" if error is not None else "")
            + f"; per customer, mean absolute error {h['mae']:.2f}, bias {h['bias']:+.2f}."
        )
    return out


def clv_section(tables: Tables, specs: dict[str, dict[str, Any]]) -> str:
    """The report's CLV section, from the clv tables (nothing when no model was fitted)."""
    if "clv_models" not in tables:
        return ""
    parts = ["<h2>Customer lifetime value</h2>"]
    parts += [f"<p>{_e(s)}</p>" for s in clv_verdicts(tables)]
    parts.append(_chart("clv_by_segment", specs))
    if "clv_segments" in tables:
        parts.append(
            _table(
                tables["clv_segments"],
                {
                    "segment": "Segment",
                    "customers": "Customers",
                    "mean_probability_alive": "Mean P(alive)",
                    "expected_purchases": "Expected purchase days",
                    "mean_clv": "Mean CLV £",
                    "total_clv": "Total CLV £",
                },
                {
                    "customers": ",",
                    "mean_probability_alive": ".1%",
                    "expected_purchases": ",.0f",
                    "mean_clv": ",.2f",
                    "total_clv": ",.0f",
                },
            )  # fmt: skip
        )
    if "clv_holdout" in tables:
        parts.append("<h3>Holdout check</h3>")
        parts += [f'<p class="proposition">{_e(s)}</p>' for s in holdout_sentences(tables)]
        parts.append(_chart("clv_holdout", specs))
    parts.append(
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
    return "\n".join(p for p in parts if p)


def vega_javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed in one inline module that renders every chart."""
    import vl_convert as vlc

    return str(vlc.javascript_bundle(_RENDER))


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
_FORMULA_START = r"^[=+\-@\t\r]"


def slug(name: str) -> str:
    """A file name for a segment: `Can't Lose` → `cant_lose`."""
    return segment_slug(name)


def spreadsheet_safe(frame: pl.DataFrame, money: Iterable[str] = ()) -> pl.DataFrame:
    """`frame` as a CSV shows it: `money` columns to the penny, no text cell runnable as a formula.

    Money is rounded half away from zero (and -0.00 shown as 0); other numbers (shares,
    percentages, means of days) keep their precision. A text cell starting with `=`, `+`, `-`,
    `@`, a tab or a carriage return gets a leading `'`, which spreadsheets show as text; numbers
    are not text, so a negative monetary stays a number.
    """
    money = set(money)
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if name in money and dtype.is_float():
            rounded = column.round(2, mode="half_away_from_zero")
            columns.append(pl.when(rounded == 0).then(0.0).otherwise(rounded).alias(name))
        elif isinstance(dtype, (pl.String, pl.Categorical, pl.Enum)):
            text = column.cast(pl.String)
            columns.append(
                pl.when(text.str.contains(_FORMULA_START))
                .then(pl.concat_str(pl.lit("'"), text))
                .otherwise(text)
                .alias(name)
            )
        else:
            columns.append(column)
    return frame.select(columns)


def write_csv(frame: pl.DataFrame, path: Path, table: str) -> None:
    """`frame`, a row set of output table `table`, as a CSV fit to open in a spreadsheet."""
    spreadsheet_safe(frame, MONEY_COLUMNS.get(table, ())).write_csv(path)


def check_csv_target(path: Path, lake: Path) -> None:
    """A file of the user's choosing may go anywhere but inside the lake (it could replace the
    manifest or a part file) or into a directory that is not there."""
    target, root = path.resolve(), lake.resolve()
    if target == root or root in target.parents:
        raise InputError(f"{path}: is inside the lake {lake}; choose a path outside it")
    if not target.parent.is_dir():
        raise InputError(f"{path}: no directory {path.parent} to write it in")
    if target.is_dir():
        raise InputError(f"{path}: is a directory; name a file")


def write_csv_file(frame: pl.DataFrame, path: Path, table: str) -> None:
    """`write_csv` to a path of the user's choosing, whole or not at all: written beside it,
    then renamed over it, so a kill or a full disk never leaves half a file there."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_csv(frame, tmp, table)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_VALUE_COLUMNS = ("probability_alive", "expected_purchases", "clv")

# The columns of a campaign list, in order: who, where, when last, then the scores and the action.
CAMPAIGN_COLUMNS = (
    "customer_id", "country", "last_purchase", "recency", "frequency", "monetary",
    "r_score", "f_score", "m_score", "rfm_score", "segment", "action", *_VALUE_COLUMNS,
)  # fmt: skip


def _customer_value(tables: Tables) -> pl.DataFrame:
    """The CLV columns of the campaign lists (empty when no model was fitted)."""
    if "clv" in tables:
        return tables["clv"].select("customer_id", *_VALUE_COLUMNS)
    schema = {"customer_id": pl.Int64, **dict.fromkeys(_VALUE_COLUMNS, pl.Float64)}
    return pl.DataFrame(schema=schema)


def _last_purchases(tables: Tables) -> pl.DataFrame:
    """Each customer's last purchase day, taken from `clv_summary`: both engines compute it there
    the same way (the latest day with a purchase line), so rfm needs no second copy of it."""
    if "clv_summary" in tables:
        return tables["clv_summary"].select("customer_id", "last_purchase")
    return pl.DataFrame(schema={"customer_id": pl.Int64, "last_purchase": pl.Date})


def campaign_customers(tables: Tables) -> pl.DataFrame:
    """Every scored customer with the columns of a campaign list (`CAMPAIGN_COLUMNS`)."""
    actions = tables["segments"].select("segment", "action")
    return (
        tables["rfm"]
        .join(actions, on="segment", how="left")
        .join(_last_purchases(tables), on="customer_id", how="left")
        .join(_customer_value(tables), on="customer_id", how="left")
        .select(CAMPAIGN_COLUMNS)
    )


# A customer whose net spend is £0.00 or less to the penny (returns that cancel what they
# bought) is nobody to thank, reward or win back: a campaign would spend on an account that
# brought nothing. Compared as shown, so no list shows a customer at £0.00.
LISTED = pl.col("monetary").round(2, mode="half_away_from_zero") > 0


def campaign_lists(tables: Tables) -> dict[str, pl.DataFrame]:
    """The campaign list of each segment with customers: net spend above £0 only, highest spend
    first (ties by customer id). A segment whose customers are all left out keeps an empty list,
    so every segment still has its file."""
    customers = campaign_customers(tables)
    names = _segment_order(tables, customers["segment"].unique().to_list())
    check_segment_files(tuple(SegmentRule(0, n, "", "") for n in names), "rfm table")
    listed = customers.filter(LISTED).sort(
        ["monetary", "customer_id"], descending=[True, False], nulls_last=True
    )
    return {name: listed.filter(pl.col("segment") == name) for name in names}


def _segment_order(tables: Tables, names: list[str]) -> list[str]:
    """`names` in the order of the segment table, then any it lacks alphabetically."""
    order = [n for n in tables["segments"]["segment"].to_list() if n in names]
    return order + sorted(set(names) - set(order))


def campaign_counts(tables: Tables) -> pl.DataFrame:
    """Per segment with customers: customers, how many are listed, how many are left out."""
    customers = campaign_customers(tables)
    names = _segment_order(tables, customers["segment"].unique().to_list())
    counts = customers.group_by("segment").agg(
        customers=pl.len().cast(pl.Int64),
        listed=LISTED.sum().cast(pl.Int64),
        left_out=(~LISTED).sum().cast(pl.Int64),
    )
    order = pl.DataFrame({"segment": names}, schema={"segment": pl.String})
    return order.join(counts, on="segment", how="left", maintain_order="left")


def campaign_note(tables: Tables) -> str:
    """One line for the report: the rule of the campaign lists and who it left out."""
    counts = campaign_counts(tables).filter(pl.col("left_out") > 0)
    left_out = int(counts["left_out"].sum())
    rule = (
        "Campaign lists (segments/SEGMENT.csv and the segment sheets of lgs_report.xlsx) hold "
        "the customers whose net spend is above £0, highest spend first, with their last "
        "purchase date; "
    )
    if left_out == 0:
        return rule + "no customer was left out."
    where = ", ".join(f"{s} {n:,}" for s, n in counts.select("segment", "left_out").iter_rows())
    noun = "customer" if left_out == 1 else "customers"
    return rule + f"{left_out:,} {noun} with a net spend of £0 or less are left out ({where})."


def write_segment_exports(tables: Tables, directory: Path) -> dict[str, int]:
    """`SEGMENT.csv` per segment for the campaign team (`campaign_lists`); returns rows written
    per file.

    Distinct segments never share a file: names that would (`Hi There`, `hi-there`) are refused
    when the segment map is loaded, and here again for tables built some other way.
    """
    lists = campaign_lists(tables)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for segment, rows in lists.items():
        path = directory / f"{slug(segment)}.csv"
        write_csv(rows, path, "campaign_list")
        written[path.name] = rows.height
    return written
