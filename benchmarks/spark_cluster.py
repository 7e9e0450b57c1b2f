"""Spark beyond one process: a real standalone cluster and a real Spark Connect server, started
from the installed PySpark, and the whole `lgs-fast analyze --engine spark --no-report` timed on
them and on `local[2]`.

    python -m benchmarks.spark_cluster [--out benchmarks/results/spark_cluster]
    python -m benchmarks.spark_cluster --lake LAKE [--runs 3] --out DIR

With --lake, a lake of your own (say benchmarks/data/lake_10000000) is analysed run after run
on one Spark Connect server started for it, which shows what a server that stays up saves:
its first run compiles Spark's code in the JVM, the later ones find it compiled.

The lakes: one month of Online Retail II (tests/data, 45,228 lines) and the shipped 541,909
lines. The tests start the same cluster and server (`tests/test_spark_cluster.py`) to check the
tables; this only times them. Each run is one fresh process, wall time of the whole command.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MONTH_CSV = ROOT / "tests" / "data" / "online_retail_ii_2009-12.csv.gz"
SHIPPED = ROOT / "lgs_fast" / "ingest" / "data" / "online_retail.parquet"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    return (
        bool(home and (Path(home) / "bin" / "java").is_file()) or shutil.which("java") is not None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait(until: Callable[[], bool], what: str, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until():
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"{what} did not start in {seconds:.0f} s; its log:\n{log.read_text()[-3000:]}"
    )


def _environment(work: Path, java_options: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_DAEMON_JAVA_OPTS=java_options,  # the master's and the worker's own JVMs
        SPARK_HOME=str(spark_home()),
        SPARK_LOG_DIR=str(work / "logs"),
        SPARK_WORKER_DIR=str(work / "worker"),
        SPARK_LOCAL_DIRS=str(work / "local"),
        SPARK_CONF_DIR=str(work / "conf"),  # none of the user's own settings
    )
    for name in ("logs", "worker", "local", "conf"):
        (work / name).mkdir(parents=True, exist_ok=True)
    return env


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


@contextlib.contextmanager
def standalone(work: Path, java_options: str = "") -> Iterator[str]:
    """A standalone master and one worker (2 cores, 2 GiB), logs in `work`, their JVMs given
    `java_options`; yields its URL."""
    env = _environment(work, java_options)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    master = _start(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(ui)],
        work / "master.log", env,
    )  # fmt: skip
    worker = None
    try:
        _wait(lambda: listening(port), "the standalone master", work / "master.log")
        url = f"spark://127.0.0.1:{port}"
        worker = _start(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
             "--cores", "2", "--memory", "2g", "--webui-port", str(free_port()),
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


@contextlib.contextmanager
def connect_server(work: Path, java_options: str = "", memory: str = "1g") -> Iterator[str]:
    """A Spark Connect server on local[2] with `memory`, logs in `work`, its JVM given
    `java_options`; yields its sc:// URL."""
    env = _environment(work, java_options)
    port = free_port()
    server = _start(
        [str(spark_home() / "bin" / "spark-submit"),
         "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
         "--driver-memory", memory,
         *(["--driver-java-options", java_options] if java_options else []),
         "--name", "Spark Connect server", "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.ui.enabled=false"],
        work / "connect.log", env,
    )  # fmt: skip
    try:
        _wait(lambda: listening(port), "the Spark Connect server", work / "connect.log")
        yield f"sc://127.0.0.1:{port}"
    finally:
        _stop(server)


def _timed(lake: Path | str, out: Path, *engine: str, conf: str = "") -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lgs_fast", "analyze", "--lake", str(lake), "--out", str(out),
         "--no-report", *engine],
        capture_output=True, text=True,
        # The models fitted, not read back; `conf`, the Spark settings of the run.
        env={**os.environ, "LGS_MODEL_CACHE": "0", "LGS_SPARK_CONF": conf},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return time.perf_counter() - start


