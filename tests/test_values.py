"""One policy for values, every source alike: what `conform` accepts and how refusals read.

Each refusal is one `InputError` whose one-line message names the file, and the row and column
where there is one; the files are real files written here, read the way the CLI reads them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lgs_fast.cli import cli
from lgs_fast.errors import InputError
from lgs_fast.ingest import sources
from lgs_fast.ingest.sources import import_files, read_source
from lgs_fast.schema import COLUMNS, HEADER_FORMS

HEADER = ",".join(HEADER_FORMS["uci"])
GOOD = {
    "invoice_no": "536365",
    "stock_code": "85123A",
    "description": "WHITE HANGING HEART T-LIGHT HOLDER",
    "quantity": "6",
    "invoice_date": "2010-12-01 08:26:00",
    "unit_price": "2.55",
    "customer_id": "17850",
    "country": "United Kingdom",
}
PRICE_RANGE = "is not a finite price within ±10,000,000"
QUANTITY_RANGE = "is not a whole number from -2,147,483,648 to 2,147,483,647"
NOT_A_CUSTOMER_ID = "is not a whole number that fits in 64 bits"
SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: 'CSV UTF-8')"


def _line(**values: str) -> str:
    return ",".join({**GOOD, **values}[name] for name in COLUMNS)


def _csv(path: Path, *lines: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> pl.DataFrame:
    return pl.concat(list(read_source(path)))


def _refusal(path: Path) -> str:
    with pytest.raises(InputError) as err:
        list(read_source(path))
    message = str(err.value)
    _assert_one_clean_line(message, path)
    return message


def _assert_one_clean_line(message: str, path: Path) -> None:
    assert message.startswith(f"{path}: ")
    assert message.isprintable(), message  # no newline, no control character, no raw byte
    assert "\ufffd" not in message and len(message) < 400


def _parquet(path: Path, **columns: pa.Array) -> Path:
    """Two good lines in the canonical column names, with `columns` replaced."""
    table = {
        "invoice_no": pa.array(["536365", "536366"]),
        "stock_code": pa.array(["85123A", "71053"]),
        "description": pa.array(["WHITE HANGING HEART T-LIGHT HOLDER", None]),
        "quantity": pa.array([6, 8], pa.int32()),
        "invoice_date": pa.array([dt.datetime(2010, 12, 1, 8, 26)] * 2, pa.timestamp("us")),
        "unit_price": pa.array([2.55, 3.39]),
        "customer_id": pa.array([17850, None], pa.int64()),
        "country": pa.array(["United Kingdom", "France"]),
    }
    pq.write_table(pa.table({**table, **columns}), path)
    return path


# 1. Prices must be finite and at most ten million pounds a unit; quantities must fit int32.


@pytest.mark.parametrize("price", ["nan", "NaN", "inf", "-inf", "Infinity", "1e300", "10000000.5"])
def test_csv_refuses_non_finite_or_absurd_price(tmp_path: Path, price: str) -> None:
    path = _csv(tmp_path / "prices.csv", _line(), _line(unit_price=price))
    assert _refusal(path) == f"{path}: row 2: column unit_price {PRICE_RANGE}: '{price}'"


def test_import_refuses_nan_price(tmp_path: Path) -> None:
    path = _csv(tmp_path / "prices.csv", _line(), _line(), _line(unit_price="nan"))
    with pytest.raises(InputError) as err:
        import_files([path], tmp_path / "lake")
    assert str(err.value) == f"{path}: row 3: column unit_price {PRICE_RANGE}: 'nan'"


def test_price_limit_is_inclusive(tmp_path: Path) -> None:
    path = _csv(tmp_path / "limits.csv", _line(unit_price="10000000"), _line(unit_price="-1e7"))
    assert _read(path)["unit_price"].to_list() == [10_000_000.0, -10_000_000.0]


@pytest.mark.parametrize(
    ("price", "shown"),
    [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf"), (1e300, "1e+300")],
)
def test_parquet_refuses_non_finite_or_absurd_price(
    tmp_path: Path, price: float, shown: str
) -> None:
    path = _parquet(tmp_path / "prices.parquet", unit_price=pa.array([2.55, price]))
    assert _refusal(path) == f"{path}: row 2: column unit_price {PRICE_RANGE}: '{shown}'"


def test_postgres_refuses_non_finite_price(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.postgres import export

    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity int, invoice_date timestamp, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(sql.Identifier(pg_table))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES "
                "('536365', '85123A', 'MUG', 6, '2010-12-01 08:26', 2.55, 17850, 'UK'),"
                "('536366', '85123A', 'MUG', 6, '2010-12-01 08:27', 'NaN', 17850, 'UK')"
            ).format(sql.Identifier(pg_table))
        )
    with pytest.raises(InputError) as err:
        export(pg_dsn, tmp_path / "lake", table=pg_table, full=True)
    message = str(err.value)
    assert f"table {pg_table}: row 2: column unit_price {PRICE_RANGE}: " in message
    assert "\n" not in message


@pytest.mark.parametrize("quantity", ["3000000000", "-2147483649", "99999999999999999999"])
def test_csv_refuses_quantity_outside_int32(tmp_path: Path, quantity: str) -> None:
    path = _csv(tmp_path / "quantities.csv", _line(), _line(quantity=quantity))
    assert _refusal(path) == f"{path}: row 2: column quantity {QUANTITY_RANGE}: '{quantity}'"


def test_parquet_refuses_quantity_outside_int32(tmp_path: Path) -> None:
    big = pa.array([2_147_483_647, 3_000_000_000], pa.int64())
    path = _parquet(tmp_path / "quantities.parquet", quantity=big)
    assert _refusal(path) == f"{path}: row 2: column quantity {QUANTITY_RANGE}: '3000000000'"


def test_int32_limits_are_quantities(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "limits.csv",
        _line(quantity="2147483647", unit_price="0.01"),
        _line(quantity="-2147483648", unit_price="0.01"),
    )
    assert _read(path)["quantity"].to_list() == [2_147_483_647, -2_147_483_648]


@pytest.mark.parametrize(("quantity", "price"), [("2147483647", "2.55"), ("-1000", "1000001")])
def test_line_amount_beyond_a_billion_is_refused(tmp_path: Path, quantity: str, price: str) -> None:
    """Each value is within its own limit, the line is not: its amount could not be summed."""
    path = _csv(tmp_path / "big.csv", _line(), _line(quantity=quantity, unit_price=price))
    assert _refusal(path).startswith(f"{path}: row 2: columns quantity × unit_price = ")
    assert "beyond ±1,000,000,000 for one line" in _refusal(path)


def test_largest_line_amount_is_analyzed_exactly(tmp_path: Path, engine: str) -> None:
    """Lines at the limit, many of them for one customer: summed without overflow, engines equal."""
    from lgs_fast.analyze import compute_tables

    big = _line(quantity="1000", unit_price="1000000", customer_id="1")
    small = _line(quantity="1", unit_price="2.5", customer_id="2")
    path = _csv(tmp_path / "big.csv", *([big] * 10_000), small)
    lake = tmp_path / "lake"
    import_files([path], lake)
    rfm = compute_tables(lake, engine=engine)["rfm"].sort("customer_id")
    assert rfm["monetary"].to_list() == [1e13, 2.5]


def test_long_value_is_shortened(tmp_path: Path) -> None:
    path = _csv(tmp_path / "long.csv", _line(quantity="9" * 5_000))
    assert _refusal(path).startswith(f"{path}: row 1: column quantity {QUANTITY_RANGE}: '9999")


DATE_RANGE = "is not a date from 1900-01-01 to 2099-12-31"


@pytest.mark.parametrize(
    "date",
    [
        "0000-01-01 08:26:00",
        "+10000-01-01 08:26:00",
        # Placeholders: year 9999 became year 10000 in the lake's derived values and broke
        # every later analyze; year 1 made the forecast fill two thousand years of months.
        "9999-12-31 00:00:00",
        "0001-01-01 00:00:00",
        "1899-12-31 23:59:59",
        "2100-01-01 00:00:00",
    ],
)
def test_csv_refuses_dates_outside_the_documented_range(tmp_path: Path, date: str) -> None:
    path = _csv(tmp_path / "years.csv", _line(), _line(invoice_date=date))
    assert _refusal(path) == f"{path}: row 2: column invoice_date {DATE_RANGE}: '{date}'"


@pytest.mark.parametrize("date", ["1900-01-01 00:00:00", "2099-12-31 23:59:59"])
def test_the_ends_of_the_date_range_are_accepted(tmp_path: Path, date: str) -> None:
    path = _csv(tmp_path / "ends.csv", _line(invoice_date=date))
    assert str(_read(path)["invoice_date"][0]) == date


@pytest.mark.parametrize("date", ["9999-12-31 00:00:00", "0001-01-01 00:00:00"])
def test_import_refuses_a_placeholder_date_before_writing(tmp_path: Path, date: str) -> None:
    lake = tmp_path / "lake"
    assert import_files([_csv(tmp_path / "good.csv", _line())], lake).rows == 1
    before = {p: p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()}
    path = _csv(tmp_path / "bad.csv", _line(), _line(), _line(invoice_date=date))
    result = CliRunner().invoke(cli, ["import", str(path), "--lake", str(lake)])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"lgs-fast: error: {path}: row 3: column invoice_date {DATE_RANGE}: '{date}'\n"
    )
    assert {p: p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()} == before


def test_parquet_refuses_dates_python_cannot_hold(tmp_path: Path) -> None:
    far = pa.array([0, 2**62], pa.timestamp("us"))  # year 148,108
    path = _parquet(tmp_path / "years.parquet", invoice_date=far)
    assert _refusal(path).startswith(f"{path}: row 2: column invoice_date {DATE_RANGE}: '+148108-")


# 2. A Parquet value is accepted exactly when its text form would be accepted from CSV.


def _csv_then_parquet(tmp_path: Path, column: str, value: float) -> tuple[object, object]:
    """What each source makes of `value` in `column`: the line's value, or the refusal."""
    outcomes: list[object] = []
    text_path = _csv(tmp_path / "v.csv", _line(), _line(**{column: repr(value)}))
    typed = pa.array([float(GOOD[column]), value])
    binary_path = _parquet(tmp_path / "v.parquet", **{column: typed})
    for path in (text_path, binary_path):
        try:
            outcomes.append(_read(path)[column][1])
        except InputError as err:
            # Same refusal, but for the file name and the value as each file spells it.
            outcomes.append(str(err).removeprefix(f"{path}: ").rsplit(": ", 1)[0])
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (6.0, 6),
        (-0.0, 0),
        (1e3, 1000),
        (6.7, f"row 2: column quantity {QUANTITY_RANGE}"),
        (3e9, f"row 2: column quantity {QUANTITY_RANGE}"),
        (float("nan"), f"row 2: column quantity {QUANTITY_RANGE}"),
    ],
)
def test_parquet_quantity_as_csv_would_read_it(
    tmp_path: Path, value: float, expected: object
) -> None:
    assert _csv_then_parquet(tmp_path, "quantity", value) == (expected, expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (17850.0, 17850),
        (17850.5, f"row 2: column customer_id {NOT_A_CUSTOMER_ID}"),
        (1e19, f"row 2: column customer_id {NOT_A_CUSTOMER_ID}"),
        (float("inf"), f"row 2: column customer_id {NOT_A_CUSTOMER_ID}"),
    ],
)
def test_parquet_customer_id_as_csv_would_read_it(
    tmp_path: Path, value: float, expected: object
) -> None:
    assert _csv_then_parquet(tmp_path, "customer_id", value) == (expected, expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.55, 2.55),
        (-1e7, -1e7),
        (float("nan"), f"row 2: column unit_price {PRICE_RANGE}"),
        (float("-inf"), f"row 2: column unit_price {PRICE_RANGE}"),
        (1e300, f"row 2: column unit_price {PRICE_RANGE}"),
    ],
)
def test_parquet_price_as_csv_would_read_it(tmp_path: Path, value: float, expected: object) -> None:
    assert _csv_then_parquet(tmp_path, "unit_price", value) == (expected, expected)


