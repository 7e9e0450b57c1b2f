"""`lgs-fast`: a thin command line over the public functions of the same names.

Each command parses options, calls one function, and formats its result. Any `LgsError` (or
OS error) becomes one line on stderr and a non-zero exit code, here and nowhere else.

Importing this module loads no engine (Polars, PyArrow, DuckDB, pandas, NumPy, psycopg, Altair,
statsmodels, SciPy): `--help` and argument errors answer at once, and a command imports what it
needs only after its arguments are parsed and checked.
"""

from __future__ import annotations

# The commands register themselves on the group as their modules load.
from lgs_fast.cli import analysis_commands as analysis_commands
from lgs_fast.cli import lake_commands as lake_commands
from lgs_fast.cli.group import cli as cli
from lgs_fast.cli.group import main as main
