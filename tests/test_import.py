"""Importers: every source form, on the real data, gives the same canonical lines."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lgs_fast.cli import cli
from lgs_fast.engines.polars import data_quality
from lgs_fast.errors import InputError
from lgs_fast.ingest.sources import import_files, read_source
from lgs_fast.lake import scan, verify_lake
from lgs_fast.schema import COLUMNS, HEADER_FORMS, POLARS_SCHEMA
from tests.conftest import EMBEDDED, ONLINE_RETAIL_CSV, RETAIL_II_CSV, data_file

# tests/data/README.md, "What is in them (measured)".
README_FACTS = {
    "online_retail": {
        "lines": 541_909,
        "no_customer_id": 135_080,
        "no_description": 1_454,
        "cancellation_lines": 9_288,
        "cancelled_invoices": 3_836,
        "stock_adjustment_lines": 1_336,
        "zero_price_lines": 2_515,
        "negative_price_lines": 2,
        "exact_duplicate_lines": 5_268,
    },
    "ii_2009_12": {
        "lines": 45_228,
        "no_customer_id": 13_468,
        "no_description": 228,
        "cancellation_lines": 1_015,
        "cancelled_invoices": 401,
        "stock_adjustment_lines": 90,
        "zero_price_lines": 256,
        "negative_price_lines": 0,
        "exact_duplicate_lines": 506,
    },
}
README_SHAPE = {  # invoices / customers / stock codes / countries
    "online_retail": (25_900, 4_372, 4_070, 38),
    "ii_2009_12": (2_330, 1_045, 3_141, 24),
}


def _quality(lake: Path) -> dict[str, int]:
    return dict(data_quality(scan(lake)).collect().iter_rows())


def _shape(lake: Path) -> tuple[int, int, int, int]:
    row = (
        scan(lake)
        .select(
            pl.col("invoice_no").n_unique(),
            pl.col("customer_id").drop_nulls().n_unique(),
            pl.col("stock_code").n_unique(),
            pl.col("country").n_unique(),
        )
        .collect()
        .row(0)
    )
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def _lines(lake: Path) -> pl.DataFrame:
    return scan(lake).collect()


@pytest.mark.parametrize(
    ("name", "path"), [("online_retail", ONLINE_RETAIL_CSV), ("ii_2009_12", RETAIL_II_CSV)]
)
def test_real_csv_imports_exactly(tmp_path: Path, name: str, path: Path) -> None:
    lake = tmp_path / "lake"
    result = import_files([data_file(path)], lake)
    assert result.rows == README_FACTS[name]["lines"]
    quality = _quality(lake)
    for check, expected in README_FACTS[name].items():
        assert quality[check] == expected, check
    assert _shape(lake) == README_SHAPE[name]
    assert verify_lake(lake).rows == result.rows


def test_csv_import_equals_plain_read(retail_ii_lake: Path, retail_ii_frame: pl.DataFrame) -> None:
    got = _lines(retail_ii_lake)
    assert got.schema == POLARS_SCHEMA
    key = list(COLUMNS)
    assert got.sort(key, nulls_last=True).equals(retail_ii_frame.sort(key, nulls_last=True))


def test_embedded_parquet_is_the_real_csv(retail_lake: Path, tmp_path: Path) -> None:
    from_csv = pl.concat(list(read_source(data_file(ONLINE_RETAIL_CSV))))
    shipped = pl.read_parquet(EMBEDDED)
    assert shipped.height == 541_909
    assert shipped.equals(from_csv)  # same lines, same order
    assert _lines(retail_lake).height == 541_909


def test_partitions_by_month(retail_lake: Path) -> None:
    manifest = verify_lake(retail_lake)
    assert list(manifest.partitions)[0] == "year=2010/month=12"
    assert len(manifest.partitions) == 13
    assert manifest.partitions["year=2011/month=11"]["rows"] == 84_711
    assert manifest.watermark == "2011-12-09T12:50:00"
    files = list(manifest.files(retail_lake).values())
    assert len(files) == 13
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_dedupe_drops_exact_duplicates(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = import_files([EMBEDDED], lake, dedupe=True)
    assert result.duplicates_dropped == 5_268
    assert result.rows == 541_909 - 5_268
    assert _quality(lake)["exact_duplicate_lines"] == 0


def test_parquet_in_each_header_form(tmp_path: Path, retail_ii_frame: pl.DataFrame) -> None:
    sample = retail_ii_frame.head(5_000)
    for form, names in HEADER_FORMS.items():
        path = tmp_path / f"{form}.parquet"
        # Customer ids as float, as spreadsheets and some exports carry them.
        sample.with_columns(pl.col("customer_id").cast(pl.Float64)).rename(
            dict(zip(COLUMNS, names, strict=True))
        ).write_parquet(path)
        lake = tmp_path / f"lake_{form}"
        import_files([path], lake)
        assert (
            _lines(lake)
            .sort(list(COLUMNS), nulls_last=True)
            .equals(sample.sort(list(COLUMNS), nulls_last=True))
        ), form


def test_several_files_into_one_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = import_files([EMBEDDED, data_file(RETAIL_II_CSV)], lake)
    assert result.rows == 541_909 + 45_228
    assert verify_lake(lake).partitions["year=2009/month=12"]["rows"] == 45_228


def _xlsx_fixture(path: Path, frame: pl.DataFrame) -> None:
    """Two yearly sheets in the UCI II layout, as the published .xlsx has them."""
    import xlsxwriter

    uci_ii = dict(zip(COLUMNS, HEADER_FORMS["uci_ii"], strict=True))
    with xlsxwriter.Workbook(path) as book:
        for sheet, part in (
            ("Year 2009-2010", frame.head(1_500)),
            ("Year 2010-2011", frame.slice(1_500, 2_000)),
        ):
            part.rename(uci_ii).with_columns(
                pl.col("Customer ID").cast(pl.Float64)  # the real sheet stores ids as numbers
            ).write_excel(book, worksheet=sheet, autofit=False)


def test_xlsx_two_sheets(tmp_path: Path, retail_ii_frame: pl.DataFrame) -> None:
    path = tmp_path / "online_retail_II.xlsx"
    sample = retail_ii_frame.head(3_500)
    _xlsx_fixture(path, sample)
    lake = tmp_path / "lake"
    assert import_files([path], lake).rows == 3_500
    key = list(COLUMNS)
    assert _lines(lake).sort(key, nulls_last=True).equals(sample.sort(key, nulls_last=True))


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def write_pg_dump(path: Path, frame: pl.DataFrame) -> None:
    """A plain-format pg_dump of table retail, as `pg_dump -t retail` writes it."""
    rows = frame.with_columns(pl.col("invoice_date").dt.strftime("%Y-%m-%d %H:%M:%S"))
    with gzip.open(path, "wt") if path.suffix == ".gz" else path.open("w") as out:
        out.write("--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\n")
        out.write("CREATE TABLE public.retail (\n    invoice_no text,\n    stock_code text,\n")
        out.write("    description text,\n    quantity integer,\n")
        out.write("    invoice_date timestamp without time zone,\n    unit_price numeric(8,3),\n")
        out.write("    customer_id integer,\n    country text\n);\n\n")
        out.write(f"COPY public.retail ({', '.join(COLUMNS)}) FROM stdin;\n")
        for row in rows.iter_rows():
            out.write("\t".join(_copy_text(v) for v in row) + "\n")
        out.write("\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n")


def test_pg_dump(tmp_path: Path, retail_ii_frame: pl.DataFrame) -> None:
    sample = retail_ii_frame.head(20_000).with_columns(
        # COPY's escapes must round-trip: a tab, a backslash and a newline in descriptions.
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.lit("TAB\tBACKSLASH\\ NEWLINE\nEND"))
        .otherwise(pl.col("description"))
        .alias("description")
    )
    path = tmp_path / "retail.sql.gz"
    write_pg_dump(path, sample)
    lake = tmp_path / "lake"
    assert import_files([path], lake).rows == 20_000
    key = list(COLUMNS)
    got = _lines(lake)
    assert got.sort(key, nulls_last=True).equals(sample.sort(key, nulls_last=True))
    assert "TAB\tBACKSLASH\\ NEWLINE\nEND" in got["description"].to_list()


def test_pg_dump_without_copy_block(tmp_path: Path) -> None:
    path = tmp_path / "other.sql"
    path.write_text("CREATE TABLE x (a int);\nCOPY public.x (a) FROM stdin;\n1\n\\.\n")
    with pytest.raises(InputError, match="no 'COPY retail"):
        list(read_source(path))


def test_uci_us_dates_and_float_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
    )
    (line,) = pl.concat(list(read_source(path))).iter_rows(named=True)
    assert line["invoice_date"].isoformat() == "2010-12-01T08:26:00"
    assert line["customer_id"] == 17850


def test_only_empty_fields_are_missing(tmp_path: Path) -> None:
    """Text that spells a null elsewhere ("NA", "NULL", "NaN") is text here; empty is missing."""
    path = tmp_path / "spellings.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,NA,NULL,6,2010-12-01 08:26:00,2.55,,NaN\n"
        "536365,85123A,,6,2010-12-01 08:26:00,2.55,17850,N/A\n"
    )
    first, second = pl.concat(list(read_source(path))).iter_rows(named=True)
    assert (first["stock_code"], first["description"], first["country"]) == ("NA", "NULL", "NaN")
    assert first["customer_id"] is None
    assert second["description"] is None and second["country"] == "N/A"


# Slash dates: day-first or month-first as the whole file shows, never silently the other way.

SNAKE = ",".join(COLUMNS)


def _dated_csv(path: Path, *dates: str, header: str = SNAKE) -> Path:
    """A CSV of one line per date, otherwise alike."""
    lines = [f"{i},85123A,HEART,6,{date},2.55,17850,United Kingdom" for i, date in enumerate(dates)]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _imported_dates(path: Path, lake: Path, *options: str) -> list[str]:
    result = CliRunner().invoke(cli, ["import", str(path), "--lake", str(lake), *options])
    assert result.exit_code == 0, result.output
    dates = scan(lake).select("invoice_date").sort("invoice_date").collect()["invoice_date"]
    return [d.isoformat(sep=" ") for d in dates]


def _refused(path: Path, lake: Path, *options: str) -> str:
    """The one error line of an import that must be refused (exit 2), the lake never made."""
    result = CliRunner().invoke(cli, ["import", str(path), "--lake", str(lake), *options])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"lgs-fast: error: {path}: ") and not lake.exists()
    return line


def test_uk_dates_are_read_day_first(tmp_path: Path) -> None:
    path = _dated_csv(tmp_path / "uk.csv", "01/12/2010 08:26", "13/12/2010 09:00")
    assert _imported_dates(path, tmp_path / "lake") == [
        "2010-12-01 08:26:00",
        "2010-12-13 09:00:00",
    ]


def test_us_dates_are_read_month_first(tmp_path: Path) -> None:
    path = _dated_csv(tmp_path / "us.csv", "01/12/2010 08:26", "12/13/2010 09:00:30")
    assert _imported_dates(path, tmp_path / "lake") == [
        "2010-01-12 08:26:00",
        "2010-12-13 09:00:30",
    ]


def test_the_one_telling_date_may_be_the_files_last(tmp_path: Path) -> None:
    """All of a file's dates decide, not its first block: here 200,000 lines (several blocks
    of the CSV reader) read both ways, and only the last line says the file is day-first."""
    dates = ["01/12/2010 08:26"] * 200_000 + ["13/12/2010 09:00"]
    path = _dated_csv(tmp_path / "uk.csv", *dates)
    frame = pl.concat(list(read_source(path)))
    assert frame.height == 200_001
    assert frame["invoice_date"][0].isoformat() == "2010-12-01T08:26:00"
    assert frame["invoice_date"][-1].isoformat() == "2010-12-13T09:00:00"


def test_file_read_both_ways_is_refused_naming_date_format(tmp_path: Path) -> None:
    path = _dated_csv(tmp_path / "either.csv", "01/12/2010 08:26", "02/12/2010 09:00")
    line = _refused(path, tmp_path / "lake")
    assert line.startswith(
        f"lgs-fast: error: {path}: row 1: column invoice_date '01/12/2010 08:26'"
    )
    assert "--date-format '%d/%m/%Y %H:%M'" in line
    day_first = _imported_dates(path, tmp_path / "lake", "--date-format", "%d/%m/%Y %H:%M")
    assert day_first == ["2010-12-01 08:26:00", "2010-12-02 09:00:00"]
    month_first = _imported_dates(path, tmp_path / "lake", "--date-format", "%m/%d/%Y %H:%M")
    assert month_first == ["2010-01-12 08:26:00", "2010-02-12 09:00:00"]


def test_uci_header_reads_both_ways_dates_month_first(tmp_path: Path) -> None:
    header = ",".join(HEADER_FORMS["uci"])
    path = _dated_csv(tmp_path / "uci.csv", "01/12/2010 08:26", header=header)
    assert _imported_dates(path, tmp_path / "lake") == ["2010-01-12 08:26:00"]


def test_file_mixing_day_first_and_month_first_is_refused(tmp_path: Path) -> None:
    dates = ["2010-12-01 07:00:00", "13/12/2010 08:26", "01/12/2010 08:30", "12/13/2010 09:00"]
    path = _dated_csv(tmp_path / "mixed.csv", *dates)
    line = _refused(path, tmp_path / "lake")
    assert line == (
        f"lgs-fast: error: {path}: row 4: column invoice_date '12/13/2010 09:00' can only be "
        "month-first (MM/DD/YYYY), but row 2 '13/12/2010 08:26' can only be day-first; "
        "a file's slash dates must all be one or the other"
    )


def test_a_date_given_format_cannot_read_is_named(tmp_path: Path) -> None:
    path = _dated_csv(tmp_path / "us.csv", "12/13/2010 09:00")
    line = _refused(path, tmp_path / "lake", "--date-format", "%d/%m/%Y %H:%M")
    assert line.startswith(f"lgs-fast: error: {path}: row 1: column invoice_date cannot be read")


def test_iso_dates_with_t_and_fractions_as_polars_writes_them(tmp_path: Path) -> None:
    lines = pl.concat(list(read_source(EMBEDDED))).head(2_000)
    path = tmp_path / "polars.csv"
    lines.write_csv(path)  # 2010-12-01T08:26:00.000000
    assert "T08:26:00.000000," in path.read_text()
    again = pl.concat(list(read_source(path)))
    assert again["invoice_date"].to_list() == lines["invoice_date"].to_list()
    fractions = _dated_csv(tmp_path / "f.csv", "2010-12-01T08:26:00.25", "2010-12-01T08:27")
    assert _imported_dates(fractions, tmp_path / "lake") == [
        "2010-12-01 08:26:00.250000",
        "2010-12-01 08:27:00",
    ]
