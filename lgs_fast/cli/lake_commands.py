"""The commands that build and keep a lake: import, export, load-pg, generate, verify, upgrade."""

from __future__ import annotations

from pathlib import Path

import click

from lgs_fast.cli.group import cli, done_progress, print_table, progress_counter
from lgs_fast.cli.options import (
    ALLOW_EMPTY_HELP,
    DSN_HELP,
    LAKE_HELP,
    date_format_option,
    parse_columns,
)


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
        progress=progress_counter("imported"),
        date_format=date_format,
    )
    done_progress()
    state = "written" if result.changed else "unchanged (same data)"
    click.echo(f"lake {result.lake}: {result.rows:,} lines, {state}")
    if dedupe:
        click.echo(f"dropped {result.duplicates_dropped:,} exact duplicate lines")
    quality = data_quality(scan_layers(result.lake)).collect()  # from the manifest and layers
    print_table("data quality:", [(c, f"{n:,}") for c, n in quality.iter_rows()])


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
    columns = parse_columns(column_pairs)  # before psycopg is imported
    from lgs_fast.ingest.postgres import export

    result = export(
        dsn,
        lake,
        table=table,
        full=full,
        columns=columns,
        allow_empty=allow_empty,
        progress=progress_counter("exported"),
        jobs=jobs,
    )
    done_progress()
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
        progress=progress_counter("loaded"),
        date_format=date_format,
    )
    done_progress()
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
        progress=progress_counter("generated"),
        customers=customers,
        years=years,
        replace=replace,
    )
    done_progress()
    preset = "" if customers is None else f", {customers:,} wholesale customers"
    click.echo(f"lake {root}: {written:,} lines (seed {seed}{preset}), synthetic")


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
