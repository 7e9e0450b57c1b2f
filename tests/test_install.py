"""A real install: the wheel carries everything lgs_fast reads at run time (queries, templates,
segment maps, the shipped data), and an installed copy runs both engines away from the source
tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
         "--quiet", "--wheel-dir", str(out)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    return next(out.glob("lgs_fast-*.whl"))


def test_wheel_carries_what_lgs_fast_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    queries = sorted(p.name for p in (ROOT / "queries").glob("*.sql"))
    assert {f"lgs_fast/queries/{q}" for q in queries} <= names
    # Every module of the source tree, sub-packages included (lgs_fast.models was once left
    # out: the editable install of the tests found it, a user's wheel did not).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lgs_fast").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    for needed in (
        "lgs_fast/outputs/templates/report.html",
        "lgs_fast/segments.toml",
        "lgs_fast/segments_4.toml",
        "lgs_fast/ingest/data/online_retail.parquet",
    ):
        assert needed in names, needed


def test_installed_copy_runs_both_engines(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    # Dependencies from this environment, lgs_fast only from the installed copy, run from a
    # directory with no source tree in sight.
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import lgs_fast.engines.duckdb as s; print(s.__file__, s._queries())"],
        capture_output=True, text=True, cwd=work, env=env, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(site)) and str(ROOT) not in where, where
    data = site / "lgs_fast" / "ingest" / "data" / "online_retail.parquet"
    run = [sys.executable, "-m", "lgs_fast"]
    imported = subprocess.run(
        [*run, "import", str(data), "--lake", "lake"], capture_output=True, text=True, cwd=work,
        env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    for engine in ("duckdb", "polars"):
        result = subprocess.run(
            [*run, "analyze", "--lake", "lake", "--out", f"out_{engine}", "--engine", engine],
            capture_output=True, text=True, cwd=work, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "541,909" in result.stdout
        assert (work / f"out_{engine}" / "report.html").stat().st_size > 100_000
