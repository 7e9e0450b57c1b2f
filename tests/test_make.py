"""The Makefile: `make help` lists every target, `make analyze` installs no test tooling and
passes ARGS on to the analysis (checked with `make -n`, which runs nothing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")


def _make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout


def test_help_lists_every_target() -> None:
    documented = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), re.MULTILINE)
    listed = re.findall(r"^  make (\S+)", _make("help"), re.MULTILINE)
    assert listed == documented
    assert {"analyze", "notebook", "test", "install", "bench", "lint", "clean"} <= set(listed)


def test_analyze_installs_the_charts_extra_only() -> None:
    recipe = _make("-n", "-B", "analyze")
    installs = [line for line in recipe.splitlines() if "pip install" in line and " -e " in line]
    assert installs and all("'.[charts]'" in line for line in installs), installs
    assert ".installed-analyze" in recipe and ".installed-dev" not in recipe


def test_analyze_passes_args_to_the_analysis() -> None:
    recipe = _make("-n", "analyze", "ARGS=--as-of 2011-12-01 --bins 4")
    assert re.search(r"lgs-fast analyze --lake \S+ --out \S+ --as-of 2011-12-01 --bins 4", recipe)


def test_notebook_opens_jupyterlab_from_its_extra() -> None:
    recipe = _make("-n", "-B", "notebook")
    assert "-e '.[notebook]'" in recipe and "jupyter lab" in recipe
    extras = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^notebook = \[.*"jupyterlab', extras, re.MULTILINE)


def test_analyze_keeps_a_lake_that_exists(tmp_path: Path) -> None:
    """`make analyze` once imported the shipped data over whatever lake it was given, so a user
    who had imported their own file got LGS's report: now an existing lake is analysed as is."""
    from lgs_fast.ingest.generate import generate
    from lgs_fast.lake import Manifest

    lake, out = tmp_path / "lake", tmp_path / "out"
    generate(20_000, lake, seed=3)
    before = Manifest.read(lake).write_id
    said = _make("analyze", f"LAKE={lake}", f"OUT={out}", "ARGS=--no-report")
    assert f"analysing the lake {lake} as it is (source: generated: 20000 lines, seed 3)" in said
    assert "importing the shipped real data" not in said
    assert Manifest.read(lake).write_id == before
    assert "20,000" in said  # the summary is of the user's lake, not the shipped one
