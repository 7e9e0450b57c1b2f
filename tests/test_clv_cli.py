"""`lgs-fast clv` and analyze's CLV options as real processes: results, and every error path in
one line with the documented exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import clv
from lgs_fast.models.clv import ClvSettings

CASES = [
    ("no lake", "clv --lake '{tmp}/none'", 3, "no lake here"),
    ("bad day", "clv --lake '{lake}' --calibration-end 2011-13-01", 2, "is not a day"),
    ("no holdout", "clv --lake '{lake}' --calibration-end 2012-01-01", 2, "leaves no holdout"),
    ("nothing before", "clv --lake '{lake}' --calibration-end 2009-01-01", 2, "no purchase before"),
    ("after as-of", "clv --lake '{lake}' --as-of 2011-06-01 --calibration-end 2011-07-01", 2, "after --as-of"),
    ("bad model", "clv --lake '{lake}' --model pareto", 2, "--model"),
    ("bad discount", "clv --lake '{lake}' --discount 1", 2, "--discount"),
    ("zero months", "clv --lake '{lake}' --months 0", 2, "--months"),
    ("analyze bad day", "analyze --lake '{lake}' --out '{tmp}/o' --calibration-end soon", 2, "is not a day"),
]  # fmt: skip


def _run(line: str) -> subprocess.CompletedProcess[str]:
    import shlex

    command = [sys.executable, "-m", "lgs_fast", *shlex.split(line)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("name", "line", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_error_path(
    retail_lake: Path, tmp_path: Path, name: str, line: str, code: int, message: str
) -> None:
    done = _run(line.format(lake=retail_lake, tmp=tmp_path))
    assert done.returncode == code, (name, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("lgs-fast: error: ")
    assert message in done.stderr and "Traceback" not in done.stderr


def test_clv_command_matches_the_python_api(retail_lake: Path, tmp_path: Path) -> None:
    csv = tmp_path / "clv.csv"
    done = _run(f"clv --lake '{retail_lake}' --model mbgnbd --engine duckdb --csv '{csv}'")
    assert done.returncode == 0, done.stderr
    assert "although it does not fit" in done.stdout
    result = clv(retail_lake, settings=ClvSettings(model="mbgnbd"))
    written = pl.read_csv(csv)
    assert written["customer_id"].to_list() == result.tables["clv"]["customer_id"].to_list()
    # Money to the penny in the CSV; the model's numbers themselves in full.
    assert written["clv"].to_list() == result.tables["clv"]["clv"].round(2).to_list()
    assert written["probability_alive"].null_count() == 0
