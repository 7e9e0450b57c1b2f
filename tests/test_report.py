"""Charts, segment exports and the HTML report; the report is opened in a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from altair.vegalite.v6.schema import load_schema

from lgs_fast.analyze import analyze
from lgs_fast.charts import CHARTS, PNG_SCALE
from lgs_fast.clv import ClvSettings
from lgs_fast.report import slug
from tests.conftest import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def output(retail_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    # With a holdout, so that every chart (the holdout's included) is drawn and rendered.
    analyze(retail_lake, out, clv_settings=ClvSettings(calibration_end=dt.date(2011, 9, 1)))
    return out


def _data_rows(spec: dict[str, object]) -> list[int]:
    """Row counts of every inline data set in a spec, however deeply layered."""
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            values = node.get("values")
            if isinstance(values, list) and node is not spec.get("config"):
                found.append(len(values))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    return found


def test_chart_files_validate_and_hold_only_aggregates(output: Path) -> None:
    # Only the specs are checked: with JupyterLab installed (`make notebook`), jsonschema also
    # checks `format` in the metaschema, and Vega-Lite's own `$ref`s (`Def<A,B>`) are not URIs.
    validator = jsonschema.Draft7Validator(load_schema())
    for name in CHARTS:
        spec = json.loads((output / "charts" / f"{name}.vl.json").read_text())
        validator.validate(spec)
        svg = (output / "charts" / f"{name}.svg").read_text()
        assert svg.startswith("<svg") and "</svg>" in svg
        png = (output / "charts" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", name
        size = [int.from_bytes(png[at : at + 4], "big") for at in (16, 20)]
        svg_size = [float(re.search(rf'{d}="([\d.]+)"', svg)[1]) for d in ("width", "height")]
        assert size == [round(PNG_SCALE * v) for v in svg_size], (name, size, svg_size)
        rows = _data_rows(spec)
        assert rows and max(rows) <= 200, (name, rows)  # never the 541,909 raw lines
    monthly = json.loads((output / "charts" / "monthly_sales.vl.json").read_text())
    assert _data_rows(monthly) == [13]
    grid = json.loads((output / "charts" / "rf_grid.vl.json").read_text())
    assert _data_rows(grid) == [25]


def test_segment_exports_cover_rfm(output: Path) -> None:
    rfm = pl.read_parquet(output / "tables" / "rfm.parquet")
    segments = pl.read_parquet(output / "tables" / "segments.parquet")
    files = sorted((output / "segments").glob("*.csv"))
    exported = pl.concat([pl.read_csv(f) for f in files])
    # Every customer with a net spend above £0.00, once; the 22 others are left out.
    listed = rfm.filter(pl.col("monetary").round(2) > 0)
    assert exported.height == listed.height == rfm.height - 22 == 4_317
    assert sorted(exported["customer_id"].to_list()) == sorted(listed["customer_id"].to_list())
    for row in segments.filter(pl.col("customers") > 0).iter_rows(named=True):
        part = pl.read_csv(output / "segments" / f"{slug(row['segment'])}.csv")
        in_segment = listed.filter(pl.col("segment") == row["segment"]).height
        assert part.height == in_segment <= row["customers"], row["segment"]
        assert set(part["action"].to_list()) == {row["action"]}
    assert (output / "segments" / "cant_lose.csv").exists()
    assert pl.read_csv(output / "segments" / "cant_lose.csv").height == 63


def test_report_content_is_escaped(retail_lake: Path, tmp_path: Path) -> None:
    from lgs_fast.analyze import compute_tables
    from lgs_fast.report import render_report

    tables = compute_tables(retail_lake)
    evil = "<script>alert(1)</script> & </script>"
    tables["top_products"] = tables["top_products"].with_columns(description=pl.lit(evil))
    page = render_report(tables, {"x": {"description": evil}}, "")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;/script&gt;" in page
    assert "\\u003c/script\\u003e" in page  # inside the inlined spec JSON


def test_report_says_what_marketing_needs(output: Path) -> None:
    page = (output / "report.html").read_text()
    assert "Can&#x27;t Lose: 63 customers (1.5%) spent £172,343.36 in total" in page
    assert "541,909 invoice lines, 01 Dec 2010 to 09 Dec 2011." in page
    assert "http://" not in page.split('<script type="module">')[0]  # nothing to fetch
    assert page.count('class="chart"') == len(CHARTS)
    assert "No purchase model fits these data" in page
    assert "BG/NBD (does not fit the calibration data), fitted on the 3,317 customers" in page


def test_segment_lists_carry_customer_value(output: Path) -> None:
    part = pl.read_csv(output / "segments" / "champions.csv")
    assert part.columns[-3:] == ["probability_alive", "expected_purchases", "clv"]
    holdout = pl.read_parquet(output / "tables" / "clv_holdout.parquet")
    assert holdout["holdout_days"].to_list() == [100, 100]
    assert holdout["actual_purchases"].to_list() == [4_807.0, 4_807.0]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(output: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "chromium is not installed (make test installs Debian's chromium with apt when it can)"
        )
    flags = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
        "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    url = (output / "report.html").resolve().as_uri()
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, env=env
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout.count('class="marks"')  # one <svg class="marks"> per rendered chart
    assert rendered == len(CHARTS), f"{rendered} charts rendered of {len(CHARTS)}"
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower()], console
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [*flags, "--window-size=1200,3000", f"--screenshot={shot}", url],
        capture_output=True, timeout=120, env=env, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000