def test_parquet_refuses_fractional_decimal_quantity(tmp_path: Path) -> None:
    amounts = [decimal.Decimal("6.00"), decimal.Decimal("6.70")]
    path = _parquet(tmp_path / "d.parquet", quantity=pa.array(amounts, pa.decimal128(8, 2)))
    assert _refusal(path) == f"{path}: row 2: column quantity {QUANTITY_RANGE}: '6.70'"


def test_parquet_refuses_integer_dates(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "x.parquet", invoice_date=pa.array([1, 2], pa.int64()))
    assert _refusal(path) == (
        f"{path}: column invoice_date has type int64; expected a timestamp, date or text"
    )


@pytest.mark.parametrize("column", ["quantity", "unit_price", "customer_id"])
def test_parquet_refuses_booleans_as_numbers(tmp_path: Path, column: str) -> None:
    path = _parquet(tmp_path / "b.parquet", **{column: pa.array([True, False])})
    assert _refusal(path) == f"{path}: column {column} has type boolean; expected a number or text"


def test_parquet_dates_and_text_dates_are_dates(tmp_path: Path) -> None:
    days = _parquet(tmp_path / "d.parquet", invoice_date=pa.array([dt.date(2010, 12, 1)] * 2))
    texts = _parquet(
        tmp_path / "t.parquet", invoice_date=pa.array(["2010-12-01 08:26:00", "13/12/2010 8:26"])
    )
    assert _read(days)["invoice_date"].to_list() == [dt.datetime(2010, 12, 1)] * 2
    assert _read(texts)["invoice_date"].to_list() == [
        dt.datetime(2010, 12, 1, 8, 26),
        dt.datetime(2010, 12, 13, 8, 26),
    ]


