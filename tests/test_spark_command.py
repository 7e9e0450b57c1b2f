"""The Spark engine from the outside: lakes named by URI, read through Hadoop's file systems;
the command as an analyst runs it; one clear line for a bad master, no Java, or a URI lake given
to another engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options

pytestmark = pytest.mark.spark
MASTER = "local[2]"
CLI = Path(sys.executable).parent / "lgs-fast"


def test_a_damaged_lake_at_a_uri_is_named(retail_ii_lake: Path, tmp_path: Path) -> None:
    """file:///… is read through Hadoop's file systems, as s3a:// or hdfs:// would be: the
    manifest, then each file's size and rows checked against it; a damaged file is named."""
    from lgs_fast.errors import DamagedError, LakeError

    lake = tmp_path / "lake"
    shutil.copytree(retail_ii_lake, lake)
    manifest = json.loads((lake / "_manifest.json").read_text())
    key, entry = next(iter(manifest["partitions"].items()))
    layer = lake / "invoices" / key / entry["layers"]["invoices"]["file"]
    options = Options(recommend_segments=())
    # A byte flipped inside a lines file: the sizes and rows pass, only the content tells. Spark
    # failed with "An error occurred while calling o384.getResult", exit 1.
    lines = lake / "invoice_lines" / key / entry["file"]
    data = bytearray(lines.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lines.write_bytes(bytes(data))
    with pytest.raises(DamagedError, match=rf"{key}/{entry['file']}: partition {key}: checksum"):
        compute_tables(f"file://{lake}", options, engine="spark", spark_master=MASTER)
    data[len(data) // 2] ^= 0xFF
    lines.write_bytes(bytes(data))
    with layer.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(DamagedError, match=r"invoices layer has [\d,]+ bytes, the manifest says"):
        compute_tables(f"file://{lake}", options, engine="spark", spark_master=MASTER)
    (lake / "invoice_lines" / key / entry["file"]).unlink()
    with pytest.raises(DamagedError, match=rf"partition {key} is missing"):
        compute_tables(f"file://{lake}", options, engine="spark", spark_master=MASTER)
    with pytest.raises(LakeError, match="no lake here"):
        compute_tables(f"file://{tmp_path}/nothing", options, engine="spark", spark_master=MASTER)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The limit is there to catch a hang, not to time Spark: the URI test's run takes about 65 s
    # on an idle machine of 2 cores and passed 300 s beside make test's other worker.
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, env=env, timeout=1200, check=False
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_bad_master_missing_java_and_uri_without_spark_are_one_line(
    retail_ii_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = ["analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report"]
    _one_line(
        _run(*base, "--engine", "spark", "--spark-master", "locl[2]"),
        7,
        "'locl[2]' is not a Spark master URL",
    )
    _one_line(
        _run(*base, "--engine", "spark", "--spark-master", "spark://127.0.0.1:9"),
        7,
        "cannot reach the Spark master spark://127.0.0.1:9",
    )
    no_java = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    no_java["PATH"] = str(tmp_path)  # no java there, nor anywhere else on PATH
    _one_line(_run(*base, "--engine", "spark", env=no_java), 7, "no Java found")
    _one_line(
        _run("analyze", "--lake", "s3a://bucket/lake", "--out", str(out), "--engine", "duckdb"),
        2,
        "a lake at a URI is read by the Spark engine",
    )
    _one_line(_run(*base, "--spark-master", "local[2]"), 2, "--spark-master is for --engine spark")
    # An empty master fell back to local[*] and ended in a traceback; a Spark Connect URL
    # whose port is not a number was an "unexpected ValueError".
    _one_line(_run(*base, "--engine", "spark", "--spark-master", ""), 7, "--spark-master is empty")
    bad_port = {**os.environ, "SPARK_REMOTE": "sc://localhost:x"}
    _one_line(
        _run(*base, "--engine", "spark", env=bad_port),
        7,
        "sc://localhost:x: 'localhost:x' has no valid port (a number)",
    )
    # A setting that is not key=value was set as a key with an empty value, which Spark then
    # refused with a Java stack trace, after the JVM had started. It is named by its place: a
    # mistyped credential is still a credential.
    secret = "spark.hadoop.fs.s3a.secret.key:s3cr3t"
    bad_conf = {**os.environ, "LGS_SPARK_CONF": f"spark.sql.ansi.enabled=true;{secret}"}
    said = _run(*base, "--engine", "spark", env=bad_conf)
    _one_line(said, 2, "LGS_SPARK_CONF: setting 2 of 2 is not key=value")
    assert "s3cr3t" not in said.stderr + said.stdout
    # A master given there replaced the one checked before the JVM started.
    elsewhere = {**os.environ, "LGS_SPARK_CONF": "spark.master=spark://127.0.0.1:9"}
    _one_line(
        _run(*base, "--engine", "spark", env=elsewhere),
        2,
        "LGS_SPARK_CONF: spark.master is given by --spark-master",
    )
    assert not out.exists()


def test_sigterm_during_a_spark_run_is_one_line(retail_ii_lake: Path, tmp_path: Path) -> None:
    """SIGTERM while Python waits on the JVM printed two Py4J tracebacks before the one line.
    The run's checkpoints, written under spark.checkpoint.dir, go with it."""
    import signal
    import time

    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    proc = subprocess.Popen(
        [str(CLI), "analyze", "--lake", str(retail_ii_lake), "--out", str(out), "--no-report",
         "--engine", "spark", "--spark-master", MASTER],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LGS_SPARK_CONF": f"spark.checkpoint.dir={checkpoints}"},
    )  # fmt: skip
    # Once the queries are under way (the first checkpoint written), as a scheduler would stop it.
    deadline = time.monotonic() + 600
    while not any(checkpoints.glob("*/rdd-*/part-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == "lgs-fast: error: terminated; nothing was changed", err
    assert "Traceback" not in err and "py4j" not in err.lower(), err
    assert not out.exists()
    assert list(checkpoints.iterdir()) == []
