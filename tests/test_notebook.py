"""The example notebook runs top to bottom against the shipped real data."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT


def test_example_notebook_runs(retail_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGS_LAKE", str(retail_lake))
    notebook = nbformat.read(ROOT / "notebooks" / "rfm_segments.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs)
    assert "633 Champions" in printed
    # The CLV cell says which models fit the real data: none of the purchase models does.
    assert "BG/NBD does not fit" in printed and "Gamma-Gamma fits" in printed
