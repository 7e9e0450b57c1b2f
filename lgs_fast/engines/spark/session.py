"""The Spark session: the master checked before a JVM starts (one line for a typo, no Java, a
master that does not answer), the session started with lgs_fast's settings and the user's
(`$LGS_SPARK_CONF`, `$LGS_SPARK_JAVA_OPTIONS`), and what Spark says of a failure, in one line
and with no value of `$LGS_SPARK_CONF` in it (`spark_failures`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lgs_fast.errors import EngineError, InputError, LgsError
from lgs_fast.lake import first_line

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
# Master URLs Spark accepts (`spark-submit --master`), checked before a JVM is started so that
# a typo is one line, not a Java stack trace.
_MASTER = re.compile(
    r"^(local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|spark://[^/\s]+|yarn|k8s://\S+|sc://\S+)$"
)
# Spark's defaults are made for clusters; these keep one machine's runs small and exact.
_CONF = {
    # Lake times carry no zone: TIMESTAMP means TIMESTAMP_NTZ, and the session zone is UTC, so
    # no conversion ever shifts a time.
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.session.timeZone": "UTC",
}


# Starting ---------------------------------------------------------------------------------


def master_url(master: str | None = None) -> str:
    """The master to use: `master`, else $SPARK_REMOTE (Spark Connect), else $LGS_SPARK_MASTER,
    else local[*]; `EngineError` for one Spark would not accept."""
    if master is not None and not master.strip():
        raise EngineError(
            "--spark-master is empty: give a master URL (local[*], spark://HOST:PORT, yarn, "
            "k8s://URL, sc://HOST:PORT) or leave the option out for local[*]"
        )
    url = master or os.environ.get("SPARK_REMOTE") or os.environ.get("LGS_SPARK_MASTER")
    url = url or DEFAULT_MASTER
    if not _MASTER.match(url):
        raise EngineError(
            f"--spark-master {url!r} is not a Spark master URL "
            "(local[*], local[N], spark://HOST:PORT, yarn, k8s://URL, or sc://HOST:PORT for Spark Connect)"
        )
    return url


def _reachable(url: str) -> None:
    """A standalone master or Connect server that does not answer: one line now, instead of
    Spark retrying for a minute and then printing Java stack traces."""
    if not url.startswith(("spark://", "sc://")):
        return
    for hostport in url.split("://", 1)[1].split("/", 1)[0].split(","):
        parsed = urlparse(f"//{hostport.split(';')[0]}")
        try:
            port = parsed.port or (15002 if url.startswith("sc://") else 7077)
        except ValueError:  # a port that is not a number from 0 to 65535
            raise EngineError(f"{url}: {hostport!r} has no valid port (a number)") from None
        host = parsed.hostname
        try:
            socket.create_connection((host, port), timeout=5).close()
            return
        except OSError as err:
            reason = err.strerror or type(err).__name__
    raise EngineError(f"cannot reach the Spark master {url} ({reason})")


def _java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return
    if home:
        raise EngineError(f"JAVA_HOME={home} has no bin/java: Spark needs Java 17 or later")
    if shutil.which("java") is None:
        raise EngineError(
            "no Java found (no java on PATH, JAVA_HOME unset): Spark needs Java 17 or later"
        )


def check_can_start(master: str | None = None) -> str:
    """The master URL, once the cheap checks pass (PySpark, Java, a master that answers,
    $LGS_SPARK_CONF's form): `EngineError` or `InputError` in one line otherwise, before any
    long work or any progress is shown."""
    url = master_url(master)
    user_conf()
    if importlib.util.find_spec("pyspark") is None:
        raise EngineError("the Spark engine needs PySpark: pip install 'lgs-fast[spark]'")
    if not url.startswith("sc://"):
        _java()
    _reachable(url)
    return url


# Below this many lines, the JVMs Spark starts (the driver, and a cluster's executors) compile
# with the quick compiler only (C1, `-XX:TieredStopAtLevel=1`). A small lake's run is short,
# and the optimising compiler (C2) spent it compiling: for `analyze --no-report` on `local[2]`
# it took about a third of the JVM's CPU, and leaving it out took the month (45,228 lines) from
# 38 s to 31 s and the shipped 541,909 lines from 51 s to 40 s; at 10M lines both were within
# a run's noise (115 s, 122 s), so larger lakes, and lakes of unknown size, keep the default.
QUICK_JIT_LINES = 5_000_000
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def session(master: str | None = None, lines: int | None = None) -> SparkSession:
    """The process's Spark session on `master` (see `master_url`), started on first use; `lines`,
    the size of the lake it is started for, if known, chooses the JVMs' compilers then (a JVM's
    flags are set once, when it starts)."""
    url = check_can_start(master)
    if url not in _SESSIONS:
        _SESSIONS[url] = _start(url, quick_jit=lines is not None and lines < QUICK_JIT_LINES)
    return _SESSIONS[url]


_SESSIONS: dict[str, SparkSession] = {}  # by master URL


def _from_py4j(record: logging.LogRecord) -> bool:
    return f"{os.sep}py4j{os.sep}" not in record.pathname


def _quiet_py4j() -> None:
    """Py4J reports a call cut short by Ctrl-C or SIGTERM with tracebacks, through its own
    logger and through the root logger (`logging.exception`, which also sets up a stderr
    handler on first use): two tracebacks came before lgs_fast's one line saying what is on
    disk. lgs_fast reports the interruption itself; other logging is left as it is."""
    logging.getLogger("py4j").setLevel(logging.CRITICAL + 1)
    root = logging.getLogger()
    if _from_py4j not in root.filters:
        root.addFilter(_from_py4j)


def _start(url: str, quick_jit: bool) -> SparkSession:
    with warnings.catch_warnings():
        # PySpark warns of any pandas it has not been tested with; it is not used here.
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql import SparkSession
    _quiet_py4j()
    builder = SparkSession.builder.appName("lgs-fast")
    if url.startswith("sc://"):
        builder = builder.remote(url)
    else:
        log4j = resources.files("lgs_fast.engines.spark") / "log4j2.properties"
        # $LGS_SPARK_JAVA_OPTIONS last: the JVM takes a flag's last value.
        jvm = " ".join(
            filter(
                None, [QUICK_JIT if quick_jit else "", os.environ.get("LGS_SPARK_JAVA_OPTIONS", "")]
            )
        )
        builder = builder.master(url).config(
            "spark.driver.extraJavaOptions",
            f"-Dlog4j2.configurationFile=file:{log4j} {jvm}".strip(),
        )
        if jvm and not url.startswith("local"):
            builder = builder.config("spark.executor.extraJavaOptions", jvm)
        if url.startswith("local"):
            # One process: the driver does the work, with the memory it is given.
            builder = (
                builder.config(
                    "spark.driver.memory", os.environ.get("LGS_SPARK_DRIVER_MEMORY", "4g")
                )
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
            )
        # With a checkpoint directory (`_materialised`), the files of checkpoints no longer
        # read are removed as the run goes: a notebook connects again and again.
        builder = builder.config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        # The user's settings when the session starts, where any Spark setting can still be
        # given (`spark.checkpoint.dir`, executor memory, a file system's credentials); once it
        # has started only SQL settings can be changed.
        for key, value in user_conf().items():
            builder = builder.config(key, value)
    try:
        with warnings.catch_warnings(), _jvm_stderr():
            warnings.simplefilter("ignore", FutureWarning)  # as above, checked at start-up
            spark = builder.getOrCreate()
        for key, value in _CONF.items():
            spark.conf.set(key, value)
    except Exception as err:  # PySpark raises its own types, and Py4J's
        raise EngineError(f"Spark could not start on {url}: {redacted(first_line(err))}") from None
    # PySpark logs every failed query as JSON on stderr; lgs_fast reports failures itself.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    if url.startswith("sc://"):
        # Over Spark Connect the server's settings are the server's: the session's SQL ones.
        for key, value in user_conf().items():
            try:
                spark.conf.set(key, value)
            except Exception as err:  # the server's own refusal
                raise InputError(
                    f"LGS_SPARK_CONF: the Spark Connect server at {url} refused {key} "
                    f"({redacted(first_line(err))}); a setting of the server's own, such as "
                    "spark.checkpoint.dir, is given where the server starts"
                ) from None
    else:
        spark.sparkContext.setLogLevel("OFF")
        _remove_checkpoints_at_exit(spark)
    return spark


def user_conf() -> dict[str, str]:
    """`$LGS_SPARK_CONF`, Spark settings as `key=value;key=value`; `InputError` for an item that
    is not `key=value`, named by its place, not its text: a setting may hold a credential (a
    file system's secret key), and a mistyped one is still one."""
    conf = {}
    items = _conf_items()
    for place, item in enumerate(items, 1):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InputError(
                f"LGS_SPARK_CONF: setting {place} of {len(items)} is not key=value "
                "(settings are separated by ';')"
            )
        if key.strip() in ("spark.master", "spark.remote"):
            # It would replace the master `check_can_start` checked.
            raise InputError(
                f"LGS_SPARK_CONF: {key.strip()} is given by --spark-master "
                "($LGS_SPARK_MASTER, $SPARK_REMOTE), not here"
            )
        conf[key.strip()] = value.strip()
    return conf


def _conf_items() -> list[str]:
    """The settings of $LGS_SPARK_CONF as written, one per item between ';', blank ones left out."""
    return [item for item in os.environ.get("LGS_SPARK_CONF", "").split(";") if item.strip()]


# A value of $LGS_SPARK_CONF this long or longer is hidden from messages: shorter ones (true,
# 4g, 200) are not credentials, and would hide words of the message itself.
_HIDDEN_FROM = 8


def redacted(text: str) -> str:
    """`text` with each value given in $LGS_SPARK_CONF hidden: Spark quotes a value it refuses,
    and a value may be a credential, or hold one when a ';' was mistyped."""
    for item in _conf_items():  # not `user_conf`, which refuses what is not key=value
        key, equals, value = item.partition("=")
        value = (value if equals else key).strip()
        if len(value) >= _HIDDEN_FROM:
            text = text.replace(value, "***")
    return text


def _remove_checkpoints_at_exit(spark: SparkSession) -> None:
    """With `spark.checkpoint.dir` set, the run's checkpoints (`_materialised`) are files under
    it, in a directory Spark made for this session, which it leaves behind: removed when the
    process ends, a failure or SIGTERM included. The session is stopped first, its jobs
    cancelled: a task still writing a checkpoint made the directory again after it was removed.
    (The JVM ends after Python's exit handlers, when its standard input closes.)"""
    directory = checkpoint_directory(spark)
    if directory is None:
        return
    jvm = spark._jvm  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(directory)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[attr-defined]

    def remove() -> None:
        # Errors suppressed: the JVM may be gone already, and then nothing more can be done.
        with contextlib.suppress(Exception):
            spark.stop()
        with contextlib.suppress(Exception):
            fs.delete(path, True)

    atexit.register(remove)


def checkpoint_directory(spark: SparkSession) -> str | None:
    """Where the session writes checkpoints, if anywhere (`spark.checkpoint.dir`)."""
    if getattr(spark, "_jvm", None) is None:  # Spark Connect: the server's setting
        return spark.conf.get("spark.checkpoint.dir", None) or None
    return spark.sparkContext.getCheckpointDir()


# Where a local Spark's JVM writes what it prints (errors only, with lgs_fast's log4j2 settings,
# and the JVM's own notices): lgs_fast reports each failure itself, in one line.
SPARK_LOG = Path(tempfile.gettempdir()) / "lgs_fast_spark.log"


@contextlib.contextmanager
def _jvm_stderr() -> Iterator[None]:
    """Standard error sent to SPARK_LOG while the JVM starts, which inherits it for good (the
    JVM announces its incubator modules there, unasked). LGS_DEBUG=1 leaves it on the terminal."""
    if os.environ.get("LGS_DEBUG"):
        yield
        return
    saved = os.dup(2)
    log = os.open(SPARK_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(log, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


class JobFailed(RuntimeError):
    """A Spark job that failed, told by Spark's own reason, in one line."""


# What Py4J says first of any failure in the JVM: it names the call (`o343.getResult`, or
# `z:org.…` for a static one), not the cause.
_PY4J_FIRST = re.compile(r"^An error occurred while calling [\w.:$]+\.\s*$")
# Spark's error class for rows kept by `localCheckpoint` that were lost with their executor.
_LOST_CHECKPOINT = "CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND"
# Causes followed at most: a chain that led back to itself would not end.
_CAUSES = 32


def _java_reason(err: Exception) -> str | None:
    """The deepest Java cause's message of a failure in the JVM that PySpark passed on as Py4J
    gave it (the outer causes say where it was awaited: "Exception thrown in awaitResult:")."""
    from py4j.protocol import Py4JError, Py4JJavaError

    if not isinstance(err, Py4JJavaError):
        return None
    try:
        if not _PY4J_FIRST.match(str(err).strip().splitlines()[0]):
            return None
        java = err.java_exception
        for _ in range(_CAUSES):
            cause = java.getCause()
            if cause is None:
                break
            java = cause
        message = str(java.getMessage() or "").strip()
        return message.splitlines()[0] if message else str(java.getClass().getName())
    except (Py4JError, IndexError):  # the JVM gone, or nothing said
        return None


@contextlib.contextmanager
def spark_failures() -> Iterator[None]:
    """What Spark says of a failure, in one line (`JobFailed`) and with the values of
    $LGS_SPARK_CONF hidden (`redacted`). Py4J's message begins "An error occurred while calling
    o343.getResult.", which names the call, and PySpark passes it on as it is when it does not
    know the Java cause: the deepest cause is said instead; an executor lost with the rows kept
    on it also says what would have outlived it."""
    try:
        yield
    except LgsError as err:
        hidden = redacted(str(err))
        if hidden == str(err):
            raise
        raise type(err)(hidden) from None
    except Exception as err:
        reason = _java_reason(err)
        said = reason if reason is not None else first_line(err)
        hidden = redacted(said)
        if reason is None and hidden == said:
            raise
        if _LOST_CHECKPOINT in hidden:
            hidden += (
                " (an executor was lost, and the rows it kept with it: set spark.checkpoint.dir,"
                " in LGS_SPARK_CONF, to storage the cluster shares so that a run outlives it)"
            )
        # The Java cause kept for LGS_DEBUG=1, unless it holds a value to hide.
        raise JobFailed(hidden) from (err if redacted(str(err)) == str(err) else None)
