"""The generator: deterministic, exact in size, and statistically like the real data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lgs_fast.cli import cli
from lgs_fast.errors import InputError
from lgs_fast.ingest.generate import generate, generate_lines
from lgs_fast.lake import Manifest, scan, verify_lake
from lgs_fast.schema import POLARS_SCHEMA
from tests.conftest import EMBEDDED


def profile(lines: pl.DataFrame) -> dict[str, float]:
    """The traits the generator promises, each a share or a typical size."""
    cancel = pl.col("invoice_no").str.starts_with("C")
    invoices = lines.filter(~cancel).group_by("invoice_no").agg(n=pl.len())
    per_customer = (
        lines.filter(~cancel, pl.col("customer_id").is_not_null())
        .group_by("customer_id")
        .agg(k=pl.col("invoice_no").n_unique())
        .sort("k", descending=True)
    )
    top_decile = (
        per_customer.head(max(1, per_customer.height // 10))["k"].sum() / per_customer["k"].sum()
    )
    month = lines["invoice_date"].dt.month()
    non_product = r"^(?:POST|DOT|M|C2|D|S|BANK CHARGES|AMAZONFEE)$"
    return {
        "cancellation_lines": float(lines.select(cancel.mean()).item()),
        "no_customer": float(lines["customer_id"].is_null().mean()),  # type: ignore[arg-type]
        "uk": float((lines["country"] == "United Kingdom").mean()),  # type: ignore[arg-type]
        "november": float((month == 11).mean()),  # type: ignore[arg-type]
        "median_basket": float(invoices["n"].median()),  # type: ignore[arg-type]
        "mean_basket": float(invoices["n"].mean()),  # type: ignore[arg-type]
        "top_decile_invoices": float(top_decile),
        "lines_per_customer": lines.height / per_customer.height,
        "median_price": float(lines["unit_price"].median()),  # type: ignore[arg-type]
        "non_product": float(lines["stock_code"].str.contains(non_product).mean()),  # type: ignore[arg-type]
    }


# How far the generated data may stray from the real, per trait (absolute, or relative *).
TOLERANCE = {
    "cancellation_lines": 0.006, "no_customer": 0.04, "uk": 0.03, "november": 0.02,
    "median_basket": 3.0, "mean_basket": 3.0, "top_decile_invoices": 0.06,
    "lines_per_customer": 15.0, "median_price": 0.3, "non_product": 0.003,
}  # fmt: skip


def test_generated_lines_look_real() -> None:
    real = profile(pl.read_parquet(EMBEDDED))
    fake = profile(pl.concat(list(generate_lines(541_909, seed=7))))
    for trait, tolerance in TOLERANCE.items():
        assert abs(fake[trait] - real[trait]) <= tolerance, (trait, real[trait], fake[trait])
    assert fake["top_decile_invoices"] > 0.3  # heavy tail: a tenth of customers, a third of orders


def test_exact_size_and_schema() -> None:
    chunks = list(generate_lines(2_345_678, seed=1))
    assert sum(c.height for c in chunks) == 2_345_678
    assert len(chunks) >= 3  # streamed in chunks, never built whole
    assert all(c.schema == POLARS_SCHEMA for c in chunks)
    invoices = pl.concat(chunks)["invoice_no"]
    assert invoices.str.starts_with("C").any() and invoices.n_unique() > 100_000
    dates = pl.concat(chunks).group_by("invoice_no").agg(pl.col("invoice_date").n_unique())
    assert dates["invoice_date"].max() == 1  # an invoice or credit note has one date


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(150_000, a, seed=3)
    generate(150_000, b, seed=3)
    generate(150_000, c, seed=4)

    def content(lake: Path) -> dict[str, tuple[int, str]]:
        return {k: (p["rows"], p["sha256"]) for k, p in verify_lake(lake).partitions.items()}

    assert content(a) == content(b)
    assert content(a) != content(c)


def test_cli_generate(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["generate", "--rows", "50000", "--seed", "2", "--lake", str(tmp_path / "lake")]
    )
    assert result.exit_code == 0, result.output
    assert "50,000 lines" in result.output
    assert scan(tmp_path / "lake").select(pl.len()).collect().item() == 50_000
    bad = CliRunner().invoke(cli, ["generate", "--rows", "0", "--lake", str(tmp_path / "lake")])
    assert bad.exit_code == 2 and "Invalid value for '--rows'" in bad.stderr


def test_rows_must_be_positive() -> None:
    with pytest.raises(InputError):
        next(generate_lines(0))


def test_wholesale_preset_reorders_from_ranges_over_two_years(tmp_path: Path) -> None:
    """--customers: that many customers at most, two years of dates, and most of a customer's
    lines from a range of their own, so they hold far fewer products than the standard
    generator's customers of as many lines."""
    result = CliRunner().invoke(
        cli,
        ["generate", "--rows", "300000", "--customers", "200", "--lake", str(tmp_path / "w")],
    )
    assert result.exit_code == 0, result.output
    assert "300,000 lines (seed 0, 200 wholesale customers), synthetic" in result.output
    lines = scan(tmp_path / "w").collect()
    assert lines.height == 300_000
    customers = lines["customer_id"].drop_nulls().n_unique()
    assert 190 <= customers <= 200
    span = lines["invoice_date"].max() - lines["invoice_date"].min()  # type: ignore[operator]
    assert span.days > 700
    bought = lines.filter(pl.col("customer_id").is_not_null(), pl.col("quantity") > 0)
    per_customer = bought.group_by("customer_id").agg(
        lines=pl.len(), products=pl.col("stock_code").n_unique()
    )
    busy = per_customer.filter(pl.col("lines") >= 1_000)
    # A range of 200 plus a fifth of the lines from anywhere: well under one product a line.
    assert busy.height > 30  # 43 for seed 0
    assert (busy["products"] < 200 + 0.3 * busy["lines"]).all()
    standard = pl.concat(list(generate_lines(300_000, seed=0)))
    assert standard["customer_id"].drop_nulls().n_unique() > 5 * customers
    assert Manifest.read(tmp_path / "w").source == [
        "generated: 300000 lines, seed 0, 200 wholesale customers"
    ]


