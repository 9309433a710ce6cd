"""One measurement in its own process, so that its peak RSS is its own high-water mark.

Usage: python -m bench.worker PHASE HOME SOURCE [ROWS COLUMNS MATCHED] (or: lookups); prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

AS_OF = date(2026, 12, 1)
EXPORTER_ID = "CE-BENCHVCE"
# Read by the bench only (bench/guards.py): "off" runs the pipeline without the guards.
GUARDS_SWITCH = "CONTACT_EXPORTER_BENCH_GUARDS"
GUARDS = ("check_matched", "check_screening", "check_export")
REJECTED_SCHEMA = {"tableName": str, "rowKey": str, "checks": list[str]}


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark, in MiB.

    VmHWM belongs to the process image since its exec. `ru_maxrss` is not used where VmHWM exists:
    Linux carries the parent's high-water mark into it across fork and exec, so a worker started by
    a harness that had generated 4M borrowers reported the harness's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(home: Path, source: Path, out_dir: Path, rows: int, columns: int, matched: int) -> dict[str, Any]:
    """The work any implementation of the run does, with no logic: read the columns the run needs,
    write a CSV of the export's shape (`rows` x `columns`) and one warehouse row per matched contact
    (`matched`) through the same insert. Also reports `readAllSeconds`-style parts, so the
    README can say what the floor is made of."""
    import duckdb
    import polars as pl

    from pipelines.io import duck, warehouse
    from pipelines.model.config import Home
    from pipelines.model.tables import TABLES
    from pipelines.run import deciding, job

    plan = job.plan_run(
        Home(home), EXPORTER_ID, AS_OF, source=source, warehouse_path=out_dir / "floor.duckdb"
    )
    needed = deciding.columns_needed(plan.exporter)
    started = time.perf_counter()
    frames: dict[str, pl.DataFrame] = {}
    with duck.connect(source, read_only=True) as con:
        duck.string_views(con)
        for spec in TABLES:
            relation = con.table(spec.name)
            names = [c for c in relation.columns if spec.name not in needed or c in needed[spec.name]]
            frames[spec.name] = pl.DataFrame(
                [relation.select(duckdb.ColumnExpression(name)).pl().to_series() for name in names]
            )
    read = time.perf_counter()
    contacts = frames["contacts"]
    out = contacts.head(rows).select(contacts.columns[:columns])
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_csv(out_dir / "floor.csv")
    written = time.perf_counter()
    rows_out = contacts.head(matched).select(
        pl.col("id").alias("contactId"),
        "personId",
        pl.col("contactType").alias("channel"),
        pl.lit(True).alias("canInteract"),
        pl.lit([], dtype=pl.List(pl.String)).alias("reasons"),
        pl.lit(None, dtype=pl.Date).alias("nextEligibleDate"),
    )
    now = datetime.now(UTC)
    run = warehouse.RunRecord(
        runId="floor", exporterId=EXPORTER_ID, companyId="CP-BENCH", asOfDate=AS_OF, asOfInstant=now,
        status="succeeded", population=None, matched=matched, screenedOut=0, exported=rows,
        filePath=None, sha256=None, startedAt=now, finishedAt=now,
    )  # fmt: skip
    warehouse.record_success(plan.warehouse, run, rows_out, pl.DataFrame(schema=REJECTED_SCHEMA))
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "parts": {"read": read - started, "write": written - read, "warehouse": done - written},
    }


def switch_guards() -> dict[str, float]:
    """Time each guard of the run (seconds, filled as they run), or turn them off (GUARDS_SWITCH)."""
    from pipelines.rules import guards

    spent: dict[str, float] = {}
    off = os.environ.get(GUARDS_SWITCH) == "off"
    for name in GUARDS:
        check = getattr(guards, name)

        def timed(*args: Any, _check: Any = check, _name: str = name, **kwargs: Any) -> None:
            if off:
                return
            started = time.perf_counter()
            try:
                _check(*args, **kwargs)
            finally:
                spent[_name] = time.perf_counter() - started

        setattr(guards, name, timed)
    return spent


def pipeline(home: Path, source: Path, warehouse: Path) -> dict[str, Any]:
    from pipelines.model.config import Home
    from pipelines.run import building, job, planning, recording

    guards = switch_guards()
    started = time.perf_counter()
    plan = job.plan_run(Home(home), EXPORTER_ID, AS_OF, source=source, warehouse_path=warehouse)
    built = building.build_partitioned(plan, planning.new_run_id(), partitions=1)
    recording.record_run(built)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "sha256": built.file.sha256,
        "stages": built.timings,
        "matched": built.matched,
        "exported": built.exported,
        "columns": len(built.file.columns),
        "population": built.population,
        "guards": guards,
    }


def partitioned(home: Path, source: Path, warehouse: Path, partitions: str, budget: str) -> dict[str, Any]:
    """The run as `contact-exporter run` does it (split, partitions one at a time, merge), no Prefect."""
    from pipelines.model.config import Home
    from pipelines.model.request import parse_partitions, parse_size
    from pipelines.run import building, job, planning, recording

    started = time.perf_counter()
    plan = job.plan_run(Home(home), EXPORTER_ID, AS_OF, source=source, warehouse_path=warehouse)
    count = building.partition_count(plan, parse_partitions(partitions), parse_size(budget))
    built = building.build_partitioned(plan, planning.new_run_id(), count)
    recording.record_run(built)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "partitions": count,
        "stages": built.timings,
        "matched": built.matched,
        "exported": built.exported,
        "sha256": built.file.sha256,
        "population": built.population,
    }


def dask_run(home: Path, source: Path, warehouse: Path, partitions: str) -> dict[str, Any]:
    """The Prefect flow with its partitions on a 2-worker Dask LocalCluster (1 thread each)."""
    from distributed import LocalCluster

    from flows import settings

    settings.apply(home)
    from prefect import flow

    from flows.prefect_flows import export_contacts
    from pipelines.model.request import RunRequest

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Starts Prefect's temporary server, so that its start-up is not in the time."""

    warm_up()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        request = RunRequest(
            exporter_id=EXPORTER_ID,
            as_of=AS_OF,
            home=str(home),
            source=str(source),
            warehouse=str(warehouse),
            deliver=False,
            partitions=partitions,
            dask_address=cluster.scheduler_address,
        )
        started = time.perf_counter()
        result = export_contacts(**request.flow_parameters())
        seconds = time.perf_counter() - started
    from pipelines.io import files

    return {"seconds": seconds, "sha256": files.sha256_of(Path(result["file"]))[0]}


