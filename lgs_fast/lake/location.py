"""Where the lake is: the default, the one a command finds from the working directory, and a local directory as a lake's root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lgs_fast.config import is_uri
from lgs_fast.errors import InputError, LakeError

DEFAULT_LAKE = Path("data/lake")


def default_lake() -> Path:
    """`LGS_LAKE` if set, else `data/lake`."""
    return Path(os.environ.get("LGS_LAKE") or DEFAULT_LAKE)


def local_lake(lake: str | Path | None, what: str) -> Path:
    """The local directory of the lake that `what` (e.g. "import writes") works on.

    A URI is refused before it becomes a path: `Path("file:///x")` is the relative directory
    `file:/x`, which a writer would create in the working directory. Only the Spark engine reads
    lakes at URIs.
    """
    given = lake if lake is not None else os.environ.get("LGS_LAKE") or DEFAULT_LAKE
    if is_uri(given):
        raise InputError(
            f"{given}: a lake at a URI is read by the Spark engine only (analyze or clv "
            f"--engine spark); {what} a lake in a local directory"
        )
    return Path(given)


# What marks the project's root when a notebook looks for the lake from its own folder.
ROOT_MARKERS = ("pyproject.toml", str(DEFAULT_LAKE))


def project_root(start: Path) -> Path | None:
    """The nearest of `start` and its parents holding `pyproject.toml` or `data/lake`."""
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return None


@dataclass(frozen=True)
class LakeChoice:
    """The lake to read and, in words, why that one."""

    path: Path
    reason: str


def find_lake(start: str | Path | None = None, env: Mapping[str, str] | None = None) -> LakeChoice:
    """`LGS_LAKE` if set, else `data/lake` under the project root found from `start` (the
    working directory by default).

    Jupyter starts a notebook's kernel in the notebook's own folder, where the relative
    `data/lake` of the command line names nothing; walking up finds the lake `make analyze`
    built wherever the notebook sits inside the project.
    """
    env = os.environ if env is None else env
    if env.get("LGS_LAKE"):
        return LakeChoice(Path(env["LGS_LAKE"]), "from LGS_LAKE")
    here = Path(start if start is not None else Path.cwd()).resolve()
    root = project_root(here)
    if root is None:
        raise LakeError(
            f"{here}: no LGS_LAKE, and neither this folder nor any above it holds "
            f"pyproject.toml or {DEFAULT_LAKE}; set LGS_LAKE or run `make analyze`"
        )
    return LakeChoice(root / DEFAULT_LAKE, f"{DEFAULT_LAKE} of the project root {root}")
