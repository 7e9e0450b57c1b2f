"""What lgs_fast stores and shows is right, or it says so: one test per finding of the trust
review (ownership, time zones, changes in old months, checked reads, truthful messages, secrets).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal
from psycopg import sql

from lgs_fast.analyze import compute_tables
from lgs_fast.cli import cli
from lgs_fast.errors import DamagedError
from lgs_fast.ingest.postgres import export, load_pg
from lgs_fast.ingest.sources import import_files
from lgs_fast.lake import MANIFEST, Manifest, scan, verify_lake
from lgs_fast.outputs.charts import CHARTS
from lgs_fast.outputs.workbook import WORKBOOK_NAME
from lgs_fast.schema import COLUMNS
from tests.conftest import EMBEDDED, RETAIL_II_CSV, data_file


def _lines_csv(path: Path, *rows: str) -> Path:
    """A CSV of canonical lines: the header, then `rows`, one line each."""
    path.write_text("".join(f"{line}\n" for line in (",".join(COLUMNS), *rows)))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _one_line(result: object, code: int) -> str:
    assert result.exit_code == code, result.output  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    errors = [line for line in stderr.splitlines() if line.startswith("lgs-fast: error: ")]
    # Progress lines may come before it; the error itself is one line, never a traceback.
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith(errors[0]), stderr
    return errors[0]


# 1. Never delete or move what is not ours ------------------------------------------------


@pytest.mark.parametrize("command", ["import", "export"])
def test_foreign_directory_is_left_alone(tmp_path: Path, command: str, pg_dsn: str) -> None:
    foreign = tmp_path / "thesis"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("my notes")
    (foreign / "sub" / "thesis.tex").write_text("\\begin{document}")
    before = _tree(foreign)
    args = [str(EMBEDDED)] if command == "import" else ["--dsn", pg_dsn]
    result = CliRunner().invoke(cli, [command, *args, "--lake", str(foreign)])
    message = _one_line(result, 3)
    assert "not a lake" in message and "notes.txt" in message
    assert _tree(foreign) == before


def test_file_given_as_lake_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "report.docx"
    target.write_bytes(b"precious")
    result = CliRunner().invoke(cli, ["import", str(EMBEDDED), "--lake", str(target)])
    assert "is a file" in _one_line(result, 3)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.docx"]


def test_unreadable_manifest_is_not_written_over(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    (lake / MANIFEST).write_text("{ not json")
    before = _tree(lake)
    result = CliRunner().invoke(cli, ["import", str(EMBEDDED), "--lake", str(lake)])
    assert "will not write over a lake it cannot read" in _one_line(result, 6)
    assert _tree(lake) == before


# 2. Export is exact whatever the server's TimeZone ----------------------------------------


@pytest.fixture
def zoned_table(pg_dsn: str, pg_table: str) -> Iterator[str]:
    """A timestamptz table with lines around month ends in UK time (BST and GMT)."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, description text, "
                "quantity int, invoice_date timestamptz, unit_price float8, customer_id bigint, "
                "country text)"
            ).format(sql.Identifier(pg_table))
        )
        rows = [
            ("1", "2011-06-30 23:30:00+01"),  # June in UK time, July in Berlin
            ("2", "2011-07-01 00:30:00+01"),  # July in UK time, June in UTC
            ("3", "2011-07-15 12:00:00+01"),
            ("4", "2011-12-01 00:10:00+00"),  # December in UK time (GMT), November in UTC-5
            ("5", "2011-12-31 23:50:00+00"),  # December in UK, January in Berlin
        ]
        for invoice, when in rows:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES (%s, 'A', 'MUG', 1, %s::timestamptz, 1.5, 7, 'UK')"
                ).format(sql.Identifier(pg_table)),
                (invoice, when),
            )
    yield pg_table


def _with_zone(dsn: str, zone: str) -> str:
    return f"{dsn} options='-c TimeZone={zone}'"


def test_export_same_lake_in_every_server_zone(
    pg_dsn: str, zoned_table: str, tmp_path: Path
) -> None:
    lakes = {}
    for zone in ("Etc/UTC", "Europe/London", "Europe/Berlin", "America/New_York"):
        lake = tmp_path / zone.replace("/", "_")
        export(_with_zone(pg_dsn, zone), lake, table=zoned_table)
        # Then a second, incremental export after a change: still nothing lost.
        with psycopg.connect(pg_dsn) as conn:
            conn.execute(
                sql.SQL("UPDATE {} SET quantity = quantity + 1 WHERE invoice_no = '3'").format(
                    sql.Identifier(zoned_table)
                )
            )
        second = export(_with_zone(pg_dsn, zone), lake, table=zoned_table)
        assert second.months == ["2011-07"] and second.rows == 5
        lakes[zone] = scan(lake).sort("invoice_no").collect().drop("quantity")
        assert {k: v["rows"] for k, v in verify_lake(lake).partitions.items()} == {
            "year=2011/month=06": 1, "year=2011/month=07": 2, "year=2011/month=12": 2,
        }  # fmt: skip
    first = lakes["Etc/UTC"]
    assert first["invoice_date"].dt.strftime("%Y-%m-%d %H:%M").to_list() == [
        "2011-06-30 23:30", "2011-07-01 00:30", "2011-07-15 12:00",
        "2011-12-01 00:10", "2011-12-31 23:50",
    ]  # fmt: skip
    for frame in lakes.values():
        assert frame.equals(first)


