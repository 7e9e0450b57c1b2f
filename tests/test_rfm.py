"""RFM and segments on the real data, both engines: real customers, real segment sizes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import lgs_fast as lgs
from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options, load_segment_rules
from lgs_fast.errors import InputError

STANDARD_SEGMENTS = {
    "Hibernating": 1065, "At Risk": 580, "Can't Lose": 63, "About to Sleep": 351,
    "Need Attention": 186, "Loyal Customers": 827, "Promising": 100, "New Customers": 42,
    "Potential Loyalists": 492, "Champions": 633,
}  # fmt: skip
NOTEBOOK_SEGMENTS = {
    "Hibernating": 1066, "At Risk": 585, "Can't Lose": 84, "About to Sleep": 321,
    "Need Attention": 202, "Loyal Customers": 840, "Promising": 98, "New Customers": 58,
    "Potential Loyalists": 514, "Champions": 604,
}  # fmt: skip


def _row(rfm: pl.DataFrame, customer: int) -> tuple[object, ...]:
    return rfm.filter(pl.col("customer_id") == customer).drop("monetary").row(0)


def test_standard_real_customers(retail_lake: Path, engine: str) -> None:
    tables = compute_tables(retail_lake, engine=engine)  # type: ignore[arg-type]
    rfm = tables["rfm"]
    assert rfm.height == 4_339  # customers with at least one purchase line
    assert _row(rfm, 12346) == (12346, "United Kingdom", 325, 1, 1, 1, 1, "111", "Hibernating")
    assert _row(rfm, 12347) == (12347, "Iceland", 1, 7, 5, 5, 5, "555", "Champions")
    # 17850's last purchase is 371 days back; a later cancellation does not count as one.
    assert _row(rfm, 17850) == (17850, "United Kingdom", 371, 34, 1, 5, 5, "155", "Can't Lose")
    assert rfm.filter(pl.col("customer_id") == 12347)["monetary"].item() == pytest.approx(4310.0)
    segments = tables["segments"]
    assert dict(segments.select("segment", "customers").iter_rows()) == STANDARD_SEGMENTS
    assert segments["share"].sum() == pytest.approx(1.0)
    assert segments["action"].str.len_chars().min() > 10


def test_notebook_preset(retail_lake: Path, engine: str) -> None:
    tables = compute_tables(retail_lake, Options(preset="notebook"), engine=engine)  # type: ignore[arg-type]
    rfm = tables["rfm"]
    assert rfm.height == 4_372  # every customer with any line
    assert _row(rfm, 17850) == (17850, "United Kingdom", 301, 312, 1, 5, 5, "155", "Can't Lose")
    assert _row(rfm, 12346)[3] == 2  # the purchase and its cancellation: two lines
    assert dict(tables["segments"].select("segment", "customers").iter_rows()) == NOTEBOOK_SEGMENTS


def test_scores_are_pandas_qcut(retail_lake: Path) -> None:
    """Where the edges are distinct, the score is exactly pandas' qcut bin."""
    rfm = compute_tables(retail_lake, engine="duckdb")["rfm"].to_pandas()
    m_bins = pd.qcut(rfm["monetary"], 5, labels=False) + 1
    assert (m_bins == rfm["m_score"]).all()
    f_rank = rfm.sort_values(["frequency", "customer_id"])
    f_bins = pd.qcut(range(1, len(f_rank) + 1), 5, labels=False) + 1
    assert (f_bins == f_rank["f_score"].to_numpy()).all()
    assert rfm["f_score"].value_counts().tolist() == [868, 868, 868, 868, 867]


def test_as_of(retail_lake: Path, engine: str) -> None:
    options = Options(as_of=dt.datetime(2011, 6, 30, 23, 59, 59))
    rfm = compute_tables(retail_lake, options, engine=engine)["rfm"]  # type: ignore[arg-type]
    assert rfm.height == 2_960
    assert _row(rfm, 12347) == (12347, "Iceland", 21, 4, 4, 4, 5, "445", "Loyal Customers")
    assert rfm["recency"].min() == 0


def test_quartiles(retail_lake: Path, engine: str) -> None:
    rfm = compute_tables(retail_lake, Options(bins=4), engine=engine)["rfm"]  # type: ignore[arg-type]
    assert sorted(rfm["r_score"].unique().to_list()) == [1, 2, 3, 4]
    assert rfm["f_score"].value_counts().sort("f_score")["count"].to_list() == [
        1085,
        1085,
        1084,
        1085,
    ]
    assert rfm.filter(pl.col("rfm_score") == "444").height == 491


