"""The lake: atomic replace, idempotent re-import, bad input and killed writers leave it intact."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lgs_fast.cli import cli
from lgs_fast.errors import DamagedError, LakeError
from lgs_fast.ingest.sources import import_files
from lgs_fast.lake import MANIFEST, scan, verify_lake
from lgs_fast.lake.layers import STORED_SCHEMAS
from tests.conftest import EMBEDDED, RETAIL_II_CSV, data_file

GOOD_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
GOOD_LINE = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A small real lake: December 2009."""
    root = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], root)
    return root


def _snapshot(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


BAD_INPUTS = {
    "unknown_header.csv": ("a,b,c\n1,2,3\n", "unknown header"),
    "missing_column.csv": (
        GOOD_HEADER.replace(",Country", "") + GOOD_LINE.rsplit(",", 1)[0] + "\n",
        "missing column 'Country'",
    ),
    "bad_date.csv": (
        GOOD_HEADER + GOOD_LINE + GOOD_LINE.replace("2010-12-01", "2010-13-45"),
        "row 2: column invoice_date",
    ),
    "bad_quantity.csv": (GOOD_HEADER + GOOD_LINE.replace(",6,", ",six,"), "row 1: column quantity"),
    "bad_price.csv": (
        GOOD_HEADER + GOOD_LINE + GOOD_LINE.replace("2.55", "2.5.5"),
        "row 2: column unit_price",
    ),
    "extra_field.csv": (
        GOOD_HEADER + GOOD_LINE + GOOD_LINE + GOOD_LINE.replace("2.55", "2,55"),
        "row 3: expected 8 fields, found 9",
    ),
    "bad_customer.csv": (
        GOOD_HEADER + GOOD_LINE.replace("17850", "17850.5"),
        "row 1: column customer_id",
    ),
    "missing_invoice.csv": (
        GOOD_HEADER + GOOD_LINE.replace("536365", ""),
        "row 1: column invoice_no is empty",
    ),
    "empty.csv": ("", "empty file"),
    "header_only.csv": ("\n\n", "empty file"),
    "notes.txt": ("hello\n", "unknown file type"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_one_line_error_lake_untouched(lake: Path, tmp_path: Path, name: str) -> None:
    content, expected = BAD_INPUTS[name]
    bad = tmp_path / name
    bad.write_text(content)
    before = _snapshot(lake)
    result = CliRunner().invoke(
        cli, ["import", str(data_file(RETAIL_II_CSV)), str(bad), "--lake", str(lake)]
    )
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(bad) in message and expected in message
    assert _snapshot(lake) == before


def test_directory_and_missing_file(lake: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for arg, expected in ((tmp_path, "is a directory"), (tmp_path / "nope.csv", "no such file")):
        result = runner.invoke(cli, ["import", str(arg), "--lake", str(lake)])
        assert result.exit_code == 2
        assert expected in result.stderr


def test_reimport_changes_nothing(lake: Path) -> None:
    before = _snapshot(lake)
    result = import_files([data_file(RETAIL_II_CSV)], lake)
    assert not result.changed
    assert _snapshot(lake) == before


def test_import_replaces_lake(lake: Path) -> None:
    result = import_files([EMBEDDED], lake)
    assert result.changed and result.rows == 541_909
    manifest = verify_lake(lake)
    assert "year=2009/month=12" not in manifest.partitions
    assert manifest.source == ["online_retail.parquet"]


def test_manifest_contents(lake: Path) -> None:
    raw = json.loads((lake / MANIFEST).read_text())
    assert raw["schema_version"] == 1
    assert raw["rows"] == 45_228
    entry = raw["partitions"]["year=2009/month=12"]
    assert list(raw["partitions"]) == ["year=2009/month=12"]
    part = lake / "invoice_lines" / "year=2009" / "month=12" / entry["file"]
    layers = entry.pop("layers")
    assert layers["version"] == 2  # 2: money as exact micro columns
    assert layers["quality"]["lines"] == 45_228
    for layer in ("invoices", "products"):
        path = lake / layer / "year=2009" / "month=12" / layers[layer]["file"]
        assert layers[layer]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert pl.read_parquet_schema(path) == dict(STORED_SCHEMAS[layer])
    assert entry == {
        "file": f"part-{raw['write_id']}.parquet",
        "rows": 45_228,
        "bytes": part.stat().st_size,
        "sha256": hashlib.sha256(part.read_bytes()).hexdigest(),
        "last": "2009-12-23T16:58:00",
    }
    assert raw["watermark"] == "2009-12-23T16:58:00"
    assert raw["source"] == ["online_retail_ii_2009-12.csv.gz"]


def test_tampered_lake_is_detected(lake: Path) -> None:
    part = next((lake / "invoice_lines").rglob("*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed: only the checksum sees it
    part.write_bytes(bytes(data))
    with pytest.raises(DamagedError, match="year=2009/month=12: checksum differs"):
        verify_lake(lake)
    result = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert result.exit_code == 6 and "checksum differs" in result.stderr


def test_scan_without_lake(tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="no lake here"):
        scan(tmp_path / "nothing")


def test_scan_date_range_prunes(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    import_files([EMBEDDED], root)
    import datetime as dt

    lf = scan(root, start=dt.date(2011, 3, 1), end=dt.date(2011, 5, 1))
    counts = lf.group_by(pl.col("invoice_date").dt.month()).len().sort("invoice_date").collect()
    assert counts.rows() == [(3, 36_748), (4, 29_916)]


def test_killed_import_leaves_old_lake(lake: Path, tmp_path: Path) -> None:
    """SIGKILL an import mid-write: the old lake is still there, complete and verified."""
    big = tmp_path / "big.csv"
    real = pl.read_parquet(EMBEDDED)
    pl.concat([real] * 4).with_columns(
        pl.col("invoice_date").dt.strftime("%Y-%m-%d %H:%M:%S")
    ).write_csv(big)
    manifest = (lake / MANIFEST).read_bytes()
    listed = set((lake / "invoice_lines").rglob("*.parquet"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lgs_fast", "import", str(big), "--lake", str(lake)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    staged: set[Path] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        staged = set((lake / "invoice_lines").rglob("*.parquet")) - listed
        if staged:
            break
        time.sleep(0.005)
    assert staged, "the import finished before a partition was staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (lake / MANIFEST).read_bytes() == manifest
    assert verify_lake(lake).rows == 45_228
    assert scan(lake).select(pl.len()).collect().item() == 45_228
    # The dead writer's files, named by no manifest, are removed by the next write.
    import_files([EMBEDDED], lake)
    left = set((lake / "invoice_lines").rglob("*.parquet"))
    assert not (left & staged)


def test_unwritable_lake_parent(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/lake")  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "lake"
    result = CliRunner().invoke(cli, ["import", str(EMBEDDED), "--lake", str(target)])
    assert result.exit_code != 0
    assert result.stderr.startswith("lgs-fast: error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_import_prints_quality(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["import", str(data_file(RETAIL_II_CSV)), "--lake", str(tmp_path / "l"), "--dedupe"]
    )
    assert result.exit_code == 0, result.output
    assert "45,228 lines" not in result.output  # deduplicated
    assert "44,722 lines" in result.output
    assert "dropped 506 exact duplicate lines" in result.output
    assert "no_customer_id" in result.output


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert command.help and len(command.help) > 40, name


def test_a_notebooks_frames_outlive_two_writes_while_its_process_lives(tmp_path: Path) -> None:
    # A LazyFrame collected after two later writes raised Polars' bare FileNotFoundError: its
    # version's files had been deleted. The frames' process pins them until it ends.
    import lgs_fast as lgs

    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    lines, layers = lgs.scan(lake), lgs.scan_layers(lake)
    first = lines.select(pl.len()).collect().item()
    lines_file = next(iter(lgs.snapshot(lake).files.values()))
    half = tmp_path / "half.parquet"
    pl.read_parquet(EMBEDDED, n_rows=1000).write_parquet(half)
    import_files([half], lake)
    import_files([EMBEDDED], lake)  # two writes: the first version is neither current nor previous
    assert lines_file.exists()
    assert lines.select(pl.len()).collect().item() == first == 45_228
    assert layers.invoices.select(pl.len()).collect().item() > 0
    # Once the process that pinned a version has ended, the next write deletes its files.
    code = (
        "import lgs_fast as lgs, sys; lgs.scan(sys.argv[1]); "
        "print(len(list(__import__('pathlib').Path(sys.argv[1], '.lgs_fast.pins').glob('*.json'))))"
    )
    import_files([data_file(RETAIL_II_CSV)], lake)
    done = subprocess.run([sys.executable, "-c", code, str(lake)], capture_output=True, text=True)
    assert done.returncode == 0 and int(done.stdout) >= 2, done.stderr  # this process's and its
    version = lgs.snapshot(lake).files
    import_files([half], lake)
    import_files([EMBEDDED], lake)
    pins = {p.name.split("-")[0] for p in (lake / ".lgs_fast.pins").glob("*.json")}
    assert pins == {str(os.getpid())}  # the ended process's pin is gone
    assert not any(p.exists() for p in version.values())  # and so are its version's files
    verify_lake(lake)
