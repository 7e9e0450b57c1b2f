"""The files a campaign team opens: one list per segment, and every CSV lgs_fast writes.

Every CSV goes through `write_csv`: money to the penny, and no text cell that a spreadsheet
would run as a formula. A campaign list holds a segment's customers with a net spend above £0,
highest first, with their last purchase date and customer value (`campaign_lists`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lgs_fast.config import (
    MONEY_COLUMNS,
    RECOMMENDATION_KINDS,
    UNCLASSIFIED,
    SegmentRule,
    check_segment_files,
    currency,
    segment_slug,
)
from lgs_fast.errors import InputError, target_error

Tables = dict[str, pl.DataFrame]


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
_FORMULA_START = r"^[=+\-@\t\r]"


def slug(name: str) -> str:
    """A file name for a segment: `Can't Lose` → `cant_lose`."""
    return segment_slug(name)


def spreadsheet_safe(frame: pl.DataFrame, money: Iterable[str] = ()) -> pl.DataFrame:
    """`frame` as a CSV shows it: `money` columns to the penny, no text cell runnable as a formula.

    Money is rounded half away from zero (and -0.00 shown as 0); other numbers (shares,
    percentages, means of days) keep their precision. A text cell starting with `=`, `+`, `-`,
    `@`, a tab or a carriage return gets a leading `'`, which spreadsheets show as text; numbers
    are not text, so a negative monetary stays a number.
    """
    money = set(money)
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if name in money and dtype.is_float():
            rounded = column.round(2, mode="half_away_from_zero")
            columns.append(pl.when(rounded == 0).then(0.0).otherwise(rounded).alias(name))
        elif isinstance(dtype, (pl.String, pl.Categorical, pl.Enum)):
            text = column.cast(pl.String)
            columns.append(
                pl.when(text.str.contains(_FORMULA_START))
                .then(pl.concat_str(pl.lit("'"), text))
                .otherwise(text)
                .alias(name)
            )
        else:
            columns.append(column)
    return frame.select(columns)


def write_csv(frame: pl.DataFrame, path: Path, table: str) -> None:
    """`frame`, a row set of output table `table`, as a CSV fit to open in a spreadsheet."""
    spreadsheet_safe(frame, MONEY_COLUMNS.get(table, ())).write_csv(path)


def check_csv_target(path: Path, lake: Path) -> None:
    """A file of the user's choosing may go anywhere but inside the lake (it could replace the
    manifest or a part file) or into a directory that is not there."""
    target, root = path.resolve(), lake.resolve()
    if target == root or root in target.parents:
        raise InputError(f"{path}: is inside the lake {lake}; choose a path outside it")
    if not target.parent.is_dir():
        raise InputError(f"{path}: no directory {path.parent} to write it in")
    if target.is_dir():
        raise InputError(f"{path}: is a directory; name a file")
    check_regular_target(path)


# What a path is, for the message when it is not a regular file.
_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
}


def check_regular_target(path: Path) -> None:
    """A file written by renaming over `path` replaces whatever is there: a device node, a
    FIFO or a symbolic link would be replaced by a regular file (a `--csv /dev/full` made
    /dev/full a file, exit 0). Only a new path or a regular file is written."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise InputError(
            f"{path}: is {kind}; lgs_fast writes only a new file or replaces a regular one, "
            "so name a file (for a link, the file it points to)"
        )


