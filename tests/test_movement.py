"""Segment movement (DESIGN.md "segment movement"): RFM at T and at an earlier T0, per customer
and per transition, on the real data and on hand-built edges, both engines and pandas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options
from lgs_fast.engines import duckdb as sql
from lgs_fast.engines.polars.movement import compare_time
from lgs_fast.errors import InputError, LgsError
from lgs_fast.lake import scan
from tests.utils import START, check_agreement, frame, line

QUARTER = Options(as_of=dt.datetime(2011, 12, 9), compare_as_of=dt.datetime(2011, 9, 9))


def _movement_is_spelt_out(movement: pl.DataFrame) -> None:
    """`new` exactly when segment_then is, `same` when the segment did not change, else the arrow."""
    for then, now, moved in movement.select("segment_then", "segment", "movement").iter_rows():
        expected = "new" if then == "new" else "same" if then == now else f"{then} → {now}"
        assert moved == expected


def test_real_data_quarter(retail_lake: Path, engine: str) -> None:
    tables = compute_tables(retail_lake, QUARTER, engine=engine)  # type: ignore[arg-type]
    movement, transitions, rfm = (
        tables[name] for name in ("segment_movement", "segment_transitions", "rfm")
    )
    assert movement["customer_id"].to_list() == rfm["customer_id"].to_list() and rfm.height == 4_338
    assert movement["segment"].to_list() == rfm["segment"].to_list()
    pairs = {(then, now): n for then, now, n, _ in transitions.iter_rows()}
    assert pairs[("Champions", "At Risk")] == 72
    assert pairs[("Champions", "Champions")] == 232
    assert (movement["movement"] == "new").sum() == 976
    assert (movement["movement"] == "same").sum() == 1_377
    assert transitions["customers"].sum() == rfm.height
    assert transitions["net_revenue"].sum() == pytest.approx(rfm["monetary"].sum(), rel=1e-12)
    assert (
        transitions.height == 67 and transitions.select("segment_then", "segment").is_unique().all()
    )
    assert transitions.rows() == sorted(transitions.rows())
    _movement_is_spelt_out(movement)
    picked = movement.filter(pl.col("customer_id").is_in([12347, 12349, 12748, 18287]))
    assert picked["movement"].to_list() == [
        "Loyal Customers → Champions", "new", "same", "At Risk → Loyal Customers",
    ]  # fmt: skip


def test_segment_then_is_rfm_at_the_earlier_time(retail_lake: Path, engine: str) -> None:
    """RFM at T0 is the one rfm, as_of T0: every customer it scores has that segment then."""
    movement = compute_tables(retail_lake, QUARTER, engine=engine)["segment_movement"]  # type: ignore[arg-type]
    then = compute_tables(retail_lake, Options(as_of=QUARTER.compare_as_of), engine=engine)["rfm"]  # type: ignore[arg-type]
    assert then.height == 3_362
    scored = movement.filter(pl.col("segment_then") != "new")
    assert scored.select("customer_id", segment="segment_then").equals(
        then.select("customer_id", "segment")
    )


def test_default_is_ninety_days_before_the_latest_invoice(retail_lake: Path, engine: str) -> None:
    lines = scan(retail_lake)
    assert compare_time(lines).collect().item() == dt.datetime(2011, 9, 10, 12, 50)
    assert compare_time(lines, Options(as_of=dt.datetime(2011, 6, 1))).collect().item() == (
        dt.datetime(2011, 3, 3)
    )
    tables = compute_tables(retail_lake, engine=engine)  # type: ignore[arg-type]
    transitions = tables["segment_transitions"]
    champions = transitions.filter(
        pl.col("segment_then") == "Champions", pl.col("segment") == "At Risk"
    )
    assert champions["customers"].to_list() == [69]
    assert (tables["segment_movement"]["movement"] == "new").sum() == 969


# Customer 1 buys before and after T0; 2 only after; 3 only cancels before T0 and buys after;
# 4 only ever cancels. T0 is day 50.
EDGES = [
    line("1", 0, 1), line("5", 60, 1),
    line("2", 55, 2),
    line("C3", 10, 3, quantity=-1), line("6", 70, 3),
    line("C4", 20, 4, quantity=-2), line("C7", 80, 4, quantity=-1),
]  # fmt: skip
AT_DAY_50 = START + dt.timedelta(days=50)


def test_no_purchase_by_the_earlier_time_is_new() -> None:
    tables = check_agreement(EDGES, Options(compare_as_of=AT_DAY_50))
    movement = tables["segment_movement"]
    # Only customer 1 has a purchase by day 50; 4, never buying, is in neither RFM.
    assert movement["customer_id"].to_list() == [1, 2, 3]
    assert movement["movement"].to_list()[1:] == ["new", "new"]
    assert movement["segment_then"].to_list()[1:] == ["new", "new"]
    assert movement["segment_then"][0] != "new"
    _movement_is_spelt_out(movement)
    assert tables["segment_transitions"]["customers"].sum() == 3


def test_notebook_scores_any_line_by_the_earlier_time() -> None:
    movement = check_agreement(EDGES, Options(preset="notebook", compare_as_of=AT_DAY_50))[
        "segment_movement"
    ]
    assert movement["customer_id"].to_list() == [1, 2, 3, 4]
    # Cancellations are lines: 3 and 4 were customers at day 50 already.
    assert movement.filter(pl.col("segment_then") == "new")["customer_id"].to_list() == [2]
    _movement_is_spelt_out(movement)


def test_unchanged_segment_is_same() -> None:
    # One customer is alone in every bin: New Customers (r 5, f 1) at both times.
    tables = check_agreement([line("1", 0, 7), line("2", 100, 7)], Options())
    assert tables["segment_movement"].rows() == [(7, "New Customers", "New Customers", "same")]
    assert tables["segment_transitions"].rows() == [("New Customers", "New Customers", 1, 4.0)]


def test_earlier_time_before_the_data_makes_everyone_new() -> None:
    rows = [line(str(i), 10 * i, i) for i in range(1, 6)]
    earlier = Options(compare_as_of=START - dt.timedelta(days=1))
    movement = check_agreement(rows, earlier)["segment_movement"]
    assert set(movement["movement"]) == {"new"}


def test_earlier_time_after_the_data_is_the_reference_time() -> None:
    """A T0 at or after T (possible when T comes from the data) compares T with itself."""
    rows = [line(str(i), 10 * i, i, quantity=i) for i in range(1, 8)]
    later = Options(compare_as_of=START + dt.timedelta(days=400))
    tables = check_agreement(rows, later)
    assert set(tables["segment_movement"]["movement"]) == {"same"}
    assert compare_time(frame(rows), later).collect().item() == START + dt.timedelta(days=70)


def test_no_customers_no_rows() -> None:
    tables = check_agreement([line("1", 0, None), line("2", 40, None)], Options())
    assert tables["segment_movement"].height == tables["segment_transitions"].height == 0
    assert tables["segment_transitions"].schema == pl.Schema(
        {"segment_then": pl.String, "segment": pl.String, "customers": pl.Int64,
         "net_revenue": pl.Float64}
    )  # fmt: skip


@pytest.mark.parametrize("then", [dt.datetime(2011, 9, 1), dt.datetime(2011, 10, 1)])
def test_earlier_time_must_be_before_as_of(then: dt.datetime) -> None:
    with pytest.raises(InputError, match="--compare-as-of .* is not before --as-of"):
        Options(as_of=dt.datetime(2011, 9, 1), compare_as_of=then)


def test_macro_is_not_a_query() -> None:
    con = sql.connect(lines=frame([line("1", 0, 1)]))
    with pytest.raises(LgsError, match="table macro"):
        sql.query(con, "rfm_at")
    when = START + dt.timedelta(days=1)
    assert con.sql("SELECT customer_id FROM rfm_at($t)", params={"t": when}).fetchall() == [(1,)]


def test_cli_compare_as_of(retail_lake: Path, tmp_path: Path) -> None:
    from lgs_fast.cli import cli

    out = tmp_path / "out"
    args = ["analyze", "--lake", str(retail_lake), "--out", str(out), "--no-report"]
    refused = CliRunner().invoke(
        cli, [*args, "--as-of", "2011-09-09", "--compare-as-of", "2011-12-09"]
    )
    assert refused.exit_code == 2 and "is not before --as-of" in refused.output
    done = CliRunner().invoke(
        cli, [*args, "--as-of", "2011-12-09", "--compare-as-of", "2011-09-09"]
    )
    assert done.exit_code == 0, done.output
    transitions = pl.read_parquet(out / "tables" / "segment_transitions.parquet")
    champions = transitions.filter(
        pl.col("segment_then") == "Champions", pl.col("segment") == "At Risk"
    )
    assert champions["customers"].to_list() == [72]


@pytest.mark.parametrize("name", ["new", "same"])
def test_segment_may_not_take_a_movement_marker(tmp_path: Path, name: str) -> None:
    """A segment called `new` would be read as "not scored then" in segment_movement."""
    from lgs_fast.config import load_segment_rules
    from lgs_fast.errors import InputError

    path = tmp_path / "map.toml"
    path.write_text(f'[[segment]]\nname = "{name}"\npattern = "[1-5][1-5]"\naction = "a"\n')
    with pytest.raises(InputError, match=f"may not be called '{name}'"):
        load_segment_rules(path)