def warm(lake: Path, out: Path, runs: int) -> int:
    """`lake` analysed `runs` times in a row on one Spark Connect server, started first (its
    first run pays for the JVM's compiling, the later ones find Spark's code compiled, as on a
    server that stays up), then by DuckDB `runs` times."""
    from lgs_fast.lake import snapshot

    lines = snapshot(lake).manifest.rows
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with connect_server(work / "connect", memory="4g") as url:
            for run in range(1, runs + 1):
                seconds = _timed(lake, work / "out", "--engine", "spark", "--spark-master", url)
                rows.append(
                    {"where": "Spark Connect (local[2])", "run": run, "seconds": round(seconds, 1)}
                )
                print(f"spark connect, run {run}: {seconds:6.1f} s", file=sys.stderr)
        for run in range(1, runs + 1):
            seconds = _timed(lake, work / "out", "--engine", "duckdb")
            rows.append({"where": "duckdb", "run": run, "seconds": round(seconds, 1)})
            print(f"duckdb, run {run}: {seconds:6.1f} s", file=sys.stderr)
    memory = os.environ.get("LGS_DUCKDB_MEMORY")
    command = f"python -m benchmarks.spark_cluster --lake {lake} --runs {runs} --out {out}"
    command = f"LGS_DUCKDB_MEMORY={memory} {command}" if memory else command
    _write(out, "spark_warm", command, f"{lines:,} lines", "run", rows, lines=lines)
    return 0


def _write(
    out: Path,
    name: str,
    command: str,
    said: str,
    column: str,
    rows: list[dict[str, object]],
    **more: object,
) -> None:
    """`rows` as OUT/NAME.json, with the date, the machine, `command` and `more`, and as
    OUT/NAME.md, a table of where, `column` and seconds after a line saying `said`; the table
    printed too."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
            "command": command, **more, "runs": rows}  # fmt: skip
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1))
    table = [f"| where | {column} | seconds (whole `analyze --no-report`) |", "|---|---:|---:|"]
    table += [f"| {r['where']} | {r[column]:,} | {r['seconds']} |" for r in rows]
    (out / f"{name}.md").write_text(
        f"`{command}`, {meta['date']}, {meta['machine']}, {said}:\n\n" + "\n".join(table) + "\n"
    )
    print("\n".join(table))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "spark_cluster"
    )
    parser.add_argument(
        "--lake", type=Path, help="instead: time this lake on one Connect server, run after run"
    )
    parser.add_argument("--runs", type=int, default=3, help="with --lake: runs on the server")
    args = parser.parse_args()
    if not java_found():
        print("no Java here: Spark cannot run", file=sys.stderr)
        return 1
    if args.lake is not None:
        return warm(args.lake, args.out, args.runs)
    from lgs_fast.ingest.sources import import_files

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lakes = {45_228: work / "month", 541_909: work / "shipped"}
        import_files([MONTH_CSV], lakes[45_228])
        import_files([SHIPPED], lakes[541_909])

        def run(where: str, master: str, lines: int, lake: Path | str, conf: str = "") -> None:
            seconds = _timed(
                lake, work / "out", "--engine", "spark", "--spark-master", master, conf=conf
            )
            rows.append({"where": where, "lines": lines, "seconds": round(seconds, 1)})
            print(f"{where:28s} {lines:>9,} lines  {seconds:6.1f} s", file=sys.stderr)

        for lines, lake in lakes.items():
            run("local[2]", "local[2]", lines, lake)
        with standalone(work / "cluster") as url:
            # The lake on a path the cluster shares (as a mount would be), then at a URI.
            for lines, lake in lakes.items():
                run("standalone cluster, 1 worker", url, lines, lake)
            for lines, lake in lakes.items():
                run("standalone cluster, 1 worker, file:// URI", url, lines, f"file://{lake}")
            # What outliving a lost executor costs: the kept rows written to a directory.
            checkpoints = f"spark.checkpoint.dir={work / 'checkpoints'}"
            for lines, lake in lakes.items():
                run(
                    "standalone cluster, 1 worker, checkpoint directory",
                    url,
                    lines,
                    lake,
                    checkpoints,
                )
        with connect_server(work / "connect") as url:
            for lines, lake in lakes.items():
                run("Spark Connect (local[2])", url, lines, lake)
        for lines, lake in lakes.items():
            rows.append({"where": "duckdb (for scale)", "lines": lines,
                         "seconds": round(_timed(lake, work / "out", "--engine", "duckdb"), 1)})  # fmt: skip
    _write(
        args.out,
        "spark_cluster",
        "python -m benchmarks.spark_cluster",
        "one run each",
        "lines",
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
