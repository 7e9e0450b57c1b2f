"""The report's sections past the summary: segments, countries, products, invoice amounts, reversals, segment movement, recommendations, the forecast, customers' value and the last campaign; each says in its first sentence what it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from lgs_fast.config import (
    MOVEMENT_NEW,
    currency,
)
from lgs_fast.outputs.report_html import (
    MONEY_CELL,
    Tables,
    esc,
    html_chart,
    html_details,
    html_section,
    html_table,
    pounds,
)
from lgs_fast.outputs.wording import (
    money,
    segments_by_value,
)

if TYPE_CHECKING:
    pass


def campaign_results_section(tables: Tables, specs: dict[str, dict[str, Any]]) -> str:
    """The last campaign's lists, contacted against held back (`analyze --campaign-results`):
    a sentence per list on who bought, the chart, and the whole table for analysts."""
    results = tables["campaign_results"]
    bought = results.filter(pl.col("measure") == "bought")
    sentences = "".join(f"<li>{esc(v[0].upper() + v[1:])}.</li>" for v in bought["verdict"])
    table = html_table(
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
            html_chart("campaign_results", specs) if "campaign_results" in specs else "",
            html_details(
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


def segments_table(tables: Tables) -> str:
    return html_table(
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
            "mean_monetary": MONEY_CELL,
            "total_monetary": MONEY_CELL,
        },
    )


def countries_table(tables: Tables) -> str:
    return html_table(
        tables["top_countries"],
        {
            "rank": "#",
            "country": "Country",
            "sales": f"Placed sales {currency()}",
            "share": "Share",
            "orders": "Purchase invoices",
            "customers": "Customers",
        },
        {"sales": MONEY_CELL, "share": ".1%", "orders": ",", "customers": ","},
    )


def products_table(tables: Tables) -> str:
    return html_table(
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
            "net_revenue": MONEY_CELL,
            "placed_sales": MONEY_CELL,
            "cancelled_value": MONEY_CELL,
            "quantity": ",",
            "purchase_invoices": ",",
        },
    )


def amounts_table(tables: Tables) -> str:
    return html_table(
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
                ("min", "p25", "median", "mean", "mode", "p75", "p95", "max"), MONEY_CELL
            ),
        },
    )


REVERSED_SHOWN = 10


def reversed_table(tables: Tables) -> str:
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
    return intro + html_table(
        rows,
        {
            "invoice_no": "Invoice", "invoice_date": "Placed", "credit_note": "Credit note",
            "credit_date": "Reversed", "customer_id": "Customer", "total": f"Total {currency()}",
        },
        {"total": MONEY_CELL},
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
    return html_section(
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
    parts = [html_section("What to offer", sentences, specs, "recommended_products")]
    holdout = tables.get("recommendation_holdout")
    if customers and holdout is not None and holdout.height:
        n = holdout["customers"][0]
        parts.append(
            f"<p>{esc(f'Checked on this data: hiding the last order of {n:,} of these customers and recommending from what came before, the share whose hidden order held at least one recommended product:')}</p>"
        )
        shown = holdout.with_columns(
            method=pl.col("method")
            .replace({"reorder": "Order again", "new": "New to you"})
            .str.replace(r"^best sellers", "Best sellers")
        )
        parts.append(
            html_table(
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
        html_section("Where sales are heading", forecast_sentences(tables), specs, "sales_forecast")
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
            html_table(
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
            html_details("For analysts: how each method forecast the past", [explained, table])
        )
    return "\n".join(p for p in parts if p)


def forecast_sentences(tables: Tables) -> list[str]:
    """The forecast and its backtest in words, from the forecast tables."""
    ahead = tables["sales_forecast"].filter(pl.col("kind") == "forecast")
    if ahead.height == 0:
        notes = tables["forecast_models"]["note"].to_list()
        return [notes[0] if notes else "No forecast was made."]
    first, last = ahead.row(0, named=True), ahead.row(-1, named=True)
    said = [
        f"Expected net revenue: about {pounds(first['net_revenue'])} in the week of "
        f"{first['week']:%d %b %Y} (95% range {pounds(first['lo_95'])} to "
        f"{pounds(first['hi_95'])}), and {pounds(last['net_revenue'])} in the week of "
        f"{last['week']:%d %b %Y} (95% range {pounds(last['lo_95'])} to "
        f"{pounds(last['hi_95'])})."
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
        f"{valued.height:,} customers are expected to bring about {pounds(valued['clv'].sum())} "
        f"{over} (each customer's expected purchases times their expected spend, discounted)."
    ]
    segments = tables.get("clv_segments")
    if segments is not None and segments["total_clv"].drop_nulls().len():
        top = segments.sort("total_clv", descending=True, nulls_last=True).row(0, named=True)
        said.append(
            f"{top['segment']} customers ({top['customers']:,}) hold the most: "
            f"{pounds(top['total_clv'])}, {pounds(top['mean_clv'])} each on average."
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


def clv_section(
    tables: Tables, specs: dict[str, dict[str, Any]], horizon: str | None = None
) -> str:
    """The report's CLV section, from the clv tables (nothing when no model was fitted): the
    plain lead, value by segment, the expectation matrix and the holdout, then for analysts the
    models' verdicts, the holdout table and the estimates."""
    if "clv_models" not in tables:
        return ""
    parts = [
        html_section("Customer lifetime value", clv_lead(tables, horizon), specs, "clv_by_segment")
    ]
    if "clv_segments" in tables:
        parts.append(
            html_table(
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
    parts.append(html_chart("clv_matrix", specs))
    technical = [f"<p>{esc(s)}</p>" for s in clv_verdicts(tables)]
    if "clv_holdout" in tables:
        parts.append("<h3>Holdout check</h3>")
        parts += [f'<p class="proposition">{esc(s)}</p>' for s in holdout_sentences(tables)]
        parts.append(html_chart("clv_holdout", specs))
        technical.append(html_table(tables["clv_holdout"], HOLDOUT_COLUMNS, HOLDOUT_FORMATS))
    technical.append(
        html_table(
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
    parts.append(
        html_details("For analysts: the models, their fit and the holdout table", technical)
    )
    return "\n".join(p for p in parts if p)