# 3. Odd files: one clear line naming the file, or, for a BOM, simply the lines.


def test_csv_with_byte_order_mark_imports(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{_line()}\n".encode())
    assert import_files([path], tmp_path / "lake").rows == 1
    assert _read(path).row(0, named=True)["invoice_no"] == "536365"


def test_csv_repeated_column_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path / "twice.csv", _line() + ",7", header=HEADER + ",Quantity")
    assert _refusal(path) == f"{path}: column 'Quantity' appears more than once in the header"


def test_xlsx_repeated_column_is_refused(tmp_path: Path) -> None:
    import xlsxwriter

    path = tmp_path / "twice.xlsx"
    with xlsxwriter.Workbook(path) as book:
        sheet = book.add_worksheet("Year 2010-2011")
        for column, (name, value) in enumerate(
            [*zip(HEADER_FORMS["uci"], GOOD.values(), strict=True), ("Quantity", "7")]
        ):
            sheet.write(0, column, name)
            sheet.write(1, column, value)
    with pytest.raises(InputError) as err:
        list(read_source(path))
    assert str(err.value) == (
        f"{path} sheet 'Year 2010-2011': column 'Quantity' appears more than once in the header"
    )


def test_csv_unnamed_extra_columns_are_ignored(tmp_path: Path) -> None:
    """Trailing commas, as spreadsheets leave them: extra columns without names, read past."""
    path = _csv(tmp_path / "trailing.csv", _line() + ",,", header=HEADER + ",,")
    assert _read(path).row(0, named=True)["customer_id"] == 17850


