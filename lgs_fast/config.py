"""The constants that carry meaning, in one place: presets, options, segment rules.

Both engines and the pandas reference read these; DESIGN.md ("Definitions") is the prose.
Importing this module loads no engine (the command line reads its choices and defaults before
any engine is needed): Polars is imported only to check a segment pattern or build the rules
table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tomllib
import unicodedata
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lgs_fast.errors import InputError

if TYPE_CHECKING:
    import polars as pl

Preset = Literal["standard", "notebook"]
PRESETS: Final[tuple[Preset, ...]] = ("standard", "notebook")

# The engines that compute the tables (`lgs_fast.engines.polars`, `lgs_fast.engines.duckdb`, `lgs_fast.engines.spark`);
# all give the same.
EngineName = Literal["polars", "duckdb", "spark"]
ENGINES: Final[tuple[EngineName, ...]] = ("polars", "duckdb", "spark")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(lake: str | Path) -> bool:
    """Whether `lake` names a lake by URI (`s3a://…`, `hdfs://…`, `file:///…`), which only the
    Spark engine reads, rather than a local directory."""
    return isinstance(lake, str) and _URI.match(lake) is not None


# Stock codes that are not products: postage, manual entries, carriage, discounts, samples,
# fees, charity, gift vouchers and tests. Matched against the whole code.
NON_PRODUCT_PATTERN: Final = (
    r"^(?:POST|DOT|M|m|C2|D|S|B|PADS|CRUK|AMAZONFEE|BANK CHARGES|TEST\d+|gift_\d+_\d+)$"
)

UNCLASSIFIED: Final = "Unclassified"

# Segment movement compares RFM at the reference time T with RFM this many days earlier,
# unless --compare-as-of names the earlier time: a quarter, long enough for customers to move.
COMPARE_DAYS: Final = 90

# The money columns of each output table (pounds). Wherever money is shown (CSV files, segment
# lists, the report) it is rounded to the penny; Parquet keeps full precision. Shares,
# percentages, ratios, means of days or counts are not money and keep their precision. A table
# added to the outputs lists its money columns here; a table not listed has none.
MONEY_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "overview": ("placed_sales", "cancelled_value", "net_revenue", "mean_invoice_total"),
    "invoice_amounts": (
        "min", "mean", "median", "mode", "max", "p25", "p75", "p85", "p95", "p99",
    ),
    "invoice_histogram": ("bin_start", "bin_end"),
    "monthly": ("sales",),
    "rfm": ("monetary",),
    "segments": ("mean_monetary", "total_monetary"),
    "top_countries": ("sales",),
    "top_products": ("net_revenue", "placed_sales", "cancelled_value"),
    "reversed_invoices": ("total",),
    "clv_summary": ("monetary_value",),
    "segment_transitions": ("net_revenue",),
    "clv": ("monetary_value", "expected_spend", "clv"),
    "clv_segments": ("mean_clv", "total_clv"),
    "weekly_sales": ("net_revenue", "placed_sales"),
    "sales_forecast": ("net_revenue", "lo_80", "hi_80", "lo_95", "hi_95"),
    "forecast_backtest": ("mae",),
    "forecast_models": ("sigma",),
    # OUT/segments/SEGMENT.csv, the campaign lists: rfm's columns and the customer's CLV.
    "campaign_list": ("monetary", "clv"),
}  # fmt: skip


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


_RULE_FIELDS: Final = ("name", "pattern", "action")


def segment_slug(name: str) -> str:
    """The campaign file stem of a segment: `Can't Lose` → `cant_lose`, `Café` → `cafe`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower().replace("'", "")).strip("_") or "segment"


# The longest file name (in bytes) Linux, macOS and Windows file systems all take.
NAME_MAX: Final = 255

# The values of segment_movement that are not segments: no segment may take their names.
MOVEMENT_MARKERS: Final = ("new", "same")


