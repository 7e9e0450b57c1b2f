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
from pathlib import Path

from benchmarks.contender import CONTENDERS
from benchmarks.datasets import REAL_ROWS, lake

QUICK = [REAL_ROWS, 1_000_000]
FULL = [REAL_ROWS, 1_000_000, 10_000_000]


def measure(name: str, path: Path) -> tuple[float, int]:
    """(seconds of work, peak RSS in bytes) of one contender run in a fresh process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.contender", name, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {path} failed with exit code {proc.returncode}")
    seconds, rss = out.decode().split()
    return float(seconds), int(rss)


def summarise(rows: int, name: str, runs: list[tuple[float, int]]) -> dict[str, object]:
    """One result row: median seconds and largest peak RSS over the runs; says it on stderr."""
    seconds, rss = statistics.median(t for t, _ in runs), max(r for _, r in runs)
    print(
        f"  {rows:>11,} {name:<7} {seconds:8.3f} s {rss / 2**20:8.0f} MiB",
        file=sys.stderr,
        flush=True,
    )
    return {
        "rows": rows,
        "contender": name,
        "seconds": seconds,
        "peak_rss_bytes": rss,
        "runs": [t for t, _ in runs],
    }


def run(sizes: list[int], repeat: int, contenders: list[str]) -> list[dict[str, object]]:
    results = []
    for rows in sizes:
        print(f"lake of {rows:,} lines…", file=sys.stderr, flush=True)
        path = lake(rows)
        for name in contenders:
            runs = [measure(name, path) for _ in range(repeat)]
            results.append(summarise(rows, name, runs))
    return results


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| lines | contender | median s | peak RSS MiB | vs pandas | vs floor |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    by = {(r["rows"], r["contender"]): r for r in results}
    for r in results:
        pandas = by.get((r["rows"], "pandas"))
        floor = by.get((r["rows"], "floor"))
        speedup = f"{pandas['seconds'] / r['seconds']:.1f}×" if pandas else ""  # type: ignore[operator]
        to_floor = f"{r['seconds'] / floor['seconds']:.1f}×" if floor else ""  # type: ignore[operator]
        lines.append(
            f"| {r['rows']:,} | {r['contender']} | {r['seconds']:.3f} | "
            f"{r['peak_rss_bytes'] / 2**20:,.0f} | {speedup} | {to_floor} |"  # type: ignore[operator]
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", help="comma-separated line counts (default: quick set; BENCH_FULL=1 adds 10M)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (FULL if os.environ.get("BENCH_FULL") else QUICK)
    )
    results = run(sizes, args.repeat, args.contenders.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
    }
    (args.out / "analysis.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    table = markdown(results)
    (args.out / "analysis.md").write_text(
        f"<!-- {meta['command']} on {meta['machine']}, {meta['when']} -->\n\n{table}"
    )
    print(table)


if __name__ == "__main__":
    main()
