"""Every error path of the command line, run as a real process: one line on stderr, the exit
code the README documents, never a traceback, and the lake byte for byte as it was."""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lgs_fast.ingest.sources import import_files
from tests.conftest import EMBEDDED, RETAIL_II_CSV, data_file

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
LINE = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"

# (name, command line, exit code, part of the message); {lake}, {tmp}, {good}, {dsn} are filled in.
CASES = [
    ('no command', 'frobnicate', 2, 'No such command'),
    ('import: no files', "import --lake '{lake}'", 2, 'Missing argument'),
    ('import: missing file', "import '{tmp}/nope.csv' --lake '{lake}'", 2, 'no such file'),
    ('import: a directory', "import '{tmp}' --lake '{lake}'", 2, 'is a directory'),
    ('import: unknown type', "import '{tmp}/notes.txt' --lake '{lake}'", 2, 'unknown file type'),
    ('import: bad value', "import '{tmp}/bad.csv' --lake '{lake}'", 2, 'row 1: column quantity'),
    ('import: header only', "import '{tmp}/header.csv' --lake '{lake}'", 2, 'no lines to write'),
    ('import: foreign dir', "import '{good}' --lake '{tmp}/foreign'", 3, 'not a lake'),
    ('import: file as lake', "import '{good}' --lake '{tmp}/notes.txt'", 3, 'is a file'),
    ('export: no dsn', "export --lake '{lake}'", 4, 'no PostgreSQL DSN'),
    ('export: bad dsn', "export --dsn nonsense --lake '{lake}'", 4, 'cannot parse the PostgreSQL DSN'),
    ('export: no server', "export --dsn 'host=127.0.0.1 port=1' --lake '{lake}'", 4, 'cannot connect'),
    ('export: no table', "export --dsn '{dsn}' --table no_such_table_x --lake '{lake}'", 4, 'no table'),
    ('export: bad --column', "export --dsn '{dsn}' --column price --lake '{lake}'", 2, 'CANONICAL=SOURCE'),
    ('load-pg: bad file', "load-pg '{tmp}/bad.csv' --dsn '{dsn}' --table never_made_x", 2, 'row 1: column quantity'),
    ('analyze: no lake', "analyze --lake '{tmp}/none' --out '{tmp}/o'", 3, 'no lake here'),
    ('analyze: bad engine', "analyze --lake '{lake}' --engine spark2", 2, '--engine'),
    ('analyze: bad preset', "analyze --lake '{lake}' --preset x", 2, '--preset'),
    ('analyze: bad date', "analyze --lake '{lake}' --as-of yesterday", 2, 'is not a date'),
    ('analyze: zoned date', "analyze --lake '{lake}' --from 2011-01-01T00:00+05:00", 2, 'has a time zone'),
    ('analyze: huge top', "analyze --lake '{lake}' --top 9223372036854775807", 2, '--top'),
    ('analyze: zero bins', "analyze --lake '{lake}' --bins 0", 2, '--bins'),
    ('analyze: empty range', "analyze --lake '{lake}' --out '{tmp}/o' --from 2011-05-01 --to 2011-01-01", 2, 'empty date range'),
    ('analyze: missing segments', "analyze --lake '{lake}' --segments '{tmp}/none.toml'", 2, 'none.toml'),
    ('analyze: binary segments', "analyze --lake '{lake}' --segments '{tmp}/binary.toml'", 2, 'binary.toml'),
    ('analyze: OUT is a file', "analyze --lake '{lake}' --out '{tmp}/notes.txt'", 3, 'is a file'),
    ('analyze: OUT not ours', "analyze --lake '{lake}' --out '{tmp}/foreign'", 3, 'not an lgs_fast output directory'),
    ('generate: zero rows', "generate --rows 0 --lake '{tmp}/g'", 2, '--rows'),
    ('generate: not a number', "generate --rows many --lake '{tmp}/g'", 2, '--rows'),
    ('verify: no lake', "verify --lake '{tmp}/none'", 3, 'no lake here'),
]  # fmt: skip


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "notes.txt").write_text("hello\n")
    (tmp / "bad.csv").write_text(HEADER + LINE.replace(",6,", ",six,"))
    (tmp / "header.csv").write_text(HEADER)
    (tmp / "binary.toml").write_bytes(bytes(range(256)) * 4)
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "thesis.tex").write_text("mine")
    lake = tmp / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    return {"tmp": str(tmp), "lake": str(lake), "good": str(EMBEDDED), "dsn": pg_dsn}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lgs_fast", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("name", "line", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_error_path(
    setting: dict[str, str], name: str, line: str, code: int, expected: str
) -> None:
    lake = Path(setting["lake"])
    before = _snapshot(lake)
    foreign = _snapshot(Path(setting["tmp"]) / "foreign")
    result = _run([a.format(**setting) for a in shlex.split(line)])
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lgs-fast: error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert expected in errors[0]
    assert result.returncode == code, result.stderr
    assert _snapshot(lake) == before
    assert _snapshot(Path(setting["tmp"]) / "foreign") == foreign


def test_full_disk_is_one_line_and_leaves_the_lake(setting: dict[str, str], tmp_path: Path) -> None:
    """A file-size limit makes every write past 200 kB fail as a full disk would (EFBIG)."""
    lake = tmp_path / "lake"
    import_files([data_file(RETAIL_II_CSV)], lake)
    before = _snapshot(lake)

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = _run(["import", str(EMBEDDED), "--lake", str(lake)], preexec_fn=small_disk)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("lgs-fast: error: ") and "large" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Exception ignored" not in result.stderr
    assert _snapshot(lake) == before


def test_output_cut_short_by_a_pipe(tmp_path: Path) -> None:
    """`lgs-fast import … | head -1`: the lake is written and nothing false is said."""
    lake = tmp_path / "lake"
    command = [sys.executable, "-m", "lgs_fast", "import", str(EMBEDDED), "--lake", str(lake)]
    reader_fd, writer_fd = os.pipe()
    proc = subprocess.Popen(command, stdout=writer_fd, stderr=subprocess.PIPE, text=True)
    os.close(writer_fd)
    with os.fdopen(reader_fd) as reader:
        first = reader.readline()
    _, err = proc.communicate(timeout=120)
    assert first.startswith(f"lake {lake}: 541,909 lines, written")
    assert proc.returncode == 0 and err == ""


def test_exit_codes_are_documented() -> None:
    """Every exit code lgs_fast uses is in the exit-code table (docs/guarantees.md), in the
    README's summary of it and in `lgs-fast --help`."""
    import re

    from lgs_fast import errors
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "guarantees.md").read_text()
    table = page.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    readme = (ROOT / "README.md").read_text()
    summary = readme.split("Exit codes: ", 1)[1].split("\n\n", 1)[0]
    assert {int(code) for code in re.findall(r"\b(\d+)\s", summary)} >= documented
    used = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.LgsError)
    }
    assert used | {0, 130, 143} == documented
    help_text = _run(["--help"]).stdout
    for code in documented:
        assert re.search(rf"(^\s+|, ){code}\s+\S", help_text, re.M), code


def test_no_arguments_lists_the_commands() -> None:
    result = _run([])
    assert result.returncode == 0 and result.stderr == ""
    for command in ("import", "export", "analyze", "verify", "clv", "generate", "load-pg"):
        assert f"  {command} " in result.stdout