def check_segment_files(rules: tuple[SegmentRule, ...], origin: str = "segment map") -> None:
    """Distinct segments must get distinct campaign files (`OUT/segments/SLUG.csv`).

    Two names that make the same file name (`Hi There`, `hi-there`) are refused rather than
    renamed: the campaign team finds a list by its segment's name, and a silent `_2` would leave
    them guessing which list is which. `Unclassified` (customers no rule matches) counts too.
    """
    for rule in rules:
        if rule.name == UNCLASSIFIED:
            raise InputError(
                f"{origin}: a segment may not be called {UNCLASSIFIED!r}: it holds the customers "
                "no rule matches, and the two would merge; rename it"
            )
        file_name = f"{segment_slug(rule.name)}.csv"
        if len(file_name.encode()) > NAME_MAX:
            # Checked here, before any work: the file system would refuse it only at the end.
            raise InputError(
                f"{origin}: segment {rule.name[:40]!r}… makes a campaign file name of "
                f"{len(file_name):,} characters, beyond the {NAME_MAX} a file system allows; "
                "shorten it"
            )
        if rule.name in MOVEMENT_MARKERS:
            raise InputError(
                f"{origin}: a segment may not be called {rule.name!r}: segment movement uses "
                f"{' and '.join(map(repr, MOVEMENT_MARKERS))} for customers who were not scored "
                "then or did not move; rename it"
            )
    seen: dict[str, str] = {}
    for name in [*(r.name for r in rules), UNCLASSIFIED]:
        slug = segment_slug(name)
        other = seen.setdefault(slug, name)
        if other != name:
            raise InputError(
                f"{origin}: segments {other!r} and {name!r} would share the campaign file "
                f"{slug}.csv; rename one of them"
            )


def check_score_range(
    rules: tuple[SegmentRule, ...], bins: int, origin: str = "the segment map"
) -> None:
    """A segment map must fit the scores of `bins` bins (R and F from 1 to `bins`).

    The map's patterns must reach scores as high as `bins` (the quintile map with --bins 7
    left the pairs with a 6 or 7, 796 of 1,776 customers, Unclassified), and every segment the
    map can reach with scores up to 9 must be reachable with these (the quintile map with
    --bins 2 put every customer in Hibernating). Either is refused in one line, before any
    work. Pairs a map leaves unmatched within its own range are its choice: Unclassified.
    """
    import polars as pl  # the engine's own regex dialect, as the segments are assigned

    pairs = [f"{r}{f}" for r in range(1, 10) for f in range(1, 10)]
    winners: list[str | None] = [None] * len(pairs)
    scores = pl.Series(pairs)
    for rule in rules:  # first match wins
        for i, matched in enumerate(scores.str.contains(rule.regex).to_list()):
            if matched and winners[i] is None:
                winners[i] = rule.name
    highest = [max(int(pair[0]), int(pair[1])) for pair in pairs]
    within = [i for i in range(len(pairs)) if highest[i] <= bins]
    top = max((highest[i] for i in range(len(pairs)) if winners[i] is not None), default=0)
    unmatched = [pairs[i] for i in within if winners[i] is None]
    if top < bins:
        raise InputError(
            f"{origin}: its patterns reach scores up to {top}; with --bins {bins}, "
            f"{len(unmatched)} of the {len(within)} pairs of R and F scores match no segment "
            f"(the first: {unmatched[0]}), so their customers would be {UNCLASSIFIED}; give a "
            f"map made for {bins} bins with --segments"
        )
    reachable = {winners[i] for i in within}
    beyond = [r.name for r in rules if r.name in set(winners) and r.name not in reachable]
    if beyond:
        noun = "segment" if len(beyond) == 1 else "segments"
        raise InputError(
            f"{origin}: with --bins {bins}, {len(beyond)} {noun} of the map can never be "
            f"reached ({beyond[0]!r} first): they need scores above {bins}; give a map "
            f"made for {bins} bins with --segments"
        )


def _read_segment_map(origin: str, path: str | Path | None) -> dict[str, object]:
    try:
        if path is None:
            data = resources.files("lgs_fast").joinpath(origin).read_bytes()
        else:
            data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise InputError(f"{origin}: no such file") from err
    except IsADirectoryError as err:
        raise InputError(f"{origin}: is a directory, not a segment map") from err
    except OSError as err:
        raise InputError(f"{origin}: cannot read it: {err.strerror or err}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{origin}: not a segment map: not a TOML text file (byte {err.start} is not UTF-8)"
        ) from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = " ".join(str(err).split())
        raise InputError(f"{origin}: not a segment map: invalid TOML: {message}") from err


