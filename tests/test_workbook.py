"""OUT/lgs_report.xlsx read back with spreadsheet readers: sheets, values, formats, no formulas."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from openpyxl.utils import get_column_letter

import lgs_fast as lgs
from lgs_fast.analyze import analyze, tables_of
from lgs_fast.config import MONEY_COLUMNS, Options, load_segment_rules, segment_slug
from lgs_fast.outputs.lists import spreadsheet_safe
from lgs_fast.outputs.workbook import (
    MODEL_DETAIL,
    PER_CUSTOMER,
    WORKBOOK_NAME,
    money_format,
    sheet_name,
    write_workbook,
)
from tests.utils import hostile_lines, write_segment_map

# The one order of segments: largest total net spend first.
SEGMENTS = [
    "Champions", "Loyal Customers", "At Risk", "Hibernating", "Potential Loyalists",
    "Can't Lose", "Need Attention", "About to Sleep", "Promising", "New Customers",
]  # fmt: skip
# The real customers whose net spend is £0.00 or less, per segment (22 of 4,339).
LEFT_OUT = {
    "Hibernating": 12, "At Risk": 1, "About to Sleep": 5, "Need Attention": 1, "Promising": 1,
    "New Customers": 1, "Potential Loyalists": 1,
}  # fmt: skip


@pytest.fixture(scope="module")
def out(retail_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `analyze` run: tables, campaign lists, workbook and report."""
    target = tmp_path_factory.mktemp("workbook") / "out"
    analyze(retail_lake, target)
    return target


@pytest.fixture(scope="module")
def book(out: Path) -> openpyxl.Workbook:
    return openpyxl.load_workbook(out / WORKBOOK_NAME)


def _tables(out: Path) -> dict[str, pl.DataFrame]:
    return {p.stem: pl.read_parquet(p) for p in sorted((out / "tables").glob("*.parquet"))}


def _header(sheet: openpyxl.worksheet.worksheet.Worksheet) -> list[str]:
    return [c.value for c in next(sheet.iter_rows(min_row=1, max_row=1))]


def _widths(sheet: openpyxl.worksheet.worksheet.Worksheet) -> dict[int, float]:
    """Column widths by column number (adjacent equal columns are stored as one range)."""
    return {
        i: d.width
        for d in sheet.column_dimensions.values()
        for i in range(d.min, d.max + 1)
        if d.min is not None
    }


def test_a_sheet_per_table_and_per_segment(out: Path, book: openpyxl.Workbook) -> None:
    tables = _tables(out)
    names = book.sheetnames
    assert names[0] == "Contents"
    # The campaign lists first, then the tables, how the models were fitted and checked last.
    assert names[1 : 1 + len(SEGMENTS)] == SEGMENTS
    # The tables of one row per customer are in the lists and in tables/, not here.
    assert set(names[1 + len(SEGMENTS) :]) == set(tables) - set(PER_CUSTOMER)
    assert {"rfm", "clv", "segment_movement"} <= set(PER_CUSTOMER) <= set(tables)
    detail = [n for n in names if n in MODEL_DETAIL]
    assert detail and names[-len(detail) :] == detail
    contents = pl.read_excel(out / WORKBOOK_NAME, sheet_name="Contents")
    assert contents["sheet"].to_list() == [*names[1:], "(files)"]
    assert contents["contents"][-1] == (
        "one row per customer, in the lists above and whole in tables/: "
        + ", ".join(f"{t}.csv" for t in PER_CUSTOMER)
    )
    # Every sheet's name in Contents links to the sheet.
    links = [c.hyperlink.location for c in book["Contents"]["A"][1:-1]]
    assert book["Contents"]["A"][-1].hyperlink is None
    assert links == [f"'{n}'!A1".replace("Can't", "Can''t") for n in names[1:]]
    # Fractions as percentages, means to two decimals.
    segments = book["segments"]
    header = _header(segments)
    assert segments.cell(2, header.index("share") + 1).number_format == "0.0%"
    assert segments.cell(2, header.index("mean_recency") + 1).number_format == "#,##0.00"
    lists = contents.filter(pl.col("contents").str.starts_with("campaign list"))
    assert dict(lists.select("sheet", "left_out").iter_rows()) == {
        s: LEFT_OUT.get(s, 0) for s in SEGMENTS
    }
    sizes = dict(tables["segments"].select("segment", "customers").iter_rows())
    for name, rows, left_out in lists.select("sheet", "rows", "left_out").iter_rows():
        assert rows + left_out == sizes[name]
        assert book[name].max_row == rows + 1


def test_values_equal_the_parquet_tables(out: Path) -> None:
    sheets = pl.read_excel(out / WORKBOOK_NAME, sheet_id=0, infer_schema_length=None)
    for name, table in _tables(out).items():
        if name in PER_CUSTOMER:
            continue
        sheet = sheets[name]
        assert sheet.columns == table.columns, name
        assert sheet.height == table.height, name
        expected = spreadsheet_safe(table)  # text as the CSV shows it; numbers untouched
        for column, dtype in table.schema.items():
            got, want = sheet[column], expected[column]
            if dtype.is_float():
                # The cell holds the full value; to the penny at the very least.
                diff = (got.cast(pl.Float64) - want).abs()
                assert (diff.fill_null(0) <= 1e-9 * want.abs().fill_null(0) + 1e-12).all(), column
                assert got.is_null().equals(want.is_null()), f"{name}.{column}"
            elif dtype == pl.Date:
                assert got.cast(pl.Date).equals(want), f"{name}.{column}"
            else:
                assert got.cast(dtype).equals(want), f"{name}.{column}"
    overview = sheets["overview"].row(0, named=True)
    assert overview["first_invoice"] == dt.datetime(2010, 12, 1, 8, 26)
    assert overview["lines"] == 541_909


