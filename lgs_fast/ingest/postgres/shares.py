"""Splitting an export: months into shares of about equal size for the workers, and the fingerprints that tell which months changed since the last export."""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgs_fast.errors import InputError
from lgs_fast.ingest.postgres.connection import Select, table_ident
from lgs_fast.lake import (
    Manifest,
    partition_key,
    sha256_file,
)

# Per month (UK local time), the server's row count and a content fingerprint: the sum of a
# 64-bit hash of each line, the exclusive or of its columns' hashes (`_hashed`), so any INSERT,
# UPDATE or DELETE in a month changes it. Over 10M lines, on the server, here: 3.1 s of CPU in
# all, against 5.0 s for a hash of each line's values as one record (`hash_record_extended`)
# and 10 s for a hash of each line's text (`hashtextextended(s::text, 0)`, the form before:
# the record's text form costs more than the COPY itself). Fingerprints of the form before
# have no "values:" in front and never match, so a lake recorded with them is read again once.
_FINGERPRINTS = """
SELECT to_char(month, 'YYYY-MM'), source_rows, fingerprint FROM (
    SELECT date_trunc('month', s.invoice_date) AS month,
           count(*) AS source_rows,
           'values:' || sum({line_hash})::text AS fingerprint
    FROM (SELECT {items} FROM {table}) AS s
    GROUP BY 1
) AS m
"""


NO_MONTH = "(no month)"


def read_fingerprints(conn: Any, select: Select, table: str) -> dict[str, dict[str, Any]]:
    """The server's row count and fingerprint of every month, by partition key."""
    from psycopg import sql

    query = sql.SQL(_FINGERPRINTS).format(
        line_hash=select.line_hash, items=select.items, table=table_ident(table)
    )
    months: dict[str, dict[str, Any]] = {}
    for month, rows, fingerprint in conn.execute(query).fetchall():
        if month is None:
            # Missing or infinite dates: no month to hold them. Reading every line lets
            # `conform` name the first such row.
            months[NO_MONTH] = {"source_rows": rows, "fingerprint": fingerprint}
            continue
        year, number = (int(part) for part in month.split("-"))
        months[partition_key(year, number)] = {"source_rows": rows, "fingerprint": fingerprint}
    return months


def recorded_fingerprints(old: Manifest, key: str, server: Mapping[str, Any]) -> bool:
    """True when the lake's record of a month matches the server's count and fingerprint."""
    meta = old.partitions.get(key)
    return meta is not None and (meta.get("source_rows"), meta.get("fingerprint")) == (
        server["source_rows"],
        server["fingerprint"],
    )


def intact_months(old: Manifest, root: Path, key: str) -> bool:
    """True when a month's file still has the size and checksum its manifest records."""
    meta = old.partitions[key]
    path = old.files(root)[key]
    try:
        return path.stat().st_size == meta.get("bytes") and sha256_file(path) == meta["sha256"]
    except FileNotFoundError:
        return False


Month = tuple[int, int]