def test_wholesale_preset_is_deterministic_and_checked() -> None:
    a = pl.concat(list(generate_lines(20_000, seed=5, customers=50)))
    b = pl.concat(list(generate_lines(20_000, seed=5, customers=50)))
    assert a.equals(b)
    with pytest.raises(InputError, match="--customers must be between 1 and 1,000,000, not 0"):
        next(generate_lines(10, customers=0))
    with pytest.raises(InputError, match="--years must be between 1 and 10, not 11"):
        next(generate_lines(10, customers=5, years=11))


def test_generate_never_silently_replaces_real_data(tmp_path: Path) -> None:
    """A lake of imported lines is written over only with --replace (it once was silently,
    leaving a user analysing synthetic lines as theirs); a generated lake is replaced freely."""
    from lgs_fast.ingest.sources import import_files

    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    before = Manifest.read(lake).write_id
    refused = CliRunner().invoke(cli, ["generate", "--rows", "1000", "--lake", str(lake)])
    assert refused.exit_code == 2
    assert refused.stderr.strip().endswith(
        "holds real data (541,909 lines from online_retail.parquet): generate writes synthetic "
        "lines over it only with --replace"
    )
    assert Manifest.read(lake).write_id == before and verify_lake(lake).rows == 541_909
    replaced = CliRunner().invoke(
        cli, ["generate", "--rows", "1000", "--lake", str(lake), "--replace"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert "1,000 lines (seed 0), synthetic" in replaced.output
    again = CliRunner().invoke(cli, ["generate", "--rows", "2000", "--lake", str(lake)])
    assert again.exit_code == 0 and Manifest.read(lake).rows == 2_000


def test_a_report_of_generated_lines_says_they_are_synthetic(tmp_path: Path) -> None:
    from lgs_fast.analyze import analyze

    lake = tmp_path / "lake"
    generate(20_000, lake, seed=4)
    page = analyze(lake, tmp_path / "out").report.read_text()  # type: ignore[union-attr]
    assert (
        "SYNTHETIC lines made by lgs-fast generate (generated: 20000 lines, seed 4), "
        "not a shop&#x27;s sales" in page
    )