def test_money_in_pounds_dates_as_dates_frozen_header_and_filter(
    out: Path, book: openpyxl.Workbook
) -> None:
    money_cells = 0
    for sheet in book.worksheets:
        header = _header(sheet)
        last = get_column_letter(len(header))
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet.auto_filter.ref == f"A1:{last}{max(sheet.max_row, 2)}", sheet.title
        table = sheet.title if sheet.title in MONEY_COLUMNS else "campaign_list"
        money = [] if sheet.title == "Contents" else MONEY_COLUMNS.get(table, ())
        widths = _widths(sheet)
        for index, column in enumerate(header, start=1):
            width = widths[index]
            assert len(column) < width <= 61, (sheet.title, column, width)  # 60 + padding
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                if column in money and cell.value is not None:
                    assert cell.number_format == money_format() == '"£"#,##0.00;-"£"#,##0.00'
                    money_cells += 1
                if isinstance(cell.value, dt.datetime):
                    assert cell.number_format.startswith("yyyy-mm-dd"), (sheet.title, column)
    assert money_cells > 2 * 4_000  # net spend and expected value in the campaign lists
    # Full precision in the cell, pounds and pence on screen.
    clv = [r[-1].value for name in SEGMENTS for r in book[name].iter_rows(min_row=2)]
    assert any(v is not None and round(v, 2) != v for v in clv)
    champions = book["Champions"]
    assert _header(champions)[:6] == [
        "customer_id", "country", "last_purchase", "recency", "frequency", "monetary",
    ]  # fmt: skip
    first = [c.value for c in champions[2]]
    assert first[:6] == [14646, "Netherlands", dt.datetime(2011, 12, 8), 1, 74, 279_489.02]
    assert champions["C2"].number_format == "yyyy-mm-dd"


def test_campaign_lists_by_net_spend_without_customers_who_spent_nothing(out: Path) -> None:
    sheets = pl.read_excel(out / WORKBOOK_NAME, sheet_id=0, infer_schema_length=None)
    rfm = pl.read_parquet(out / "tables" / "rfm.parquet")
    spent_nothing = set(rfm.filter(pl.col("monetary").round(2) <= 0)["customer_id"])
    assert len(spent_nothing) == sum(LEFT_OUT.values()) == 22
    assert 12558 in spent_nothing  # a net spend of 2.66e-14 in float arithmetic
    listed = 0
    for segment in SEGMENTS:
        csv = pl.read_csv(out / "segments" / f"{segment_slug(segment)}.csv")
        sheet = sheets[segment]
        assert csv["customer_id"].to_list() == sheet["customer_id"].to_list()
        spend = sheet["monetary"]
        assert spend.to_list() == sorted(spend.to_list(), reverse=True)
        assert (csv["monetary"] > 0).all() and (spend > 0).all()
        assert not spent_nothing & set(csv["customer_id"])
        assert csv["last_purchase"].null_count() == 0
        listed += csv.height
    assert listed == 4_339 - 22
    champions = pl.read_csv(out / "segments" / "champions.csv", try_parse_dates=True)
    assert champions.row(0, named=True) | {"action": None} == champions.row(0, named=True) | {
        "customer_id": 14646,
        "last_purchase": dt.date(2011, 12, 8),
        "monetary": 279_489.02,
        "action": None,
    }
    page = (out / "report.html").read_text()
    assert (
        "22 customers with a net spend of £0 or less are left out (At Risk 1, Hibernating 12,"
        in page
    )


def test_no_cell_is_a_formula_even_with_hostile_text(retail_lake: Path, tmp_path: Path) -> None:
    lines = hostile_lines(lgs.scan(retail_lake), france="+France")
    path = write_segment_map(
        tmp_path / "evil.toml",
        ('=HYPERLINK("http://example.com/x","Best")', "5[4-5]", "@SUM(1+1)"),
        ("+Rest", "..?", "\tcall them"),
    )
    tables = tables_of(lines, Options(rules=load_segment_rules(path)))
    target = tmp_path / WORKBOOK_NAME
    write_workbook(tables, target)
    with zipfile.ZipFile(target) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 1 + len(set(tables) - set(PER_CUSTOMER)) + 2
        for name in sheets:
            assert b"<f>" not in archive.read(name), name
    book = openpyxl.load_workbook(target)
    assert set(book.sheetnames[1:3]) == {'=HYPERLINK("httpexample.comx","', "+Rest"}
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(("=", "+", "-", "@", "\t", "\r"))
                    texts.append(cell.value)
    assert {"'=EIRE", "'+France", "'-CAKESTAND", "'@SUM(1+1)", "'\tcall them"} <= set(texts)
    assert '\'=HYPERLINK("http://example.com/x","Best")' in texts
    # Negative numbers stay numbers.
    monthly = book["monthly"]
    growth = [r[7].value for r in monthly.iter_rows(min_row=3)]
    assert any(isinstance(g, float) and g < 0 for g in growth)


def test_sheet_names_are_valid_and_unique() -> None:
    taken: set[str] = set()
    assert sheet_name("rfm", taken) == "rfm"
    assert sheet_name("RFM", taken) == "RFM (2)"  # Excel ignores case
    assert sheet_name("a[b]:c*d?e/f\\g", taken) == "abcdefg"
    assert sheet_name("'quoted'", taken) == "quoted"
    assert sheet_name("", taken) == "Sheet"
    assert sheet_name("history", taken) == "history sheet"
    long = "A segment name far longer than thirty-one characters"
    first, second = sheet_name(long, taken), sheet_name(long, taken)
    assert first == long[:31] and second == long[:27].rstrip() + " (2)"
    assert all(len(n) <= 31 for n in taken)
