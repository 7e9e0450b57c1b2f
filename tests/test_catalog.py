"""The catalog is the one list of output tables, and the package's layout keeps its promises:
every table has its query, its Polars function, its pandas reference, its declared schema (which
both local engines return on the real data) and a test; imports point one way, with no cycle
and no private name taken from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest

from benchmarks import pandas_reference
from lgs_fast import catalog, config, engines
from lgs_fast.analyze import tables_of
from lgs_fast.engines import polars as polars_engine
from lgs_fast.schema import table_schema
from tests.conftest import EMBEDDED

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lgs_fast"
TESTS = sorted(p for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_catalog.py")


@pytest.mark.parametrize("table", catalog.TABLES, ids=lambda t: t.name)
def test_every_table_has_its_parts(table: catalog.Table) -> None:
    assert (ROOT / "queries" / f"{table.name}.sql").is_file(), "no query"
    assert callable(getattr(polars_engine, table.name, None)), "no Polars function"
    assert callable(getattr(pandas_reference, table.name, None)), "no pandas reference"
    assert set(table.money) <= set(table.schema), "a money column the schema lacks"
    assert table.key is None or set(table.key) <= set(table.schema)
    assert set(table.reads) <= {"lines", "invoices", "products", "quality"}
    assert any(f'"{table.name}"' in p.read_text() for p in TESTS), "no test names it"


def test_engines_return_the_declared_schemas() -> None:
    lines = pl.scan_parquet(EMBEDDED)
    for engine in ("polars", "duckdb"):
        got = tables_of(lines, engine=engine)
        assert list(got) == list(catalog.ANALYSES), engine
        for name, frame in got.items():
            assert frame.schema == table_schema(name), (engine, name)


def test_the_registry_names_what_the_command_line_offers() -> None:
    assert tuple(engines.REGISTRY) == config.ENGINES
    assert tuple(catalog.BY_NAME) == catalog.ANALYSES
    assert set(catalog.MODEL_INPUTS) <= set(catalog.ANALYSES)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(
    path: Path, name: str, modules: dict[str, Path], *, typing: bool = True
) -> list[tuple[str, str]]:
    """(module, imported name) for every import in `path`, inside functions too; without
    `typing`, leaving out those under `if TYPE_CHECKING:` (never run, so never a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = set() if typing else _under_type_checking(path)
    pairs = []
    for node in ast.walk(ast.parse(path.read_text())):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            pairs += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                pairs.append((sub, "") if sub in modules else (base, alias.name))
    return [(m, n) for m, n in pairs if m.startswith("lgs_fast")]


def _under_type_checking(path: Path) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def test_imports_have_no_cycle() -> None:
    modules = _modules()
    graph = {name: {m for m, _ in _imports(path, name, modules, typing=False)
                    if m in modules and m != name}
             for name, path in modules.items()}  # fmt: skip
    # A package's __init__ is imported by each of its modules; its own imports of them are not
    # a cycle unless one of them leads back to it through another route, which the walk finds.
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if nxt.startswith(node + "."):
                continue  # a package importing its own modules
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError(" → ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_private_name_crosses_a_module() -> None:
    modules = _modules()
    crossing = [
        f"{name} imports {mod}.{imported}"
        for name, path in modules.items()
        for mod, imported in _imports(path, name, modules)
        if imported.startswith("_") and mod != name
    ]
    assert crossing == []


def test_the_layout_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for package in ("ingest", "lake", "engines", "models", "outputs", "cli"):
        assert (PACKAGE / package / "__init__.py").is_file(), package
    # A module over 700 lines mixes concerns: split it where they part.
    for path in PACKAGE.rglob("*.py"):
        length = len(path.read_text().splitlines())
        assert length <= 700, (path.relative_to(ROOT).as_posix(), length)
