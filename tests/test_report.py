"""Charts, segment exports and the HTML report; the report is opened in a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from altair.vegalite.v6.schema import load_schema

from lgs_fast.analyze import analyze
from lgs_fast.models.clv import ClvSettings
from lgs_fast.outputs.charts import CHARTS, PNG_SCALE
from lgs_fast.outputs.lists import slug
from tests.conftest import EMBEDDED, ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def output(retail_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    # With a holdout and a campaign sent on 2011-09-01 (half of 600 customers held back), so
    # that every chart (the holdout's and the campaign results' included) is drawn and rendered.
    customers = (
        pl.read_parquet(EMBEDDED, columns=["customer_id"])["customer_id"].drop_nulls().unique()
    )
    ids = customers.sort().head(600).to_list()
    record = tmp_path_factory.mktemp("sent") / "campaigns.json"
    record.write_text(
        json.dumps(
            {
                "version": 1, "sent": "2011-09-01T00:00:00", "control": 0.5, "seed": 0,
                "options": {}, "lists": [
                    {"segment": "Champions", "file": "segments/champions.csv",
                     "control_file": None, "contact": ids[::2], "control": ids[1::2]}
                ],
            }
        )
    )  # fmt: skip
    analyze(
        retail_lake, out, clv_settings=ClvSettings(calibration_end=dt.date(2011, 9, 1)),
        svg=True, png=True, campaigns=record,
    )  # fmt: skip
    return out


def _marks(spec: dict[str, Any], key: str) -> list[Any]:
    """Every value of `key` in a spec, however deeply layered (the config block aside)."""
    found: list[Any] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if key in node:
                found.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in spec.items() if k != "config"})
    return found


def _data_rows(spec: dict[str, Any]) -> list[int]:
    """Row counts of every inline data set in a spec."""
    return [len(values) for values in _marks(spec, "values") if isinstance(values, list)]


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
    assert _data_rows(monthly) == [12]  # the 12 complete months; Dec 2011 (1–9) left out
    grid = json.loads((output / "charts" / "rf_grid.vl.json").read_text())
    assert _data_rows(grid) == [25]


def test_segment_exports_cover_rfm(output: Path) -> None:
    rfm = pl.read_parquet(output / "tables" / "rfm.parquet")
    segments = pl.read_parquet(output / "tables" / "segments.parquet")
    files = sorted((output / "segments").glob("*.csv"))
    exported = pl.concat([pl.read_csv(f) for f in files], how="diagonal_relaxed")
    # Every customer with a net spend above £0.00, once; the 22 others are left out.
    listed = rfm.filter(pl.col("monetary").round(2) > 0)
    assert exported.height == listed.height == rfm.height - 22 == 4_317
    assert sorted(exported["customer_id"].to_list()) == sorted(listed["customer_id"].to_list())
    for row in segments.filter(pl.col("customers") > 0).iter_rows(named=True):
        part = pl.read_csv(output / "segments" / f"{slug(row['segment'])}.csv")
        in_segment = listed.filter(pl.col("segment") == row["segment"]).height
        assert part.height == in_segment <= row["customers"], row["segment"]
        # The action is the same for the whole list: said once (report, workbook), not per row.
        assert "action" not in part.columns
    assert (output / "segments" / "cant_lose.csv").exists()
    assert pl.read_csv(output / "segments" / "cant_lose.csv").height == 63


def test_report_content_is_escaped(retail_lake: Path, tmp_path: Path) -> None:
    from lgs_fast.analyze import compute_tables
    from lgs_fast.outputs.report import render_report

    tables = compute_tables(retail_lake)
    evil = "<script>alert(1)</script> & </script>"
    tables["top_products"] = tables["top_products"].with_columns(description=pl.lit(evil))
    page = render_report(tables, {"x": {"description": evil}}, "")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;/script&gt;" in page
    assert "\\u003c/script\\u003e" in page  # inside the inlined spec JSON


def test_report_says_what_marketing_needs(output: Path) -> None:
    page = (output / "report.html").read_text()
    # The page opens with who to contact: every campaign list, its value, its action, its file.
    week = _section_words(page, "this-week")
    assert week.startswith(
        "This week: who to contact 4,317 customers are on 10 campaign lists, one per segment, "
        "each with its action; the most at stake is Champions (633 customers, £3,779,394 of "
        "expected value)."
    )
    assert (
        "Can't Lose 63 152,648 Priority call from a senior account manager; offer tailored "
        "volume terms to win back a large buyer before a competitor does. segments/cant_lose.csv"
    ) in week
    assert '<a href="segments/cant_lose.csv">' in page
    # The contents link every section, in reading order, and each anchor exists.
    toc = re.findall(r'<a href="#([a-z-]+)">', page.split("</nav>")[0])
    # The last campaign's results (this run was given one) right after this week's lists.
    assert toc[:5] == ["this-week", "results", "segments", "movement", "offers"]
    assert toc[-1] == "about"
    assert all(f'<h2 id="{anchor}">' in page for anchor in toc)
    assert "541,909 invoice lines, 01 Dec 2010 to 09 Dec 2011. Generated " in page
    assert "http://" not in page.split('<script type="module">')[0]  # nothing to fetch
    assert page.count('class="chart"') == len(CHARTS)
    assert "<th>Source of the lines</th><td>online_retail.parquet</td>" in page
    assert "SYNTHETIC" not in page
    assert "Predictions use NBD (no dropout)." in page
    assert "Customers here rarely stop buying for good, as far as the data can tell" in page
    words = " ".join(_text(page).split())
    # The CLV section leads in plain words and pounds; the models' verdicts are folded below.
    lead = _section_words(page, "value").removeprefix("Customer lifetime value")
    assert lead.startswith(
        " 4,339 customers are expected to bring about £8,786,338 over the next 12 months at 1.0% "
        "a month (each customer's expected purchases times their expected spend, discounted). "
        "Champions customers (633) hold the most: £3,779,394, £5,971 each on average."
    )
    assert "For analysts: the models, their fit and the holdout table" in lead
    assert lead.index("For analysts") < lead.index("BG/NBD does not fit")
    assert (
        "Checked on the 100 days after the calibration end: the model in use, NBD (no dropout), "
        "fitted on the 3,317 customers known then, expected 3,634 purchase days; they made "
        "4,807 (-24%). The tenth of customers it expected most from made 36% of them." in words
    )
    assert (
        "For comparison, each customer's own past pace gave 3,364 (mean error per customer 0.97, "
        "the model's 1.00) and repeating each customer's purchase days of the same span before "
        "gave 3,917 (mean error per customer 0.99, the model's 1.00)." in words
    )
    # The analysts' table: every model and rule, with the rank correlation and top-decile share.
    assert "same span before (baseline) 3,917 4,807 0.986 1.562 0.457 34.8%" in words


def _section_words(page: str, anchor: str) -> str:
    """The words of the report's section `anchor`, from its heading to the next section's."""
    part = page.split(f'<h2 id="{anchor}">', 1)[1].split("<h2 ", 1)[0]
    return " ".join(_text(part).split())


def _text(page: str) -> str:
    """The page's words as a reader sees them (no tags, no scripts, entities decoded)."""
    body = page.split('<script type="application/json"')[0]
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_report_uses_one_vocabulary_and_says_why_totals_differ(output: Path) -> None:
    words = " ".join(_text((output / "report.html").read_text()).split())
    for card in (
        "Invoices 25,900 22,064 purchase invoices, 3,836 credit notes",
        "Customers 4,372 4,339 with a purchase",
        "Placed sales £10,644,560.42", "Cancelled value −£896,812.49",
        "Net revenue £9,747,747.93",
    ):  # fmt: skip
        assert card in words
    assert (
        "Net revenue £9,747,747.93 is placed sales £10,644,560.42 plus the cancelled value "
        "−£896,812.49 of the credit notes." in words
    )
    assert (
        "Segments cover the 4,339 customers with a purchase by the reference time; not scored: "
        "33 customers with only credit notes. They add up to £8,310,477.05" in words
    )
    assert "The invoice amounts cover the 19,960 purchase invoices whose total is above £0" in words
    # The largest invoice was cancelled minutes later; the page says so, and it sells nothing.
    assert (
        "The largest, invoice 581483 of 09 Dec 2011, was reversed in full by credit note C581484"
        in words
    )
    products = words.split("Products are ranked by net revenue")[1].split("Orders reversed")[0]
    assert "PAPER CRAFT , LITTLE BIRDIE" not in products
    assert "Dec 2011 (1–9) is covered only in part" in words
    assert "In the first month of the data no customer's history is known" in words
    assert "Lines without a customer id 135,080" in words and "no_customer_id" not in words
    segments = _section_words((output / "report.html").read_text(), "segments").split("What to do")[
        1
    ]
    order = [segments.index(s) for s in ("Champions", "Loyal Customers", "At Risk", "Hibernating")]
    assert order == sorted(order)  # by total net spend, not by the map's order


