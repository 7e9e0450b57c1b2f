"""What every engine is: the one small protocol `analyze` speaks to Polars, DuckDB and Spark.

An engine opens a version of a lake (a local lake's checked snapshot, or, for an engine that
reads them, a lake at a URI) and computes the catalog's tables over it, optionally over a date
range. Everything an engine differs in lives behind these methods; `lgs_fast.engines.engine`
names them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lgs_fast.errors import InputError

if TYPE_CHECKING:
    import polars as pl

    from lgs_fast.config import Options
    from lgs_fast.engines.spark import SparkLake
    from lgs_fast.lake import Snapshot

    # One version of a lake: local (checked, under the readers' lock) or read by Spark.
    Version = Snapshot | SparkLake


@dataclass(frozen=True)
class Span:
    """The lines' date range: from `start` (a day, included) to `end` (excluded); None: open."""

    start: dt.date | None = None
    end: dt.date | None = None


@dataclass(frozen=True)
class EngineSettings:
    """Settings one engine reads and the others ignore."""

    spark_master: str | None = None  # where Spark runs (`lgs_fast.engines.spark.master_url`)


class Engine(Protocol):
    name: str

    def check(self) -> str | None:
        """Refuse at once, before any progress, when the engine cannot start here; the line to
        show while it starts, when that takes a while."""

    def open_uri(self, uri: str) -> Version:
        """The lake at `uri` (`InputError` from an engine that reads only local lakes)."""

    def tables(self, version: Version, options: Options, span: Span) -> dict[str, pl.DataFrame]:
        """Every table of the catalog (`lgs_fast.catalog.ANALYSES`), in its declared schema."""

    def clv_summary(self, version: Version, options: Options, span: Span) -> pl.DataFrame:
        """The `clv_summary` table alone (the CLV commands, and the calibration's summaries)."""

    def tables_of(self, lines: pl.LazyFrame, options: Options) -> dict[str, pl.DataFrame]:
        """Every table of any LazyFrame of canonical lines (notebooks, tests)."""


class LocalEngine:
    """What the engines that read only local lakes (Polars, DuckDB) share: nothing to start,
    a lake at a URI refused, a version that is a checked local snapshot."""

    name: str
    title: str  # the engine's name in messages

    def check(self) -> str | None:
        return None

    def open_uri(self, uri: str) -> Version:
        raise InputError(f"{uri}: a lake at a URI is read by the Spark engine: add --engine spark")

    def local(self, version: Version) -> Snapshot:
        """`version` as the local snapshot it must be."""
        from lgs_fast.lake import Snapshot  # here: the registry loads no engine, nor Polars

        if not isinstance(version, Snapshot):
            raise InputError(
                f"{version.location}: the {self.title} engine reads a lake in a local directory"
            )
        return version
