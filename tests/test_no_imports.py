"""`import lgs_fast` and the CLI load no engine or client until one is used."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lgs_fast.cli import cli

HEAVY = ("psycopg", "altair", "duckdb", "vl_convert", "pandas")

# What `lgs-fast --help` and an argument error must not load: each takes a noticeable part of a
# second to import, more than the rest of the command line together.
ENGINES = (
    "polars",
    "pyarrow",
    "duckdb",
    "pandas",
    "numpy",
    "psycopg",
    "altair",
    "statsmodels",
    "scipy",
)


def _loaded(statement: str, names: tuple[str, ...] = HEAVY) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_package_import_is_light() -> None:
    assert _loaded("import lgs_fast", ENGINES + HEAVY) == []
    assert _loaded("import lgs_fast.cli", ENGINES + HEAVY) == []
    assert _loaded("import lgs_fast.config", ENGINES + HEAVY) == []


def test_names_load_on_first_use() -> None:
    assert _loaded("import lgs_fast; lgs_fast.scan") == []
    assert "duckdb" in _loaded("from lgs_fast.engines import duckdb")


def test_light_constants_match_the_engines() -> None:
    from lgs_fast import config, engines

    assert tuple(engines.REGISTRY) == config.ENGINES


# (command line, exit code, part of stderr): every one answers before any engine is imported.
HELP = [
    ((), 0, ""),
    (("--help",), 0, ""),
    (("-h",), 0, ""),
    (("--version",), 0, ""),
    *(((name, "--help"), 0, "") for name in sorted(cli.commands)),
]
ARGUMENT_ERRORS = [
    (("frobnicate",), 2, "No such command"),
    (("import",), 2, "Missing argument"),
    (("load-pg",), 2, "Missing argument"),
    (("generate",), 2, "Missing option '--rows'"),
    (("generate", "--rows", "many"), 2, "--rows"),
    (("generate", "--rows", "0"), 2, "--rows"),
    (("verify", "--lake"), 2, "requires an argument"),
    (("export", "--table"), 2, "requires an argument"),
    (("export", "--jobs", "0"), 2, "0 is not in the range x>=1"),
    (("analyze", "--bins", "x"), 2, "--bins"),
    (("analyze", "--top", "0"), 2, "--top"),
    (("analyze", "--engine", "sparkle"), 2, "--engine"),
    (("analyze", "--spark-master", "local[2]"), 2, "--spark-master is for --engine spark"),
    (("clv", "--engine", "duckdb", "--spark-master", "local"), 2, "--spark-master is for"),
    (("analyze", "--preset", "x"), 2, "--preset"),
    (("analyze", "--as-of", "yesterday"), 2, "is not a date"),
    (("analyze", "--compare-as-of", "2011-13-01"), 2, "is not a date"),
    (("analyze", "--from", "2011-01-01T00:00+05:00"), 2, "has a time zone"),
    (("analyze", "--from", "2011-05-01", "--to", "2011-01-01"), 2, "empty date range"),
    (("analyze", "--calibration-end", "soon"), 2, "is not a day"),
    (("analyze", "--discount", "1"), 2, "--discount"),
    (("clv", "--model", "x"), 2, "--model"),
    (("clv", "--as-of", "yesterday"), 2, "is not a date"),
    (("clv", "--to", "never"), 2, "is not a date"),
]
CASES = HELP + ARGUMENT_ERRORS


def _imported(stderr: str) -> set[str]:
    """Top-level packages named by `-X importtime` (one line per module imported)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], tuple[int, str]]:
    """Every case as its own `python -X importtime -m lgs_fast …`, a few at a time."""
    where = tmp_path_factory.mktemp("no_imports")
    env = {k: v for k, v in os.environ.items() if k not in ("LGS_PG_DSN", "LGS_DEBUG")}
    env["LGS_LAKE"] = str(where / "lake")

    def run(args: tuple[str, ...]) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lgs_fast", *args],
            capture_output=True,
            text=True,
            cwd=where,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        return done.returncode, done.stderr

    commands = [args for args, _, _ in CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(commands, pool.map(run, commands), strict=True))
    assert not list(Path(where).iterdir()), "a help or an argument error wrote something"
    return results


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_help_and_argument_errors_import_no_engine(
    runs: dict[tuple[str, ...], tuple[int, str]], args: tuple[str, ...], code: int, message: str
) -> None:
    returncode, stderr = runs[args]
    said = [line for line in stderr.splitlines() if not line.startswith("import time:")]
    assert returncode == code, said
    assert message in "\n".join(said)
    if code:
        assert len(said) == 1 and said[0].startswith("lgs-fast: error: "), said
    assert _imported(stderr), "no -X importtime output to check"
    assert sorted(_imported(stderr) & set(ENGINES)) == []


def test_every_command_has_its_help_checked() -> None:
    assert {args[0] for args, _, _ in HELP if len(args) == 2} == set(cli.commands)