def write_csv_file(frame: pl.DataFrame, path: Path, table: str) -> None:
    """`write_csv` to a path of the user's choosing, whole or not at all: written beside it,
    then renamed over it, so a kill or a full disk never leaves half a file there."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_csv(frame, tmp, table)
        check_regular_target(path)  # again: it may have changed since the run began
        os.replace(tmp, path)
    except OSError as err:
        # The temporary name means nothing to the user: name the file they asked for.
        raise target_error(err, path, tmp) from None
    finally:
        # Only ever a cleanup: its own failure (the name too long to exist, say) must not hide
        # the error above.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


_VALUE_COLUMNS = ("probability_alive", "expected_purchases", "clv")

# The columns of a campaign list, in order: who, where, when last, the scores, how the segment
# changed, the action and what to offer, then the customer's value.
CAMPAIGN_COLUMNS = (
    "customer_id", "country", "last_purchase", "recency", "frequency", "monetary",
    "r_score", "f_score", "m_score", "rfm_score", "segment", "movement", "action",
)  # fmt: skip


def _customer_value(tables: Tables) -> pl.DataFrame:
    """The CLV columns of the campaign lists (empty when no model was fitted)."""
    if "clv" in tables:
        return tables["clv"].select("customer_id", *_VALUE_COLUMNS)
    schema = {"customer_id": pl.Int64, **dict.fromkeys(_VALUE_COLUMNS, pl.Float64)}
    return pl.DataFrame(schema=schema)


def _last_purchases(tables: Tables) -> pl.DataFrame:
    """Each customer's last purchase day, taken from `clv_summary`: both engines compute it there
    the same way (the latest day with a purchase line), so rfm needs no second copy of it."""
    if "clv_summary" in tables:
        return tables["clv_summary"].select("customer_id", "last_purchase")
    return pl.DataFrame(schema={"customer_id": pl.Int64, "last_purchase": pl.Date})


def _movement(tables: Tables) -> pl.DataFrame:
    """Each customer's `movement` (`Champions → At Risk`, `new`, `same`), when computed."""
    if "segment_movement" in tables:
        return tables["segment_movement"].select("customer_id", "movement")
    return pl.DataFrame(schema={"customer_id": pl.Int64, "movement": pl.String})


def _recommended(tables: Tables) -> pl.DataFrame:
    """`reorder_1` … `reorder_N`, then `new_1` … `new_N` per customer (`CODE DESCRIPTION`), one
    column per kind and rank the `recommendations` table has; customers without any are not in
    it."""
    if "recommendations" not in tables or tables["recommendations"].height == 0:
        return pl.DataFrame(schema={"customer_id": pl.Int64})
    recs = tables["recommendations"].with_columns(
        product=pl.concat_str("stock_code", "description", separator=" ", ignore_nulls=True),
        column=pl.format("{}_{}", pl.col("kind"), pl.col("rank")),
    )
    columns = [
        f"{kind}_{rank}"
        for kind in RECOMMENDATION_KINDS
        for rank in recs.filter(pl.col("kind") == kind)["rank"].unique().sort()
    ]
    wide = recs.pivot("column", index="customer_id", values="product")
    return wide.select("customer_id", *columns)


def campaign_customers(tables: Tables) -> pl.DataFrame:
    """Every scored customer with the columns of a campaign list: `CAMPAIGN_COLUMNS`, then the
    recommended products, then the CLV columns."""
    actions = tables["segments"].select("segment", "action")
    recommended = _recommended(tables)
    return (
        tables["rfm"]
        .join(actions, on="segment", how="left")
        .join(_last_purchases(tables), on="customer_id", how="left")
        .join(_movement(tables), on="customer_id", how="left")
        .join(recommended, on="customer_id", how="left")
        .join(_customer_value(tables), on="customer_id", how="left")
        .select(*CAMPAIGN_COLUMNS, *recommended.columns[1:], *_VALUE_COLUMNS)
    )


# A customer whose net spend is £0.00 or less to the penny (returns that cancel what they
# bought) is nobody to thank, reward or win back: a campaign would spend on an account that
# brought nothing. Compared as shown, so no list shows a customer at £0.00.
LISTED = pl.col("monetary").round(2, mode="half_away_from_zero") > 0


def campaign_lists(tables: Tables) -> dict[str, pl.DataFrame]:
    """The campaign list of each segment with customers: net spend above £0 only, highest spend
    first (ties by customer id). A segment whose customers are all left out keeps an empty list,
    so every segment still has its file."""
    customers = campaign_customers(tables)
    names = _segment_order(tables, customers["segment"].unique().to_list())
    # The table's own Unclassified is the fallback, which the check adds itself.
    rules = tuple(SegmentRule(0, n, "", "") for n in names if n != UNCLASSIFIED)
    check_segment_files(rules, "rfm table")
    listed = customers.filter(LISTED).sort(
        ["monetary", "customer_id"], descending=[True, False], nulls_last=True
    )
    return {name: listed.filter(pl.col("segment") == name) for name in names}


