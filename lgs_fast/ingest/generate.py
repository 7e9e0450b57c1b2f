"""Synthetic invoice lines that look like LGS's, at any scale, for scale tests and benchmarks.

Calibrated from the shipped real data (UCI Online Retail): basket sizes, products with their
prices, quantities and descriptions (non-product codes included), the monthly rhythm with its
November peak, times of day, countries, guest invoices without a customer, cancellations, and
a heavy-tailed number of invoices per customer. Invoices are made a chunk at a time with
NumPy's PCG64 from one seed, so a run is deterministic and 100M lines stream in bounded memory.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lgs_fast.errors import InputError, LakeError
from lgs_fast.lake import Manifest, Progress, local_lake, write_lake
from lgs_fast.schema import POLARS_SCHEMA

REAL = Path(__file__).resolve().parent / "data" / "online_retail.parquet"
CHUNK_LINES = 1_000_000
# The wholesale preset (`customers=`): each customer orders this share of their lines from a
# range of `RANGE` products of their own (drawn as lines are, so best sellers are in most
# ranges), the rest from the whole catalogue: a wholesaler re-orders what sells for them.
RANGE = 200
RANGE_SHARE = 0.8
MAX_CUSTOMERS = 1_000_000
_FIRST_INVOICE = 1_000_000
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Calibration:
    """What the generator samples from, all measured on the real lines."""

    placed: (
        pl.DataFrame
    )  # real non-cancellation lines: stock_code, description, unit_price, quantity
    cancelled: pl.DataFrame  # real cancellation lines, same columns
    customer_baskets: np.ndarray  # lines per invoice, invoices with a customer
    guest_baskets: np.ndarray  # lines per invoice, invoices without one
    cancel_baskets: np.ndarray
    invoices_per_customer: np.ndarray
    customer_countries: np.ndarray
    guest_countries: np.ndarray
    month_weights: np.ndarray  # invoice share of each calendar month (1..12)
    seconds_of_day: np.ndarray
    guest_share: float  # share of placed invoices without a customer
    cancel_share: float  # cancellation invoices per placed invoice with a customer
    lines_per_customer: float
    years: tuple[int, int]  # the first and last year of the real span


def calibrate(real: Path = REAL) -> Calibration:
    lines = pl.read_parquet(real)
    cancel = pl.col("invoice_no").str.starts_with("C")
    invoices = (
        lines.group_by("invoice_no")
        .agg(
            n=pl.len(),
            customer=pl.col("customer_id").first(),
            country=pl.col("country").first(),
            date=pl.col("invoice_date").first(),
            cancelled=cancel.first(),
        )
        .sort("invoice_no")
    )  # group_by order varies between runs; the samples must not
    placed = invoices.filter(~pl.col("cancelled"))
    with_customer = placed.filter(pl.col("customer").is_not_null())
    guests = placed.filter(pl.col("customer").is_null())
    customers = (
        lines.filter(pl.col("customer_id").is_not_null(), ~cancel)
        .group_by("customer_id")
        .agg(invoices=pl.col("invoice_no").n_unique(), country=pl.col("country").first())
        .sort("customer_id")
    )
    months = lines.group_by(pl.col("invoice_date").dt.month().alias("date")).len().sort("date")
    weights = np.zeros(12)
    weights[months["date"].to_numpy() - 1] = months["len"].to_numpy()
    columns = ["stock_code", "description", "unit_price", "quantity"]
    return Calibration(
        placed=lines.filter(~cancel).select(columns),
        cancelled=lines.filter(cancel).select(columns),
        customer_baskets=with_customer["n"].to_numpy(),
        guest_baskets=guests["n"].to_numpy(),
        cancel_baskets=invoices.filter(pl.col("cancelled"))["n"].to_numpy(),
        invoices_per_customer=customers["invoices"].to_numpy(),
        customer_countries=customers["country"].to_numpy(),
        guest_countries=guests["country"].to_numpy(),
        month_weights=weights / weights.sum(),
        seconds_of_day=(
            placed["date"].dt.hour().cast(pl.Int64) * 3600
            + placed["date"].dt.minute().cast(pl.Int64) * 60
        ).to_numpy(),
        guest_share=guests.height / placed.height,
        cancel_share=invoices.filter(pl.col("cancelled")).height / with_customer.height,
        lines_per_customer=lines.height / customers.height,
        years=(
            int(lines["invoice_date"].dt.year().min()),
            int(lines["invoice_date"].dt.year().max()),
        ),  # type: ignore[arg-type]
    )


class _Customers:
    """Customers with heavy-tailed purchase propensity (the real invoices-per-customer counts);
    with `ranges`, each has a range of `RANGE` products of their own (rows of the calibration's
    placed lines)."""

    def __init__(
        self, cal: Calibration, count: int, rng: np.random.Generator, *, ranges: bool = False
    ) -> None:
        weights = rng.choice(cal.invoices_per_customer, size=count).astype(np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.countries = rng.choice(cal.customer_countries, size=count)
        self.ids = np.arange(12_346, 12_346 + count, dtype=np.int64)
        self.ranges = (
            rng.integers(0, cal.placed.height, size=(count, RANGE), dtype=np.int32)
            if ranges
            else None
        )

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        index = np.searchsorted(self.cumulative, rng.random(n), side="right")
        return np.minimum(index, len(self.ids) - 1)


def _dates(cal: Calibration, rng: np.random.Generator, n: int, years: int = 1) -> np.ndarray:
    """Invoice times over `years` years of the real span's rhythm (each later year 365 days
    after the first), as microseconds since epoch."""
    months = rng.choice(12, size=n, p=cal.month_weights) + 1
    first, last = cal.years
    # December belongs to the first year (the real span runs Dec .. Dec), the rest to the next.
    starts = [(first, 12), *((last, m) for m in range(1, 12))]
    month_start = np.array(
        [(dt.date(y, m, 1) - dt.date(1970, 1, 1)).days for y, m in starts], dtype=np.int64
    )
    lengths = np.array([calendar.monthrange(y, m)[1] for y, m in starts], dtype=np.int64)
    slot = np.where(months == 12, 0, months)
    day = month_start[slot] + (rng.random(n) * lengths[slot]).astype(np.int64)
    seconds = rng.choice(cal.seconds_of_day, size=n)
    if years > 1:
        day = day + rng.integers(0, years, size=n) * 365
    return day * _US_PER_DAY + seconds * 1_000_000


def _chunk(
    cal: Calibration,
    customers: _Customers,
    rng: np.random.Generator,
    first_invoice: int,
    invoices: int,
    years: int = 1,
) -> pl.DataFrame:
    guest = rng.random(invoices) < cal.guest_share
    sizes = np.where(
        guest,
        rng.choice(cal.guest_baskets, size=invoices),
        rng.choice(cal.customer_baskets, size=invoices),
    )
    who = customers.draw(rng, invoices)
    customer = np.where(guest, -1, customers.ids[who])
    country = np.where(
        guest, rng.choice(cal.guest_countries, size=invoices), customers.countries[who]
    )
    when = _dates(cal, rng, invoices, years)
    # Cancellations: credit notes for customers' invoices, a little later, smaller baskets.
    cancels = np.flatnonzero(~guest & (rng.random(invoices) < cal.cancel_share))
    c_sizes = rng.choice(cal.cancel_baskets, size=len(cancels))
    # One delay per credit note, not per line: like an invoice, a credit note has one date.
    c_delay = (rng.random(len(cancels)) * 3 * _US_PER_DAY).astype(np.int64)
    inv = np.concatenate([np.arange(invoices), cancels])
    is_cancel = np.concatenate([np.zeros(invoices, bool), np.ones(len(cancels), bool)])
    all_sizes = np.concatenate([sizes, c_sizes])
    line_inv = np.repeat(np.arange(len(inv)), all_sizes)
    line_cancel = is_cancel[line_inv]
    line_delay = np.concatenate([np.zeros(invoices, np.int64), c_delay])[line_inv]
    source_inv = inv[line_inv]
    n_lines = len(line_inv)
    # Invoices with a customer or none come first, credit notes last, so their lines do too.
    n_placed = int(sizes.sum())
    picks = rng.integers(0, cal.placed.height, size=n_placed)
    if customers.ranges is not None:
        placed_inv = line_inv[:n_placed]
        own = ~guest[placed_inv] & (rng.random(n_placed) < RANGE_SHARE)
        owner = who[placed_inv[own]]
        picks[own] = customers.ranges[owner, rng.integers(0, RANGE, size=len(owner))]
    items = pl.concat(
        [
            cal.placed[picks],
            cal.cancelled[rng.integers(0, cal.cancelled.height, size=n_lines - n_placed)],
        ]
    )
    # Each credit note right after the invoice it cancels, so cutting a chunk short keeps both.
    order = np.argsort(source_inv * 2 + line_cancel, kind="stable")
    items = items[order]
    line_cancel, source_inv, delay = line_cancel[order], source_inv[order], line_delay[order]
    mask = pl.Series(line_cancel)
    numbers = first_invoice + source_inv + np.where(line_cancel, invoices, 0)
    return (
        pl.DataFrame(
            {
                "invoice_no": pl.Series(numbers).cast(pl.String),
                "stock_code": items["stock_code"],
                "description": items["description"],
                "quantity": items["quantity"],
                "invoice_date": pl.Series(when[source_inv] + delay).cast(pl.Datetime("us")),
                "unit_price": items["unit_price"],
                "customer_id": pl.Series(customer[source_inv]),
                "country": pl.Series(country[source_inv]),
            }
        )
        .with_columns(
            invoice_no=pl.when(pl.lit(mask))
            .then(pl.lit("C") + pl.col("invoice_no"))
            .otherwise(pl.col("invoice_no")),
            customer_id=pl.when(pl.col("customer_id") >= 0).then(pl.col("customer_id")),
        )
        .cast(dict(POLARS_SCHEMA))
    )  # type: ignore[arg-type]


def generate_lines(
    rows: int,
    seed: int = 0,
    *,
    calibration: Calibration | None = None,
    customers: int | None = None,
    years: int | None = None,
) -> Iterator[pl.DataFrame]:
    """Exactly `rows` synthetic lines, in chunks of about a million; deterministic for `seed`.

    `customers`: the wholesale preset, that many customers (of whom the heavy tail leaves a few
    without an invoice) each ordering mostly from a range of their own, over `years` years
    (default 2); without it, as many customers as the real data has per line, over one year.
    """
    if rows < 1:
        raise InputError(f"--rows must be at least 1, not {rows}")
    if customers is not None and not 1 <= customers <= MAX_CUSTOMERS:
        raise InputError(f"--customers must be between 1 and {MAX_CUSTOMERS:,}, not {customers}")
    years = years if years is not None else (2 if customers is not None else 1)
    if not 1 <= years <= 10:
        raise InputError(f"--years must be between 1 and 10, not {years}")
    cal = calibration or calibrate()
    rng = np.random.default_rng(seed)
    if customers is None:
        # Heavy tails leave some drawn-for customers without an invoice; 1.2× as many
        # candidates gives about the real number of lines per active customer.
        people = _Customers(cal, max(1, round(1.2 * rows / cal.lines_per_customer)), rng)
    else:
        people = _Customers(cal, customers, rng, ranges=True)
    mean_lines = float(np.mean(cal.customer_baskets)) * (1 + cal.cancel_share * 0.2)
    next_invoice, left = _FIRST_INVOICE, rows
    while left > 0:
        invoices = max(1, int(min(left, CHUNK_LINES) / mean_lines))
        chunk = _chunk(cal, people, rng, next_invoice, invoices, years)
        next_invoice += 2 * invoices
        chunk = chunk.head(left)
        left -= chunk.height
        yield chunk


def _check_not_real(root: Path, replace: bool) -> None:
    try:
        manifest = Manifest.read(root)
    except LakeError:
        return  # no lake there (or none lgs_fast can read: the writer says so)
    if manifest.extra.get("kind") != "generate" and not replace:
        source = "; ".join(manifest.source)[:120]
        raise InputError(
            f"{root} holds real data ({manifest.rows:,} lines from {source}): generate writes "
            "synthetic lines over it only with --replace"
        )


def generate(
    rows: int,
    lake: str | Path | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    customers: int | None = None,
    years: int | None = None,
    replace: bool = False,
) -> tuple[Path, int]:
    """Write `rows` synthetic lines as the lake (atomically, like an import); `customers` and
    `years` as in `generate_lines`. A lake of real data (imported or exported) is written over
    only with `replace`: synthetic lines must never silently take the place of a user's."""
    root = local_lake(lake, "generate writes")
    _check_not_real(root, replace)
    lines = generate_lines(rows, seed, customers=customers, years=years)
    preset = "" if customers is None else f", {customers} wholesale customers"
    manifest, _ = write_lake(
        lines,
        root,
        source=[f"generated: {rows} lines, seed {seed}{preset}"],
        extra={"kind": "generate", "seed": seed}
        | ({} if customers is None else {"customers": customers}),
        progress=progress,
    )
    return root, manifest.rows
