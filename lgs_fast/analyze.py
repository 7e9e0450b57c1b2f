"""`analyze`: run every analysis with one engine and write the output tables.

The engines themselves are `lgs_fast.engines.polars`, `lgs_fast.engines.duckdb` and
`lgs_fast.engines.spark`, named by the registry `lgs_fast.engines`; this module asks one for the
catalog's tables, hands them to the models, and writes the outputs atomically. A lake named by URI (`s3a://…`) is read by Spark
alone; a local lake by any engine, under the readers' lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import polars as pl

from lgs_fast import engines
from lgs_fast.catalog import MODEL_INPUTS
from lgs_fast.config import (
    EngineName,
    Options,
    Presentation,
    current_presentation,
    is_uri,
    presenting,
)
from lgs_fast.engines.base import EngineSettings, Span
from lgs_fast.errors import InputError, LgsError
from lgs_fast.lake import Snapshot, default_lake, reading, scan_layers, verify_lake
from lgs_fast.outputs.switch import OutputSwitch, check_apart

if TYPE_CHECKING:
    from lgs_fast.engines.base import Engine, Version
    from lgs_fast.models.campaign_results import Campaigns
    from lgs_fast.models.clv import ClvSettings, CustomerModel
    from lgs_fast.outputs.lists import ListSettings

DEFAULT_OUT = Path("out")


@contextlib.contextmanager
def lake_version(lake: str | Path | None, engine: Engine) -> Iterator[Version]:
    """The lake's current version while the block reads it: a local lake's checked snapshot
    under the readers' lock, or a URI lake's manifest and files as `engine` sees them."""
    if lake is not None and is_uri(lake):
        yield engine.open_uri(str(lake))
        return
    with reading(Path(lake) if lake is not None else default_lake()) as snap:
        yield snap


def compute_tables(
    lake: str | Path | None = None,
    options: Options | None = None,
    *,
    engine: EngineName = "polars",
    start: dt.date | None = None,
    end: dt.date | None = None,
    calibration_end: dt.date | None = None,
    spark_master: str | None = None,
) -> dict[str, pl.DataFrame]:
    """Every output table, computed by `engine` over the lake (optionally a date range).

    With `calibration_end`, also `clv_calibration`: the CLV summary of the lines before it.
    `spark_master`: where the Spark engine runs (`lgs_fast.engines.spark.master_url`).
    """
    runner = _engine(engine, start, end, spark_master)
    # The shared lock keeps every file of this version on disk while the engine reads it,
    # whatever a writer does meanwhile.
    with lake_version(lake, runner) as version:
        return _compute(version, options or Options(), runner, Span(start, end), calibration_end)


def _engine(
    name: str, start: dt.date | None, end: dt.date | None, spark_master: str | None
) -> Engine:
    if start is not None and end is not None and start >= end:
        raise InputError(f"empty date range: --from {start} is not before --to {end}")
    return engines.engine(name, EngineSettings(spark_master=spark_master))


def _compute(
    snap: Version,
    options: Options,
    engine: Engine,
    span: Span,
    calibration_end: dt.date | None = None,
    *,
    clv_only: bool = False,
) -> dict[str, pl.DataFrame]:
    try:
        if clv_only:
            tables = {"clv_summary": engine.clv_summary(snap, options, span)}
        else:
            tables = engine.tables(snap, options, span)
        if calibration_end is not None:
            calibration = calibration_options(options, calibration_end)
            tables["clv_calibration"] = engine.clv_summary(snap, calibration, span)
            # The baseline "as many purchase days as in the same span before": the summary
            # at the calibration's end less the holdout's length.
            days = holdout_days(tables["clv_summary"], tables["clv_calibration"])
            if days > 0:
                earlier = calibration_options(options, calibration_end - dt.timedelta(days=days))
                tables["clv_earlier"] = engine.clv_summary(snap, earlier, span)
        return tables
    except (LgsError, KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as err:  # engines raise their own types, Polars even panics
        raise _read_failure(snap, engine.name, err) from None


def holdout_days(summary: pl.DataFrame, calibration: pl.DataFrame) -> int:
    """The holdout's length in days: the earliest customer is in both summaries, so it is the
    difference of their largest T (0 when either is empty)."""
    if summary.height == 0 or calibration.height == 0:
        return 0
    return int(summary["T"].max() - calibration["T"].max())  # type: ignore[operator]


def calibration_options(options: Options, calibration_end: dt.date) -> Options:
    """`options` for the calibration period: the lines before `calibration_end` (a day), so its
    observation period ends the day before, as CDNOW's 39 weeks end on 1997-09-30."""
    first_holdout = dt.datetime.combine(calibration_end, dt.time())
    if options.as_of is not None and first_holdout > options.as_of:
        raise InputError(
            f"--calibration-end {calibration_end} is after --as-of {options.as_of}: no holdout"
        )
    return replace(options, as_of=first_holdout - dt.timedelta(microseconds=1))


