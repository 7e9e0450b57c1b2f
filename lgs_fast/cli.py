"""`lgs-fast`: a thin command line over the public functions of the same names.

Each command parses options, calls one function, and formats its result. Any `LgsError` (or
OS error) becomes one line on stderr and a non-zero exit code, here and nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lgs_fast.errors import LgsError

LAKE_HELP = "Lake directory (default: $LGS_LAKE or data/lake)."


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LgsError as err:
            _fail(str(err), err.exit_code)
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            _fail(f"{where}{err.strerror or err}", 1)
        except KeyboardInterrupt:
            _fail("interrupted; the previous lake is unchanged", 130)


def _fail(message: str, code: int) -> None:
    click.echo(f"lgs-fast: error: {message.splitlines()[0] if message else 'failed'}", err=True)
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
    `analyze` it into tables, charts and a report.
    """


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--lake", type=click.Path(path_type=Path), help=LAKE_HELP)
@click.option("--dedupe", is_flag=True, help="Drop exact duplicate lines (kept by default).")
def import_command(files: tuple[Path, ...], lake: Path | None, dedupe: bool) -> None:
    """Build the lake from FILES (CSV/.csv.gz, UCI .xlsx, pg_dump .sql, Parquet).

    The lake is replaced atomically by exactly these files: on any bad input nothing changes.
    Headers may be UCI (InvoiceNo,…), UCI II (Invoice,…,Customer ID,…) or snake_case.
    """
    from lgs_fast.lake import scan
    from lgs_fast.metrics import data_quality
    from lgs_fast.sources import import_files

    result = import_files(files, lake, dedupe=dedupe, progress=_progress("imported"))
    _done_progress()
    state = "written" if result.changed else "unchanged (same data)"
    click.echo(f"lake {result.lake}: {result.rows:,} lines, {state}")
    if dedupe:
        click.echo(f"dropped {result.duplicates_dropped:,} exact duplicate lines")
    quality = data_quality(scan(result.lake)).collect()
    _print_table("data quality:", [(c, f"{n:,}") for c, n in quality.iter_rows()])


def main() -> None:
    cli(prog_name="lgs-fast")


if __name__ == "__main__":
    main()