# 3. Incremental exports notice every change, in any month ----------------------------------


def test_changes_in_an_old_month_reach_the_lake(
    pg_dsn: str, pg_retail: str, pg_table: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                sql.Identifier(pg_table), sql.Identifier(pg_retail)
            )
        )
    lake = tmp_path / "lake"
    export(pg_dsn, lake, table=pg_table)
    layers_before = Manifest.read(lake).layered()
    ident = sql.Identifier(pg_table)
    with psycopg.connect(pg_dsn) as conn:  # watermark in 2011-12; changes in 2011-03
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('999999', 'NEW', 'NEW', 1, '2011-03-15 10:00', 1.0, 1, 'UK')"
            ).format(ident)
        )
        conn.execute(
            sql.SQL(
                "UPDATE {} SET quantity = quantity + 1 WHERE invoice_no = ("
                "SELECT min(invoice_no) FROM {} WHERE invoice_date >= '2011-03-01' "
                "AND invoice_date < '2011-04-01')"
            ).format(ident, ident)
        )
        deleted = conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE invoice_date >= '2011-03-20' AND invoice_date < '2011-03-21'"
            ).format(ident)
        ).rowcount
    result = export(pg_dsn, lake, table=pg_table)
    assert result.months == ["2011-03"] and result.changed
    assert result.rows == 541_909 + 1 - deleted
    full = tmp_path / "full"
    export(pg_dsn, full, table=pg_table, full=True)
    key = list(COLUMNS)
    assert (
        scan(lake)
        .sort(key, nulls_last=True)
        .collect()
        .equals(scan(full).sort(key, nulls_last=True).collect())
    )
    # Only the rewritten month's layers were built again; the others are the same files.
    layers_after = Manifest.read(lake).layered()
    assert {k for k in layers_after if layers_after[k] != layers_before[k]} == {
        "year=2011/month=03"
    }
    quality = layers_after["year=2011/month=03"]["quality"]
    assert quality["lines"] == layers_before["year=2011/month=03"]["quality"]["lines"] + 1 - deleted
    # Money to 1e-9 relative: the months' rows come in another order, and float sums with them.
    assert_frame_equal(
        compute_tables(lake)["overview"], compute_tables(full)["overview"], rel_tol=1e-9
    )


