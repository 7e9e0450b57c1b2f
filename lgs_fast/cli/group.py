"""The command group and its one error boundary: every LgsError or OS error becomes one line on stderr and its exit code, an interruption says what is on disk."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from lgs_fast.errors import LgsError


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LgsError as err:
            _told_as_signal()
            _fail(str(err), err.exit_code)
        except BrokenPipeError:
            # The reader of our output went away (`| head`): the work is done, say nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as err:
            _told_as_signal()
            where = f"{err.filename}: " if err.filename else ""
            _fail(f"{where}{err.strerror or err}", 1)
        except KeyboardInterrupt:
            _interrupted()
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as err:
            _told_as_signal()
            if os.environ.get("LGS_DEBUG"):
                raise
            text = str(err).strip()
            first = text.splitlines()[0] if text else ""
            _fail(f"unexpected {type(err).__name__}: {first} (LGS_DEBUG=1 shows where)", 1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, `docker stop`, `timeout`): unwound like Ctrl-C, so nothing is left
    half-written and the message says what is on disk."""


# The signals received. Code that catches the KeyboardInterrupt a signal raises may raise
# something else in its place (Polars, interrupted while converting a type, raises a
# TypeError): an error that ends a command after a signal is told as that signal.
_SIGNALLED: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _SIGNALLED.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A signal's KeyboardInterrupt raised where Python cannot pass it on (Polars called back
    into Python, to hash a data type) is not printed as "Exception ignored" and a traceback:
    the command's one line says it was interrupted and what is on disk. Anything else is
    printed as Python prints it."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _SIGNALLED:
        return
    sys.__unraisablehook__(unraisable)


def _told_as_signal() -> None:
    """After a signal, whatever error ends the command is the interruption."""
    if _SIGNALLED:
        _interrupted()


def _interrupted() -> None:
    if signal.SIGTERM in _SIGNALLED:
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


def progress_counter(verb: str) -> Callable[[int], None] | None:
    """A line on stderr that counts lines as they stream (only on a terminal)."""
    if not sys.stderr.isatty():
        return None

    def report(rows: int) -> None:
        click.echo(f"\r{verb} {rows:,} lines…", err=True, nl=False)

    return report


def done_progress() -> None:
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
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


def main() -> None:
    """Entry point: usage errors, like every other error, become one line and exit code 2."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sys.unraisablehook = _quiet_unraisable
    try:
        try:
            # `lgs-fast` alone lists the commands, as `lgs-fast --help` does.
            args = sys.argv[1:] or ["--help"]
            cli.main(args, prog_name="lgs-fast", standalone_mode=False)
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            _interrupted()
        except click.exceptions.Abort:
            _fail("aborted", 130)
        except click.ClickException as err:
            _fail(err.format_message() + "; see --help", err.exit_code)
    finally:
        # The command has done its work and said so: a Ctrl-C now would only turn a true
        # message into a death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
