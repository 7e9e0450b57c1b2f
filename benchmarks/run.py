"""`make bench`: time every contender over lakes of growing size; write JSON and Markdown.

Each run is a fresh process (`benchmarks.contender`); we keep the median wall time of the work
over `--repeat` runs and the largest peak RSS. Timings never live in tests.

    python -m benchmarks.run [--sizes 541909,1000000] [--repeat 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.contender import ANALYSIS, SPARK_MAX_ROWS
from benchmarks.datasets import REAL_ROWS, lake

# Environment settings that change what is measured, recorded with the results.
SETTINGS = ("BENCH_FULL", "LGS_DUCKDB_MEMORY", "LGS_STREAMING_ROWS")
QUICK = [REAL_ROWS, 1_000_000]
FULL = [REAL_ROWS, 1_000_000, 10_000_000, 100_000_000]


# A contender whose resident memory passes this is stopped and recorded as out of memory, so
# that pandas at 100M lines cannot take the machine down with it.
MEMORY_CAP = 18 * 2**30


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(name: str, path: Path) -> tuple[float, int]:
    """(seconds of work, peak RSS in bytes) of one contender run in a fresh process.

    Returns (inf, RSS) when the contender was stopped at MEMORY_CAP.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.contender", name, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    while proc.poll() is None:
        rss = _rss(proc.pid)
        if rss > MEMORY_CAP:
            proc.kill()
            proc.wait()
            return float("inf"), rss
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else b""
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {path} failed with exit code {proc.returncode}")
    seconds, rss = out.decode().split()
    return float(seconds), int(rss)


def summarise(rows: int, name: str, runs: list[tuple[float, int]]) -> dict[str, object]:
    """One result row: median seconds and largest peak RSS over the runs; says it on stderr."""
    seconds, rss = statistics.median(t for t, _ in runs), max(r for _, r in runs)
    out_of_memory = seconds == float("inf")
    shown = (
        f"out of memory (stopped at {rss / 2**30:.1f} GiB)"
        if out_of_memory
        else f"{seconds:8.3f} s {rss / 2**20:8.0f} MiB"
    )
    print(f"  {rows:>11,} {name:<7} {shown}", file=sys.stderr, flush=True)
    return {
        "rows": rows,
        "contender": name,
        "seconds": None if out_of_memory else seconds,
        "peak_rss_bytes": rss,
        "runs": [] if out_of_memory else [t for t, _ in runs],
        "out_of_memory": out_of_memory,
    }


def run(
    sizes: list[int], repeat: int, contenders: list[str], customers: int | None = None
) -> list[dict[str, object]]:
    results = []
    for rows in sizes:
        print(f"lake of {rows:,} lines…", file=sys.stderr, flush=True)
        path = lake(rows, customers)
        for name in contenders:
            if "spark" in name and rows > SPARK_MAX_ROWS:
                print(f"  {name}: not run above {SPARK_MAX_ROWS:,} lines", file=sys.stderr)
                continue
            runs = [measure(name, path)]
            while len(runs) < repeat and runs[0][0] != float("inf"):
                runs.append(measure(name, path))
            results.append(summarise(rows, name, runs))
    return results


def _cell(r: dict[str, object] | None, base: dict[str, object] | None, flip: bool) -> str:
    if not r or not base or not r["seconds"] or not base["seconds"]:
        return ""
    a, b = float(base["seconds"]), float(r["seconds"])  # type: ignore[arg-type]
    return f"{(a / b if flip else b / a):.1f}×"


# Table order: the contenders as listed, then the import-and-analyze sums.
ORDER = {
    name: i
    for i, name in enumerate(
        [*ANALYSIS, "import+analyze-polars", "import+analyze-duckdb", "import+analyze-spark"]
    )
}


def _baseline(contender: str) -> str:
    """Whom a contender is compared with: the pandas reference computing the same tables (an
    import alone is compared with nothing: pandas has no lake to build)."""
    if contender == "import":
        return ""
    return "pandas-core" if contender.endswith("-core") else "pandas"


