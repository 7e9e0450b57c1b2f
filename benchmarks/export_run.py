"""Export benchmark: PostgreSQL table → Parquet, lgs_fast against the floor and its peers.

    python -m benchmarks.export_run [--sizes 1000000,10000000] [--repeat 3] [--dsn DSN]

Contenders, each a fresh process measured by GNU time (wall seconds, peak RSS):
  floor   psql `COPY table TO STDOUT` into /dev/null: the server's and the wire's cost alone
  lgs     `lgs-fast export --full` (partitioned lake, validated, checksummed, atomic), one
          worker connection per CPU (at least 2) in one shared snapshot
  lgs-1job        the same with one worker connection (`LGS_EXPORT_JOBS=1`)
  lgs-unchanged   incremental export of a lake already up to date: the server's per-month
          counts and fingerprints, compared with the manifest (the cost of noticing nothing)
  lgs-one-month   incremental export after an UPDATE in one old month: fingerprints, then
          that month read again
  pandas  `pandas.read_sql` + `to_parquet`, what the LGS notebook did
  cx      ConnectorX `read_sql` to Arrow + one Parquet file
  adbc    ADBC PostgreSQL driver to Arrow + one Parquet file
The tables are loaded from the benchmark lakes with `lgs-fast load-pg` when missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.datasets import lake
from benchmarks.run import summarise

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
ROOT = Path(__file__).resolve().parent.parent


def _uri(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p.get('dbname', 'postgres')}"


def ensure_table(dsn: str, rows: int) -> str:
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.postgres import load_pg
    from lgs_fast.lake import snapshot

    table = f"bench_retail_{rows}"
    with psycopg.connect(dsn) as conn:
        try:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            count = None
    if count != (rows,):
        files = list(snapshot(lake(rows)).files.values())
        print(f"loading {rows:,} lines into {table}…", file=sys.stderr, flush=True)
        load_pg(files, dsn, table=table)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
    return table


SCRIPTS = {
    "lgs": "from lgs_fast.ingest.postgres import export; export({dsn!r}, {out!r}, table={table!r}, full=True)",
    "pandas": (
        "import warnings, psycopg, pandas as pd; warnings.simplefilter('ignore');"
        "conn = psycopg.connect({dsn!r});"
        "pd.read_sql('SELECT * FROM {table}', conn).to_parquet({out!r} + '.parquet', compression='zstd')"
    ),
    "cx": (
        "import connectorx as cx, pyarrow.parquet as pq;"
        "pq.write_table(cx.read_sql({uri!r}, 'SELECT * FROM {table}', return_type='arrow'), {out!r} + '.parquet', compression='zstd')"
    ),
    "adbc": (
        "import adbc_driver_postgresql.dbapi as adbc, pyarrow.parquet as pq;"
        "conn = adbc.connect({uri!r}); cur = conn.cursor(); cur.execute('SELECT * FROM {table}');"
        "pq.write_table(cur.fetch_arrow_table(), {out!r} + '.parquet', compression='zstd')"
    ),
}


SCRIPTS["lgs-1job"] = SCRIPTS["lgs"].replace("full=True", "full=True, jobs=1")
SCRIPTS["lgs-unchanged"] = SCRIPTS["lgs"].replace(", full=True", "")
SCRIPTS["lgs-one-month"] = SCRIPTS["lgs-unchanged"]


def prepare(name: str, dsn: str, table: str, out: str) -> None:
    """What a contender needs in place before it is timed (not timed itself)."""
    if name not in ("lgs-unchanged", "lgs-one-month"):
        return
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.postgres import export

    export(dsn, out, table=table, full=True)
    if name == "lgs-one-month":
        # Flip the sign of one invoice's quantities in March 2011: one month's content changes.
        with psycopg.connect(dsn) as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {t} SET quantity = -quantity WHERE invoice_no = (SELECT min(invoice_no) "
                    "FROM {t} WHERE invoice_date >= '2011-03-01' AND invoice_date < '2011-04-01')"
                ).format(t=sql.Identifier(table))
            )


def command(name: str, dsn: str, table: str, out: str) -> list[str]:
    if name == "floor":
        return ["psql", dsn, "-q", "-o", "/dev/null", "-c", f"COPY {table} TO STDOUT"]
    script = SCRIPTS[name].format(dsn=dsn, uri=_uri(dsn), table=table, out=out)
    return [sys.executable, "-c", script]


def measure(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one command, from GNU time."""
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%e %M", *cmd], check=True, cwd=ROOT
        )
        seconds, kib = report.read().split()
    return float(seconds), int(kib) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("LGS_PG_DSN", DEFAULT_DSN))
    parser.add_argument(
        "--contenders", default="floor,lgs,lgs-1job,lgs-unchanged,lgs-one-month,pandas,cx,adbc"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    results = []
    for rows in (int(s) for s in args.sizes.split(",")):
        table = ensure_table(args.dsn, rows)
        for name in args.contenders.split(","):
            runs = []
            for _ in range(args.repeat):
                work = Path(tempfile.mkdtemp(prefix="lgs-export-bench-"))
                try:
                    prepare(name, args.dsn, table, str(work / "lake"))
                    runs.append(measure(command(name, args.dsn, table, str(work / "lake"))))
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            results.append(summarise(rows, name, runs))
    lines = [
        "| lines | contender | median s | peak RSS MiB | vs floor | lgs speed-up |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    by = {(r["rows"], r["contender"]): r for r in results}
    for r in results:
        floor, lgs = by.get((r["rows"], "floor")), by.get((r["rows"], "lgs"))
        vs_floor = f"{r['seconds'] / floor['seconds']:.2f}×" if floor else ""
        speedup = (
            f"{r['seconds'] / lgs['seconds']:.1f}×"
            if lgs and not r["contender"].startswith("lgs") and r["contender"] != "floor"
            else ""
        )
        lines.append(
            f"| {r['rows']:,} | {r['contender']} | {r['seconds']:.2f} | {r['peak_rss_bytes'] / 2**20:,.0f} | {vs_floor} | {speedup} |"
        )
    table_md = "\n".join(lines) + "\n"
    meta = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.export_run " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    (args.out / "export.md").write_text(f"<!-- {meta['command']}, {meta['when']} -->\n\n{table_md}")
    print(table_md)


if __name__ == "__main__":
    main()
