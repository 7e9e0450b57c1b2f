"""Spark beyond one process: `lgs-fast analyze --engine spark` against a real standalone cluster
(a master and a worker started from the installed PySpark) and against a real Spark Connect
server, each writing every table equal to the bit to DuckDB's on the same lake.

The cluster and the server (`benchmarks/spark_cluster.py`, which also times them) run from
PySpark's own classes, on free ports, with their logs and work directories in a temporary
directory, and are stopped after. Where no Java is found, the tests are skipped and say so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from benchmarks import spark_cluster as cluster
from lgs_fast.engines.spark import QUICK_JIT
from tests.utils import assert_engines_agree

pytestmark = pytest.mark.spark
# Every JVM here compiles with the quick compiler only, as lgs_fast's own do for a lake this
# small: a lake at a URI, whose size is not known when the JVM starts, would otherwise get the
# optimising compiler too, which costs these tests CPU and tells nothing about the tables.
JVM = {"LGS_SPARK_JAVA_OPTIONS": QUICK_JIT}


@dataclass(frozen=True)
class Cluster:
    url: str
    work: Path  # the master's and the worker's logs and directories

    def executors(self) -> list[int]:
        """The worker's executors' processes: those working in its directory."""
        found = []
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):  # gone, or not a process
                command = (proc / "cmdline").read_bytes()
                here = Path(os.readlink(proc / "cwd"))
                if b"CoarseGrainedExecutorBackend" in command and here.is_relative_to(self.work):
                    found.append(int(proc.name))
        return found


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and one worker (2 cores, 2 GiB)."""
    if not cluster.java_found():
        pytest.skip("no Java here (JAVA_HOME unset, no java on PATH): Spark cannot run")
    work = tmp_path_factory.mktemp("standalone")
    with cluster.standalone(work, QUICK_JIT) as url:
        yield Cluster(url, work)


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server on local[2]; yields its sc:// URL."""
    if not cluster.java_found():
        pytest.skip("no Java here (JAVA_HOME unset, no java on PATH): Spark cannot run")
    pytest.importorskip("grpc", reason="the Spark Connect client needs pyspark[connect]")
    with cluster.connect_server(tmp_path_factory.mktemp("connect"), QUICK_JIT) as url:
        yield url


def _analyze(lake: Path | str, out: Path, *engine: str) -> str:
    """`lgs-fast analyze` run as an analyst runs it; what it said on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(lake), "--out", str(out),
         "--no-report", *engine],
        capture_output=True, text=True, timeout=600, env={**os.environ, **JVM},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "WARN" not in done.stderr, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def duckdb_out(retail_ii_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("duckdb") / "out"
    _analyze(retail_ii_lake, out, "--engine", "duckdb")
    return out


def _same_tables(expected: Path, got: Path, what: str) -> None:
    """Every table of OUT/tables, the models' included, equal to the bit."""
    names = sorted(p.stem for p in (expected / "tables").glob("*.parquet"))
    assert names == sorted(p.stem for p in (got / "tables").glob("*.parquet"))
    assert {"rfm", "segments", "recommendations", "sales_forecast", "clv"} <= set(names)
    for name in names:
        want = pl.read_parquet(expected / "tables" / f"{name}.parquet")
        have = pl.read_parquet(got / "tables" / f"{name}.parquet")
        assert_engines_agree(name, want, have, f"{what}/{name}")


def test_a_standalone_cluster_gives_duckdb_s_tables_of_a_lake_at_a_uri_though_its_executor_dies(
    standalone: Cluster, retail_ii_lake: Path, duckdb_out: Path, tmp_path: Path
) -> None:
    """The lake named by URI, read through Hadoop's file systems as s3a:// or hdfs:// would be,
    by the cluster's executor, which is killed (SIGKILL) once the first rows are checkpointed:
    with `spark.checkpoint.dir` set, the worker's next executor reads them from there, and the
    run ends as if nothing happened. The rows kept by the executor itself were lost with it,
    and the run failed (tests/test_spark.py: …_are_told_in_one_line)."""
    checkpoints = tmp_path / "checkpoints"
    env = {**os.environ, **JVM, "LGS_SPARK_CONF": f"spark.checkpoint.dir={checkpoints}"}
    run = subprocess.Popen(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", f"file://{retail_ii_lake}",
         "--out", str(tmp_path / "out"), "--no-report", "--engine", "spark",
         "--spark-master", standalone.url],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        # Once a second checkpoint is being written, the first is whole: its rows must outlive
        # the executor that wrote them.
        deadline = time.monotonic() + 200
        while len(list(checkpoints.glob("*/rdd-*"))) < 2 and run.poll() is None:
            assert time.monotonic() < deadline, "no second checkpoint written in 200 s"
            time.sleep(0.1)
        executors = standalone.executors()
        if run.poll() is not None or not executors:
            pytest.fail(f"the run ended before its executor was killed: {run.communicate()[1]}")
        for pid in executors:
            os.kill(pid, signal.SIGKILL)
        said = run.communicate(timeout=600)[1]
    finally:
        run.kill()
    assert run.returncode == 0, said
    assert "Traceback" not in said and "WARN" not in said, said
    assert said.splitlines()[:2] == ["starting Spark…", "computing tables with spark…"]
    assert not any(checkpoints.iterdir())  # the run's checkpoints removed when it ended
    _same_tables(duckdb_out, tmp_path / "out", f"spark at {standalone.url}")


def test_spark_connect_gives_duckdb_s_tables(
    connect_server: str, retail_ii_lake: Path, duckdb_out: Path, tmp_path: Path
) -> None:
    _analyze(
        retail_ii_lake, tmp_path / "out", "--engine", "spark", "--spark-master", connect_server
    )
    _same_tables(duckdb_out, tmp_path / "out", f"spark at {connect_server}")
    # A setting of the server's own cannot be given by a client: one line that says so, where
    # it was "spark failed on …: [CANNOT_MODIFY_CONFIG] …", exit 1.
    refused = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(retail_ii_lake),
         "--out", str(tmp_path / "refused"), "--no-report", "--engine", "spark",
         "--spark-master", connect_server],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, **JVM, "LGS_SPARK_CONF": f"spark.checkpoint.dir={tmp_path}"},
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    said = refused.stderr.splitlines()[-1]
    assert said.startswith("lgs-fast: error: LGS_SPARK_CONF: the Spark Connect server at sc://")
    assert "refused spark.checkpoint.dir" in said and "where the server starts" in said
    assert not (tmp_path / "refused").exists()