def test_changes_equal_to_the_server_but_not_in_the_lake(
    pg_dsn: str, pg_table: str, tmp_path: Path
) -> None:
    """-0 for 0, and a case change under a case-insensitive collation: equal for the server's
    operators, yet a full export would carry them, so an incremental one must too."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE COLLATION IF NOT EXISTS lgs_test_ci "
            "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (invoice_no text, stock_code text, "
                "description text COLLATE lgs_test_ci, quantity int, invoice_date timestamp, "
                "unit_price float8, customer_id bigint, country text COLLATE lgs_test_ci)"
            ).format(sql.Identifier(pg_table))
        )
    load_pg([data_file(RETAIL_II_CSV)], pg_dsn, table=pg_table, append=True)
    lake = tmp_path / "lake"
    export(pg_dsn, lake, table=pg_table)
    ident = sql.Identifier(pg_table)
    for change in (
        "UPDATE {} SET unit_price = '-0' WHERE unit_price = 0",
        "UPDATE {} SET description = lower(description), country = upper(country)",
    ):
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute(sql.SQL(change).format(ident)).rowcount > 0
        result = export(pg_dsn, lake, table=pg_table)
        assert result.months == ["2009-12"] and result.changed, change
        full = tmp_path / f"full{len(change)}"
        export(pg_dsn, full, table=pg_table, full=True)
        content = {k: v["sha256"] for k, v in verify_lake(lake).partitions.items()}
        assert content == {k: v["sha256"] for k, v in verify_lake(full).partitions.items()}


def test_partition_replaced_by_hand_is_exported_again(
    pg_dsn: str, pg_retail: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    export(pg_dsn, lake, table=pg_retail)
    files = Manifest.read(lake).files(lake)
    # Same size, other content: only the checksum can tell.
    shutil.copyfile(files["year=2011/month=03"], tmp_path / "march")
    data = bytearray(files["year=2011/month=03"].read_bytes())
    data[len(data) // 3] ^= 0x01
    files["year=2011/month=03"].write_bytes(bytes(data))
    with pytest.raises(DamagedError):
        verify_lake(lake)
    result = export(pg_dsn, lake, table=pg_retail)
    assert result.months == ["2011-03"]
    assert verify_lake(lake).rows == 541_909


def test_future_dated_line_then_its_deletion(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    """A line dated years ahead used to move the watermark past every later line, so each later
    export read an empty month and failed; and a month emptied by DELETE must leave the lake."""
    small = _lines_csv(
        tmp_path / "small.csv",
        "1,A,x,1,2011-01-05 10:00:00,1.5,7,UK", "2,A,x,3,2030-02-10 09:00:00,1.5,8,UK",
    )  # fmt: skip
    load_pg([small], pg_dsn, table=pg_table)
    lake = tmp_path / "lake"
    assert export(pg_dsn, lake, table=pg_table).watermark == "2030-02-10T09:00:00"
    again = export(pg_dsn, lake, table=pg_table)
    assert not again.changed and again.months == []
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE invoice_no = '2'").format(sql.Identifier(pg_table))
        )
    gone = export(pg_dsn, lake, table=pg_table)
    assert gone.changed and gone.rows == 1 and gone.watermark == "2011-01-05T10:00:00"
    assert list(verify_lake(lake).partitions) == ["year=2011/month=01"]


# 4. Every read checks what it reads against the manifest ----------------------------------


def _damage(lake: Path, how: str, tmp_path: Path) -> str:
    files = Manifest.read(lake).files(lake)
    march = files["year=2011/month=03"]
    if how == "deleted":
        march.unlink()
    elif how == "truncated":
        march.write_bytes(march.read_bytes()[:1000])
    elif how == "garbage":
        march.write_bytes(b"\x00garbage" * 1000)
    elif how == "swapped":  # another valid partition file in its place
        shutil.copyfile(files["year=2011/month=04"], march)
    elif how == "flipped":  # same size, a byte changed inside a data page
        data = bytearray(march.read_bytes())
        data[len(data) // 2] ^= 0xFF
        march.write_bytes(bytes(data))
    return "year=2011/month=03"


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage", "swapped"])
def test_damaged_partition_is_named_not_analyzed(tmp_path: Path, how: str, engine: str) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    key = _damage(lake, how, tmp_path)
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(lake), "--out", str(tmp_path / "out"), "--engine", engine]
    )
    message = _one_line(result, 6)
    assert key in message and "damaged" in message or "not readable" in message
    assert not (tmp_path / "out" / "tables").exists()


def test_damage_inside_a_page_is_named_by_checksum(tmp_path: Path, engine: str) -> None:
    """A flipped byte the footer check cannot see (the engines read past some such bytes and
    answered other sums, exit 0): every read checks the content, not only verify."""
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    _damage(lake, "flipped", tmp_path)
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(lake), "--out", str(tmp_path / "out"), "--engine", engine, "--no-report"]
    )  # fmt: skip
    assert "year=2011/month=03: checksum differs" in _one_line(result, 6)
    assert not (tmp_path / "out").exists()
    verify = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert "year=2011/month=03: checksum differs" in _one_line(verify, 6)


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("layer", ["invoices", "products"])
def test_damage_inside_a_layer_is_caught_on_read(tmp_path: Path, layer: str) -> None:
    # A byte flipped in the middle of the invoices layer was read without notice: placed sales
    # £824,474.63 instead of £825,685.76, exit 0.
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    entry = Manifest.read(lake).partitions["year=2011/month=11"]["layers"][layer]
    target = lake / layer / "year=2011" / "month=11" / entry["file"]
    _flip_middle_byte(target)
    with pytest.raises(DamagedError, match=f"month=11's {layer} layer: checksum differs"):
        compute_tables(lake)
    result = CliRunner().invoke(cli, ["analyze", "--lake", str(lake), "--out", str(tmp_path / "o")])
    assert str(target) in _one_line(result, 6)


def test_upgrade_does_not_build_layers_from_damaged_lines(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    raw = json.loads((lake / MANIFEST).read_text())
    for meta in raw["partitions"].values():  # as written before the layers (and checksums)
        del meta["layers"]
    del raw["checksum"]
    (lake / MANIFEST).write_text(json.dumps(raw))
    _flip_middle_byte(Manifest.read(lake).files(lake)["year=2011/month=03"])
    before = (lake / MANIFEST).read_bytes()
    result = CliRunner().invoke(cli, ["upgrade", "--lake", str(lake)])
    assert "year=2011/month=03: checksum differs" in _one_line(result, 6)
    assert (lake / MANIFEST).read_bytes() == before


def _edit_manifest(lake: Path, edit: object, *, keep_checksum: bool) -> None:
    """Change the manifest with `edit(raw)`, then either leave its checksum as it was (a hand
    edit) or write the checksum of the edited content (a careful forger, or a writer's bug)."""
    from lgs_fast.lake import manifest_checksum

    raw = json.loads((lake / MANIFEST).read_text())
    edit(raw)  # type: ignore[operator]
    if not keep_checksum:
        raw["checksum"] = manifest_checksum({k: v for k, v in raw.items() if k != "checksum"})
    (lake / MANIFEST).write_text(json.dumps(raw, indent=2))


def _quality(raw: dict) -> None:
    raw["partitions"]["year=2011/month=11"]["layers"]["quality"]["no_customer_id"] += 1000


def _last(raw: dict) -> None:
    raw["partitions"]["year=2011/month=03"]["last"] = "2011-03-31T23:59:00"


def _watermark(raw: dict) -> None:
    raw["watermark"] = "2011-12-31T00:00:00"


def _rows(raw: dict) -> None:
    raw["rows"] = 1_000_000


MANIFEST_EDITS = {"quality": _quality, "last": _last, "watermark": _watermark, "rows": _rows}


@pytest.mark.parametrize("edit", sorted(MANIFEST_EDITS))
def test_hand_edited_manifest_is_refused(tmp_path: Path, edit: str) -> None:
    # Edited counts, last, watermark or row totals passed verify ("every checksum matches") and
    # data_quality showed the edited numbers.
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    _edit_manifest(lake, MANIFEST_EDITS[edit], keep_checksum=True)
    for command in (["analyze", "--out", str(tmp_path / "out")], ["verify"]):
        result = CliRunner().invoke(cli, [*command, "--lake", str(lake)])
        assert "does not match its checksum (edited or damaged)" in _one_line(result, 6)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (
            "quality",
            "quality counts differ from the lines (no_customer_id 20,113 recorded, 19,113 counted)",
        ),
        ("last", "partition year=2011/month=03: last invoice recorded as 2011-03-31T23:59:00"),
        ("watermark", "watermark 2011-12-31T00:00:00 but the lines' last invoice is at 2011-12-09"),
    ],
)
def test_verify_recomputes_what_the_manifest_derives(tmp_path: Path, edit: str, said: str) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    _edit_manifest(lake, MANIFEST_EDITS[edit], keep_checksum=False)
    result = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert said in _one_line(result, 6)