def _segment_rule(origin: str, number: int, entry: object) -> SegmentRule:
    where = f"{origin}: [[segment]] number {number}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: not a table of name, pattern and action")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']!r})"
    unknown = sorted(set(entry) - set(_RULE_FIELDS))
    if unknown:
        raise InputError(
            f"{where}: unknown field {', '.join(map(repr, unknown))}; "
            f"a segment has {', '.join(_RULE_FIELDS)}"
        )
    for field in _RULE_FIELDS:
        value = entry.get(field, "" if field == "action" else None)
        if value is None:
            raise InputError(f"{where}: no {field}")
        if not isinstance(value, str):
            raise InputError(f"{where}: {field} must be text, not {type(value).__name__}")
    name, pattern, action = (str(entry.get(field, "")) for field in _RULE_FIELDS)
    if not name.strip():
        raise InputError(f"{where}: the name is empty")
    rule = SegmentRule(number, name, pattern, action)
    import polars as pl  # the engine's own regex dialect decides what a valid pattern is

    try:
        pl.Series(["11"]).str.contains(rule.regex)
    except pl.exceptions.ComputeError as err:
        raise InputError(f"{where}: bad pattern {pattern!r}") from err
    return rule


def load_segment_rules(path: str | Path | None = None, *, bins: int = 5) -> tuple[SegmentRule, ...]:
    """Segment rules from a TOML file (`[[segment]]` name/pattern/action), default: shipped map.

    Anything else (a binary file, invalid TOML, a missing, misspelt or mistyped field, a bad
    pattern, two segments that would share a campaign file) is an `InputError` of one line
    naming the file and the entry.
    """
    origin = str(path) if path else default_segment_file(bins)
    document = _read_segment_map(origin, path)
    unknown = sorted(set(document) - {"segment"})
    if unknown:
        raise InputError(
            f"{origin}: not a segment map: unknown key {', '.join(map(repr, unknown))} "
            "(expected only [[segment]] entries)"
        )
    entries = document.get("segment")
    if not isinstance(entries, list) or not entries:
        raise InputError(
            f"{origin}: not a segment map: no [[segment]] entries with name, pattern and action"
        )
    rules = tuple(_segment_rule(origin, i, entry) for i, entry in enumerate(entries, start=1))
    check_segment_files(rules, origin)
    return rules


def segment_rules_frame(rules: tuple[SegmentRule, ...]) -> pl.DataFrame:
    """Rules as a table (the DuckDB engine joins it; the report lists it)."""
    import polars as pl

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


# The two kinds of product recommendation (DESIGN.md "Recommendations"), in the order tables and
# campaign lists show them: the customer's own products to order again, then products new to them.
RECOMMENDATION_KINDS: Final = ("reorder", "new")


def as_datetime(value: dt.date | dt.datetime) -> dt.datetime:
    """A date as its midnight; a datetime as it is (every range bound of every engine)."""
    return value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())


# The words of segment movement (DESIGN.md "Segment movement"): a customer not yet scored at T0
# is `new` (segment_then and movement), one in the same segment `same`, else THEN → NOW.
MOVEMENT_NEW: Final = "new"
MOVEMENT_SAME: Final = "same"
MOVEMENT_ARROW: Final = " → "

# The segments recommended to when no others are named: those a campaign wins back or pushes.
RECOMMENDED_SEGMENTS: Final = ("Can't Lose", "At Risk", "Need Attention")