@dataclass(frozen=True)
class ClvResult:
    model: CustomerModel
    tables: dict[str, pl.DataFrame]


def clv_outputs(
    tables: dict[str, pl.DataFrame], settings: ClvSettings | None
) -> tuple[CustomerModel, dict[str, pl.DataFrame]]:
    """The CLV models fitted to `clv_summary` (and checked on `clv_calibration`, if there)."""
    from lgs_fast.models import clv as models

    settings = settings or models.ClvSettings()
    summary, calibration = tables["clv_summary"], tables.get("clv_calibration")
    if summary.height == 0:
        raise InputError("no customer with a purchase: no CLV model can be fitted")
    if calibration is not None and calibration.height == 0:
        raise InputError(f"no purchase before --calibration-end {settings.calibration_end}")
    # The earliest customer is in both: T_full − T_cal is the holdout in days.
    if calibration is not None and calibration["T"].max() >= summary["T"].max():
        raise InputError(
            f"--calibration-end {settings.calibration_end} leaves no holdout: "
            "no data on or after it"
        )
    return models.clv_tables(
        summary, settings, calibration=calibration, rfm_table=tables.get("rfm"),
        earlier=tables.get("clv_earlier"),
    )  # fmt: skip


def clv(
    lake: str | Path | None = None,
    options: Options | None = None,
    *,
    engine: EngineName = "polars",
    start: dt.date | None = None,
    end: dt.date | None = None,
    settings: ClvSettings | None = None,
    spark_master: str | None = None,
) -> ClvResult:
    """The CLV models alone: the summary by `engine`, the fits, per-customer predictions and,
    with `settings.calibration_end`, the holdout check (tables as `analyze` writes them)."""
    runner = _engine(engine, start, end, spark_master)
    calibration_end = settings.calibration_end if settings else None
    with lake_version(lake, runner) as version:
        inputs = _compute(
            version, options or Options(), runner, Span(start, end), calibration_end,
            clv_only=True,
        )  # fmt: skip
    return ClvResult(*clv_outputs(inputs, settings))


def campaign_results(
    campaigns: str | Path, lake: str | Path | None = None, *, until: dt.datetime | None = None
) -> pl.DataFrame:
    """The `campaign_results` table of an `OUT/campaigns.json`: per list, the contacted against
    the held-back customers after the lists were made (and before `until`), over the lake's
    current version (`lgs_fast.models.campaign_results`)."""
    from lgs_fast.models.campaign_results import read_campaigns

    record = read_campaigns(Path(campaigns))  # its faults first, before the lake's
    with reading(Path(lake) if lake is not None else default_lake()) as snap:
        return _measured(record, snap, until)


def _measured(record: Campaigns, snap: Version, until: dt.datetime | None = None) -> pl.DataFrame:
    from lgs_fast.models import campaign_results as measured

    if not isinstance(snap, Snapshot):
        raise InputError(
            "campaign results are measured on a lake in a local directory, not at a URI"
        )
    watermark = snap.manifest.watermark
    data_end = dt.datetime.fromisoformat(watermark) if watermark is not None else None
    if until is not None and (data_end is None or until < data_end):
        data_end = until
    per_customer = (
        measured.outcomes(scan_layers(snap=snap).invoices, record.sent, until).collect()
        if record.sent is not None
        else pl.DataFrame(schema={"customer_id": pl.Int64})
    )
    return measured.results(record, per_customer, data_end)


