"""`python -m bench.table_wide`: the cost of the table-wide checks beside the run they guard.

For each size (1M borrowers; 4M with `--large`) and source kind (DuckDB, Parquet), in fresh processes:
`table_wide.scan` over the whole source (median of `--repeat`), then the default partitioned run
(`--partitions auto`, 2 GiB) once; prints the scan's seconds and its share of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ROOT, bench_home, ensure_data, log, worker


def scan_seconds(source: Path) -> float:
    code = (
        "import sys, time; from pathlib import Path; from pipelines.rules import table_wide; "
        "t = time.perf_counter(); table_wide.scan(Path(sys.argv[1])); print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(source)], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def as_parquet(source: Path) -> Path:
    folder = source.with_suffix(".parquet.d")
    if not folder.exists():
        import duckdb

        folder.mkdir()
        con = duckdb.connect(str(source), read_only=True)
        try:
            for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
                con.execute(f"COPY \"{name}\" TO '{folder / (name + '.parquet')}' (FORMAT parquet)")  # noqa: S608
        finally:
            con.close()
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.table_wide", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="add 4,000,000 borrowers")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(args.cache)
    lookups = args.cache / "lookups-table-wide"
    worker("lookups", cache=lookups)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    for size in [1_000_000] + ([4_000_000] if args.large else []):
        duck = ensure_data(home, args.cache, size, 42)
        for kind, source in (("duckdb", duck), ("parquet", as_parquet(duck))):
            scans = [scan_seconds(source) for _ in range(args.repeat)]
            run = worker("partitioned", str(home), str(source), "auto", "2GiB", cache=lookups)
            scan = statistics.median(scans)
            row = {"scanSeconds": round(scan, 3), "runSeconds": run["seconds"], "partitions": run["partitions"],
                   "share": round(scan / run["seconds"], 3)}  # fmt: skip
            report[f"{size // 1_000_000}M {kind}"] = row
            log(f"{size:,} borrowers, {kind}: table-wide scan {scan:.2f} s beside a {run['seconds']:.1f} s run "
                f"in {run['partitions']} partitions ({row['share']:.1%})")  # fmt: skip
    out = ROOT / "results" / f"table-wide-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