@pytest.mark.parametrize(
    "manifest", ["[]", '{"schema_version": 1}', "{ not json", "\x00\x01binary"]
)
def test_bad_manifest_is_one_line(tmp_path: Path, manifest: str) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    (lake / MANIFEST).write_text(manifest)
    for command in (["analyze", "--out", str(tmp_path / "out")], ["verify"]):
        result = CliRunner().invoke(cli, [*command, "--lake", str(lake)])
        assert "unreadable manifest" in _one_line(result, 6)


def test_manifest_naming_files_outside_the_lake_is_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    import_files([EMBEDDED], lake)
    (tmp_path / "x").write_bytes(EMBEDDED.read_bytes())
    text = (lake / MANIFEST).read_text()
    name = Manifest.read(lake).partitions["year=2011/month=03"]["file"]
    (lake / MANIFEST).write_text(text.replace(name, "../../../../x"))
    result = CliRunner().invoke(cli, ["analyze", "--lake", str(lake), "--out", str(tmp_path / "o")])
    assert "bad file name" in _one_line(result, 6)
    renamed = text.replace('"year=2011/month=03"', '"../../x"')
    (lake / MANIFEST).write_text(renamed)
    result = CliRunner().invoke(cli, ["verify", "--lake", str(lake)])
    assert "bad partition name" in _one_line(result, 6)


# 6. Messages tell the truth about what is on disk -----------------------------------------


def test_server_lost_at_the_end_of_an_export(pg_dsn: str, pg_retail: str, tmp_path: Path) -> None:
    """The connection is cut the moment the lake changes, or just before: either the export
    succeeded and says so, or it failed and the lake is the previous one."""
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    before = Manifest.read(lake).write_id
    stop = threading.Event()

    def cut_when_written() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            while not stop.is_set():
                if Manifest.read(lake).write_id != before:
                    # This export's backends only, not another xdist worker's.
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'lgs_fast' AND query LIKE %s",
                        (f"%{pg_retail}%",),
                    )
                    return
                time.sleep(0.001)

    cutter = threading.Thread(target=cut_when_written)
    cutter.start()
    try:
        result = CliRunner().invoke(
            cli, ["export", "--dsn", pg_dsn, "--table", pg_retail, "--lake", str(lake)]
        )
    finally:
        stop.set()
        cutter.join()
    changed = Manifest.read(lake).write_id != before
    assert result.exit_code == (0 if changed else 4), result.output
    verify_lake(lake)


def test_out_with_leftovers_of_older_versions_still_works(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    out = tmp_path / "out"
    for leftover in (".build-12345", ".tables.old-777", "tables"):
        (out / leftover).mkdir(parents=True)
        (out / leftover / "x.csv").write_text("old")
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".lgs_fast_out", "tables"]


def test_out_that_is_not_ours_is_left_alone(tmp_path: Path, retail_ii_lake: Path) -> None:
    out = tmp_path / "documents"
    out.mkdir()
    (out / "budget.xlsx").write_bytes(b"mine")
    result = CliRunner().invoke(cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out)])
    assert "not an lgs_fast output directory" in _one_line(result, 3)
    assert _tree(out) == {"budget.xlsx": b"mine"}


# 7. Header-only input -------------------------------------------------------------------


def test_header_only_input_is_refused_unless_allowed(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    before = _tree(lake)
    empty = tmp_path / "empty.csv"
    empty.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    )
    result = CliRunner().invoke(cli, ["import", str(empty), "--lake", str(lake)])
    assert "no lines to write" in _one_line(result, 2)
    assert _tree(lake) == before
    result = CliRunner().invoke(cli, ["import", str(empty), "--lake", str(lake), "--allow-empty"])
    assert result.exit_code == 0, result.output
    assert verify_lake(lake).rows == 0
    assert scan(lake).collect().height == 0


