"""The constants that carry meaning, in one place: presets, options, segment rules.

Both engines and the pandas reference read these; DESIGN.md ("Definitions") is the prose.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import polars as pl

from lgs_fast.errors import InputError

Preset = Literal["standard", "notebook"]
PRESETS: Final[tuple[Preset, ...]] = ("standard", "notebook")

# Stock codes that are not products: postage, manual entries, carriage, discounts, samples,
# fees, charity, gift vouchers and tests. Matched against the whole code.
NON_PRODUCT_PATTERN: Final = (
    r"^(?:POST|DOT|M|m|C2|D|S|B|PADS|CRUK|AMAZONFEE|BANK CHARGES|TEST\d+|gift_\d+_\d+)$"
)

UNCLASSIFIED: Final = "Unclassified"


@dataclass(frozen=True)
class SegmentRule:
    priority: int
    name: str
    pattern: str
    action: str

    @property
    def regex(self) -> str:
        """The pattern anchored to the whole two-digit "rf" string."""
        return f"^(?:{self.pattern})$"


def default_segment_file(bins: int = 5) -> str:
    """The shipped map for `bins` score bins: quartiles have their own, otherwise quintiles'."""
    return "segments_4.toml" if bins == 4 else "segments.toml"


def load_segment_rules(path: str | Path | None = None, *, bins: int = 5) -> tuple[SegmentRule, ...]:
    """Segment rules from a TOML file (`[[segment]]` name/pattern/action), default: shipped map."""
    origin = str(path) if path else default_segment_file(bins)
    try:
        if path is None:
            text = resources.files("lgs_fast").joinpath(origin).read_text()
        else:
            text = Path(path).read_text()
        raw = tomllib.loads(text)["segment"]
        rules = tuple(
            SegmentRule(i, str(r["name"]), str(r["pattern"]), str(r.get("action", "")))
            for i, r in enumerate(raw, start=1)
        )
    except FileNotFoundError as err:
        raise InputError(f"{origin}: no such file") from err
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise InputError(
            f"{origin}: not a segment map ([[segment]] with name and pattern): {err}"
        ) from err
    if not rules:
        raise InputError(f"{origin}: no [[segment]] rules")
    for rule in rules:
        try:
            pl.Series(["11"]).str.contains(rule.regex)
        except pl.exceptions.ComputeError as err:
            raise InputError(
                f"{origin}: segment {rule.name!r}: bad pattern {rule.pattern!r}"
            ) from err
    return rules


def segment_rules_frame(rules: tuple[SegmentRule, ...]) -> pl.DataFrame:
    """Rules as a table (the DuckDB engine joins it; the report lists it)."""
    return pl.DataFrame(
        {
            "priority": [r.priority for r in rules],
            "segment": [r.name for r in rules],
            "pattern": [r.regex for r in rules],
            "action": [r.action for r in rules],
        },
        schema={
            "priority": pl.Int32,
            "segment": pl.String,
            "pattern": pl.String,
            "action": pl.String,
        },
    )


@dataclass(frozen=True)
class Options:
    """Everything an analysis depends on besides the lines themselves."""

    preset: Preset = "standard"
    as_of: dt.datetime | None = None
    bins: int = 5
    rules: tuple[SegmentRule, ...] = ()  # empty: the shipped map for `bins`
    top: int = 10
    histogram_bins: int = 40

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 2 <= self.bins <= 9:
            raise InputError(
                f"--bins must be between 2 and 9 (one digit per score), not {self.bins}"
            )
        if self.top < 1:
            raise InputError(f"--top must be at least 1, not {self.top}")
        if not self.rules:
            object.__setattr__(self, "rules", load_segment_rules(bins=self.bins))

    @property
    def quantiles(self) -> list[float]:
        """The inner score edges k/B, k = 1..B-1 (edges 0 and B are min and max)."""
        return [k / self.bins for k in range(1, self.bins)]
