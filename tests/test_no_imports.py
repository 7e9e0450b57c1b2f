"""`import lgs_fast` and the CLI load no engine or client until one is used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("psycopg", "altair", "duckdb", "vl_convert", "pandas")


def _loaded(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_package_import_is_light() -> None:
    assert _loaded("import lgs_fast") == []
    assert _loaded("import lgs_fast.cli") == []


def test_names_load_on_first_use() -> None:
    assert _loaded("import lgs_fast; lgs_fast.scan") == []
    assert "duckdb" in _loaded("from lgs_fast import sql")
