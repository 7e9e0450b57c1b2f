"""Spark beyond one process: `lgs-fast analyze --engine spark` against a real standalone cluster
(a master and a worker started from the installed PySpark) and against a real Spark Connect
server, each writing every table equal to the bit to DuckDB's on the same lake.

The cluster and the server run from PySpark's own scripts' classes, on free ports, with their
logs and work directories in a temporary directory, and are stopped after. Where no Java is
found, the tests are skipped and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.utils import assert_engines_agree

pytestmark = pytest.mark.spark


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _java_or_skip() -> None:
    home = os.environ.get("JAVA_HOME")
    if not (home and (Path(home) / "bin" / "java").is_file()) and shutil.which("java") is None:
        pytest.skip("no Java here (JAVA_HOME unset, no java on PATH): Spark cannot run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(until: object, what: str, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"{what} did not start in {seconds:.0f} s; its log:\n{log.read_text()[-3000:]}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        # A session of its own: stopping it stops the JVM and anything it started.
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(*processes: subprocess.Popen[bytes]) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(_spark_home()),
        SPARK_LOG_DIR=str(work / "logs"),
        SPARK_WORKER_DIR=str(work / "worker"),
        SPARK_LOCAL_DIRS=str(work / "local"),
        SPARK_CONF_DIR=str(work / "conf"),  # none of the user's own settings
    )
    for name in ("logs", "worker", "local", "conf"):
        (work / name).mkdir(parents=True, exist_ok=True)
    return env


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone master and one worker (2 cores, 2 GiB); yields the master URL."""
    _java_or_skip()
    work = tmp_path_factory.mktemp("standalone")
    env = _environment(work)
    spark_class = str(_spark_home() / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    master = _start(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(ui)],
        work / "master.log", env,
    )  # fmt: skip
    worker = None
    try:
        _wait(lambda: _listening(port), "the standalone master", work / "master.log")
        url = f"spark://127.0.0.1:{port}"
        worker = _start(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
             "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port()),
             "--work-dir", str(work / "worker")],
            work / "worker.log", env,
        )  # fmt: skip

        def alive() -> bool:
            try:  # the master's own page, which counts its workers
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as page:
                    return int(json.load(page).get("aliveworkers", 0)) >= 1
            except OSError:  # its web server not up yet
                return False

        _wait(alive, "the standalone worker", work / "worker.log")
        yield url
    finally:
        _stop(*(p for p in (worker, master) if p is not None))


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server on local[2]; yields its sc:// URL."""
    _java_or_skip()
    pytest.importorskip("grpc", reason="the Spark Connect client needs pyspark[connect]")
    work = tmp_path_factory.mktemp("connect")
    env = _environment(work)
    port = _free_port()
    server = _start(
        [str(_spark_home() / "bin" / "spark-submit"),
         "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
         "--name", "Spark Connect server", "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.ui.enabled=false",
         "--conf", "spark.sql.shuffle.partitions=8"],
        work / "connect.log", env,
    )  # fmt: skip
    try:
        _wait(lambda: _listening(port), "the Spark Connect server", work / "connect.log")
        yield f"sc://127.0.0.1:{port}"
    finally:
        _stop(server)


def _analyze(lake: Path | str, out: Path, *engine: str) -> str:
    """`lgs-fast analyze` run as an analyst runs it; what it said on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(lake), "--out", str(out),
         "--no-report", *engine],
        capture_output=True, text=True, timeout=600,
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


def test_a_standalone_cluster_gives_duckdb_s_tables_of_a_lake_at_a_uri(
    standalone: str, retail_ii_lake: Path, duckdb_out: Path, tmp_path: Path
) -> None:
    """The lake named by URI, read through Hadoop's file systems as s3a:// or hdfs:// would be,
    by the cluster's executor."""
    said = _analyze(
        f"file://{retail_ii_lake}", tmp_path / "out", "--engine", "spark",
        "--spark-master", standalone,
    )  # fmt: skip
    assert said.splitlines()[:2] == ["starting Spark…", "computing tables with spark…"]
    _same_tables(duckdb_out, tmp_path / "out", f"spark at {standalone}")


def test_spark_connect_gives_duckdb_s_tables(
    connect_server: str, retail_ii_lake: Path, duckdb_out: Path, tmp_path: Path
) -> None:
    _analyze(
        retail_ii_lake, tmp_path / "out", "--engine", "spark", "--spark-master", connect_server
    )
    _same_tables(duckdb_out, tmp_path / "out", f"spark at {connect_server}")