def together(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows `import+analyze-ENGINE`: the whole path from line files to written tables, the sum
    of the two measured medians (peak memory: the larger of the two processes')."""
    by = {(r["rows"], r["contender"]): r for r in results}
    out: list[dict[str, object]] = []
    for rows in sorted({int(r["rows"]) for r in results}):  # type: ignore[call-overload]
        load = by.get((rows, "import"))
        for engine in ("polars", "duckdb", "spark"):
            run = by.get((rows, f"analyze-{engine}"))
            if load and run and load["seconds"] and run["seconds"]:
                out.append(
                    {
                        "rows": rows,
                        "contender": f"import+analyze-{engine}",
                        "seconds": float(load["seconds"]) + float(run["seconds"]),  # type: ignore[arg-type]
                        "peak_rss_bytes": max(load["peak_rss_bytes"], run["peak_rss_bytes"]),  # type: ignore[type-var]
                        "runs": [],
                        "out_of_memory": False,
                    }
                )
    return out


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| lines | contender | median s | peak RSS MiB | vs pandas | vs floor |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    by = {(r["rows"], r["contender"]): r for r in results}
    for r in results:
        seconds = "out of memory" if r["seconds"] is None else f"{r['seconds']:.3f}"
        base = by.get((r["rows"], _baseline(str(r["contender"]))))
        lines.append(
            f"| {r['rows']:,} | {r['contender']} | {seconds} | "
            f"{r['peak_rss_bytes'] / 2**20:,.0f} | "  # type: ignore[operator]
            f"{_cell(r, base, flip=True)} | "
            f"{_cell(r, by.get((r['rows'], 'floor')), flip=False)} |"
        )
    return "\n".join(lines) + "\n"


def slopes(results: list[dict[str, object]]) -> dict[str, float]:
    """Per contender, the exponent b of time ~ lines^b over the two largest sizes (1 = linear)."""
    import math

    out = {}
    for name in {str(r["contender"]) for r in results}:
        points = sorted(
            (int(r["rows"]), float(r["seconds"]))
            for r in results
            if r["contender"] == name and r["seconds"]
        )  # type: ignore[arg-type]
        if len(points) >= 2:
            (n1, t1), (n2, t2) = points[-2:]
            out[name] = math.log(t2 / t1) / math.log(n2 / n1)
    return out


def chart(results: list[dict[str, object]], path: Path) -> None:
    """Time and peak memory against lines, log-log, one line per contender (SVG)."""
    import altair as alt
    import vl_convert as vlc

    rows = [
        {
            "lines": r["rows"],
            "contender": r["contender"],
            "seconds": r["seconds"],
            "GiB": r["peak_rss_bytes"] / 2**30,
        }  # type: ignore[operator]
        for r in results
    ]
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X(
            "lines:Q",
            scale=alt.Scale(type="log"),
            title="Invoice lines",
            axis=alt.Axis(format="~s"),
        ),
        color=alt.Color("contender:N", title="Contender"),
        shape="contender:N",
    )
    time_chart = (
        base.mark_line(point=True)
        .encode(y=alt.Y("seconds:Q", scale=alt.Scale(type="log"), title="Seconds (median)"))
        .transform_filter("datum.seconds != null")
        .properties(title="Whole analysis: time", width=320, height=240)
    )
    memory = (
        base.mark_line(point=True)
        .encode(y=alt.Y("GiB:Q", scale=alt.Scale(type="log"), title="Peak RSS (GiB)"))
        .properties(title="Whole analysis: peak memory", width=320, height=240)
    )
    path.write_text(vlc.vegalite_to_svg(alt.hconcat(time_chart, memory).to_json()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", help="comma-separated line counts (default: quick set; BENCH_FULL=1 adds 10M)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(ANALYSIS))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--customers",
        type=int,
        help="generate the lakes with the wholesale preset (lgs-fast generate --customers N)",
    )
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (FULL if os.environ.get("BENCH_FULL") else QUICK)
    )
    results = run(sizes, args.repeat, args.contenders.split(","), args.customers)
    results += together(results)
    results.sort(key=lambda r: (r["rows"], ORDER.get(str(r["contender"]), len(ORDER))))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(
            [
                *(f"{k}={os.environ[k]}" for k in SETTINGS if k in os.environ),
                "python -m benchmarks.run",
            ]
            + sys.argv[1:]
        ),
    }
    (args.out / "analysis.json").write_text(
        json.dumps({**meta, "results": results, "slopes": slopes(results)}, indent=2)
    )
    table = markdown(results)
    fitted = slopes(results)
    table += (
        "\nGrowth exponent b in time ~ lines^b between the two largest sizes: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(fitted.items()))
        + "\n"
    )
    chart(results, args.out / "scaling.svg")
    (args.out / "analysis.md").write_text(
        f"<!-- {meta['command']} on {meta['machine']}, {meta['when']} -->\n\n{table}"
    )
    print(table)


if __name__ == "__main__":
    main()