def _segment_order(tables: Tables, names: list[str]) -> list[str]:
    """`names` in the order of the segment table, then any it lacks alphabetically."""
    order = [n for n in tables["segments"]["segment"].to_list() if n in names]
    return order + sorted(set(names) - set(order))


def campaign_counts(tables: Tables) -> pl.DataFrame:
    """Per segment with customers: customers, how many are listed, how many are left out."""
    customers = campaign_customers(tables)
    names = _segment_order(tables, customers["segment"].unique().to_list())
    counts = customers.group_by("segment").agg(
        customers=pl.len().cast(pl.Int64),
        listed=LISTED.sum().cast(pl.Int64),
        left_out=(~LISTED).sum().cast(pl.Int64),
    )
    order = pl.DataFrame({"segment": names}, schema={"segment": pl.String})
    return order.join(counts, on="segment", how="left", maintain_order="left")


def campaign_overview(tables: Tables) -> pl.DataFrame:
    """Per segment, in the report's order (largest net spend first): the customers on its list,
    the value at stake (their CLV over the horizon where it was computed, else their net spend
    so far, as `value_kind` says), the action and the list's file."""
    lists = campaign_lists(tables)  # in the segment table's order
    actions = dict(tables["segments"].select("segment", "action").iter_rows())
    rows = []
    for segment, listed in lists.items():
        has_clv = listed.height > 0 and listed["clv"].null_count() < listed.height
        value = listed["clv"].sum() if has_clv else listed["monetary"].sum()
        rows.append(
            {
                "segment": segment, "customers": listed.height,
                "value_at_stake": float(value or 0.0),
                "value_kind": "expected value" if has_clv else "net spend so far",
                "action": actions.get(segment), "file": f"segments/{slug(segment)}.csv",
            }
        )  # fmt: skip
    schema = {
        "segment": pl.String, "customers": pl.Int64, "value_at_stake": pl.Float64,
        "value_kind": pl.String, "action": pl.String, "file": pl.String,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def campaign_note(tables: Tables) -> str:
    """One line for the report: the rule of the campaign lists and who it left out."""
    counts = campaign_counts(tables).filter(pl.col("left_out") > 0)
    left_out = int(counts["left_out"].sum())
    rule = (
        "Campaign lists (segments/SEGMENT.csv and the segment sheets of lgs_report.xlsx) hold "
        f"the customers whose net spend is above {currency()}0, highest spend first, with their last "
        "purchase date; "
    )
    if left_out == 0:
        return rule + "no customer was left out."
    where = ", ".join(f"{s} {n:,}" for s, n in counts.select("segment", "left_out").iter_rows())
    noun = "customer" if left_out == 1 else "customers"
    return (
        rule
        + f"{left_out:,} {noun} with a net spend of {currency()}0 or less are left out ({where})."
    )


# Column headings for people (`--human-headers`): what a mail tool or a spreadsheet user reads.
HUMAN_HEADERS = {
    "customer_id": "Customer ID", "country": "Country", "last_purchase": "Last purchase",
    "recency": "Days since last purchase", "frequency": "Purchase invoices",
    "monetary": "Net spend", "r_score": "R score", "f_score": "F score", "m_score": "M score",
    "rfm_score": "RFM score", "segment": "Segment", "movement": "Segment change",
    "probability_alive": "Still buying (probability)", "expected_purchases": "Expected purchases",
    "clv": "Expected value",
}  # fmt: skip
MONEY_HEADINGS = {"monetary", "clv"}  # headings followed by the currency symbol


def human_header(column: str) -> str:
    """`customer_id` → `Customer ID`; `reorder_2` → `Re-order 2`; `new_1` → `New to you 1`."""
    if column in HUMAN_HEADERS:
        heading = HUMAN_HEADERS[column]
        return f"{heading} {currency()}" if column in MONEY_HEADINGS else heading
    kind, _, rank = column.rpartition("_")
    if kind == "reorder" and rank.isdigit():
        return f"Re-order {rank}"
    if kind == "new" and rank.isdigit():
        return f"New to you {rank}"
    return column.replace("_", " ").capitalize()


@dataclass(frozen=True)
class ListSettings:
    """How the campaign lists are written: `contacts` (a table keyed by customer_id, from
    `read_contacts`) joined on after customer_id; `human_headers` for people's headings;
    `control`, the share of each list held back as a control group (None: nobody), drawn with
    `seed`."""

    contacts: pl.DataFrame | None = None
    human_headers: bool = False
    control: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.control is not None and not CONTROL_RANGE[0] <= self.control <= CONTROL_RANGE[1]:
            raise InputError(
                f"--control {self.control:.0%}: hold back from 1% to 50% of each list "
                "(e.g. --control 10%)"
            )


CONTROL_RANGE = (0.01, 0.5)
CONTACT, CONTROL = "contact", "control"  # the values of a list's `group` column
CAMPAIGNS_FILE = "campaigns.json"  # OUT's record of the lists as they were sent


def control_draw(segment: str, customer_ids: Sequence[int], seed: int) -> list[float]:
    """A number in [0, 1) per customer of `segment`'s list, from SHA-256 of (seed, segment,
    customer): the same customer, list and seed always draw the same number, whatever the
    engine, the run or the order of the rows, so re-running an analysis holds back the same
    customers; a customer is held back when the number is below the control share."""
    draws = []
    for customer in customer_ids:
        digest = hashlib.sha256(f"{seed}\x1f{segment}\x1f{customer}".encode()).digest()
        draws.append(int.from_bytes(digest[:8], "big") / 2**64)
    return draws


def split_list(
    segment: str, rows: pl.DataFrame, settings: ListSettings | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(contacted, held back): `rows` with a `group` column after customer_id; everyone is
    contacted without a control share."""
    if settings is None or settings.control is None:
        held = [False] * rows.height
    else:
        draws = control_draw(segment, rows["customer_id"].to_list(), settings.seed)
        held = [d < settings.control for d in draws]
    grouped = rows.with_columns(
        group=pl.Series(held, dtype=pl.Boolean).replace_strict({True: CONTROL, False: CONTACT})
    ).select("customer_id", "group", pl.exclude("customer_id", "group"))
    return grouped.filter(pl.col("group") == CONTACT), grouped.filter(pl.col("group") == CONTROL)


def read_contacts(path: Path) -> pl.DataFrame:
    """A contacts CSV: a `customer_id` column (whole numbers, each once) and any others (email,
    name, company…), kept as text. Bad input is one line naming the file, row and column."""
    try:
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except FileNotFoundError:
        raise InputError(f"{path}: no such contacts file") from None
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as err:
        raise InputError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    key = next((c for c in frame.columns if c.strip().casefold() == "customer_id"), None)
    if key is None:
        raise InputError(f"{path}: no customer_id column (columns: {', '.join(frame.columns)})")
    frame = frame.rename({key: "customer_id"})
    ids = frame["customer_id"].str.strip_chars().cast(pl.Int64, strict=False)
    bad = frame.with_row_index("row").filter(ids.is_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(
            f"{path}: row {row['row'] + 2}, column customer_id: {row['customer_id']!r} is not a "
            "customer id (a whole number)"
        )
    frame = frame.with_columns(customer_id=ids)
    repeated = frame.with_row_index("row").filter(pl.col("customer_id").is_duplicated())
    if repeated.height:
        second = repeated.filter(pl.col("customer_id") == repeated["customer_id"][0]).row(
            1, named=True
        )
        raise InputError(
            f"{path}: row {second['row'] + 2}, column customer_id: customer {second['customer_id']} "
            "is listed twice; keep one row per customer"
        )
    return frame


def export_list(
    rows: pl.DataFrame, settings: ListSettings | None = None, *, to_the_penny: bool = True
) -> pl.DataFrame:
    """A campaign list as its file shows it: spreadsheet-safe, the contacts joined on after
    customer_id, no `action` column (the same on every row: it is in the report, the workbook's
    Contents and the segment table), no column that is empty on every row, headings as asked.
    Money is rounded to the penny unless `to_the_penny` is false (the workbook formats it)."""
    settings = settings or ListSettings()
    money = MONEY_COLUMNS["campaign_list"] if to_the_penny else ()
    shown = spreadsheet_safe(rows, money).drop("action")
    if settings.contacts is not None:
        contacts = settings.contacts.rename(
            {
                c: f"contact_{c}"
                for c in settings.contacts.columns
                if c in shown.columns and c != "customer_id"
            }
        )
        shown = shown.join(
            spreadsheet_safe(contacts), on="customer_id", how="left", maintain_order="left"
        ).select("customer_id", *contacts.columns[1:], *shown.columns[1:])
    shown = shown.select(
        [c for c in shown.columns if shown[c].null_count() < shown.height or c == "customer_id"]
    )
    if settings.human_headers:
        shown = shown.rename({c: human_header(c) for c in shown.columns})
    return shown


def write_segment_exports(
    tables: Tables, directory: Path, settings: ListSettings | None = None
) -> dict[str, int]:
    """`SEGMENT.csv` per segment for the campaign team (`campaign_lists`, as `export_list`
    shows them), UTF-8 with a byte-order mark so that Excel reads `£` and `→` right; returns
    rows written per file.

    Distinct segments never share a file: names that would (`Hi There`, `hi-there`) are refused
    when the segment map is loaded, and here again for tables built some other way.
    """
    lists = campaign_lists(tables)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for segment, rows in lists.items():
        contact, control = split_list(segment, rows, settings)
        if settings is None or settings.control is None:
            contact = contact.drop("group")  # one group: the column would say nothing
        path = directory / f"{slug(segment)}.csv"
        export_list(contact, settings).write_csv(path, include_bom=True)
        written[path.name] = contact.height
        if settings is not None and settings.control is not None:
            # Apart, never in the file a mail tool reads: a control customer must not be sent to.
            held = directory / f"{slug(segment)}.{CONTROL}.csv"
            export_list(control, settings).write_csv(held, include_bom=True)
            written[held.name] = control.height
    return written


def campaign_record(
    tables: Tables, settings: ListSettings, sent: dt.datetime | None, options: dict[str, str]
) -> dict[str, Any]:
    """What `OUT/campaigns.json` records: when the lists were made (the analysis' reference
    time: purchases after it are the campaign's outcome), the control share and seed, and per
    list its files and its contacted and held-back customers; `options`: the analysis'."""
    lists = []
    for segment, rows in campaign_lists(tables).items():
        contact, control = split_list(segment, rows, settings)
        lists.append(
            {
                "segment": segment,
                "file": f"segments/{slug(segment)}.csv",
                "control_file": f"segments/{slug(segment)}.{CONTROL}.csv"
                if settings.control is not None
                else None,
                "contacted": contact.height,
                "held_back": control.height,
                CONTACT: contact["customer_id"].to_list(),
                CONTROL: control["customer_id"].to_list(),
            }
        )
    return {
        "version": 1,
        "sent": sent.isoformat() if sent is not None else None,
        "control": settings.control,
        "seed": settings.seed,
        "options": options,
        "lists": lists,
    }


def without_contact(tables: Tables, settings: ListSettings | None) -> tuple[int, int]:
    """(customers on the lists, of them without a row in the contacts file)."""
    listed = pl.concat([rows.select("customer_id") for rows in campaign_lists(tables).values()])
    if settings is None or settings.contacts is None:
        return listed.height, listed.height
    missing = listed.join(settings.contacts.select("customer_id"), on="customer_id", how="anti")
    return listed.height, missing.height
