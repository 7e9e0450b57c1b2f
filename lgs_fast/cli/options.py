"""Options and their parsers shared by the commands: help texts, dates and ranges, shares, the CLV settings, the Spark master."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lgs_fast.engines import check_settings
from lgs_fast.engines.base import EngineSettings
from lgs_fast.errors import InputError

LAKE_HELP = "Lake directory (default: $LGS_LAKE or data/lake)."


ALLOW_EMPTY_HELP = "Write the lake even when the input holds no line (refused by default)."


DATE_FORMAT_HELP = (
    "How slash dates are written, e.g. '%d/%m/%Y %H:%M' (day-first, UK) or '%m/%d/%Y %H:%M' "
    "(month-first, US). ISO dates are always read. Without it, each file's slash dates are read "
    "as all of them show (a first field above 12: day-first; a second above 12: month-first); a "
    "file where every one reads both ways is refused, unless its header is UCI's (month-first)."
)


def date_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--date-format`, for every command that reads files."""
    return click.option("--date-format", metavar="FORMAT", help=DATE_FORMAT_HELP)(command)


DSN_HELP = "PostgreSQL connection string (default: $LGS_PG_DSN)."


def parse_columns(pairs: tuple[str, ...]) -> dict[str, str]:
    if not pairs:
        return {}
    from lgs_fast.schema import COLUMNS  # loads Polars: only when --column is given

    mapping = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        if not sep or canonical not in COLUMNS or not source:
            raise click.BadParameter(
                f"{pair!r}: expected CANONICAL=SOURCE, CANONICAL one of {', '.join(COLUMNS)}",
                param_hint="--column",
            )
        mapping[canonical] = source
    return mapping


def parse_when(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD[ HH:MM:SS])", param_hint=option
        ) from None
    if when.tzinfo is not None:
        # The lake holds UK local times without a zone; an offset would be silently misread.
        raise click.BadParameter(
            f"{value!r} has a time zone; give UK local time without one (YYYY-MM-DD[ HH:MM:SS])",
            param_hint=option,
        )
    return when


def parse_range(
    start: str | None, end: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """--from and --to, checked like `analyze` checks them, before any engine is loaded."""
    since, until = parse_when(start, "--from"), parse_when(end, "--to")
    if since is not None and until is not None and since >= until:
        raise InputError(f"empty date range: --from {since} is not before --to {until}")
    return since, until


def parse_day(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a day (YYYY-MM-DD)", param_hint=option
        ) from None


def clv_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The CLV model options, shared by `analyze` and `clv`."""
    options = [
        click.option(
            "--calibration-end",
            metavar="DATE",
            help="Check the models on a holdout: fit on the lines before DATE, predict the rest.",
        ),
        click.option(
            "--model",
            type=click.Choice(["auto", "bgnbd", "mbgnbd", "pnbd", "nbd"]),
            default="auto",
            show_default=True,
            help="Purchase model; auto: the best that fits (a dropout model where the data "
            "identify dropout, else nbd, no dropout), or none (a named one is used even when it "
            "does not fit, and said to be so).",
        ),
        click.option(
            "--horizon",
            type=click.IntRange(1, 3650),
            default=90,
            show_default=True,
            help="Days ahead for expected purchases.",
        ),
        click.option(
            "--months",
            type=click.IntRange(1, 600),
            default=12,
            show_default=True,
            help="Months of CLV.",
        ),
        click.option(
            "--discount",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.01,
            show_default=True,
            help="Monthly discount rate of CLV (0.01 = 1% a month).",
        ),
    ]
    return _stack(command, options)


def clv_settings_of(
    calibration_end: dt.date | None, model: str, horizon: int, months: int, discount: float
) -> Any:
    from lgs_fast.models.clv import ClvSettings  # NumPy and SciPy

    return ClvSettings(
        model=model,  # type: ignore[arg-type]
        horizon_days=horizon,
        months=months,
        monthly_discount=discount,
        calibration_end=calibration_end,
    )


SPARK_MASTER_HELP = (
    "With --engine spark: the Spark master (local[*], local[N], spark://HOST:PORT, yarn, "
    "k8s://URL, or sc://HOST:PORT for Spark Connect; default: $SPARK_REMOTE, else "
    "$LGS_SPARK_MASTER, else local[*])."
)


URI_LAKE_HELP = (
    "Lake directory (default: $LGS_LAKE or data/lake), or with --engine spark any URI Spark "
    "reads (s3a://BUCKET/lake, hdfs://HOST/lake, file:///path)."
)


def _stack(command: Callable[..., Any], options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """`options` applied to `command`, listed in --help in their order."""
    for option in reversed(options):
        command = option(command)
    return command


def engine_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--lake (a directory, or a URI for Spark), --engine and --spark-master, shared by the
    commands that read a lake through an engine; `what` is what the engine computes."""
    from lgs_fast.config import ENGINES

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        return _stack(
            command,
            [
                click.option("--lake", metavar="LAKE", help=URI_LAKE_HELP),
                click.option(
                    "--engine",
                    type=click.Choice(ENGINES),
                    default="polars",
                    show_default=True,
                    help=f"Which engine computes {what} (all give the same answers).",
                ),
                click.option("--spark-master", metavar="URL", help=SPARK_MASTER_HELP),
            ],
        )

    return decorate


def range_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--from and --to, the lines' date range (`parse_range` checks them)."""
    return _stack(
        command,
        [
            click.option("--from", "start", metavar="DATE", help="Only lines on or after DATE."),
            click.option("--to", "end", metavar="DATE", help="Only lines before DATE."),
        ],
    )


def check_spark_master(engine: str, master: str | None) -> None:
    """Before any engine is imported: the registry's own check (it loads no engine)."""
    check_settings(engine, EngineSettings(spark_master=master))


def parse_share(value: str, option: str) -> float:
    """`10%` or `0.1` as 0.1; one line for anything else."""
    text = value.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"{option} {value!r}: give a share such as 10% or 0.1") from None


def lake_location(value: str | None) -> str | Path | None:
    from lgs_fast.config import is_uri

    return value if value is None or is_uri(value) else Path(value)