def test_report_tells_how_it_was_made_and_links_every_file(output: Path) -> None:
    page = (output / "report.html").read_text()
    words = " ".join(_text(page).split())
    assert "Score bins 5" in words and "Preset standard" in words and "Engine polars" in words
    assert "Holdout from 2011-09-01" in words
    assert "Data 01 Dec 2010 08:26 to 09 Dec 2011 12:50" in words
    linked = {a for a in re.findall(r'<a href="([^"]+)">', page) if not a.startswith("#")}
    files = {
        p.relative_to(output).as_posix()
        for p in output.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert linked == files
    assert {"lgs_report.xlsx", "tables/reversed_invoices.csv", "segments/champions.csv"} <= linked


def test_charts_read_true(output: Path) -> None:
    specs = {p.name.removesuffix(".vl.json"): json.loads(p.read_text())
             for p in (output / "charts").glob("*.vl.json")}  # fmt: skip
    assert "symlog" not in json.dumps(specs)
    # A partial month is never a bar, a point or a coloured cell on a value scale: it is left out
    # of the monthly charts (their titles say so) and shows its days in the cohort grid.
    growth = _data_rows_of(specs["sales_growth"])
    assert {r["change"] for r in growth} == {"rise", "fall"}
    for name in ("sales_growth", "monthly_sales", "orders_per_month", "active_customers",
                 "new_vs_existing"):  # fmt: skip
        assert all(r.get("period") != "partial" for r in _data_rows_of(specs[name])), name
        assert "Dec 2011 (1–9) left out" in " ".join(
            specs[name]["title"]["text"]
            if isinstance(specs[name]["title"], dict)
            else specs[name]["title"]
        ), name
    cohort_layers = specs["cohort_retention"]["layer"]
    cells = [r for r in _data_rows_of(cohort_layers[0]) if "retention" in r]
    assert cells and all(r["complete"] for r in cells)
    partial = [r for r in _data_rows_of(cohort_layers[2]) if "text" in r]
    assert len(partial) == 12 and {r["text"] for r in partial} == {"days 1–9"}
    first = [r for r in _data_rows_of(specs["new_vs_existing"]) if r["label"] == "Dec 2010"]
    assert [r["kind"] for r in first] == ["Not known"]
    # Ten segments, ten different colours, listed by value in the legend.
    scale = next(s for s in _marks(specs["rf_grid"], "scale") if len(s.get("range", [])) == 10)
    assert len(set(scale["range"])) == 10
    assert scale["domain"][:3] == ["Champions", "Loyal Customers", "At Risk"]
    products = [r["stock_code"] for r in _data_rows_of(specs["top_products"])]
    assert "23843" not in products and products[0] == "22423"
    texts = {r["text"] for r in _data_rows_of(specs["top_countries"])}
    assert "£9,003,098 (84.6%)" in texts
    note = _data_rows_of(specs["invoice_amounts_all"])
    assert any("reversed by credit note C581484" in str(r.get("text")) for r in note)


def _data_rows_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for values in _marks(spec, "values") if isinstance(values, list) for row in values]