def test_export_of_an_empty_table(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    empty = _lines_csv(tmp_path / "empty.csv")
    load_pg([empty], pg_dsn, table=pg_table)
    lake = tmp_path / "lake"
    result = CliRunner().invoke(
        cli, ["export", "--dsn", pg_dsn, "--table", pg_table, "--lake", str(lake)]
    )
    assert "no lines to write" in _one_line(result, 2)
    assert not lake.exists()
    result = CliRunner().invoke(
        cli, ["export", "--dsn", pg_dsn, "--table", pg_table, "--lake", str(lake), "--allow-empty"]
    )
    assert result.exit_code == 0, result.output
    # A later export with nothing new is not an error either (it was a traceback).
    result = CliRunner().invoke(
        cli, ["export", "--dsn", pg_dsn, "--table", pg_table, "--lake", str(lake), "--allow-empty"]
    )
    assert result.exit_code == 0 and "unchanged" in result.output


# 9. A password is never printed ---------------------------------------------------------

SECRET_DSNS = [
    "postgresql://postgres:S3cret@[::1:5432/test",
    "postgresql://postgres:S3cret%zz@127.0.0.1:5432/test",
    "postgresql://postgres:S3cret@127.0.0.1:1/test",
    "host=127.0.0.1 port=1 user=postgres password=S3cret dbname=test",
    "host=127.0.0.1 port=5432 user=postgres password=S3cret dbname=test bogus=1",
    "host=127.0.0.1 password='S3cret",
    # libpq takes such a dbname literally, and its message quotes it back.
    "host=127.0.0.1 port=5432 user=postgres dbname='test password=S3cret'",
    "postgresql://postgres@127.0.0.1:5432/test%20password%3DS3cret",
    "host=127.0.0.1 port=5432 user=postgres dbname='test PASSWORD = S3cret'",
]


@pytest.mark.parametrize("dsn", SECRET_DSNS)
def test_password_never_printed(tmp_path: Path, dsn: str) -> None:
    runner = CliRunner()
    calls = [
        (["export", "--dsn", dsn, "--lake", str(tmp_path / "l")], {}),
        (["export", "--lake", str(tmp_path / "l")], {"LGS_PG_DSN": dsn}),
        (["load-pg", str(EMBEDDED), "--dsn", dsn], {}),
    ]
    for args, env in calls:
        result = runner.invoke(cli, args, env=env)
        message = _one_line(result, 4)
        assert "S3cret" not in result.output + message and "S3cret" not in str(result.exception)


# Found by a fault probe: outputs never take what is not theirs, and say the truth -------------


def test_folder_that_only_looks_like_old_outputs_is_left_alone(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    docs = tmp_path / "mydocs"
    (docs / "tables").mkdir(parents=True)
    (docs / "tables" / "budget.xlsx").write_bytes(b"my precious")
    (docs / "report.html").write_text("<html>mine</html>")
    before = _tree(docs)
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(docs), "--no-report"]
    )
    assert "did not write there" in _one_line(result, 3)
    assert _tree(docs) == before


def test_what_is_put_inside_out_is_never_removed(tmp_path: Path, retail_ii_lake: Path) -> None:
    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    import_files([data_file(RETAIL_II_CSV)], out / "lake")
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, args)
    assert "holds lake/, notes.txt, which lgs_fast did not write there" in _one_line(result, 3)
    assert verify_lake(out / "lake").rows == 45_228 and (out / "notes.txt").read_text() == "mine"
    # Nor may OUT and the lake contain each other, or OUT be the current directory.
    inside = ["analyze", "--lake", str(out / "lake"), "--out", str(out), "--no-report"]
    assert "must not contain each other" in _one_line(CliRunner().invoke(cli, inside), 3)
    here = CliRunner().invoke(cli, ["analyze", "--lake", str(retail_ii_lake), "--out", os.getcwd()])
    assert "is the current directory" in _one_line(here, 3)


@pytest.mark.parametrize(
    "mine", ["tables/budget.csv", "segments/vip_customers.csv", "charts/company_logo.png"]
)
def test_a_file_put_in_a_folder_of_out_is_never_removed(
    tmp_path: Path, retail_ii_lake: Path, mine: str
) -> None:
    # Each was deleted by the next run, exit 0: names like lgs_fast's own passed the check.
    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (out / mine).write_bytes(b"mine")
    before = _tree(out)
    result = CliRunner().invoke(cli, args)
    assert f"holds {mine}, which lgs_fast did not write there" in _one_line(result, 3)
    assert _tree(out) == before


def test_out_of_an_earlier_version_is_still_replaced_and_then_listed(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    marker = out / ".lgs_fast_out"
    listed = json.loads(marker.read_text())
    assert "tables/rfm.parquet" in listed["files"] and ".lgs_fast_out" not in listed["files"]
    marker.write_text(json.dumps({"run_id": listed["run_id"]}))  # as earlier versions wrote it
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert json.loads(marker.read_text())["files"] == listed["files"]
    (out / "tables" / "link.csv").symlink_to(out / "tables" / "rfm.csv")
    assert "holds tables/link.csv" in _one_line(CliRunner().invoke(cli, args), 3)


@pytest.mark.parametrize("kind", ["fifo", "link to a device", "link to a file"])
def test_csv_target_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, retail_ii_lake: Path, kind: str
) -> None:
    # `clv --csv /dev/full` exited 0 and replaced the device node with a regular file; a FIFO
    # or a symlink was replaced too. The test makes its own FIFO and links, never opens a device.
    target = tmp_path / "clv.csv"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "link to a device":
        target.symlink_to("/dev/full")
    else:
        (tmp_path / "real.csv").write_text("mine")
        target.symlink_to(tmp_path / "real.csv")
    result = CliRunner().invoke(cli, ["clv", "--lake", str(retail_ii_lake), "--csv", str(target)])
    what = "a named pipe (FIFO)" if kind == "fifo" else "a symbolic link"
    assert f"{target}: is {what}; lgs_fast writes only a new file" in _one_line(result, 2)
    if kind == "fifo":
        assert target.is_fifo()
    else:
        assert target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clv.csv", *(["real.csv"] if kind == "link to a file" else [])]
    )