def forecast_outputs(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """sales_forecast, forecast_backtest and forecast_models from the `weekly_sales` table."""
    from lgs_fast.models.forecast import sales_forecast
    from lgs_fast.models.memo import memoized

    weekly = tables["weekly_sales"]
    return memoized("forecast", {"weekly_sales": weekly}, "", lambda: sales_forecast(weekly))


def _check_compare_time(options: Options, end: dt.date | None, version: Version) -> None:
    """Refuse a --compare-as-of that is not before the data's last line (or --to), when the
    reference time T comes from the data: T0 would be T itself, everyone `same`, while the
    report showed the date given. With --as-of, `Options` compares the two itself."""
    then = options.compare_as_of
    if then is None or options.as_of is not None:
        return
    until = (
        end if end is None or isinstance(end, dt.datetime) else dt.datetime.combine(end, dt.time())
    )
    if until is not None and then >= until:
        raise InputError(
            f"--compare-as-of {then} is not before --to {end}: segment movement compares "
            "with a time before the reference time (the last invoice); give an earlier date"
        )
    last = version.manifest.watermark  # a local lake's and a URI lake's manifest alike
    latest = dt.datetime.fromisoformat(last) if last is not None else None
    if latest is not None and then >= latest:
        raise InputError(
            f"--compare-as-of {then} is not before the data's last invoice ({latest}): segment "
            "movement compares with a time before the reference time; give an earlier date"
        )


def data_origin(version: Version) -> str:
    """Where the lake's lines came from, as its manifest says, and whether they are synthetic
    (`lgs-fast generate`): a report of generated lines must never read as a shop's."""
    if not isinstance(version, Snapshot):
        return f"the lake at {version.location}"
    manifest = version.manifest
    said = "; ".join(manifest.source)[:200] or "not recorded"
    if manifest.extra.get("kind") == "generate":
        return f"SYNTHETIC lines made by lgs-fast generate ({said}), not a shop's sales"
    return said


def recommendation_outputs(
    tables: dict[str, pl.DataFrame], options: Options
) -> dict[str, pl.DataFrame]:
    """recommendations and recommendation_holdout from the `customer_products`,
    `product_names` and `rfm` tables."""
    from lgs_fast.models import recommend
    from lgs_fast.models.memo import memoized

    inputs = tables["customer_products"], tables["product_names"], tables["rfm"]
    return memoized(
        "recommendations",
        dict(zip(("customer_products", "product_names", "rfm"), inputs, strict=True)),
        repr(options),
        lambda: {
            "recommendations": recommend.recommendations(*inputs, options),
            "recommendation_holdout": recommend.holdout(inputs[0], inputs[2], options),
        },
    )


def _read_failure(snap: Version, engine: str, err: BaseException) -> LgsError:
    """Why an engine failed: a damaged file (found by its checksum), or the engine's own word."""
    if isinstance(snap, Snapshot):
        try:
            verify_lake(snap.root)
        except LgsError as damaged:
            return damaged
    where = snap.root if isinstance(snap, Snapshot) else snap.location
    text = str(err).strip()
    return LgsError(
        f"{engine} failed on {where}: {text.splitlines()[0] if text else type(err).__name__}"
    )


def tables_of(
    lines: pl.LazyFrame, options: Options | None = None, *, engine: EngineName = "polars"
) -> dict[str, pl.DataFrame]:
    """Every output table of any LazyFrame of canonical lines (notebooks, tests), by `engine`."""
    return engines.engine(engine).tables_of(lines, options or Options())


@dataclass(frozen=True)
class AnalysisResult:
    out: Path
    tables: dict[str, pl.DataFrame]
    report: Path | None


def write_tables(tables: dict[str, pl.DataFrame], directory: Path) -> None:
    """`NAME.parquet` and `NAME.csv` per table.

    Parquet keeps full precision; the CSV shows money to the penny and no text cell that a
    spreadsheet would run as a formula (`lgs_fast.outputs.lists.write_csv`).
    """
    from lgs_fast.outputs.lists import write_csv

    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(directory / f"{name}.parquet", compression="zstd")
        write_csv(frame, directory / f"{name}.csv", name)


def _build(
    tables: dict[str, pl.DataFrame],
    build: Path,
    settings: tuple[tuple[str, str], ...] | None,
    preset: str,
    say: Callable[[str], None],
    lists: ListSettings | None = None,
    images: tuple[bool, bool] = (False, False),
    sent: dt.datetime | None = None,
) -> None:
    """Tables, then (unless `settings` is None: --no-report) charts (`images`: SVG, PNG too),
    lists, workbook, report; worded by the presentation in force."""
    write_tables(tables, build / "tables")
    if settings is None:
        return
    from lgs_fast.outputs import charts as charting
    from lgs_fast.outputs import lists as campaigns
    from lgs_fast.outputs import report as reporting
    from lgs_fast.outputs import workbook

    say(f"drawing {len(charting.CHARTS)} charts…")
    svg, png = images
    specs = charting.write_charts(charting.build_charts(tables), build / "charts", svg=svg, png=png)
    campaigns.write_segment_exports(tables, build / "segments", lists)
    # The record `lgs-fast campaign-results` reads later: who was on which list, who held back.
    record = campaigns.campaign_record(
        tables, lists or campaigns.ListSettings(), sent, dict(settings)
    )
    (build / campaigns.CAMPAIGNS_FILE).write_text(json.dumps(record, indent=1))
    if lists is not None and lists.contacts is not None:
        listed, missing = campaigns.without_contact(tables, lists)
        say(f"contacts joined onto the lists: {listed - missing:,} of {listed:,} customers "
            f"matched, {missing:,} without a contact row")  # fmt: skip
    workbook.write_workbook(tables, build / workbook.WORKBOOK_NAME, lists)
    say("writing the report…")
    files = sorted(
        p.relative_to(build).as_posix()
        for p in build.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    context = reporting.ReportContext(
        generated=dt.datetime.now(ZoneInfo(current_presentation().time_zone)),
        settings=settings,
        files=(*files, "report.html"),
        preset=preset,
    )
    page = reporting.render_report(tables, specs, reporting.vega_javascript(), context)
    (build / "report.html").write_text(page)


def analyze(
    lake: str | Path | None = None,
    out: str | Path = DEFAULT_OUT,
    options: Options | None = None,
    *,
    engine: EngineName = "polars",
    start: dt.date | None = None,
    end: dt.date | None = None,
    report: bool = True,
    progress: Callable[[str], None] | None = None,
    clv_settings: ClvSettings | None = None,
    spark_master: str | None = None,
    lists: ListSettings | None = None,
    presentation: Presentation | None = None,
    svg: bool = False,
    png: bool = False,
    campaigns: str | Path | None = None,
) -> AnalysisResult:
    """Compute every table with `engine`; write tables, charts, segment exports and the report.

    Everything is built in a directory beside OUT and switched in with one atomic rename
    (`lgs_fast.outputs.switch`): a failure or a kill leaves the previous outputs as they were.
    `lists`: how the campaign lists are written (contacts joined on, people's headings);
    `presentation`: the report's title, the currency symbol and the time zone shown (default:
    the one in force); `svg`, `png`: charts as SVG, PNG files too; `campaigns`: an earlier run's
    `campaigns.json`, whose lists are measured since (the `campaign_results` table, a chart
    and the report's "Did the last campaign work?").
    """
    say = progress or (lambda _: None)
    target = Path(out)
    runner = _engine(engine, start, end, spark_master)
    options = options or Options()
    if lake is None or not is_uri(lake):
        check_apart(target, Path(lake) if lake is not None else default_lake())
    if lists is not None and lists.control is not None and not report:
        raise InputError(
            "--control holds customers back from the campaign lists, which --no-report does "
            "not write; leave one of them out"
        )
    record = None
    if campaigns is not None:  # a bad record: one line before any work
        from lgs_fast.models.campaign_results import read_campaigns

        record = read_campaigns(Path(campaigns))
        if lake is not None and is_uri(lake):
            raise InputError(
                "--campaign-results measures on a lake in a local directory, not at a URI"
            )
    starting = runner.check()  # a bad Spark master, or no Java: before any progress
    if starting is not None:
        say(starting)
    # The lake is checked and OUT claimed before the long work, so that a damaged lake or a
    # busy or foreign OUT fails at once.
    with lake_version(lake, runner) as snap, OutputSwitch(target) as switch:
        _check_compare_time(options, end, snap)
        say(f"computing tables with {engine}…")
        calibration_end = clv_settings.calibration_end if clv_settings else None
        tables = _compute(snap, options, runner, Span(start, end), calibration_end)
        if tables["clv_summary"].height > 0:  # no purchase at all: no model, no CLV section
            say("fitting the CLV models…")
            tables.update(clv_outputs(tables, clv_settings)[1])
        tables.pop("clv_calibration", None)
        tables.pop("clv_earlier", None)
        if options.recommend_segments:
            say("recommending products…")
        tables.update(recommendation_outputs(tables, options))
        for name in MODEL_INPUTS:
            tables.pop(name)
        say("fitting the sales forecast…")
        tables.update(forecast_outputs(tables))
        if record is not None:
            say("measuring the last campaign…")
            tables["campaign_results"] = _measured(record, snap)
        settings = None
        if report:
            from lgs_fast.models.clv import ClvSettings
            from lgs_fast.outputs.report import analysis_settings

            clv_used = (clv_settings or ClvSettings()) if "clv_models" in tables else None
            settings = (
                *analysis_settings(options, engine, start, end, clv_used),
                ("Source of the lines", data_origin(snap)),
            )
        try:
            with presenting(presentation or current_presentation()):
                sent = options.as_of or tables["overview"]["last_invoice"][0]
                _build(tables, switch.build, settings, options.preset, say, lists, (svg, png), sent)
        except (LgsError, KeyboardInterrupt):
            raise
        except Exception as err:  # a full disk, say, met inside Polars or the chart renderer
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LgsError(
                f"{target}: could not write the outputs ({text}); OUT is unchanged"
            ) from None
        switch.commit()
    return AnalysisResult(target, tables, target / "report.html" if report else None)