def test_segment_lists_carry_customer_value(output: Path) -> None:
    part = pl.read_csv(output / "segments" / "champions.csv")
    assert part.columns[-3:] == ["probability_alive", "expected_purchases", "clv"]
    holdout = pl.read_parquet(output / "tables" / "clv_holdout.parquet")
    assert holdout["model"].to_list() == [
        "bgnbd", "mbgnbd", "pnbd", "nbd", "own_rate", "equal_window",
    ]  # fmt: skip
    assert holdout["holdout_days"].to_list() == [100] * 6
    assert holdout["actual_purchases"].to_list() == [4_807.0] * 6
    window = holdout.row(5, named=True)
    assert (window["predicted_purchases"], window["rmse"]) == pytest.approx(
        (3_917, 1.5615), abs=1e-4
    )


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Run in the page once every chart has drawn: what sticks out to the right of the page or of its
# own box (a card whose number does not fit, a chart or table wider than the column).
_LAYOUT_CHECK = """
<script>
function lgsLayout() {
  const charts = document.querySelectorAll("[data-spec]").length;
  if (document.querySelectorAll("svg.marks").length < charts) { setTimeout(lgsLayout, 100); return; }
  const width = document.documentElement.clientWidth;
  const column = document.body.getBoundingClientRect().right;
  const over = [];
  for (const el of document.querySelectorAll(".card, .card b, .card small, .wide, .chart, table, p, li, h1, h2")) {
    const box = el.getBoundingClientRect();
    if (el.scrollWidth > el.clientWidth + 1 || box.right > column + 1) {
      over.push(el.tagName + "." + el.className + ": " + el.textContent.slice(0, 40));
    }
  }
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify({page: document.documentElement.scrollWidth, width, over});
  document.body.appendChild(out);
}
window.addEventListener("load", () => setTimeout(lgsLayout, 100));
</script>
"""