@dataclass(frozen=True)
class Options:
    """Everything an analysis depends on besides the lines themselves."""

    preset: Preset = "standard"
    as_of: dt.datetime | None = None
    compare_as_of: dt.datetime | None = None  # None: COMPARE_DAYS before the reference time
    bins: int = 5
    rules: tuple[SegmentRule, ...] = ()  # empty: the shipped map for `bins`
    top: int = 10
    histogram_bins: int = 40
    # Who gets product recommendations, and how many of each kind (DESIGN.md "Recommendations").
    # None: those of RECOMMENDED_SEGMENTS the segment map has; names given must all be in it.
    recommend_segments: tuple[str, ...] | None = None
    recommendations: int = 3

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 2 <= self.bins <= 9:
            raise InputError(
                f"--bins must be between 2 and 9 (one digit per score), not {self.bins}"
            )
        if self.top < 1:
            raise InputError(f"--top must be at least 1, not {self.top}")
        if self.recommendations < 1:
            raise InputError(
                f"recommendations per customer must be at least 1, not {self.recommendations}"
            )
        if isinstance(self.recommend_segments, str):  # one name would be read letter by letter
            raise InputError(
                f"recommend_segments is a list of segment names, not {self.recommend_segments!r}"
            )
        then, now = self.compare_as_of, self.as_of
        if then is not None and now is not None and then >= now:
            raise InputError(
                f"--compare-as-of {then} is not before --as-of {now}: "
                "segment movement compares with an earlier time"
            )
        origin = "the segment map"
        if not self.rules:
            object.__setattr__(self, "rules", load_segment_rules(bins=self.bins))
            origin = f"the shipped segment map lgs_fast/{default_segment_file(self.bins)}"
        check_segment_files(self.rules)
        check_score_range(self.rules, self.bins, origin)
        known = [rule.name for rule in self.rules]
        if self.recommend_segments is None:
            wanted = tuple(name for name in RECOMMENDED_SEGMENTS if name in known)
            object.__setattr__(self, "recommend_segments", wanted)
        else:
            # Checked here, not in the CLI: a notebook's unknown name was silently nobody.
            object.__setattr__(self, "recommend_segments", tuple(self.recommend_segments))
            # Unclassified, the fallback of every map, is a segment too.
            unknown = [n for n in self.recommend_segments if n not in (*known, UNCLASSIFIED)]
            if unknown:
                raise InputError(
                    f"--recommend: no segment {unknown[0]!r} in the segment map "
                    f"(its segments: {', '.join(known)})"
                )


@dataclass(frozen=True)
class Presentation:
    """How the outputs address their reader: the report's title, the shop's currency symbol
    (amounts are in the shop's one currency; only the symbol shown changes) and the time zone
    the lines' times are in (the lake stores local times without a zone)."""

    title: str = "London Gift Shop: customer analytics"
    currency: str = "£"
    time_zone: str = "Europe/London"

    def __post_init__(self) -> None:
        if not self.title.strip() or len(self.title) > 120 or not self.title.isprintable():
            raise InputError(
                f"--title {self.title!r}: give one line of 1 to 120 printable characters"
            )
        # The symbol goes into chart expressions and spreadsheet number formats, quoted.
        if not (
            1 <= len(self.currency) <= 4
            and self.currency.isprintable()
            and self.currency.strip() == self.currency
            and not any(c in self.currency for c in "'\"\\")
        ):
            raise InputError(
                f"--currency {self.currency!r}: give a symbol of 1 to 4 characters such as £, "
                "$, € or CHF (no quotes, backslashes or spaces around it)"
            )
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(
                f"--time-zone {self.time_zone!r}: not a time zone name such as Europe/London "
                "or America/New_York"
            ) from None


# The presentation in force. The currency symbol reaches some fifty labels in the report,
# charts, workbook and lists; a context variable (as `decimal.localcontext` does for
# precision) sets it for one run instead of threading it through every function that words a
# label. `presenting` sets it; the default is the shop's own.
_DEFAULT = Presentation()  # frozen: one shared default is safe
_PRESENTATION: ContextVar[Presentation] = ContextVar("presentation", default=_DEFAULT)


def current_presentation() -> Presentation:
    """The presentation in force (`presenting`), else the default one."""
    return _PRESENTATION.get()


@contextlib.contextmanager
def presenting(chosen: Presentation) -> Iterator[Presentation]:
    """Word every output made inside the block by `chosen`."""
    token = _PRESENTATION.set(chosen)
    try:
        yield chosen
    finally:
        _PRESENTATION.reset(token)


def currency() -> str:
    """The currency symbol in force: `£` unless `presenting` says otherwise."""
    return _PRESENTATION.get().currency


def cache_directory() -> Path:
    """Where lgs_fast keeps what it can rebuild: $XDG_CACHE_HOME/lgs_fast, else
    ~/.cache/lgs_fast."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lgs_fast"
