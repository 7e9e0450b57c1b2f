"""The commands that analyse a lake: analyze, clv, campaign-results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lgs_fast.cli.group import cli, print_table
from lgs_fast.cli.options import (
    LAKE_HELP,
    check_spark_master,
    clv_options,
    clv_settings_of,
    engine_options,
    lake_location,
    parse_day,
    parse_range,
    parse_share,
    parse_when,
    range_options,
)
from lgs_fast.config import COMPARE_DAYS, PRESETS, Presentation, presenting
from lgs_fast.errors import InputError


@cli.command("campaign-results")
@click.option(
    "--campaigns",
    "campaigns_file",
    type=click.Path(path_type=Path),
    default=Path("out/campaigns.json"),
    show_default=True,
    help="The record analyze wrote with the lists (OUT/campaigns.json).",
)
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
@click.option("--until", metavar="DATE", help="Only purchases before DATE (default: all since).")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    help="Also write the campaign_results table here.",
)
def campaign_results_command(
    campaigns_file: Path, lake: str | None, until: str | None, csv_path: Path | None
) -> None:
    """Did the campaign work? Per list, the contacted against the held-back customers
    (analyze --control) since the lists were made: the share who bought, purchase invoices
    and net revenue per customer, each with the difference and its 95% interval (two
    proportions: normal approximation; per customer: Welch's t).

    A list with fewer than 30 customers on either side says it is too small to tell; lists
    made at or after the data's last invoice have nothing to measure yet.
    """
    from lgs_fast.analyze import campaign_results
    from lgs_fast.lake import local_lake
    from lgs_fast.models.campaign_results import read_campaigns
    from lgs_fast.outputs.lists import check_csv_target, write_csv_file

    when = parse_when(until, "--until")
    read_campaigns(campaigns_file)  # its faults first, before the lake's
    root = local_lake(lake, "campaign-results reads")
    if csv_path is not None:
        check_csv_target(csv_path, root)
    table = campaign_results(campaigns_file, root, until=when)
    said: dict[str, list[str]] = {}
    for segment, measure, verdict in table.select("segment", "measure", "verdict").iter_rows():
        if measure in ("bought", "net_revenue") and verdict not in said.setdefault(segment, []):
            said[segment].append(verdict)
    for segment, verdicts in said.items():
        click.echo(f"{segment}:")
        for verdict in verdicts:
            click.echo(f"  {verdict}")
    if csv_path is not None:
        write_csv_file(table, csv_path, "campaign_results")
        click.echo(f"campaign_results: {csv_path}")


@cli.command("analyze")
@engine_options("the tables")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default="out",
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="standard",
    show_default=True,
    help="standard, or notebook: the original LGS notebook's definitions.",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="DATE",
    help="Reference time T for recency (default: the latest invoice); later lines are left out of RFM.",
)
@click.option(
    "--compare-as-of",
    "compare_as_of",
    metavar="DATE",
    help=f"Earlier time T0 for segment movement, before T (default: {COMPARE_DAYS} days before T).",
)
@click.option(
    "--recommend",
    "recommend_segments",
    metavar="SEGMENT",
    multiple=True,
    help="A segment whose customers get product recommendations; repeat for several "
    "(default: Can't Lose, At Risk, Need Attention).",
)
@click.option(
    "--no-recommendations",
    is_flag=True,
    help="Recommend no products (no customer × product table is aggregated, no model fitted).",
)
@click.option(
    "--recommendations",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Products per customer in each kind of recommendation (re-order, new to them).",
)
@click.option(
    "--bins",
    type=click.IntRange(2, 9),
    default=5,
    show_default=True,
    help="Score bins per R, F and M (5 = quintiles, 4 = quartiles). The shipped segment maps "
    "fit 5 and 4; other counts need a map of their own (--segments).",
)
@click.option(
    "--segments",
    "segments_file",
    type=click.Path(path_type=Path),
    help="TOML segment map ([[segment]] name, pattern, action).",
)
@range_options
@click.option(
    "--top",
    type=click.IntRange(1, 100_000),
    default=10,
    show_default=True,
    help="Rows in the top countries and top products tables.",
)
@click.option(
    "--no-report",
    is_flag=True,
    help="Write the tables only (no charts, segment files, workbook or report).",
)
@click.option(
    "--contacts",
    "contacts_file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="A CSV with a customer_id column and any others (email, name, company…), joined onto "
    "every campaign list after customer_id; the run says how many listed customers have none.",
)
@click.option(
    "--human-headers",
    is_flag=True,
    help="Campaign lists with headings for people (Customer ID, Net spend £…) instead of "
    "snake_case column names.",
)
@click.option(
    "--control",
    metavar="SHARE",
    help="Hold back a random control group of SHARE of every campaign list (1%–50%, e.g. 10%): "
    "in SEGMENT.control.csv, never in the list a mail tool reads; the same customers every run "
    "(a draw per list and customer from --control-seed); `lgs-fast campaign-results` later "
    "compares them with the contacted.",
)
@click.option(
    "--campaign-results",
    "campaigns_file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="An earlier run's OUT/campaigns.json: measure its lists since they were made "
    "(contacted against held back) in the report, the workbook and tables/campaign_results.",
)
@click.option(
    "--control-seed",
    type=int,
    default=0,
    show_default=True,
    help="The seed of the control draw, recorded in OUT/campaigns.json.",
)
@click.option(
    "--title",
    default=Presentation.title,
    show_default=True,
    help="The report's title.",
)
@click.option(
    "--currency",
    default=Presentation.currency,
    show_default=True,
    help="The currency symbol shown with amounts in the report, charts, workbook and lists "
    "(the amounts are the data's own; nothing is converted).",
)
@click.option(
    "--time-zone",
    default=Presentation.time_zone,
    show_default=True,
    help="The zone the lines' times are in, as the report states it; the report's own time of "
    "writing is shown in it.",
)
@click.option(
    "--svg",
    is_flag=True,
    help="Also draw every chart as an SVG file (OUT/charts/NAME.svg; the report draws its "
    "charts itself, and the Vega-Lite spec NAME.vl.json is always written).",
)
@click.option(
    "--png",
    is_flag=True,
    help="Also draw every chart as PNG at twice its size, for slides and e-mails "
    "(OUT/charts/NAME.png).",
)
@clv_options
def analyze_command(
    lake: str | None,
    out: Path,
    engine: str,
    spark_master: str | None,
    preset: str,
    as_of: str | None,
    compare_as_of: str | None,
    recommend_segments: tuple[str, ...],
    no_recommendations: bool,
    recommendations: int,
    bins: int,
    segments_file: Path | None,
    start: str | None,
    end: str | None,
    top: int,
    no_report: bool,
    contacts_file: Path | None,
    human_headers: bool,
    control: str | None,
    campaigns_file: Path | None,
    control_seed: int,
    title: str,
    currency: str,
    time_zone: str,
    svg: bool,
    png: bool,
    calibration_end: str | None,
    model: str,
    horizon: int,
    months: int,
    discount: float,
) -> None:
    """Compute every analysis over the lake; write tables, charts, segment lists and a report.

    OUT/tables/NAME.{parquet,csv} for overview, invoice_amounts, invoice_histogram, monthly,
    weekly_sales, rfm, segments, segment_movement, segment_transitions, recommendations,
    recommendation_holdout,
    top_countries, top_products, reversed_invoices, cohorts, data_quality, clv_summary, clv,
    clv_models, clv_segments (and with --calibration-end the clv_holdout tables),
    sales_forecast, forecast_backtest, forecast_models; OUT/charts/NAME.vl.json
    (NAME.svg with --svg, NAME.png with --png); OUT/segments/SEGMENT.csv for campaigns (customers with a net spend above £0,
    highest spend first, with their last purchase date, segment movement and recommended
    products: reorder_1…, their own products to order again, and new_1…, products new to them;
    UTF-8 with a byte-order mark for Excel; --contacts joins your contact columns on);
    OUT/lgs_report.xlsx, an Excel workbook with a sheet per segment list and per summary table; OUT/campaigns.json, who is on which list;
    OUT/report.html (opens offline).
    Charts, segment lists, workbook and report are written together (none with --no-report).

    --engine spark runs the same queries on Apache Spark (pip install 'lgs-fast[spark]', Java
    17+), locally or on a cluster (--spark-master, $SPARK_REMOTE), over a local lake or one at
    a URI.
    """
    from lgs_fast.config import Options, check_score_range, load_segment_rules

    # Plain argument errors first, before any engine is imported.
    check_spark_master(engine, spark_master)
    shown = Presentation(title=title, currency=currency, time_zone=time_zone)
    since, until = parse_range(start, end)
    calibration_day = parse_day(calibration_end, "--calibration-end")
    if no_recommendations and recommend_segments:
        raise InputError("--no-recommendations and --recommend contradict each other; give one")
    rules = load_segment_rules(segments_file) if segments_file else ()
    if rules:
        check_score_range(rules, bins, str(segments_file))  # a message that names the file
    options = Options(
        preset=preset,  # type: ignore[arg-type]
        as_of=parse_when(as_of, "--as-of"),
        compare_as_of=parse_when(compare_as_of, "--compare-as-of"),
        bins=bins,
        rules=rules,
        top=top,
        recommendations=recommendations,
        **({"recommend_segments": recommend_segments} if recommend_segments else {}),
        **({"recommend_segments": ()} if no_recommendations else {}),
    )
    settings = clv_settings_of(calibration_day, model, horizon, months, discount)
    from lgs_fast.outputs.lists import ListSettings, read_contacts

    lists = ListSettings(
        contacts=read_contacts(contacts_file) if contacts_file is not None else None,
        human_headers=human_headers,
        control=parse_share(control, "--control") if control is not None else None,
        seed=control_seed,
    )
    from lgs_fast.analyze import analyze

    result = analyze(
        lake_location(lake), out, options,
        engine=engine,  # type: ignore[arg-type]
        start=since, end=until,
        report=not no_report,
        progress=lambda step: click.echo(step, err=True),
        clv_settings=settings,
        spark_master=spark_master,
        lists=lists,
        presentation=shown,
        svg=svg,
        png=png,
        campaigns=campaigns_file,
    )  # fmt: skip
    with presenting(shown):
        _print_summary(result.tables)
    click.echo(f"tables: {result.out / 'tables'}")
    if result.report:
        click.echo(f"report: {result.report.resolve()}")


@cli.command("clv")
@engine_options("the CLV summary")
@click.option(
    "--as-of",
    "as_of",
    metavar="DATE",
    help="End of the observation period (default: the latest invoice).",
)
@range_options
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    help="Also write the per-customer table (probability alive, expected purchases, CLV) here.",
)
@clv_options
def clv_command(
    lake: str | None,
    engine: str,
    spark_master: str | None,
    as_of: str | None,
    start: str | None,
    end: str | None,
    csv_path: Path | None,
    calibration_end: str | None,
    model: str,
    horizon: int,
    months: int,
    discount: float,
) -> None:
    """Fit the CLV models alone: BG/NBD, modified BG/NBD, Pareto/NBD, NBD and Gamma-Gamma.

    Prints each model's estimates with standard errors and whether it fits (a model that does
    not identify its parameters is never used unless named with --model), and with
    --calibration-end the holdout check: actual against predicted purchases, MAE and bias.
    """
    # Plain argument errors first, before any engine is imported.
    check_spark_master(engine, spark_master)
    when = parse_when(as_of, "--as-of")
    since, until = parse_range(start, end)
    calibration_day = parse_day(calibration_end, "--calibration-end")

    from lgs_fast.analyze import clv
    from lgs_fast.config import Options
    from lgs_fast.lake import default_lake
    from lgs_fast.outputs.lists import check_csv_target, write_csv_file
    from lgs_fast.outputs.report_sections import clv_verdicts, holdout_sentences

    lake_arg = lake_location(lake)
    if csv_path is not None:
        check_csv_target(csv_path, lake_arg if isinstance(lake_arg, Path) else default_lake())
    result = clv(
        lake_arg, Options(as_of=when),
        engine=engine,  # type: ignore[arg-type]
        start=since, end=until,
        settings=clv_settings_of(calibration_day, model, horizon, months, discount),
        spark_master=spark_master,
    )  # fmt: skip
    tables = result.tables
    print_table(
        "estimates (standard error):",
        [
            (f"{m} {p}", f"{e:.4g} ({'–' if s is None else format(s, '.3g')})")
            for m, p, e, s in tables["clv_models"]
            .select("model", "parameter", "estimate", "standard_error")
            .iter_rows()
        ],
    )
    for line in clv_verdicts(tables) + (
        holdout_sentences(tables) if "clv_holdout" in tables else []
    ):
        click.echo(line)
    if "clv_holdout" in tables:
        print_table(
            "holdout (purchase days predicted, mean absolute error, RMSE, rank correlation):",
            [
                (
                    r["model"],
                    f"{r['predicted_purchases']:,.0f} of {r['actual_purchases']:,.0f}  "
                    f"{r['mae']:.3f}  {r['rmse']:.3f}  "
                    + ("–" if r["spearman"] is None else format(r["spearman"], ".3f")),
                )
                for r in tables["clv_holdout"].iter_rows(named=True)
            ],
        )
    if csv_path is not None:
        write_csv_file(tables["clv"], csv_path, "clv")
        click.echo(f"per-customer table: {csv_path}")


def _print_summary(tables: dict[str, Any]) -> None:
    from lgs_fast.outputs.wording import headline, partial_months, segments_by_value

    rows = [(f.label.lower(), f.value, f.detail) for f in headline(tables)]
    partial = partial_months(tables)
    rows.insert(
        5,
        (
            "months",
            f"{tables['monthly'].height:,}",
            f"partial: {', '.join(partial)}" if partial else "",
        ),
    )
    width = max(len(k) for k, _, _ in rows)
    click.echo("summary:")
    for key, value, detail in rows:
        click.echo(f"  {key:<{width}}  {value:>15}" + (f"  ({detail})" if detail else ""))
    print_table(
        "segments (customers), by net spend:",
        [
            (s, f"{n:,}")
            for s, n in segments_by_value(tables).select("segment", "customers").iter_rows()
        ],
    )