def test_parquet_extra_columns_of_one_name_are_ignored(tmp_path: Path) -> None:
    base = tmp_path / "base.parquet"
    table = pq.read_table(_parquet(base))
    extra = pa.array([1, 2])
    path = tmp_path / "extra.parquet"
    pq.write_table(
        pa.Table.from_arrays([*table.columns, extra, extra], names=[*table.column_names, "x", "x"]),
        path,
    )
    assert _read(path).equals(_read(base))


@pytest.mark.parametrize("with_nul", [True, False])
def test_binary_garbage_as_csv(tmp_path: Path, with_nul: bool) -> None:
    garbage = random.Random(7).randbytes(20_000)
    if not with_nul:
        garbage = bytes(b | 0x80 for b in garbage)  # no NUL, no newline, no valid UTF-8
    path = tmp_path / "photo.csv"
    path.write_bytes(garbage)
    message = _refusal(path)
    if with_nul:
        assert message == f"{path}: holds binary data (NUL bytes), not CSV text"
    else:
        assert message == (
            f"{path}: the header (line 1) is not UTF-8 text; if it is a CSV file, {SAVE_AS_UTF8}"
        )


def test_binary_garbage_after_a_header(tmp_path: Path) -> None:
    path = tmp_path / "half.csv"
    garbage = bytes(b | 0x80 for b in random.Random(8).randbytes(5_000))
    path.write_bytes(f"{HEADER}\n{_line()}\n".encode() + garbage.replace(b"\x85", b"\n"))
    assert _refusal(path).startswith(f"{path}: row 2: ")


def test_utf16_csv(tmp_path: Path) -> None:
    path = tmp_path / "unicode.csv"
    path.write_bytes(f"{HEADER}\n{_line()}\n".encode("utf-16"))
    assert _refusal(path) == f"{path}: is UTF-16 text; {SAVE_AS_UTF8}"


@pytest.mark.parametrize("lines", [3, 150_000])
def test_truncated_csv_gz(tmp_path: Path, lines: int) -> None:
    data = gzip.compress(f"{HEADER}\n{_line()}\n".encode() + f"{_line()}\n".encode() * lines)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    assert _refusal(path).startswith(f"{path}: compressed data is truncated or corrupt (")


def test_cp1252_csv_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "windows.csv"
    text = f"{HEADER}\n{_line()}\n{_line()}\n{_line(description='CAFÉ AU LAIT MUG £2')}\n"
    path.write_bytes(text.encode("cp1252"))
    assert _refusal(path) == (
        f"{path}: row 3: column description is not UTF-8 text (the file is in another "
        f"encoding, such as Windows-1252); {SAVE_AS_UTF8}"
    )