def _next(month: Month) -> Month:
    year, number = month
    return (year + number // 12, number % 12 + 1)


@dataclass(frozen=True)
class Share:
    """What one worker reads: the lines dated in `spans`, UK time, each [first month, the month
    after the last) with None for no bound; `undated` adds the lines without a date."""

    spans: tuple[tuple[Month | None, Month | None], ...]
    undated: bool = False

    def where(self) -> Any:
        from psycopg import sql

        def start(month: Month) -> Any:
            return sql.Literal(f"{month[0]:04d}-{month[1]:02d}-01")

        terms = []
        for first, after in self.spans:
            bounds = []
            if first is not None:
                bounds.append(sql.SQL("s.invoice_date >= {}::timestamp").format(start(first)))
            if after is not None:
                bounds.append(sql.SQL("s.invoice_date < {}::timestamp").format(start(after)))
            if not bounds:
                return sql.SQL("")  # every line
            terms.append(sql.SQL(" AND ").join(bounds))
        if self.undated:
            terms.append(sql.SQL("s.invoice_date IS NULL"))
        return sql.SQL(" WHERE ") + sql.SQL(" OR ").join(sql.SQL("({})").format(t) for t in terms)

    def label(self) -> str:
        """The share as a reader would name it, for messages: `lines dated 2011-01 to 2011-03`."""

        def shown(month: Month) -> str:
            return f"{month[0]:04d}-{month[1]:02d}"

        parts = []
        for first, after in self.spans:
            last = None if after is None else (after[0] - (after[1] == 1), (after[1] - 2) % 12 + 1)
            if first is None and last is None:
                parts.append("any date")
            elif first is None:
                parts.append(f"up to {shown(last)}")  # type: ignore[arg-type]
            elif last is None:
                parts.append(f"from {shown(first)} on")
            elif first == last:
                parts.append(shown(first))
            else:
                parts.append(f"{shown(first)} to {shown(last)}")
        return "lines dated " + ", ".join(parts) + (" or undated" if self.undated else "")


def month_groups(lines: Mapping[Month, int], jobs: int) -> list[list[Month]]:
    """The months in order, cut into at most `jobs` runs of about equal lines (a month is never
    split: each month's file is then one worker's lines in the table's order)."""
    months = sorted(lines)
    count = min(jobs, len(months))
    if count <= 1:
        return [months] if months else []
    before = [0]
    for month in months:
        before.append(before[-1] + lines[month])
    total = before[-1]
    cuts = [0]
    for j in range(1, count):
        target = total * j / count
        # The cut whose lines before it come nearest the target, leaving a month for each run.
        low, high = cuts[-1] + 1, len(months) - (count - j)
        at = min(max(bisect.bisect_left(before, target), low), high)
        if at > low and abs(before[at - 1] - target) <= abs(before[at] - target):
            at -= 1
        cuts.append(at)
    cuts.append(len(months))
    return [months[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def shares_of_table(lines: Mapping[Month, int], jobs: int) -> list[Share]:
    """Every line of the table, in month ranges of about equal lines (from a sample): the first
    range has no lower bound, the last no upper one and the undated lines."""
    groups = month_groups(lines, jobs)
    if len(groups) <= 1:
        return [Share(((None, None),))]
    starts = [group[0] for group in groups]
    bounds = [None, *starts[1:]], [*starts[1:], None]
    shares = [Share(((first, after),)) for first, after in zip(*bounds, strict=True)]
    return [*shares[:-1], Share(shares[-1].spans, undated=True)]


def shares_of_months(lines: Mapping[Month, int], jobs: int) -> list[Share]:
    """Only these months, in runs of about equal lines; consecutive months make one range."""
    shares = []
    for group in month_groups(lines, jobs):
        spans: list[tuple[Month | None, Month | None]] = []
        for month in group:
            if spans and spans[-1][1] == month:
                spans[-1] = (spans[-1][0], _next(month))
            else:
                spans.append((month, _next(month)))
        shares.append(Share(tuple(spans)))
    return shares


# Blocks the sample reads: at 10M lines (140,000 blocks) about 18,000 lines in 10 ms.
_SAMPLE_BLOCKS = 256


def sampled_lines(conn: Any, select: Select, table: str) -> dict[Month, int]:
    """Lines per month in a sample of the table's blocks (`TABLESAMPLE SYSTEM`), to split it
    between workers; empty for a view or anything that cannot be sampled (one worker then)."""
    import psycopg
    from psycopg import sql

    ident = table_ident(table)
    kind = conn.execute(
        "SELECT c.relkind, CASE c.relkind WHEN 'p' THEN (SELECT sum(pg_relation_size(t.relid)) "
        "FROM pg_partition_tree(c.oid) AS t) ELSE pg_relation_size(c.oid) END "
        "FROM pg_class AS c WHERE c.oid = %s::regclass",
        (ident.as_string(conn),),
    ).fetchone()
    if kind is None or kind[0] not in ("r", "p", "m"):
        return {}
    percent = min(100.0, 100.0 * _SAMPLE_BLOCKS / max(1, int(kind[1] or 0) // 8192))
    query = sql.SQL(
        "SELECT to_char(date_trunc('month', s.invoice_date), 'YYYY-MM'), count(*) "
        "FROM (SELECT {} FROM {} TABLESAMPLE SYSTEM ({}) REPEATABLE (0)) AS s GROUP BY 1"
    ).format(select.items, ident, sql.Literal(percent))
    try:
        with conn.transaction():  # a savepoint: a failure leaves the snapshot usable
            rows = conn.execute(query).fetchall()
    except psycopg.errors.FeatureNotSupported:
        return {}
    return {(int(m[:4]), int(m[5:7])): n for m, n in rows if m and re.fullmatch(r"\d{4}-\d{2}", m)}


def default_jobs() -> int:
    """`LGS_EXPORT_JOBS` if set, else the number of CPUs, at least 2."""
    given = os.environ.get("LGS_EXPORT_JOBS")
    if given:
        try:
            jobs = int(given)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise InputError(f"LGS_EXPORT_JOBS must be a whole number from 1 up: {given!r}")
        return jobs
    return max(2, os.cpu_count() or 1)
