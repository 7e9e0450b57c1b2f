"""Control groups and campaign results on real lists: a known effect is found, none is invented,
the draw is stable, and small or too-early campaigns say so."""

from __future__ import annotations

import datetime as dt
import html
import json
import random
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from click.testing import CliRunner

from lgs_fast.analyze import campaign_results, compute_tables
from lgs_fast.cli import cli
from lgs_fast.ingest.sources import import_files
from lgs_fast.outputs.lists import ListSettings, campaign_record
from lgs_fast.outputs.workbook import WORKBOOK_NAME
from tests.conftest import EMBEDDED

CUT = dt.datetime(2011, 9, 1)
SHARE = 0.3
# The known effect: contacted Hibernating customers buy in October with this probability, held
# back ones with the lower one; Loyal Customers buy with the same probability on both sides.
EFFECT = {"Hibernating": (0.5, 0.2), "Loyal Customers": (0.4, 0.4)}


@pytest.fixture(scope="module")
def before(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped lines before 2011-09-01, as a Parquet file to import."""
    path = tmp_path_factory.mktemp("campaign") / "before.parquet"
    pl.read_parquet(EMBEDDED).filter(pl.col("invoice_date") < CUT).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def sent(before: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`analyze --control 30%` on the lake cut at 2011-09-01: its OUT."""
    root = tmp_path_factory.mktemp("sent")
    import_files([before], root / "lake")
    result = CliRunner().invoke(
        cli,
        ["analyze", "--lake", str(root / "lake"), "--out", str(root / "out"), "--control", "30%"],
    )
    assert result.exit_code == 0, result.output
    return root / "out"


def _later_lines(record: dict, path: Path) -> Path:
    """One October purchase for each customer of the two lists who buys: on each side, that
    side's share of EFFECT, picked at random (exactly the share, so the effect in the data is
    the one set, and the test asks only that the interval holds it)."""
    rng = random.Random(7)
    rows = []
    for item in record["lists"]:
        if item["segment"] not in EFFECT:
            continue
        for side, chance in zip(("contact", "control"), EFFECT[item["segment"]], strict=True):
            for customer in rng.sample(item[side], round(chance * len(item[side]))):
                rows.append(
                    {
                        "invoice_no": f"9{len(rows):05d}", "stock_code": "22423",
                        "description": "REGENCY CAKESTAND 3 TIER", "quantity": 1,
                        "invoice_date": dt.datetime(2011, 10, 3, 10, 0),
                        "unit_price": 12.75, "customer_id": customer,
                        "country": "United Kingdom",
                    }
                )  # fmt: skip
    schema = pl.read_parquet_schema(EMBEDDED)
    pl.DataFrame(rows, schema=schema).write_parquet(path)
    return path


def test_a_known_effect_is_found_and_none_is_invented(
    sent: Path, before: Path, tmp_path: Path
) -> None:
    record = json.loads((sent / "campaigns.json").read_text())
    assert record["control"] == SHARE and record["sent"] == "2011-08-31T17:45:00"
    lists = {item["segment"]: item for item in record["lists"]}
    hibernating = lists["Hibernating"]
    held = len(hibernating["control"]) / (len(hibernating["control"]) + len(hibernating["contact"]))
    assert 0.25 < held < 0.35
    # The control group is in its own file and never in the list a mail tool reads.
    contact = pl.read_csv(sent / "segments" / "hibernating.csv")
    control = pl.read_csv(sent / "segments" / "hibernating.control.csv")
    assert contact["customer_id"].to_list() == hibernating["contact"]
    assert control["customer_id"].to_list() == hibernating["control"]
    assert set(contact["group"]) == {"contact"} and set(control["group"]) == {"control"}

    lake = tmp_path / "lake"
    import_files([before, _later_lines(record, tmp_path / "october.parquet")], lake)
    said = CliRunner().invoke(
        cli, ["campaign-results", "--campaigns", str(sent / "campaigns.json"), "--lake", str(lake)]
    )
    assert said.exit_code == 0, said.output
    table = campaign_results(sent / "campaigns.json", lake)
    bought = {r["segment"]: r for r in table.filter(measure="bought").iter_rows(named=True)}
    effect = bought["Hibernating"]
    assert effect["lo_95"] < 0.3 < effect["hi_95"] and effect["lo_95"] > 0
    assert effect["verdict"].startswith("contacted Hibernating customers bought")
    assert effect["verdict"] in said.output
    none = bought["Loyal Customers"]
    assert none["lo_95"] < 0 < none["hi_95"]
    assert none["verdict"].startswith("no clear difference in who bought among Loyal Customers")
    assert none["method"] == "difference of two proportions, normal approximation"
    revenue = table.filter(segment="Hibernating", measure="net_revenue").row(0, named=True)
    assert revenue["method"] == "Welch's t (unequal variances)" and revenue["lo_95"] > 0
    # A list too small to tell says so; no interval is shown.
    small = bought["Can't Lose"]
    assert small["held_back"] < 30 and small["lo_95"] is None
    assert small["verdict"].startswith("too few customers to tell")
    # The next analysis reports it: a section, a chart, a table and its workbook sheet.
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(lake), "--out", str(out),
              "--campaign-results", str(sent / "campaigns.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = html.unescape((out / "report.html").read_text())
    assert '<h2 id="results">Did the last campaign work?</h2>' in page
    assert "<li>Contacted Hibernating customers bought 30 points more often" in page
    chart = (out / "charts" / "campaign_results.vl.json").read_text()
    shown = [s for s in bought if f'"segment": "{s}"' in chart]
    assert "Hibernating" in shown and "Can't Lose" not in shown  # too small: no interval drawn
    assert pl.read_parquet(out / "tables" / "campaign_results.parquet").equals(table)
    assert "campaign_results" in openpyxl.load_workbook(out / WORKBOOK_NAME).sheetnames


def test_nothing_to_measure_before_any_later_purchase(
    sent: Path, before: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    import_files([before], lake)
    table = campaign_results(sent / "campaigns.json", lake)
    assert table["lo_95"].null_count() == table.height
    assert set(table["verdict"]) == {
        "nothing to measure yet: the lists were made 2011-08-31 17:45 and the data ends "
        "2011-08-31 17:45"
    }


def test_the_draw_is_stable_across_runs_and_engines(
    sent: Path, before: Path, tmp_path: Path
) -> None:
    record = json.loads((sent / "campaigns.json").read_text())
    lake = tmp_path / "lake"
    import_files([before], lake)
    for engine in ("polars", "duckdb"):
        tables = compute_tables(lake, engine=engine)  # type: ignore[arg-type]
        again = campaign_record(tables, ListSettings(control=SHARE), None, {})
        assert [(i["contact"], i["control"]) for i in again["lists"]] == [
            (i["contact"], i["control"]) for i in record["lists"]
        ]
    other = campaign_record(tables, ListSettings(control=SHARE, seed=1), None, {})
    assert other["lists"][0]["control"] != record["lists"][0]["control"]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("60%", "hold back from 1% to 50%"),
        ("ten", "give a share such as 10% or 0.1"),
        ("10% --no-report", "--control holds customers back from the campaign lists"),
    ],
)
def test_a_bad_control_share_is_one_line(tmp_path: Path, value: str, said: str) -> None:
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
              "--control", *value.split()],
    )  # fmt: skip
    assert result.exit_code == 2 and said in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_bad_campaigns_record_is_one_line_before_any_work(tmp_path: Path) -> None:
    record = tmp_path / "campaigns.json"
    record.write_text('{"version": 1, "lists": "nope"}')
    for args in (
        ["analyze", "--out", str(tmp_path / "o"), "--campaign-results", str(record)],
        ["campaign-results", "--campaigns", str(record)],
    ):
        result = CliRunner().invoke(cli, [*args, "--lake", str(tmp_path / "none")])
        # The record is read before the lake: its fault is named, not the missing lake.
        assert result.exit_code == 2, result.output
        assert f"{record}: not a campaigns record" in result.stderr
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_campaign_results_on_a_uri_lake_is_refused_before_any_work(
    sent: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["analyze", "--engine", "spark", "--lake", f"file://{tmp_path}/lake",
              "--out", str(tmp_path / "o"), "--campaign-results", str(sent / "campaigns.json")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "lgs-fast: error: --campaign-results measures on a lake in a local directory, not at a URI"
    ]