def test_csv_rows_are_counted_across_read_blocks(tmp_path: Path) -> None:
    """Row numbers of a file's later blocks (8 MiB each) still count from the file's start."""
    path = tmp_path / "long.csv"
    good = f"{_line()}\n".encode() * 149_999
    bad = _line(country="Côte d'Ivoire").encode("latin-1")
    path.write_bytes(f"{HEADER}\n".encode() + good + bad + b"\n")
    assert len(good) > sources._BLOCK_BYTES  # the bad line is in the second block
    assert _refusal(path).startswith(f"{path}: row 150000: column country is not UTF-8 text")
    path.write_bytes(f"{HEADER}\n".encode() + good + b"1,2,3\n")
    assert _refusal(path) == f"{path}: row 150000: expected 8 fields, found 3"


def test_csv_with_old_mac_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(f"{HEADER}\r{_line()}\r{_line()}\r".encode())
    assert _read(path).height == 2


@pytest.mark.parametrize("body", ["", "\n", "\r\n", "\n\n"])
def test_header_only_csv_yields_nothing(tmp_path: Path, body: str) -> None:
    path = tmp_path / "header.csv"
    path.write_bytes(f"\ufeff{HEADER}{body}".encode())
    assert list(read_source(path)) == []


def test_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(random.Random(9).randbytes(3_000))
    assert "Parquet" in _refusal(path)


def test_garbage_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    path.write_bytes(random.Random(10).randbytes(3_000))
    assert "Zip" in _refusal(path)


def test_xlsx_blank_sheet_is_skipped(tmp_path: Path) -> None:
    import xlsxwriter

    path = tmp_path / "notes.xlsx"
    with xlsxwriter.Workbook(path) as book:
        sheet = book.add_worksheet("Lines")
        for column, (name, value) in enumerate(
            zip(HEADER_FORMS["uci"], GOOD.values(), strict=True)
        ):
            sheet.write(0, column, name)
            sheet.write(1, column, value)
        book.add_worksheet("Sheet2")
    assert _read(path)["invoice_no"].to_list() == ["536365"]


# pg_dump --------------------------------------------------------------------------------------

COPY_LINE = f"COPY public.retail ({', '.join(COLUMNS)}) FROM stdin;\n"


def _dump_line(**values: str) -> str:
    return "\t".join({**GOOD, **values}[name] for name in COLUMNS) + "\n"


def _pg_dump(path: Path, data: bytes, *, end: bool = True) -> Path:
    body = b"--\n-- PostgreSQL database dump\n--\n\n" + COPY_LINE.encode() + data
    body += b"\\.\n\n" if end else b""
    path.write_bytes(gzip.compress(body) if path.name.endswith(".gz") else body)
    return path


def test_pg_dump_wrong_field_count(tmp_path: Path) -> None:
    path = _pg_dump(tmp_path / "retail.sql", (_dump_line() + "1\t2\t3\n").encode())
    assert _refusal(path) == f"{path}: row 2: expected 8 fields, found 3"


def test_pg_dump_without_end_of_copy(tmp_path: Path) -> None:
    path = _pg_dump(tmp_path / "retail.sql", _dump_line().encode(), end=False)
    assert _refusal(path) == (
        f"{path}: the COPY block ends without its '\\.' line; the dump is truncated"
    )


def test_truncated_pg_dump_gz(tmp_path: Path) -> None:
    path = _pg_dump(tmp_path / "retail.sql.gz", _dump_line().encode() * 50_000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert _refusal(path).startswith(f"{path}: compressed data is truncated or corrupt (")


def test_pg_dump_not_utf8(tmp_path: Path) -> None:
    data = (_dump_line() + _dump_line(description="CAFÉ")).encode("cp1252")
    path = _pg_dump(tmp_path / "retail.sql", data)
    assert _refusal(path).startswith(f"{path}: row 2: column description is not UTF-8 text")


def test_pg_dump_newline_at_read_boundary(tmp_path: Path) -> None:
    """A line ending exactly where one read of the COPY block stops is still a line's end."""
    lines = []
    for i in range(90_000):
        width = 109 if i == 0 else 100  # puts a newline at every offset 108 + 100k
        line = _dump_line(invoice_no=str(536365 + i), description="")
        lines.append(_dump_line(invoice_no=str(536365 + i), description="X" * (width - len(line))))
    data = "".join(lines).encode()
    assert data[sources._BLOCK_BYTES] == ord("\n")
    path = _pg_dump(tmp_path / "retail.sql", data)
    assert _read(path).height == 90_000


def test_pg_dump_of_an_empty_table_yields_nothing(tmp_path: Path) -> None:
    assert list(read_source(_pg_dump(tmp_path / "retail.sql", b""))) == []
