"""The example notebook runs as Jupyter starts it: the kernel in notebooks/, the lake found from
LGS_LAKE or else from the project root; its charts are drawn inline."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import lgs_fast as lgs
from lgs_fast.errors import LakeError
from lgs_fast.outputs import charts
from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "rfm_segments.ipynb"


def _run(notebook: Path) -> list[nbformat.NotebookNode]:
    """Every output of `notebook`, executed with the kernel's working directory its folder."""
    book = nbformat.read(notebook, as_version=4)
    NotebookClient(
        book,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    ).execute()
    return [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]


def _printed(outputs: list[nbformat.NotebookNode]) -> str:
    return "".join(o.get("text", "") for o in outputs)


def _check_analysis(outputs: list[nbformat.NotebookNode]) -> None:
    assert not [o for o in outputs if o.output_type == "error"]
    printed = _printed(outputs)
    assert "633 Champions" in printed
    # The CLV cell says which models fit the real data: none of the purchase models does.
    assert "BG/NBD does not fit" in printed and "Gamma-Gamma fits" in printed
    # Charts render inline: Jupyter gets a Vega-Lite spec, whatever Vega-Lite major version.
    mimes = {
        m for o in outputs if o.output_type in ("display_data", "execute_result") for m in o.data
    }
    vega = [m for m in mimes if m.startswith("application/vnd.vegalite.v") and m.endswith("+json")]
    drawn = [o for o in outputs if set(o.get("data", {})) & set(vega)]
    assert len(drawn) == 3, mimes
    assert all(o.data["image/svg+xml"].lstrip().startswith("<svg") for o in drawn)


def test_notebook_runs_from_its_folder_with_lgs_lake(
    retail_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LGS_LAKE", str(retail_lake))
    outputs = _run(NOTEBOOK)
    _check_analysis(outputs)
    assert f"lake: {retail_lake} (from LGS_LAKE)" in _printed(outputs)


def test_notebook_finds_the_project_lake_without_lgs_lake(
    retail_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout as `make analyze` leaves it: pyproject.toml, data/lake, notebooks/.
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "data").mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(retail_lake, project / "data" / "lake")
    shutil.copy(NOTEBOOK, project / "notebooks")
    monkeypatch.delenv("LGS_LAKE", raising=False)
    outputs = _run(project / "notebooks" / NOTEBOOK.name)
    _check_analysis(outputs)
    root = project.resolve()
    assert f"lake: {root / 'data' / 'lake'} (data/lake of the project root {root})" in _printed(
        outputs
    )


def test_find_lake_prefers_lgs_lake(tmp_path: Path) -> None:
    choice = lgs.find_lake(tmp_path, env={"LGS_LAKE": "/somewhere/lake"})
    assert choice.path == Path("/somewhere/lake") and choice.reason == "from LGS_LAKE"


@pytest.mark.parametrize("marker", ["pyproject.toml", "data/lake"])
def test_find_lake_walks_up_to_the_project_root(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).touch()
    deep = tmp_path / "notebooks" / "drafts"
    deep.mkdir(parents=True)
    choice = lgs.find_lake(deep, env={"LGS_LAKE": ""})
    assert choice.path == tmp_path.resolve() / "data" / "lake"
    assert str(tmp_path.resolve()) in choice.reason


def test_find_lake_without_a_project_says_what_to_do(tmp_path: Path) -> None:
    if lgs.lake.project_root(tmp_path.resolve()) is not None:
        pytest.skip(f"{tmp_path} lies inside a project; no folder without one to try")
    with pytest.raises(LakeError, match="set LGS_LAKE or run `make analyze`"):
        lgs.find_lake(tmp_path, env={})


def test_chart_functions_are_public_and_documented() -> None:
    public = [getattr(charts, name) for name in charts.__all__]
    functions = [
        f
        for f in public
        if callable(f) and getattr(f, "__module__", "").startswith("lgs_fast.outputs.")
    ]
    assert len(functions) >= 15
    assert not [f.__name__ for f in functions if not (f.__doc__ or "").strip()]
    # Every chart of the report is one of these public functions or a view of one.
    report_functions = {f for f in charts.CHARTS.values() if f.__name__ != "<lambda>"}
    assert report_functions <= set(functions)
