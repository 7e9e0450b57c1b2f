"""The lake's derived layers: what is stored equals what the lines give, every reader gets the
same tables from them as from the lines (any cut, an old lake without them), and a damaged or
impossible layer is refused, never read."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks import pandas_reference as reference
from lgs_fast.analyze import compute_tables, tables_of
from lgs_fast.catalog import ANALYSES, UNORDERED
from lgs_fast.config import Options
from lgs_fast.errors import DamagedError
from lgs_fast.ingest.sources import import_files
from lgs_fast.lake import (
    MANIFEST,
    Manifest,
    layers,
    scan,
    scan_invoices,
    scan_layers,
    upgrade_lake,
    verify_lake,
    write_lake,
)
from lgs_fast.schema import POLARS_SCHEMA
from tests.conftest import RETAIL_II_CSV, data_file
from tests.utils import assert_tables_agree

INVOICE_KEY = ["invoice_no", "customer_id", "country", "invoice_date"]


def _same_tables(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    for name in ANALYSES:
        key = UNORDERED.get(name)
        a, b = (
            (got[name], expected[name])
            if key is None
            else (got[name].sort(key), expected[name].sort(key))
        )
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-6, check_dtypes=False)


def test_stored_layers_are_the_layers_of_the_lines(retail_lake: Path) -> None:
    stored = scan_layers(retail_lake)
    computed = layers.of_lines(scan(retail_lake))
    invoices = stored.invoices.collect().sort(INVOICE_KEY, nulls_last=True)
    expected = computed.invoices.collect().sort(INVOICE_KEY, nulls_last=True)
    assert_frame_equal(invoices, expected, check_exact=False, rel_tol=1e-12)
    # Products are stored month by month: their sums over the months are the lines' totals.
    per_month = stored.products.collect()
    assert per_month.height > per_month["stock_code"].n_unique()
    products = per_month.group_by("stock_code").agg(pl.all().sum()).sort("stock_code")
    expected = computed.products.collect().sort("stock_code")
    assert_frame_equal(products, expected, check_exact=False, rel_tol=1e-9)
    quality = stored.quality.select(pl.all().sum()).collect()
    assert quality.row(0, named=True) == computed.quality.collect().row(0, named=True)
    # 25,900 invoices of the real data: a few span two timestamps, so a few more rows.
    assert stored.invoices.select(pl.col("invoice_no").n_unique()).collect().item() == 25_900
    assert stored.invoices.select(pl.len()).collect().item() == 25_943


@pytest.mark.parametrize("preset", ["standard", "notebook"])
def test_a_range_that_cuts_months_reads_their_lines(
    retail_lake: Path, engine: str, preset: str
) -> None:
    # 15 March to 20 September: two months cut (their products and quality from the lines),
    # the invoice layer cut by time, the months between read from the layers.
    options = Options(preset=preset)  # type: ignore[arg-type]
    start, end = dt.date(2011, 3, 15), dt.date(2011, 9, 20)
    got = compute_tables(retail_lake, options, engine=engine, start=start, end=end)  # type: ignore[arg-type]
    lines = scan(retail_lake, start=start, end=end)
    _same_tables(got, tables_of(lines, options, engine=engine))  # type: ignore[arg-type]
    assert got["overview"]["lines"].item() == lines.select(pl.len()).collect().item()


def _strip_layers(lake: Path) -> None:
    """Make `lake` look written before the layers: no layer files, no manifest entries (and no
    manifest checksum, which came later still)."""
    raw = json.loads((lake / MANIFEST).read_text())
    del raw["checksum"]
    for meta in raw["partitions"].values():
        del meta["layers"]
    (lake / MANIFEST).write_text(json.dumps(raw))
    for layer in layers.LAYERS:
        shutil.rmtree(lake / layer)


def test_an_old_lake_reads_the_same_and_upgrades(tmp_path: Path, engine: str) -> None:
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    expected = compute_tables(lake, engine=engine)  # type: ignore[arg-type]
    lines_before = {k: m["sha256"] for k, m in Manifest.read(lake).partitions.items()}
    _strip_layers(lake)
    assert Manifest.read(lake).layered() == {}
    _same_tables(compute_tables(lake, engine=engine), expected)  # type: ignore[arg-type]

    manifest, upgraded = upgrade_lake(lake)
    assert upgraded == ["year=2009/month=12"]
    assert set(manifest.layered()) == set(manifest.partitions)
    assert {k: m["sha256"] for k, m in manifest.partitions.items()} == lines_before
    verify_lake(lake)
    _same_tables(compute_tables(lake, engine=engine), expected)  # type: ignore[arg-type]
    again, upgraded = upgrade_lake(lake)
    assert upgraded == [] and again.write_id == manifest.write_id  # nothing to do: unchanged


def _line(
    invoice: str, when: dt.datetime, customer: int | None, country: str, **more: object
) -> dict[str, object]:
    return {
        "invoice_no": invoice, "stock_code": more.get("code", "22423"), "description": "CAKESTAND",
        "quantity": more.get("quantity", 2), "invoice_date": when,
        "unit_price": more.get("price", 1.25), "customer_id": customer, "country": country,
    }  # fmt: skip


def test_an_invoice_that_spans_customers_countries_and_months(tmp_path: Path, engine: str) -> None:
    # Invoice 500001 has lines of two customers, two countries and two times, across the end of
    # a month; a credit note reverses part of it. Every table from the lake's layers must be
    # the pandas reference's, which reads the lines.
    late, early = dt.datetime(2011, 1, 31, 23, 59), dt.datetime(2011, 2, 1, 0, 1)
    rows = [
        _line("500001", late, 12, "France"),
        _line("500001", late, 12, "France", code="85123A", quantity=5),
        _line("500001", early, 12, "EIRE"),
        _line("500001", early, 13, "EIRE", price=3.0),
        _line("500001", early, None, "EIRE"),
        _line("C500002", dt.datetime(2011, 2, 3, 10), 12, "France", quantity=-5, code="85123A"),
        _line("500003", dt.datetime(2011, 3, 1, 9), 13, "EIRE", quantity=7),
        _line("500003", dt.datetime(2011, 3, 1, 9), 13, "EIRE", quantity=7),  # exact duplicate
        _line("500004", dt.datetime(2011, 3, 2, 9), 14, "United Kingdom", code="POST", price=0.0),
    ]
    lines = pl.DataFrame(rows, schema=POLARS_SCHEMA)
    lake = tmp_path / "lake"
    write_lake([lines], lake, source=["hand-made"])
    assert set(Manifest.read(lake).layered()) == {
        "year=2011/month=01",
        "year=2011/month=02",
        "year=2011/month=03",
    }
    for options in (Options(), Options(preset="notebook"), Options(bins=4)):
        got = compute_tables(lake, options, engine=engine)  # type: ignore[arg-type]
        expected = reference.run_all(lines.to_pandas(), options)
        for name in ANALYSES:
            assert_tables_agree(name, got[name], expected[name], f"{engine}/{name}")
    quality = dict(got["data_quality"].iter_rows())
    assert quality["exact_duplicate_lines"] == 1 and quality["lines"] == 9


def test_a_damaged_layer_is_named_not_read(tmp_path: Path, engine: str) -> None:
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    entry = Manifest.read(lake).layered()["year=2009/month=12"]["invoices"]
    path = lake / "invoices" / "year=2009" / "month=12" / entry["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the checksum can tell
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedError, match="invoices layer: checksum differs"):
        verify_lake(lake)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(DamagedError, match=r"invoices layer has .* bytes.*the lake is damaged"):
        compute_tables(lake, engine=engine)  # type: ignore[arg-type]


def test_an_invoice_too_large_for_64_bits_is_stored_in_parts(tmp_path: Path, engine: str) -> None:
    # 10,000 lines of a billion pounds each (the most a line may be): the invoice's exact sum in
    # millionths of a pound does not fit 64 bits, so the layer stores it as two rows, which add
    # up exactly (Parquet has no 128-bit integer).
    when = dt.datetime(2011, 5, 1, 12)
    big = _line("600000", when, 1, "EIRE", quantity=100, price=10_000_000.0)
    lines = pl.DataFrame([big] * 10_000 + [_line("600001", when, 2, "EIRE")], schema=POLARS_SCHEMA)
    lake = tmp_path / "lake"
    write_lake([lines], lake, source=["huge"])
    stored = scan_invoices(lake).collect()
    assert stored.filter(pl.col("invoice_no") == "600000")["lines"].sort().to_list() == [
        1_000,
        9_000,
    ]
    tables = compute_tables(lake, engine=engine)  # type: ignore[arg-type]
    assert tables["rfm"].sort("customer_id")["monetary"].to_list() == [1e13, 2.5]
    assert tables["clv_summary"].height == 2


def test_upgrade_from_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lgs_fast.cli import cli

    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    _strip_layers(lake)
    said = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert said.exit_code == 0
    assert "1 of the partitions without the current derived layers" in said.output
    assert "the manifest has no checksum of its own" in said.output
    said = CliRunner().invoke(cli, ["upgrade", "--lake", str(lake)])
    assert said.exit_code == 0 and "derived layers stored for 1 month\n" in said.output
    said = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert said.exit_code == 0 and "checksum of its own" not in said.output
    said = CliRunner().invoke(cli, ["upgrade", "--lake", str(lake)])
    assert (
        said.exit_code == 0 and "already has the current derived layers; unchanged" in said.output
    )
    said = CliRunner().invoke(cli, ["upgrade", "--lake", str(tmp_path / "none")])
    assert said.exit_code == 3 and "no lake here" in said.stderr
