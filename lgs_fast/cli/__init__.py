"""`lgs-fast`: a thin command line over the public functions of the same names.

Each command parses options, calls one function, and formats its result. Any `LgsError` (or
OS error) becomes one line on stderr and a non-zero exit code, here and nowhere else.

Importing this module loads no engine (Polars, PyArrow, DuckDB, pandas, NumPy, psycopg, Altair,
statsmodels, SciPy): `--help` and argument errors answer at once, and a command imports what it
needs only after its arguments are parsed and checked.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# Option choices and defaults come from where they are defined; that module loads no engine.
from lgs_fast.config import COMPARE_DAYS, ENGINES, PRESETS, Presentation, presenting
from lgs_fast.errors import InputError, LgsError

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


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LgsError as err:
            _fail(str(err), err.exit_code)
        except BrokenPipeError:
            # The reader of our output went away (`| head`): the work is done, say nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            _fail(f"{where}{err.strerror or err}", 1)
        except KeyboardInterrupt as err:
            _interrupted(err)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as err:
            if os.environ.get("LGS_DEBUG"):
                raise
            text = str(err).strip()
            first = text.splitlines()[0] if text else ""
            _fail(f"unexpected {type(err).__name__}: {first} (LGS_DEBUG=1 shows where)", 1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, `docker stop`, `timeout`): unwound like Ctrl-C, so nothing is left
    half-written and the message says what is on disk."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _interrupted(err: KeyboardInterrupt) -> None:
    if isinstance(err, Terminated):
        _fail(f"terminated; {_what_changed()}", 143)
    _fail(f"interrupted; {_what_changed()}", 130)


def _what_changed() -> str:
    """What an interrupted command leaves on disk, checked on disk, not assumed.

    Only the writers already loaded are asked: one not imported yet has written nothing, and
    importing it now could meet an engine whose own import the interruption cut short (a
    half-imported Polars fails on first use).
    """
    said: list[str] = []
    for name in ("lgs_fast.lake", "lgs_fast.outputs.switch"):
        state = getattr(sys.modules.get(name), "interrupted_state", None)
        if state is not None:
            said += state()
    return "; ".join(said) if said else "nothing was changed"


def _fail(message: str, code: int) -> None:
    # One line, printable characters only: a message may quote a bad value from a file.
    line = message.splitlines()[0] if message else "failed"
    line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)
    click.echo(f"lgs-fast: error: {line}", err=True)
    sys.exit(code)


def _progress(verb: str) -> Callable[[int], None] | None:
    """A line on stderr that counts lines as they stream (only on a terminal)."""
    if not sys.stderr.isatty():
        return None

    def report(rows: int) -> None:
        click.echo(f"\r{verb} {rows:,} lines…", err=True, nl=False)

    return report


def _done_progress() -> None:
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    click.echo(title)
    for key, value in rows:
        click.echo(f"  {key:<{width}}  {value:>14}")


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lgs-fast")
def cli() -> None:
    """lgs_fast: London Gift Shop's customer analytics, fast.

    Build a lake of invoice lines (`import` files or `export` from PostgreSQL), then
    `analyze` it into tables, charts and a report; `verify` checks a lake's files.

    \b
    Exit codes:
      0    done
      1    another error (full disk, unwritable directory, engine failure)
      2    bad input or usage (the message names file, row and column)
      3    no lake there, or a path lgs_fast will not write (not its own)
      4    the PostgreSQL source failed; the lake is unchanged
      5    another lgs-fast process is writing the same lake or OUT
      6    the lake is damaged (a file or the manifest does not match)
      7    the Spark engine cannot start (no PySpark or Java, bad master)
      130  interrupted (Ctrl-C), 143 terminated (SIGTERM); the message says
           whether the lake and OUT changed
    """


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
@click.option("--dedupe", is_flag=True, help="Drop exact duplicate lines (kept by default).")
@click.option("--allow-empty", is_flag=True, help=ALLOW_EMPTY_HELP)
@date_format_option
def import_command(
    files: tuple[Path, ...],
    lake: str | None,
    dedupe: bool,
    allow_empty: bool,
    date_format: str | None,
) -> None:
    """Build the lake from FILES (CSV/.csv.gz, UCI .xlsx, pg_dump .sql, Parquet).

    The lake is replaced atomically by exactly these files: on any bad input nothing changes.
    Headers may be UCI (InvoiceNo,…), UCI II (Invoice,…,Customer ID,…) or snake_case.
    Dates: ISO, or slash dates read day-first or month-first as all of a file's dates show
    (see --date-format); accepted from 1900-01-01 to 2099-12-31.
    LAKE must be new, empty, or a lake lgs_fast made; one writer at a time (exit 5 if busy).
    """
    from lgs_fast.engines.polars import data_quality
    from lgs_fast.ingest.sources import import_files
    from lgs_fast.lake import scan_layers

    result = import_files(
        files,
        lake,
        dedupe=dedupe,
        allow_empty=allow_empty,
        progress=_progress("imported"),
        date_format=date_format,
    )
    _done_progress()
    state = "written" if result.changed else "unchanged (same data)"
    click.echo(f"lake {result.lake}: {result.rows:,} lines, {state}")
    if dedupe:
        click.echo(f"dropped {result.duplicates_dropped:,} exact duplicate lines")
    quality = data_quality(scan_layers(result.lake)).collect()  # from the manifest and layers
    _print_table("data quality:", [(c, f"{n:,}") for c, n in quality.iter_rows()])


DSN_HELP = "PostgreSQL connection string (default: $LGS_PG_DSN)."


def _parse_columns(pairs: tuple[str, ...]) -> dict[str, str]:
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


@cli.command("export")
@click.option("--dsn", envvar="LGS_PG_DSN", help=DSN_HELP)
@click.option(
    "--table", default="retail", show_default=True, help="Source table (schema.table allowed)."
)
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
@click.option(
    "--full",
    is_flag=True,
    help="Read every month again instead of only the months whose lines changed.",
)
@click.option(
    "--column",
    "column_pairs",
    multiple=True,
    metavar="CANONICAL=SOURCE",
    help="Read a canonical column from a differently named source column (repeatable).",
)
@click.option("--allow-empty", is_flag=True, help=ALLOW_EMPTY_HELP)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    envvar="LGS_EXPORT_JOBS",
    help="Connections reading the table at once, in one shared snapshot "
    "(default: $LGS_EXPORT_JOBS, else one per CPU, at least 2).",
)
def export_command(
    dsn: str | None,
    table: str,
    lake: str | None,
    full: bool,
    column_pairs: tuple[str, ...],
    allow_empty: bool,
    jobs: int | None,
) -> None:
    """Export the PostgreSQL table into the lake, streamed, from one consistent snapshot.

    Incremental by default: the server counts and fingerprints each month (UK time), and only
    months that differ from the lake (lines inserted, updated or deleted, in any month) are read
    again; the result equals a full export. The lake changes in one atomic step after the
    database work is over: on any failure (bad DSN, missing table or column, server gone,
    Ctrl-C) the previous lake stays as it was.
    """
    columns = _parse_columns(column_pairs)  # before psycopg is imported
    from lgs_fast.ingest.postgres import export

    result = export(
        dsn,
        lake,
        table=table,
        full=full,
        columns=columns,
        allow_empty=allow_empty,
        progress=_progress("exported"),
        jobs=jobs,
    )
    _done_progress()
    if result.full:
        scope = "in full"
    elif result.months:
        shown = ", ".join(result.months[:6]) + (", …" if len(result.months) > 6 else "")
        scope = f"from {len(result.months)} changed months ({shown})"
    else:
        scope = "(no month changed)"
    state = "written" if result.changed else "unchanged (same data)"
    click.echo(
        f"exported {result.exported:,} lines {scope}; lake {result.lake}: {result.rows:,} lines, {state}; watermark {result.watermark}"
    )


@cli.command("load-pg")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dsn", envvar="LGS_PG_DSN", help=DSN_HELP)
@click.option(
    "--table",
    default="retail",
    show_default=True,
    help="Target table, created with the LGS columns if missing.",
)
@click.option("--append", is_flag=True, help="Add to the table's rows instead of replacing them.")
@date_format_option
def load_pg_command(
    files: tuple[Path, ...], dsn: str | None, table: str, append: bool, date_format: str | None
) -> None:
    """Load FILES (any form `import` reads) into a PostgreSQL table with COPY FROM STDIN.

    One transaction: on bad input or a lost connection the table is left as it was.
    """
    from lgs_fast.ingest.postgres import load_pg

    rows = load_pg(
        files,
        dsn,
        table=table,
        append=append,
        progress=_progress("loaded"),
        date_format=date_format,
    )
    _done_progress()
    click.echo(f"loaded {rows:,} lines into {table}")


@cli.command("generate")
@click.option(
    "--rows",
    type=click.IntRange(1, 10_000_000_000),
    required=True,
    help="How many invoice lines to make.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same lake.",
)
@click.option(
    "--customers",
    type=click.IntRange(1, 1_000_000),
    help="Wholesale preset: this many customers, each ordering 80% of their lines from a range "
    "of 200 products of their own, over --years years (the worst case for recommendations).",
)
@click.option(
    "--years",
    type=click.IntRange(1, 10),
    help="Years of invoices (default: 1; 2 with --customers).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Write over a lake of real (imported or exported) data; without it that is refused.",
)
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
def generate_command(
    rows: int,
    seed: int,
    customers: int | None,
    years: int | None,
    replace: bool,
    lake: str | None,
) -> None:
    """Write a lake of synthetic lines that look like LGS's, for scale tests and benchmarks.

    Calibrated from the shipped real data: baskets, products and prices, the November peak,
    countries, guest invoices, cancellations, heavy-tailed customers. Streams in chunks of a
    million lines, so 100M lines need no more memory than 1M. With --customers, a fixed number
    of wholesale customers who mostly re-order from ranges of their own, over two years.
    """
    from lgs_fast.ingest.generate import generate

    root, written = generate(
        rows,
        lake,
        seed=seed,
        progress=_progress("generated"),
        customers=customers,
        years=years,
        replace=replace,
    )
    _done_progress()
    preset = "" if customers is None else f", {customers:,} wholesale customers"
    click.echo(f"lake {root}: {written:,} lines (seed {seed}{preset}), synthetic")


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

    when = _parse_when(until, "--until")
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


@cli.command("verify")
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
def verify_command(lake: str | None) -> None:
    """Check the whole lake: the manifest against its own checksum, every file (lines and
    derived layers) against the manifest, and what the manifest records from the lines
    computed again.

    Every read already checks the manifest's checksum and each file's presence, size, line
    count and SHA-256; verify also counts each month's lines again (last invoice, quality
    counts, the derived layers, the watermark) and compares. Exit 0 when the lake is whole, 6
    when a file is missing, changed or unreadable or the manifest was edited (the message names
    the file and partition), 3 when there is no lake.
    """
    from lgs_fast.lake import default_lake, verify_lake

    manifest = verify_lake(lake)
    layered = len(manifest.layered())
    click.echo(
        f"lake {lake or default_lake()}: {manifest.rows:,} lines in {len(manifest.partitions)} partitions"
        f"{' and their derived layers' if layered else ''}, every checksum matches and every "
        "recorded count agrees with the lines"
    )
    if manifest.checksum is None:
        click.echo(
            "the manifest has no checksum of its own (written by an earlier lgs_fast), so reads "
            "cannot tell if it was edited; `lgs-fast upgrade` adds one"
        )
    if layered < len(manifest.partitions):
        missing = len(manifest.partitions) - layered
        click.echo(
            f"{missing:,} of the partitions without the current derived layers (analyses compute them "
            "from the lines each time); `lgs-fast upgrade` stores them"
        )


@cli.command("upgrade")
@click.option("--lake", metavar="DIR", help=LAKE_HELP)
def upgrade_command(lake: str | None) -> None:
    """Store the derived layers (invoices, products, quality counts) of every month that lacks
    them, as a lake written by an older lgs_fast does.

    Analyses of such a lake are exact but compute the layers from the lines each time; after
    the upgrade they read them. The lines are untouched; the new layers and the manifest that
    lists them are committed in one atomic step (a crash or kill leaves the lake as it was).
    Exit 0 when done or nothing to do, 3 when there is no lake, 5 when another process writes it.
    """
    from lgs_fast.lake import default_lake, upgrade_lake

    manifest, months = upgrade_lake(lake)
    root = lake or default_lake()
    if months:
        months_word = "month" if len(months) == 1 else "months"
        click.echo(f"lake {root}: derived layers stored for {len(months):,} {months_word}")
    else:
        click.echo(f"lake {root}: every month already has the current derived layers; unchanged")


def _parse_when(value: str | None, option: str) -> dt.datetime | None:
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


def _parse_range(
    start: str | None, end: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """--from and --to, checked like `analyze` checks them, before any engine is loaded."""
    since, until = _parse_when(start, "--from"), _parse_when(end, "--to")
    if since is not None and until is not None and since >= until:
        raise InputError(f"empty date range: --from {since} is not before --to {until}")
    return since, until


def _parse_day(value: str | None, option: str) -> dt.date | None:
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
    for option in reversed(options):
        command = option(command)
    return command


def _clv_settings(
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


def _check_spark_master(engine: str, master: str | None) -> None:
    if master is not None and engine != "spark":
        raise InputError(f"--spark-master is for --engine spark, not {engine}")


def _share(value: str, option: str) -> float:
    """`10%` or `0.1` as 0.1; one line for anything else."""
    text = value.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"{option} {value!r}: give a share such as 10% or 0.1") from None


def _lake(value: str | None) -> str | Path | None:
    from lgs_fast.config import is_uri

    return value if value is None or is_uri(value) else Path(value)


@cli.command("analyze")
@click.option("--lake", metavar="LAKE", help=URI_LAKE_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default="out",
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="polars",
    show_default=True,
    help="Which engine computes the tables (all give the same answers).",
)
@click.option("--spark-master", metavar="URL", help=SPARK_MASTER_HELP)
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
@click.option("--from", "start", metavar="DATE", help="Only lines on or after DATE.")
@click.option("--to", "end", metavar="DATE", help="Only lines before DATE.")
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
    "--png",
    is_flag=True,
    help="Also draw every chart as PNG at twice its size, for slides and e-mails (OUT/charts/"
    "NAME.png; the SVG and the Vega-Lite spec are always written).",
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
    sales_forecast, forecast_backtest, forecast_models; OUT/charts/NAME.vl.json and NAME.svg
    (and NAME.png with --png); OUT/segments/SEGMENT.csv for campaigns (customers with a net spend above £0,
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
    _check_spark_master(engine, spark_master)
    shown = Presentation(title=title, currency=currency, time_zone=time_zone)
    since, until = _parse_range(start, end)
    calibration_day = _parse_day(calibration_end, "--calibration-end")
    if no_recommendations and recommend_segments:
        raise InputError("--no-recommendations and --recommend contradict each other; give one")
    rules = load_segment_rules(segments_file) if segments_file else ()
    if rules:
        check_score_range(rules, bins, str(segments_file))  # a message that names the file
    options = Options(
        preset=preset,  # type: ignore[arg-type]
        as_of=_parse_when(as_of, "--as-of"),
        compare_as_of=_parse_when(compare_as_of, "--compare-as-of"),
        bins=bins,
        rules=rules,
        top=top,
        recommendations=recommendations,
        **({"recommend_segments": recommend_segments} if recommend_segments else {}),
        **({"recommend_segments": ()} if no_recommendations else {}),
    )
    settings = _clv_settings(calibration_day, model, horizon, months, discount)
    from lgs_fast.outputs.lists import ListSettings, read_contacts

    lists = ListSettings(
        contacts=read_contacts(contacts_file) if contacts_file is not None else None,
        human_headers=human_headers,
        control=_share(control, "--control") if control is not None else None,
        seed=control_seed,
    )
    from lgs_fast.analyze import analyze

    result = analyze(
        _lake(lake), out, options,
        engine=engine,  # type: ignore[arg-type]
        start=since, end=until,
        report=not no_report,
        progress=lambda step: click.echo(step, err=True),
        clv_settings=settings,
        spark_master=spark_master,
        lists=lists,
        presentation=shown,
        png=png,
        campaigns=campaigns_file,
    )  # fmt: skip
    with presenting(shown):
        _print_summary(result.tables)
    click.echo(f"tables: {result.out / 'tables'}")
    if result.report:
        click.echo(f"report: {result.report.resolve()}")


@cli.command("clv")
@click.option("--lake", metavar="LAKE", help=URI_LAKE_HELP)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="polars",
    show_default=True,
    help="Which engine computes the CLV summary (all give the same).",
)
@click.option("--spark-master", metavar="URL", help=SPARK_MASTER_HELP)
@click.option(
    "--as-of",
    "as_of",
    metavar="DATE",
    help="End of the observation period (default: the latest invoice).",
)
@click.option("--from", "start", metavar="DATE", help="Only lines on or after DATE.")
@click.option("--to", "end", metavar="DATE", help="Only lines before DATE.")
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
    _check_spark_master(engine, spark_master)
    when = _parse_when(as_of, "--as-of")
    since, until = _parse_range(start, end)
    calibration_day = _parse_day(calibration_end, "--calibration-end")

    from lgs_fast.analyze import clv
    from lgs_fast.config import Options
    from lgs_fast.lake import default_lake
    from lgs_fast.outputs.lists import check_csv_target, write_csv_file
    from lgs_fast.outputs.report_sections import clv_verdicts, holdout_sentences

    lake_arg = _lake(lake)
    if csv_path is not None:
        check_csv_target(csv_path, lake_arg if isinstance(lake_arg, Path) else default_lake())
    result = clv(
        lake_arg, Options(as_of=when),
        engine=engine,  # type: ignore[arg-type]
        start=since, end=until,
        settings=_clv_settings(calibration_day, model, horizon, months, discount),
        spark_master=spark_master,
    )  # fmt: skip
    tables = result.tables
    _print_table(
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
        _print_table(
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
    _print_table(
        "segments (customers), by net spend:",
        [
            (s, f"{n:,}")
            for s, n in segments_by_value(tables).select("segment", "customers").iter_rows()
        ],
    )


def main() -> None:
    """Entry point: usage errors, like every other error, become one line and exit code 2."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        try:
            # `lgs-fast` alone lists the commands, as `lgs-fast --help` does.
            args = sys.argv[1:] or ["--help"]
            cli.main(args, prog_name="lgs-fast", standalone_mode=False)
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt as err:
            _interrupted(err)
        except click.exceptions.Abort:
            _fail("aborted", 130)
        except click.ClickException as err:
            _fail(err.format_message() + "; see --help", err.exit_code)
    finally:
        # The command has done its work and said so: a Ctrl-C now would only turn a true
        # message into a death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    main()