def test_someone_elses_build_named_directory_beside_out_is_kept(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    backup = tmp_path / ".out.build-mybackup"
    backup.mkdir()
    (backup / "important.txt").write_text("keep")
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(tmp_path / "out"), "--no-report"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (backup / "important.txt").read_text() == "keep"


def test_a_file_as_lake_for_readers_is_exit_3(tmp_path: Path) -> None:
    notes = tmp_path / "o.txt"
    notes.write_text("x")
    for args in (["verify"], ["analyze", "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(cli, [*args, "--lake", str(notes)])
        assert "is a file" in _one_line(result, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.txt"]  # no lock file left behind


def test_analyze_errors_are_one_line_before_any_progress(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    )
    assert result.stderr.splitlines() == [_one_line(result, 3)]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_outputs(tmp_path: Path, retail_ii_lake: Path) -> None:
    """A file-size limit stands in for a full disk: one line that says so, OUT unchanged."""
    import resource
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out)]
    assert CliRunner().invoke(cli, [*args, "--no-report"]).exit_code == 0
    before = _tree(out)

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run(
        [sys.executable, "-m", "lgs_fast", *args], capture_output=True, text=True,
        preexec_fn=small_disk, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "could not write the outputs" in proc.stderr and "OUT is unchanged" in proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr
    assert _tree(out) == before


def test_sigterm_unwinds_and_says_what_is_on_disk(tmp_path: Path) -> None:
    import random
    import signal
    import subprocess
    import sys

    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    rng = random.Random(15)
    outcomes = set()
    for _ in range(6):
        before = Manifest.read(lake).write_id
        target = EMBEDDED if Manifest.read(lake).rows == 45_228 else data_file(RETAIL_II_CSV)
        proc = subprocess.Popen(
            [sys.executable, "-m", "lgs_fast", "import", str(target), "--lake", str(lake)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(rng.uniform(0.2, 0.9))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        changed = Manifest.read(lake).write_id != before
        verify_lake(lake)
        if proc.returncode == 143:
            assert err.startswith("lgs-fast: error: terminated; ") and "Traceback" not in err
            assert ("holds the new version" in err) == changed, err
            outcomes.add(changed)
        elif proc.returncode == -signal.SIGTERM:
            assert not changed  # stopped while Python itself was starting, before any work
        else:
            assert proc.returncode == 0 and changed, (proc.returncode, err)
    assert outcomes, "every run finished before the signal"


# Found by a review ---------------------------------------------------------------------------


def test_unfinished_commit_of_a_first_write_does_not_block_the_next(tmp_path: Path) -> None:
    """A first import killed between writing the new manifest and renaming it leaves that
    temporary file: it is the lake's own debris, not a reason to refuse the directory."""
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    manifest = (lake / MANIFEST).read_text()
    (lake / MANIFEST).unlink()  # as if the first commit never happened
    (lake / "._manifest.json.0123456789abcdef").write_text(manifest)
    assert import_files([data_file(RETAIL_II_CSV)], lake).rows == 45_228
    assert not list(lake.glob("._manifest.json.*"))


def test_files_put_in_outs_own_folders_are_never_removed(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (out / "tables" / "my_pivot.xlsx").write_bytes(b"mine")
    result = CliRunner().invoke(cli, args)
    assert "tables/my_pivot.xlsx" in _one_line(result, 3)
    assert (out / "tables" / "my_pivot.xlsx").read_bytes() == b"mine"


def test_clv_csv_never_lands_inside_the_lake(tmp_path: Path, retail_ii_lake: Path) -> None:
    before = _tree(retail_ii_lake)
    for target, expected in (
        (retail_ii_lake / MANIFEST, "is inside the lake"),
        (tmp_path / "missing" / "x.csv", "no directory"),
    ):
        result = CliRunner().invoke(
            cli, ["clv", "--lake", str(retail_ii_lake), "--csv", str(target)]
        )
        assert expected in _one_line(result, 2)
    assert _tree(retail_ii_lake) == before


def test_export_record_refreshed_when_data_is_the_same(
    pg_dsn: str, pg_table: str, tmp_path: Path
) -> None:
    """A column type change that leaves every value the same changes the fingerprints: the
    next export reads the months again, then records the new fingerprints, so the one after
    reads nothing (it read every month on every run)."""
    small = _lines_csv(
        tmp_path / "small.csv",
        "1,A,x,1,2011-01-05 10:00:00,1.5,7,UK", "2,A,x,3,2011-02-10 09:00:00,2.25,8,UK",
    )  # fmt: skip
    load_pg([small], pg_dsn, table=pg_table)
    lake = tmp_path / "lake"
    export(pg_dsn, lake, table=pg_table)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER unit_price TYPE numeric(14,4)").format(
                sql.Identifier(pg_table)
            )
        )
    again = export(pg_dsn, lake, table=pg_table)
    assert again.months == ["2011-01", "2011-02"]
    assert export(pg_dsn, lake, table=pg_table).months == []


def test_builds_of_killed_runs_are_removed_whatever_the_moment(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    """A run killed between creating its build and marking it leaves an empty build; a run
    killed while removing the previous run used to leave it unmarked (the marker went first)
    and so forever. The next run removes both; an unmarked build holding files is kept."""
    from lgs_fast.outputs.switch import MARKER, _remove_build

    empty = tmp_path / ".out.build-0123456789abcdef"
    empty.mkdir()
    halfway = tmp_path / ".out.build-old-fedcba9876543210"
    (halfway / "tables").mkdir(parents=True)
    (halfway / "tables" / "rfm.csv").write_text("x")
    (halfway / MARKER).write_text("{}")
    foreign = tmp_path / ".out.build-00000000000000ff"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    args = ["analyze", "--lake", str(retail_ii_lake), "--out", str(tmp_path / "out"), "--no-report"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert not empty.exists() and not halfway.exists()
    assert (foreign / "notes.txt").read_text() == "keep"
    # Removal takes the marker last, so a kill at any point leaves it marked or empty.
    build = tmp_path / ".out.build-1111111111111111"
    (build / "charts").mkdir(parents=True)
    (build / MARKER).write_text("{}")
    _remove_build(build)
    assert not build.exists()


# Third round --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["import", str(EMBEDDED)], "import writes"),
        (["generate", "--rows", "100"], "generate writes"),
        (["export", "--dsn", "host=127.0.0.1 port=1"], "export writes"),
        (["verify"], "verify checks"),
        (["upgrade"], "upgrade writes"),
    ],
)
@pytest.mark.parametrize("lake", ["file:///tmp/lgs-uri-lake", "s3a://bucket/lake"])
def test_uri_lake_for_local_commands_is_one_true_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], what: str, lake: str
) -> None:
    """`--lake file:///x` became the relative path `file:/x`: import made `./file:` here, and
    verify said "no lake here" of a lake Spark reads."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*command, "--lake", lake])
    assert _one_line(result, 2) == (
        f"lgs-fast: error: {lake}: a lake at a URI is read by the Spark engine only "
        f"(analyze or clv --engine spark); {what} a lake in a local directory"
    )
    assert list(tmp_path.iterdir()) == [] and not Path("/tmp/lgs-uri-lake").exists()
    # The same from the environment.
    result = CliRunner().invoke(cli, command, env={"LGS_LAKE": lake})
    assert f"{lake}: a lake at a URI is read by the Spark engine only" in _one_line(result, 2)
    assert list(tmp_path.iterdir()) == []


LONG_COUNTRY = "Germany " + "x" * 4_992  # 5,000 characters
LONG_DESCRIPTION = "WHITE\u2029HANGING HEART " + "T" * 40_000


@pytest.fixture(scope="module")
def odd_text_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`analyze` over 30,000 real lines whose text holds what broke the outputs: a line
    separator in a country, a paragraph separator in a description, a 5,000-character country
    and a 40,000-character description."""
    root = tmp_path_factory.mktemp("odd_text")
    lines = pl.read_parquet(EMBEDDED).head(30_000)
    lines = lines.with_columns(
        country=pl.col("country").replace({"France": "Fr\u2028ance", "Germany": LONG_COUNTRY}),
        description=pl.col("description").replace(
            {"WHITE HANGING HEART T-LIGHT HOLDER": LONG_DESCRIPTION}
        ),
    )
    lines.write_parquet(root / "odd.parquet")
    import_files([root / "odd.parquet"], root / "lake")
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(root / "lake"), "--out", str(root / "out"), "--svg"]
    )
    assert result.exit_code == 0, result.output
    return root / "out"


