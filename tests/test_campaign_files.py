"""Campaign lists and CSV files: one file per segment, and no cell a spreadsheet would run."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import lgs_fast as lgs
from lgs_fast.analyze import compute_tables, tables_of, write_tables
from lgs_fast.config import Options, SegmentRule, load_segment_rules
from lgs_fast.errors import InputError
from lgs_fast.outputs.lists import write_segment_exports
from tests.utils import hostile_lines, write_segment_map

# OWASP, CSV injection: a cell starting with one of these is run as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # the lists start with a BOM
        return list(csv.DictReader(f))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_segments_that_would_share_a_file_are_refused(tmp_path: Path) -> None:
    path = write_segment_map(
        tmp_path / "clash.toml", ("Hi There", "5.", "a"), ("hi-there", "..?", "b")
    )
    with pytest.raises(InputError) as caught:
        load_segment_rules(path)
    message = str(caught.value)
    assert message == (
        f"{path}: segments 'Hi There' and 'hi-there' would share the campaign file "
        "hi_there.csv; rename one of them"
    )


def test_a_segment_that_would_share_the_unclassified_file_is_refused(tmp_path: Path) -> None:
    path = write_segment_map(tmp_path / "clash.toml", ("UNCLASSIFIED!", "5.", ""))
    with pytest.raises(InputError, match="'UNCLASSIFIED!' and 'Unclassified' would share"):
        load_segment_rules(path)


def test_segments_built_in_python_that_would_share_a_file_are_refused(
    retail_lake: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="hi_there.csv"):
        Options(rules=(SegmentRule(1, "Hi There", "5.", ""), SegmentRule(2, "hi-there", ".*", "")))
    # Tables from anywhere else: refused before any file is written, never overwritten.
    tables = compute_tables(retail_lake)
    tables["rfm"] = tables["rfm"].with_columns(
        segment=pl.when(pl.col("customer_id") == 12346)
        .then(pl.lit("Hi There"))
        .otherwise(pl.lit("hi-there"))
    )
    with pytest.raises(InputError, match="'Hi There' and 'hi-there' would share"):
        write_segment_exports(tables, tmp_path / "segments")
    assert list((tmp_path / "segments").glob("*")) == []


def test_one_file_per_segment_on_the_real_data(retail_lake: Path, tmp_path: Path) -> None:
    # A segment may have several rules; accents are dropped from file names.
    path = write_segment_map(
        tmp_path / "map.toml",
        ("Best", "5[4-5]", "Thank them."),
        ("Café regulars", "[3-4][4-5]", "Invite them."),
        ("Best", "4[1-3]", "Thank them."),
    )
    tables = compute_tables(retail_lake, Options(rules=load_segment_rules(path)))
    written = write_segment_exports(tables, tmp_path / "segments")
    sizes = dict(tables["segments"].select("segment", "customers").iter_rows())
    rf = tables["rfm"].select(pl.concat_str(pl.col("r_score", "f_score").cast(pl.String)))
    rf = rf.to_series()
    assert sizes["Best"] == rf.str.contains("^(5[4-5]|4[1-3])$").sum() > 633  # Champions and more
    # Customers whose net spend is £0.00 or less are left out of every list: 22 of them.
    spent = tables["rfm"].filter(pl.col("monetary").round(2) > 0)
    listed = dict(spent.group_by("segment").len().iter_rows())
    assert written == {
        "best.csv": listed["Best"],
        "cafe_regulars.csv": listed["Café regulars"],
        "unclassified.csv": listed["Unclassified"],
    }
    assert sizes["Best"] - listed["Best"] == 2
    assert sum(written.values()) == 4_339 - 22
    best = _rows(tmp_path / "segments" / "best.csv")
    assert {r["segment"] for r in best} == {"Best"} and "action" not in best[0]


def test_no_csv_cell_runs_as_a_formula(retail_lake: Path, tmp_path: Path) -> None:
    """Countries, descriptions, segment names and actions from hostile sources, in every CSV."""
    lines = hostile_lines(lgs.scan(retail_lake), france="\tFrance")
    path = write_segment_map(
        tmp_path / "evil.toml",
        ('=HYPERLINK("http://example.com/x","Best")', "5[4-5]", "@SUM(1+1)"),
        ("+Rest", "..?", "\rcall them"),
    )
    tables = tables_of(lines, Options(rules=load_segment_rules(path)))
    write_tables(tables, tmp_path / "tables")
    write_segment_exports(tables, tmp_path / "segments")
    files = sorted((tmp_path / "tables").glob("*.csv")) + sorted(
        (tmp_path / "segments").glob("*.csv")
    )
    assert len(files) == len(tables) + 2
    negative_numbers = 0
    for file in files:
        for row in _rows(file):
            for column, cell in row.items():
                if cell.startswith(FORMULA_START):
                    assert _is_number(cell), f"{file.name}.{column}: {cell!r}"
                    negative_numbers += 1
    assert negative_numbers > 0  # negative spends and growth are numbers, not neutralised text

    countries = [r["country"] for r in _rows(tmp_path / "tables" / "top_countries.csv")]
    assert "'=EIRE" in countries and "'\tFrance" in countries
    top = _rows(tmp_path / "tables" / "top_products.csv")
    assert top[0]["description"] == "'-CAKESTAND"
    segments = {r["segment"]: r["action"] for r in _rows(tmp_path / "tables" / "segments.csv")}
    assert segments == {
        '\'=HYPERLINK("http://example.com/x","Best")': "'@SUM(1+1)",
        "'+Rest": "'\rcall them",
    }
    best = _rows(tmp_path / "segments" / "hyperlink_http_example_com_x_best.csv")
    assert len(best) == 633
    rest = _rows(tmp_path / "segments" / "rest.csv")
    assert any(r["country"] == "'=EIRE" for r in rest + best)
    spends = [float(r["monetary"]) for r in rest + best]
    # The 8 real customers whose net spend is negative (and 14 at £0.00) are in no list.
    assert len(spends) == 4_339 - 22 and min(spends) > 0
    # Parquet keeps the values as they are.
    rfm = pl.read_parquet(tmp_path / "tables" / "rfm.parquet")
    assert "=EIRE" in rfm["country"].to_list()


def test_campaign_lists_show_money_to_the_penny(retail_lake: Path, tmp_path: Path) -> None:
    tables = compute_tables(retail_lake)
    write_segment_exports(tables, tmp_path)
    rows = [r for f in sorted(tmp_path.glob("*.csv")) for r in _rows(f)]
    assert len(rows) == 4_339 - 22
    for row in rows:
        whole, _, pence = row["monetary"].partition(".")
        assert len(pence) <= 2, row
    by_customer = {int(r["customer_id"]): r for r in rows}
    assert by_customer[12347]["monetary"] == "4310.0"
    assert by_customer[17850]["segment"] == "Can't Lose"


def test_campaign_lists_by_net_spend_with_last_purchase(retail_lake: Path, tmp_path: Path) -> None:
    tables = compute_tables(retail_lake)
    write_segment_exports(tables, tmp_path)
    rfm = tables["rfm"]
    for file in sorted(tmp_path.glob("*.csv")):
        rows = _rows(file)
        spends = [float(r["monetary"]) for r in rows]
        assert spends == sorted(spends, reverse=True), file.name
        assert all(s > 0 for s in spends), file.name
    # 12558 spent 2.66e-14 in float arithmetic, exactly £0 here: no "New Customers" campaign.
    assert rfm.filter(pl.col("customer_id") == 12558)["monetary"].to_list() == [0.0]
    new = _rows(tmp_path / "new_customers.csv")
    assert "12558" not in {r["customer_id"] for r in new}
    assert [(r["customer_id"], r["last_purchase"], r["monetary"]) for r in new[:2]] == [
        ("15195", "2011-12-07", "3861.0"),
        ("12713", "2011-12-09", "848.55"),
    ]
    # The last purchase is the day `recency` counts from (the data ends 2011-12-09 12:50).
    for row in _rows(tmp_path / "champions.csv")[:50]:
        last = dt.date.fromisoformat(row["last_purchase"])
        assert (dt.date(2011, 12, 9) - last).days - int(row["recency"]) in (0, 1)


def test_contacts_join_onto_every_list_for_a_mail_tool(retail_lake: Path, tmp_path: Path) -> None:
    """--contacts joins the team's contact columns on after customer_id, says how many listed
    customers have none; --human-headers gives people's headings; the file starts with a BOM so
    Excel reads £ and accents, carries no per-row action and no column empty for the whole list."""
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "Customer_ID,email,company,country\n14646,buyer@example.nl,Groothandel BV,NL\n"
        "17450,ops@example.co.uk,=cmd|' /C calc'!A0,UK\n99999,nobody@example.com,Gone Ltd,UK\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(retail_lake), "--out",
         str(out), "--contacts", str(contacts), "--human-headers"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "contacts joined onto the lists: 2 of 4,317 customers matched, 4,315 without" in (
        run.stderr
    )
    raw = (out / "segments" / "champions.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = _rows(out / "segments" / "champions.csv")
    header = list(rows[0])
    # The contact columns after the customer id; a clash with a list column is prefixed.
    assert header[:5] == ["Customer ID", "Email", "Company", "Contact country", "Country"]
    assert "Action" not in header and "Re-order 1" not in header  # Champions get no offers
    first = rows[0]
    assert (first["Customer ID"], first["Email"], first["Company"]) == (
        "14646", "buyer@example.nl", "Groothandel BV",
    )  # fmt: skip
    assert first["Net spend £"] == "279489.02"
    others = {r["Customer ID"]: r for r in rows}
    # The contacts' text is made safe like any other cell.
    assert others["17450"]["Company"] == "'=cmd|' /C calc'!A0"
    assert all(r["Email"] == "" for r in rows if r["Customer ID"] not in {"14646", "17450"})
    at_risk = list(_rows(out / "segments" / "at_risk.csv")[0])
    assert "Re-order 1" in at_risk and "New to you 1" in at_risk


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email\na@b.c\n", "no customer_id column (columns: email)"),
        ("customer_id,email\n12347,a@b.c\nabc,b@c.d\n", "row 3, column customer_id: 'abc' is not"),
        ("customer_id,email\n12347,a@b.c\n12348,x@y.z\n12347,b@c.d\n",
         "row 4, column customer_id: customer 12347 is listed twice"),
    ],
    ids=["no-id-column", "not-a-number", "twice"],
)  # fmt: skip
def test_a_bad_contacts_file_is_one_line_before_any_work(
    retail_lake: Path, tmp_path: Path, text: str, message: str
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(text)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(retail_lake), "--out",
         str(out), "--contacts", str(contacts)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"{contacts}: {message}" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not out.exists()