def orchestrated(home: Path, source: Path, warehouse: Path) -> dict[str, Any]:
    from flows import settings

    settings.apply(home)
    from flows.prefect_flows import export_contacts
    from pipelines.model.request import RunRequest

    request = RunRequest(
        exporter_id=EXPORTER_ID,
        as_of=AS_OF,
        home=str(home),
        source=str(source),
        warehouse=str(warehouse),
        deliver=False,
    )
    export_contacts(**request.flow_parameters())
    started = time.perf_counter()  # second run: the ephemeral server is up; its start-up is reported apart
    export_contacts(**request.flow_parameters())
    return {"seconds": time.perf_counter() - started}


def lookups() -> dict[str, Any]:
    """Build the ZIP and phone-key lookup tables and the key index into the cache (once per package version)."""
    from pipelines.rules import lookups as lookup_cache
    from pipelines.rules import timezones

    started = time.perf_counter()
    timezones.load_lookups()
    return {"seconds": time.perf_counter() - started, "cache": str(lookup_cache.cache_dir())}


def main() -> None:
    phase = sys.argv[1]
    if phase == "lookups":
        print(json.dumps(lookups() | {"peakRssMb": peak_rss_mb()}))
        return
    home, source = Path(sys.argv[2]), Path(sys.argv[3])
    if phase == "floor":
        result = floor(home, source, home / "floor", *(int(a) for a in sys.argv[4:7]))
    elif phase == "pipeline":
        result = pipeline(home, source, home / "bench-warehouse.duckdb")
    elif phase == "partitioned":
        result = partitioned(home, source, home / "bench-warehouse.duckdb", sys.argv[4], sys.argv[5])
    elif phase == "dask":
        result = dask_run(home, source, home / "bench-warehouse.duckdb", sys.argv[4])
    elif phase == "orchestrated":
        result = orchestrated(home, source, home / "bench-warehouse.duckdb")
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    result["peakRssMb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
