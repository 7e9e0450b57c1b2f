"""Models' tables kept from an earlier run (`lgs_fast.models.memo`): read back only for the same
inputs, options and code, equal to what computing gives, and computed again when an entry is
damaged or the cache is off."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lgs_fast.analyze import compute_tables, forecast_outputs
from lgs_fast.models import memo


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LGS_MODEL_CACHE", raising=False)
    return tmp_path / "lgs_fast" / "models"


def _counting(result: dict[str, pl.DataFrame]) -> tuple[list[int], object]:
    calls: list[int] = []

    def compute() -> dict[str, pl.DataFrame]:
        calls.append(1)
        return result

    return calls, compute


def test_the_forecast_read_back_equals_the_forecast_computed(
    retail_lake: Path, cache: Path
) -> None:
    weekly = compute_tables(retail_lake)["weekly_sales"]
    computed = forecast_outputs({"weekly_sales": weekly})
    again = forecast_outputs({"weekly_sales": weekly})  # read back
    assert len(list(cache.glob("forecast-*"))) == 1
    for name, frame in computed.items():
        assert again[name].equals(frame), name
    assert computed["sales_forecast"].height > 0


def test_read_back_only_for_the_same_inputs_and_options(cache: Path) -> None:
    rows = pl.DataFrame({"customer_id": [2, 1], "stock_code": ["b", "a"], "invoices": [1, 3]})
    result = {"out": pl.DataFrame({"x": [1.5, None], "s": ["é", "a"]})}
    calls, compute = _counting(result)
    first = memo.memoized("m", {"customer_products": rows}, "opts", compute)  # type: ignore[arg-type]
    # The same rows in another order: customer_products is a set of rows (its catalog key).
    shuffled = rows.reverse()
    second = memo.memoized("m", {"customer_products": shuffled}, "opts", compute)  # type: ignore[arg-type]
    assert calls == [1] and second["out"].equals(first["out"])
    memo.memoized("m", {"customer_products": rows}, "other opts", compute)  # type: ignore[arg-type]
    changed = rows.with_columns(invoices=pl.Series([1, 4]))
    memo.memoized("m", {"customer_products": changed}, "opts", compute)  # type: ignore[arg-type]
    assert calls == [1, 1, 1]


def test_a_damaged_entry_is_computed_again(cache: Path) -> None:
    inputs = {"weekly_sales": pl.DataFrame({"net_revenue": [1.0, 2.0]})}
    calls, compute = _counting({"out": pl.DataFrame({"x": [1, 2, 3]})})
    memo.memoized("m", inputs, "", compute)  # type: ignore[arg-type]
    (stored,) = cache.glob("m-*/out.arrow")
    data = bytearray(stored.read_bytes())
    data[-20] ^= 0xFF
    stored.write_bytes(bytes(data))
    got = memo.memoized("m", inputs, "", compute)  # type: ignore[arg-type]
    assert calls == [1, 1] and got["out"]["x"].to_list() == [1, 2, 3]
    memo.memoized("m", inputs, "", compute)  # the damaged entry was replaced: read back
    assert calls == [1, 1]
    (stored.parent / "index.json").unlink()  # a partial entry: no index
    memo.memoized("m", inputs, "", compute)  # type: ignore[arg-type]
    assert calls == [1, 1, 1]


def test_the_cache_can_be_turned_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGS_MODEL_CACHE", "0")
    inputs = {"weekly_sales": pl.DataFrame({"net_revenue": [1.0]})}
    calls, compute = _counting({"out": pl.DataFrame({"x": [1]})})
    memo.memoized("m", inputs, "", compute)  # type: ignore[arg-type]
    memo.memoized("m", inputs, "", compute)  # type: ignore[arg-type]
    assert calls == [1, 1] and not cache.exists()
