"""One measurement in its own process, so that its peak RSS is its own high-water mark.

Usage: python -m bench.worker PHASE HOME SOURCE [ROWS COLUMNS]; prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

AS_OF = date(2026, 12, 1)
EXPORTER_ID = "CE-BENCHVCE"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(source: Path, out_dir: Path, rows: int, columns: int) -> dict[str, Any]:
    """Read the same five tables and write a CSV of the same shape as the export: no logic at all."""
    import duckdb
    import polars as pl

    started = time.perf_counter()
    con = duckdb.connect(str(source), read_only=True)
    frames = {
        name: pl.DataFrame(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())  # noqa: S608
        for name in ("borrowers", "contacts", "interactions", "do_not_interact", "consents")
    }
    con.close()
    contacts = frames["contacts"]
    out = contacts.head(rows).select(contacts.columns[:columns])
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_csv(out_dir / "floor.csv")
    return {"seconds": time.perf_counter() - started}


def pipeline(home: Path, source: Path, warehouse: Path) -> dict[str, Any]:
    from pipelines import job
    from pipelines.config import Home

    started = time.perf_counter()
    plan = job.plan_run(Home(home), EXPORTER_ID, AS_OF, source=source, warehouse_path=warehouse)
    built = job.build(plan, job.new_run_id())
    job.record(built)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "stages": built.timings,
        "matched": built.matched,
        "exported": built.exported,
        "columns": len(built.file.columns),
        "population": built.population,
    }


def orchestrated(home: Path, source: Path, warehouse: Path) -> dict[str, Any]:
    from flows import settings

    settings.apply(home)
    from flows.prefect_flows import export_contacts

    export_contacts(
        EXPORTER_ID, AS_OF, home=str(home), source=str(source), warehouse=str(warehouse), deliver=False
    )
    started = time.perf_counter()  # second run: the ephemeral server is up; its start-up is reported apart
    export_contacts(
        EXPORTER_ID, AS_OF, home=str(home), source=str(source), warehouse=str(warehouse), deliver=False
    )
    return {"seconds": time.perf_counter() - started}


def main() -> None:
    phase, home, source = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if phase == "floor":
        result = floor(source, home / "floor", int(sys.argv[4]), int(sys.argv[5]))
    elif phase == "pipeline":
        result = pipeline(home, source, home / "bench-warehouse.duckdb")
    elif phase == "orchestrated":
        result = orchestrated(home, source, home / "bench-warehouse.duckdb")
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    result["peakRssMb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