def test_line_separators_in_text_do_not_break_charts(odd_text_out: Path) -> None:
    """U+2028 in a country made Vega's expression parser fail: no chart, no report."""
    charts = odd_text_out / "charts"
    drawn = {p.name.removesuffix(".svg") for p in charts.glob("*.svg")}
    # clv_holdout needs --calibration-end, campaign_results an earlier run's campaigns.json.
    assert drawn == set(CHARTS) - {"clv_holdout", "campaign_results"}
    shown = [odd_text_out / "report.html", *charts.glob("*.vl.json"), *charts.glob("*.svg")]
    for path in shown:
        text = path.read_text()
        assert "\u2028" not in text and "\u2029" not in text, path
    assert "Fr ance" in (charts / "top_countries.svg").read_text()
    # The tables keep the text as it was.
    countries = pl.read_parquet(odd_text_out / "tables" / "top_countries.parquet")["country"]
    assert "Fr\u2028ance" in countries.to_list()


def test_long_labels_are_cut_with_an_ellipsis_in_charts_and_report(odd_text_out: Path) -> None:
    """A 5,000-character country made the report 1,586 px wide in a 1,024 px window."""
    cut = LONG_COUNTRY[:59] + "…"
    report = (odd_text_out / "report.html").read_text()
    assert html.escape(cut) in report and "x" * 60 not in report
    chart = (odd_text_out / "charts" / "top_countries.vl.json").read_text()
    assert cut in json.loads(chart)["layer"][0]["encoding"]["y"]["sort"]
    assert "x" * 60 not in chart
    countries = pl.read_parquet(odd_text_out / "tables" / "top_countries.parquet")["country"]
    assert LONG_COUNTRY in countries.to_list()


def test_workbook_cell_over_excels_limit_is_cut_visibly(odd_text_out: Path) -> None:
    """Excel holds 32,767 characters a cell; longer text was cut without a word."""
    products = pl.read_excel(odd_text_out / WORKBOOK_NAME, sheet_name="top_products")
    (description,) = [d for d in products["description"] if d.startswith("WHITE\u2029HANGING")]
    assert len(description) == 32_767
    assert description.endswith("… [cut: 40,020 characters, a cell holds 32,767; whole in the CSV]")
    csv = pl.read_csv(odd_text_out / "tables" / "top_products.csv")
    assert LONG_DESCRIPTION in csv["description"].to_list()