def _browser(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "chromium is not installed (make test installs Debian's chromium with apt when it can)"
        )
    flags = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
        "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
    ]  # fmt: skip
    return flags, {**os.environ, "HOME": str(tmp_path)}


def test_report_renders_in_headless_chromium(output: Path, tmp_path: Path) -> None:
    flags, env = _browser(tmp_path)
    url = (output / "report.html").resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, env=env
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout.count('class="marks"')  # one <svg class="marks"> per rendered chart
    assert rendered == len(CHARTS), f"{rendered} charts rendered of {len(CHARTS)}"
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower()], console


@pytest.mark.parametrize("width", [1024, 1400])
def test_report_fits_the_window(output: Path, tmp_path: Path, width: int) -> None:
    """Nothing sticks out horizontally at a laptop's 1024 px or a desktop's 1400 px; the page as
    drawn at that width is saved to tests/artifacts for a person to look at."""
    flags, env = _browser(tmp_path)
    page = (output / "report.html").read_text()
    checked = output / f"report-check-{width}.html"
    head, tail = page.rsplit("</body>", 1)  # the inlined Vega bundle holds the string too
    checked.write_text(head + _LAYOUT_CHECK + "</body>" + tail)
    dom = subprocess.run(
        [*flags, f"--window-size={width},900", "--dump-dom", checked.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    checked.unlink()
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom.stdout)
    assert found, "the layout check did not run: " + dom.stderr[-1000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["width"] == width
    assert layout["page"] <= width, layout
    assert layout["over"] == [], layout["over"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"report-{width}.png"
    subprocess.run(
        [*flags, f"--window-size={width},4000", f"--screenshot={shot}",
         (output / "report.html").resolve().as_uri()],
        capture_output=True, timeout=120, env=env, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000


def test_report_and_lists_act_on_the_segments(output: Path) -> None:
    """Movement, recommendations and the forecast reach the page and the campaign lists."""
    page = (output / "report.html").read_text()
    moved = _section_words(page, "movement")
    assert "Of the 4,339 customers scored now" in moved and "The largest moves:" in moved
    offer = _section_words(page, "offers")
    assert "(At Risk 580, Need Attention 186, Can't Lose 63) get two short lists" in offer
    # The holdout on this data, as the table recommendation_holdout has it.
    assert "Order again 408 49.3%" in offer and "New to you 164 19.8%" in offer
    assert "Best sellers not yet bought 80 9.7%" in offer
    heading = _section_words(page, "forecast")
    # The first sentence in plain words and pounds; the method and its margin over naive next.
    assert "Expected net revenue: about £320,466 in the week of 05 Dec 2011" in heading
    assert (
        "It is a smoothed recent level plus half the year's trend (the Theta method), the method "
        "that forecast the past best" in heading
    )
    assert "its errors were 12% smaller than repeating the last week's sales" in heading
    assert "it did better in 10 of the 15" in heading
    assert "Theta (published)" in heading
    at_risk = pl.read_csv(output / "segments" / "at_risk.csv", infer_schema=False)
    assert at_risk.columns[11:18] == [
        "movement", "reorder_1", "reorder_2", "reorder_3", "new_1", "new_2", "new_3",
    ]  # fmt: skip
    movement = pl.read_parquet(output / "tables" / "segment_movement.parquet")
    expected = dict(movement.select("customer_id", "movement").iter_rows())
    assert all(
        expected[int(r["customer_id"])] == r["movement"] for r in at_risk.iter_rows(named=True)
    )
    recs = pl.read_parquet(output / "tables" / "recommendations.parquet")
    for kind in ("reorder", "new"):
        first = dict(
            recs.filter(pl.col("kind") == kind, pl.col("rank") == 1)
            .select("customer_id", pl.col("stock_code") + " " + pl.col("description"))
            .iter_rows()
        )
        listed = at_risk.filter(pl.col(f"{kind}_1").is_not_null())
        assert listed.height > 0
        assert all(
            first[int(r["customer_id"])] == r[f"{kind}_1"] for r in listed.iter_rows(named=True)
        )
    champions = pl.read_csv(output / "segments" / "champions.csv", infer_schema=False)
    assert "reorder_1" not in champions.columns  # not a target segment: no empty columns


def test_totals_explained_when_the_reference_time_is_early(retail_lake: Path) -> None:
    """Customers who first bought after --as-of are not scored: the page says so, rather than
    blaming credit notes for them."""
    from lgs_fast.analyze import compute_tables
    from lgs_fast.config import Options
    from lgs_fast.outputs.wording import reconciliation

    tables = compute_tables(retail_lake, Options(as_of=dt.datetime(2010, 12, 5)))
    said = reconciliation(tables)[2]
    assert said.startswith("Segments cover the 234 customers with a purchase by the reference time")
    assert "33 customers with only credit notes and 4,105 whose first purchase came after" in said


def test_title_currency_and_time_zone_reach_every_output(retail_lake: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from openpyxl import load_workbook

    from lgs_fast.cli import cli
    from lgs_fast.outputs.workbook import WORKBOOK_NAME

    out = tmp_path / "out"
    said = CliRunner().invoke(cli, [
        "analyze", "--lake", str(retail_lake), "--out", str(out), "--human-headers",
        "--title", "Northwind: who to call", "--currency", "US$", "--time-zone", "America/New_York",
    ])  # fmt: skip
    assert said.exit_code == 0, said.output
    assert re.search(r"placed sales +US\$10,644,560\.42 ", said.stdout)
    page = (out / "report.html").read_text()
    assert "<title>Northwind: who to call</title>" in page and "<h1>Northwind: who to call" in page
    # The shipped data's own £ is only in gift-voucher descriptions, which the report never shows.
    assert "£" not in page and "US$10,644,560.42" in html.unescape(page)
    assert "America/New_York time, as the lines record it" in page
    assert re.search(r"Generated</th><td>\d\d \w{3} \d{4} [\d:]{8} E[SD]T<", page)
    charts = {p.name: p.read_text() for p in (out / "charts").glob("*.vl.json")}
    assert "£" not in "".join(charts.values())
    assert '"Placed sales (US$)"' in charts["monthly_sales.vl.json"]
    # Images are drawn on request only (--svg, --png): the report draws its charts itself.
    assert len(charts) >= 17
    assert not list((out / "charts").glob("*.png")) and not list((out / "charts").glob("*.svg"))
    lists = sorted((out / "segments").glob("*.csv"))
    assert lists and all(
        "Net spend US$" in p.read_text(encoding="utf-8-sig").split("\n")[0] for p in lists
    )
    book = load_workbook(out / WORKBOOK_NAME)
    formats = {c.number_format for ws in book for row in ws.iter_rows(max_row=5) for c in row}
    assert '"US$"#,##0.00;-"US$"#,##0.00' in formats and not any("£" in f for f in formats)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--currency", "'", '--currency "\'": give a symbol of 1 to 4 characters'),
        ("--currency", "POUNDS", "--currency 'POUNDS': give a symbol of 1 to 4 characters"),
        ("--time-zone", "Mars/Olympus", "--time-zone 'Mars/Olympus': not a time zone name"),
        ("--title", "", "--title '': give one line of 1 to 120 printable characters"),
        ("--title", "two\nlines", "give one line"),
    ],
)
def test_bad_presentation_options_are_one_line_before_any_work(
    tmp_path: Path, option: str, value: str, said: str
) -> None:
    from click.testing import CliRunner

    from lgs_fast.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(tmp_path / "none"), "--out", str(out), option, value]
    )
    assert result.exit_code == 2 and said in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_vega_bundle_is_cached_and_a_damaged_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lgs_fast.outputs.report import vega_javascript

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = vega_javascript()
    (cached,) = (tmp_path / "lgs_fast").glob("vega-*.js")
    assert cached.read_text().split("\n", 1)[1] == built
    assert vega_javascript() == built  # read back from the cache
    text = cached.read_text()
    cached.write_text(text[: len(text) // 2])  # cut short, as a full disk might leave it
    assert vega_javascript() == built  # rebuilt, not shown cut
    assert cached.read_text() == text
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a directory")
    assert vega_javascript() == built  # an unusable cache: built each time
