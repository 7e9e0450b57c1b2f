"""The engines, siblings behind one protocol (`lgs_fast.engines.base.Engine`): Polars
(`engines.polars`), DuckDB (`engines.duckdb`) and Spark (`engines.spark`). This registry is the
one place that tells them apart by name; each is imported when it is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lgs_fast.engines.base import EngineSettings
from lgs_fast.errors import InputError

if TYPE_CHECKING:
    from lgs_fast.engines.base import Engine

# Each engine's module, which defines `open_engine(settings) -> Engine`; the same names, in the
# same order, as `lgs_fast.config.ENGINES` (the command line's choices, known without importing).
REGISTRY: dict[str, str] = {
    "polars": "lgs_fast.engines.polars.engine",
    "duckdb": "lgs_fast.engines.duckdb",
    "spark": "lgs_fast.engines.spark",
}


def check_settings(name: str, settings: EngineSettings) -> None:
    """Refuse a setting given to an engine that does not read it (the API and the CLI alike)."""
    if name not in REGISTRY:
        raise InputError(f"unknown engine {name!r}; choose one of {', '.join(REGISTRY)}")
    if settings.spark_master is not None and name != "spark":
        raise InputError(f"--spark-master is for --engine spark, not {name}")


def engine(name: str, settings: EngineSettings | None = None) -> Engine:
    """The engine called `name`, set up with `settings`."""
    settings = settings or EngineSettings()
    check_settings(name, settings)
    module = importlib.import_module(REGISTRY[name])
    return module.open_engine(settings)