def _segment_map(path: Path, *names: str) -> Path:
    """A map whose first segments are `names` (matching nothing), then one for every score."""
    rules = [f'[[segment]]\nname = "{n}"\npattern = "00"\naction = "x"\n' for n in names]
    rules.append('[[segment]]\nname = "Everyone"\npattern = "[1-5][1-5]"\naction = "x"\n')
    path.write_text("\n".join(rules))
    return path


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (
            "Unclassified",
            "may not be called 'Unclassified': it holds the customers no rule matches",
        ),
        ("Big spender " * 30, "makes a campaign file name of 363 characters, beyond the 255"),
    ],
)
def test_segment_names_refused_before_any_work(
    tmp_path: Path, retail_ii_lake: Path, name: str, why: str
) -> None:
    """A user's `Unclassified` merged with the fallback; a name too long for a file name failed
    after the whole computation."""
    segments = _segment_map(tmp_path / "map.toml", name)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--segments", str(segments)],
    )
    line = _one_line(result, 2)
    assert result.stderr.splitlines() == [line]  # before any progress
    assert line.startswith(f"lgs-fast: error: {segments}: ") and why in line
    assert not out.exists()


def test_errors_name_the_target_not_a_temporary_file(tmp_path: Path, retail_ii_lake: Path) -> None:
    """The temporary file beside a target (`.x.csv.tmp-27633`) and the lock beside OUT
    (`.out.lock`) are lgs_fast's business; a failure names what the user asked for."""
    target = tmp_path / ("c" * 250 + ".csv")  # a valid name; the temporary one is too long
    result = CliRunner().invoke(cli, ["clv", "--lake", str(retail_ii_lake), "--csv", str(target)])
    assert _one_line(result, 1) == f"lgs-fast: error: {target}: File name too long"
    out = tmp_path / ("o" * 250)
    result = CliRunner().invoke(cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out)])
    assert _one_line(result, 1) == f"lgs-fast: error: {out}: File name too long"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("bins", "why"),
    [
        # Every customer was Hibernating.
        ("2", "with --bins 2, 9 segments of the map can never be reached ('At Risk' first)"),
        ("3", "with --bins 3, 6 segments of the map can never be reached"),
        # 796 of 1,776 customers were Unclassified, without a word.
        (
            "7",
            "its patterns reach scores up to 5; with --bins 7, 24 of the 49 pairs of R and F scores match no segment (the first: 16)",
        ),
    ],
)
def test_bins_the_segment_map_does_not_fit_are_refused(
    tmp_path: Path, retail_ii_lake: Path, bins: str, why: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--bins", bins]
    )
    line = _one_line(result, 2)
    assert result.stderr.splitlines() == [line]
    assert line.startswith("lgs-fast: error: the shipped segment map lgs_fast/segments.toml: ")
    assert why in line and f"give a map made for {bins} bins with --segments" in line
    assert not out.exists()
    # A map made for the bins is taken, and leaves no customer unclassified.
    rules = [
        ("Lapsed", "1[1-7]"), ("Cooling", "[2-4][1-7]"), ("Warm", "[5-6][1-7]"), ("Best", "7[1-7]"),
    ]  # fmt: skip
    segments = tmp_path / "seven.toml"
    segments.write_text(
        "".join(f'[[segment]]\nname = "{n}"\npattern = "{p}"\naction = "x"\n' for n, p in rules)
    )
    args = ["--bins", "7", "--segments", str(segments), "--no-report"]
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    segments_of = pl.read_parquet(out / "tables" / "rfm.parquet")["segment"]
    assert set(segments_of) == {"Lapsed", "Cooling", "Warm", "Best"}


def test_segment_map_of_a_file_not_fitting_the_bins_is_named(
    tmp_path: Path, retail_ii_lake: Path
) -> None:
    segments = _segment_map(tmp_path / "map.toml")  # "Everyone" over scores 1 to 5
    result = CliRunner().invoke(
        cli,
        ["analyze", "--lake", str(retail_ii_lake), "--out", str(tmp_path / "out"),
         "--segments", str(segments), "--bins", "6"],
    )  # fmt: skip
    assert _one_line(result, 2).startswith(
        f"lgs-fast: error: {segments}: its patterns reach scores up to 5; with --bins 6, 11 of "
        "the 36 pairs of R and F scores match no segment (the first: 16)"
    )


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--compare-as-of", "2010-01-01"], "is not before the data's last invoice (2009-12-23"),
        (["--compare-as-of", "2009-12-31 23:00"], "is not before the data's last invoice"),
        (["--compare-as-of", "2009-12-15", "--to", "2009-12-10"], "is not before --to 2009-12-10"),
    ],
)
def test_compare_time_after_the_data_is_refused(
    tmp_path: Path, retail_ii_lake: Path, options: list[str], why: str
) -> None:
    """T0 after the last invoice was capped to T (everyone `same`) while the report printed
    the date given."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), *options]
    )
    line = _one_line(result, 2)
    assert result.stderr.splitlines() == [line] and why in line
    assert line.startswith(f"lgs-fast: error: --compare-as-of {options[1]}")
    assert not out.exists()
