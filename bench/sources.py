"""`python -m bench.sources`: the default run (`--partitions auto`, 2 GiB) from each kind of source, side by side.

The 1M-borrower book of bench/cache (made by `python -m bench`, see bench/harness.py) as a local
Parquet folder, the same tables as CSV files, the Parquet files on an S3-compatible server on
loopback (moto, a subprocess), the DuckDB file, and its tables in a PostgreSQL server on loopback
(Debian's package, initdb in a temp folder), all loaded before anything is timed. Each run is a
fresh process (its peak RSS its own); the kinds take turns for `--repeat` rounds and the median is
reported, with the ratios set as targets: CSV within 1.5x of Parquet, S3 within 1.3x of local
Parquet, Postgres within 2x of DuckDB. `--kinds` runs some of them (the servers start only if
needed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import AS_OF, ROOT, bench_home, log

TARGETS = {"csv_vs_parquet_max": 1.5, "s3_vs_parquet_max": 1.3, "postgres_vs_duckdb_max": 2.0}
KINDS = ("parquet", "csv", "s3", "duckdb", "postgres")


def run_once(home: Path, source: str, warehouse: Path) -> dict[str, Any]:
    """One default run, as `contact-exporter run` does it without Prefect (split, partitions, merge)."""
    from bench.worker import EXPORTER_ID, peak_rss_mb
    from pipelines.model.config import Home
    from pipelines.model.request import DEFAULT_MEMORY_BUDGET
    from pipelines.run import building, job, planning, recording

    started = time.perf_counter()
    plan = job.plan_run(Home(home), EXPORTER_ID, AS_OF, source=source, warehouse_path=warehouse)
    count = building.partition_count(plan, "auto", DEFAULT_MEMORY_BUDGET)
    built = building.build_partitioned(plan, planning.new_run_id(), count)
    recording.record_run(built)
    return {
        "seconds": time.perf_counter() - started,
        "partitions": count,
        "stages": built.timings,
        "sha256": built.file.sha256,
        "peakRssMb": peak_rss_mb(),
    }


def measure(home: Path, source: str, env: dict[str, str], cache: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.sources", "--run", str(home), source],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        env=env | {"CONTACT_EXPORTER_CACHE": str(cache)},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def load_servers(parquet: Path, work: Path) -> tuple[Any, Any, str, str, dict[str, str]]:
    """Both servers started and loaded with the book: (postgres, s3, its Postgres URI, its S3 URI, env)."""
    import polars as pl

    from pipelines.io import postgres, s3
    from pipelines.io.source_ref import SourceRef
    from tests.servers import PG_PASSWORD, PostgresServer, S3Server, aws_environment

    pg_server, s3_server = PostgresServer(), S3Server()
    env = dict(os.environ) | s3_server.environment() | {"PGPASSWORD": PG_PASSWORD}
    os.environ["PGPASSWORD"] = PG_PASSWORD
    started = time.perf_counter()
    with aws_environment(s3_server):
        s3_server.make_bucket("bench")
        fs = s3.filesystem()
        for file in sorted(parquet.glob("*.parquet")):
            with fs.open_output_stream(f"bench/book/{file.name}") as out, file.open("rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    log(f"  S3 loaded in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    uri = pg_server.uri()
    frames = {f.stem: pl.read_parquet(f) for f in sorted(parquet.glob("*.parquet"))}
    postgres.write_tables(SourceRef.parse(uri), [frames])
    del frames
    pg_server.sql("VACUUM ANALYZE")  # statistics for the row estimate (auto partitions), as a replica has
    log(f"  Postgres loaded in {time.perf_counter() - started:.1f} s")
    return pg_server, s3_server, uri, "s3://bench/book/", env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sources", description=__doc__)
    parser.add_argument("--run", nargs=2, metavar=("HOME", "SOURCE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache", help="holds source-1000000-42.*")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    if args.run:
        home = Path(args.run[0])
        print(json.dumps(run_once(home, args.run[1], home / "bench-warehouse.duckdb")))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        report = compare(args.cache, work, args.repeat, args.kinds.split(","))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def compare(cache: Path, work: Path, repeat: int, wanted: list[str]) -> dict[str, Any]:
    duckdb_file = cache / "source-1000000-42.duckdb"
    parquet = cache / "source-1000000-42.parquet.d"
    if not duckdb_file.is_file() or not parquet.is_dir():
        raise SystemExit(f"no 1M book in {cache}: run `python -m bench.table_wide` first")
    local = work / "book"
    shutil.copytree(parquet, local / "parquet")  # the cache stays untouched (its lock files too)
    shutil.copy2(duckdb_file, local / "book.duckdb")
    home = bench_home(work)
    lookups = work / "lookups"
    kinds = {"parquet": str(local / "parquet"), "duckdb": str(local / "book.duckdb")}
    if "csv" in wanted:
        kinds["csv"] = str(write_csv(local / "parquet", local / "csv"))
    servers: tuple[Any, ...] = ()
    env = dict(os.environ)
    if "s3" in wanted or "postgres" in wanted:
        pg_server, s3_server, pg_uri, s3_uri, env = load_servers(local / "parquet", work)
        servers = (pg_server, s3_server)
        kinds |= {"s3": s3_uri, "postgres": pg_uri}
    kinds = {kind: kinds[kind] for kind in KINDS if kind in wanted}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for round_ in range(repeat):
            for kind, source in kinds.items():
                got = measure(home, source, env, lookups)
                log(
                    f"  round {round_ + 1} {kind}: {got['seconds']:.2f} s, {got['peakRssMb']:.0f} MiB, N={got['partitions']}"
                )
                runs[kind].append(got)
    finally:
        if servers:
            servers[0].close()
            servers[1].stop()
    return summary(runs, repeat)


def write_csv(parquet: Path, folder: Path) -> Path:
    """The book's tables as CSV files, written as `generate --format csv` writes them."""
    import polars as pl

    from pipelines.io import sources
    from pipelines.model.tables import SourceTables

    frames = {f.stem: pl.scan_parquet(f) for f in sorted(parquet.glob("*.parquet"))}
    sources.write_source(SourceTables(**frames), folder, "csv")
    return folder


def summary(runs: dict[str, list[dict[str, Any]]], repeat: int) -> dict[str, Any]:
    medians = {kind: statistics.median(r["seconds"] for r in got) for kind, got in runs.items()}
    peaks = {kind: max(r["peakRssMb"] for r in got) for kind, got in runs.items()}
    hashes = {kind: sorted({r["sha256"] for r in got}) for kind, got in runs.items()}
    pairs = {"csv": ("csv", "parquet"), "s3": ("s3", "parquet"), "postgres": ("postgres", "duckdb")}
    ratios = {
        name: round(medians[a] / medians[b], 2)
        for name, (a, b) in pairs.items()
        if a in medians and b in medians
    }
    limits = {"csv": "csv_vs_parquet_max", "s3": "s3_vs_parquet_max", "postgres": "postgres_vs_duckdb_max"}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "borrowers": 1_000_000,
        "repeat": repeat,
        "medianSeconds": {k: round(v, 2) for k, v in medians.items()},
        "peakRssMb": {k: round(v) for k, v in peaks.items()},
        "partitions": {kind: got[0]["partitions"] for kind, got in runs.items()},
        "stages": {kind: got[-1]["stages"] for kind, got in runs.items()},
        "sameBytes": len({h for got in hashes.values() for h in got}) == 1,
        "ratios": ratios,
        "targets": TARGETS,
        "met": {name: ratio <= TARGETS[limits[name]] for name, ratio in ratios.items()},
    }


if __name__ == "__main__":
    main()