def test_quartiles_use_the_quartile_map(retail_lake: Path, engine: str) -> None:
    segments = compute_tables(retail_lake, Options(bins=4), engine=engine)["segments"]  # type: ignore[arg-type]
    sizes = dict(segments.select("segment", "customers").iter_rows())
    assert "Unclassified" not in sizes and sum(sizes.values()) == 4_339
    assert (sizes["Champions"], sizes["Can't Lose"], sizes["Potential Loyalists"]) == (
        608,
        28,
        1_019,
    )


def test_custom_segment_map(retail_lake: Path, tmp_path: Path, engine: str) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        '[[segment]]\nname = "Best"\npattern = "5[4-5]"\naction = "Thank them."\n'
        '[[segment]]\nname = "Rest"\npattern = "..?"\naction = "Keep in touch."\n'
    )
    options = Options(rules=load_segment_rules(path))
    segments = compute_tables(retail_lake, options, engine=engine)["segments"]  # type: ignore[arg-type]
    assert segments.select("segment", "customers").rows() == [("Best", 633), ("Rest", 4_339 - 633)]
    assert segments["action"].to_list() == ["Thank them.", "Keep in touch."]


def test_unmatched_customers_are_unclassified(
    retail_lake: Path, tmp_path: Path, engine: str
) -> None:
    path = tmp_path / "one.toml"
    path.write_text('[[segment]]\nname = "Champions"\npattern = "5[4-5]"\n')
    segments = compute_tables(retail_lake, Options(rules=load_segment_rules(path)), engine=engine)[
        "segments"
    ]  # type: ignore[arg-type]
    assert segments.select("segment", "customers").rows() == [
        ("Champions", 633),
        ("Unclassified", 3_706),
    ]


_GOOD = '[[segment]]\nname = "Best"\npattern = "5[4-5]"\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a TOML text file"),
        (b"\x00\x01\x02 binary", "invalid TOML"),
        ("nonsense = [", "not a segment map: invalid TOML: Invalid value"),
        ("a = 1\nb = = 2\n", r"invalid TOML: .*\(at line 2, column 5\)"),
        ("", r"not a segment map: no \[\[segment\]\] entries"),
        ('[segment]\nname = "x"\npattern = "1"\n', r"no \[\[segment\]\] entries"),
        ("segment = [1, 2]\n", r"\[\[segment\]\] number 1: not a table"),
        ('title = "x"\n' + _GOOD, "unknown key 'title'"),
        ('[[segment]]\nname = 5\npattern = "1"\n', "number 1: name must be text, not int"),
        ('[[segment]]\nname = "x"\n', r"number 1 \('x'\): no pattern"),
        ('[[segment]]\nname = "x"\npattern = ["1"]\n', "pattern must be text, not list"),
        ('[[segment]]\nname = "x"\npattern = "1"\naction = 3\n', "action must be text"),
        ('[[segment]]\nname = "x"\npattern = "1"\nactoin = "y"\n', "unknown field 'actoin'"),
        ('[[segment]]\nname = " "\npattern = "1"\n', "the name is empty"),
        ('[[segment]]\npattern = "1"\n', "number 1: no name"),
        (_GOOD + '[[segment]]\nname = "x"\npattern = "(["\n', r"number 2 \('x'\): bad pattern"),
    ],
)
def test_bad_segment_map(tmp_path: Path, content: str | bytes, message: str) -> None:
    """One line naming the file and the bad entry: never a traceback, never a silent default."""
    path = tmp_path / "bad.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        load_segment_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_segment_map_that_is_a_directory_or_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_segment_rules(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load_segment_rules(tmp_path / "missing.toml")


def test_cli_bad_segment_map_is_one_line(retail_lake: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "picture.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 50)
    done = subprocess.run(
        [Path(sys.executable).parent / "lgs-fast", "analyze", "--lake", str(retail_lake),
         "--out", str(tmp_path / "out"), "--segments", str(path), "--no-report"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"lgs-fast: error: {path}: not a segment map")
    assert not (tmp_path / "out" / "tables").exists()


def test_notebook_api_is_lazy(retail_lake: Path) -> None:
    lines = lgs.scan(retail_lake)
    table = lgs.rfm(lines)
    assert isinstance(table, pl.LazyFrame)
    summary = lgs.segments(table).collect()
    assert dict(summary.select("segment", "customers").iter_rows()) == STANDARD_SEGMENTS
