"""`make bench` / `python -m bench`: floor, pipeline, reference and orchestrated runs side by side.

Data is generated once per size and cached in bench/cache/. Each measurement runs in a fresh worker
process (peak RSS is that process's high-water mark); each is repeated and the median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
AS_OF = date(2026, 12, 1)
EXPORTER = {
    "contactMatchingCriteria": {"contactType": ["phone", "email"]},
    "columnSettings": [
        {"field": "id", "outputName": "contactId"},
        {"field": "personId", "outputName": "borrowerId"},
        {"field": "value"},
        {"field": "contactType"},
        {"field": "borrower.firstName", "outputName": "firstName"},
        {"field": "borrower.lastName", "outputName": "lastName"},
    ],
    "checkCanInteractData": {"theme": "opsCollDebt", "isAutodialed": True},
    "companyId": "CP-BENCH",
    "name": "benchmark: phones and emails, screened",
    "id": "CE-BENCHVCE",
    "createdAt": "2026-11-01T00:00:00.000000Z",
    "updatedAt": "2026-11-01T00:00:00.000000Z",
}
COMPANY = "id: CP-BENCH\nname: Benchmark Lending\ntimezone: America/New_York\n"
TARGETS = {
    "pipeline_vs_floor_max_1m": 2.5,
    "pipeline_vs_floor_max_4m": 3.0,
    "reference_vs_pipeline_min": 100.0,
    "seconds_1m_max": 20.0,
    "rss_1m_max_mb": 3072.0,
    "scaling_max": 1.2,  # per-borrower time, 250k -> 1M
    "scaling_4m_max": 1.1,  # per-borrower time, 1M -> 4M
}


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def bench_home(cache: Path) -> Path:
    home = cache / "home"
    (home / "configs" / "companies").mkdir(parents=True, exist_ok=True)
    (home / "configs" / "exporters").mkdir(parents=True, exist_ok=True)
    (home / "configs" / "companies" / "CP-BENCH.yaml").write_text(COMPANY)
    (home / "configs" / "exporters" / "CE-BENCHVCE.json").write_text(json.dumps(EXPORTER, indent=2))
    return home


def ensure_data(home: Path, cache: Path, borrowers: int, seed: int) -> Path:
    from pipelines.io import sources
    from pipelines.model.config import Home
    from pipelines.synth import book as synth

    path = cache / f"source-{borrowers}-{seed}.duckdb"
    if path.exists():
        return path
    log(f"generating {borrowers:,} borrowers (cached in {path})")
    h = Home(home)
    chunks = synth.generate_blocks(borrowers, seed, [h.company("CP-BENCH")], progress=lambda m: log("  " + m))
    sources.write_source_chunks(chunks, path, "duckdb")
    return path


def worker(*args: str, cache: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        env=os.environ | {"PREFECT_LOGGING_LEVEL": "WARNING", "CONTACT_EXPORTER_CACHE": str(cache)},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def reference_per_contact(home: Path, source: Path, sample: int) -> dict[str, Any]:
    """Row-at-a-time reference screening (tests/reference/guard.py) on a sample of matched contacts."""
    import polars as pl

    sys.path.insert(0, str(ROOT.parent))
    from pipelines.io import sources
    from pipelines.model.config import Home
    from pipelines.model.tables import SourceTables
    from pipelines.rules import matching, schemas
    from pipelines.run import job
    from tests.reference import guard

    plan = job.plan_run(Home(home), "CE-BENCHVCE", AS_OF, source=source)
    tables = schemas.validate_sources(sources.open_source(source)).tables
    population = matching.company_population(tables.borrowers, plan.company.id)
    matched = matching.match_contacts(
        tables.contacts, population, plan.exporter.contactMatchingCriteria
    ).collect()
    picked = matched.sort("id").head(sample)
    persons = picked.select(pl.col("personId").unique())

    def only(frame: pl.LazyFrame, key: str = "personId") -> pl.LazyFrame:
        return frame.join(persons.lazy().rename({"personId": key}), on=key, how="semi")

    world = SourceTables(
        borrowers=only(tables.borrowers, "id"),
        contacts=only(tables.contacts),
        interactions=only(tables.interactions),
        do_not_interact=only(tables.do_not_interact),
        consents=only(tables.consents),
    )
    check = plan.exporter.checkCanInteractData
    assert check is not None
    started = time.perf_counter()
    rows = guard.screen_frames(picked, world, plan.company, check, AS_OF)
    seconds = time.perf_counter() - started
    return {"contacts": len(rows), "seconds": seconds, "perContact": seconds / max(len(rows), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="100000,250000,1000000", help="borrower counts, comma-separated")
    parser.add_argument("--large", action="store_true", help="add 4,000,000 borrowers")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reference-sample", type=int, default=20_000)
    parser.add_argument("--no-orchestrated", action="store_true", help="skip the Prefect flow runs")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.large:
        sizes.append(4_000_000)
    args.cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(args.cache)
    # A fresh lookup cache: its one-off build (once per package version on a machine) is timed on
    # its own; every measured run below reads it, as every run after the first one does.
    lookup_cache = args.cache / f"lookups-{os.getpid()}"
    log("building the lookup cache (ZIP and phone-key zones)")
    lookups = worker("lookups", cache=lookup_cache)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        source = ensure_data(home, args.cache, n, args.seed)
        # Interleaved rounds (pipeline, floor, pipeline, floor, ...): a shared machine that slows
        # down for a while slows both down, and the ratio of the medians holds.
        log(f"[{n:,} borrowers] pipeline and floor, {args.repeat} interleaved rounds")
        pipe: list[dict[str, Any]] = []
        floor: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            pipe.append(worker("pipeline", str(home), str(source), cache=lookup_cache))
            shape = pipe[0]
            floor.append(
                worker(
                    "floor",
                    str(home),
                    str(source),
                    str(shape["exported"]),
                    str(shape["columns"]),
                    str(shape["matched"]),
                    cache=lookup_cache,
                )
            )
        log(f"[{n:,} borrowers] the default run (--partitions auto, 2 GiB budget) x1")
        default = worker("partitioned", str(home), str(source), "auto", "2GiB", cache=lookup_cache)
        row: dict[str, Any] = {
            "borrowers": n,
            "matchedContacts": shape["matched"],
            "exported": shape["exported"],
            "floorSeconds": median_of(floor, "seconds"),
            "pipelineSeconds": median_of(pipe, "seconds"),
            "pipelinePeakRssMb": max(r["peakRssMb"] for r in pipe),
            "floorPeakRssMb": max(r["peakRssMb"] for r in floor),
            "floorParts": {k: statistics.median(r["parts"][k] for r in floor) for k in floor[0]["parts"]},
            "stages": {k: statistics.median(r["stages"][k] for r in pipe) for k in shape["stages"]},
            "defaultRun": {
                "partitions": default["partitions"],
                "seconds": default["seconds"],
                "peakRssMb": default["peakRssMb"],
                "sameFile": default["sha256"] == shape["sha256"],
            },
        }
        row["pipelineOverFloor"] = row["pipelineSeconds"] / row["floorSeconds"]
        row["contactsPerSecond"] = row["matchedContacts"] / row["pipelineSeconds"]
        if not args.no_orchestrated:
            log(f"[{n:,} borrowers] orchestrated (Prefect) x1")
            orch = worker("orchestrated", str(home), str(source), cache=lookup_cache)
            row["orchestratedSeconds"] = orch["seconds"]
            # the flow runs the default (partitioned) run: its overhead is measured against that
            row["prefectOverheadSeconds"] = orch["seconds"] - row["defaultRun"]["seconds"]
        rows.append(row)

    log(f"reference screening on {args.reference_sample:,} contacts")
    ref = reference_per_contact(
        home, ensure_data(home, args.cache, sizes[0], args.seed), args.reference_sample
    )
    for row in rows:
        row["referenceOverPipelinePerContact"] = ref["perContact"] / (
            row["pipelineSeconds"] / row["matchedContacts"]
        )
        # Like for like, beside the target's measure: the reference screens and does nothing else.
        row["referenceOverScreenPerContact"] = ref["perContact"] / (
            row["stages"]["screen"] / row["matchedContacts"]
        )

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "repeat": args.repeat,
        "sizes": rows,
        "reference": ref,
        "lookupCacheBuildSeconds": lookups["seconds"],
        "targets": TARGETS,
        "scaling": scaling(rows),
        "scaling4m": scaling(rows, 1_000_000, 4_000_000),
    }
    shutil.rmtree(lookup_cache, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"results written to {out}")


def scaling(rows: list[dict[str, Any]], small: int = 250_000, large: int = 1_000_000) -> float | None:
    """Per-borrower time at `large` over that at `small` (1.0: linear)."""
    by = {r["borrowers"]: r for r in rows}
    if small in by and large in by:
        per_small = by[small]["pipelineSeconds"] / small
        per_large = by[large]["pipelineSeconds"] / large
        return float(per_large / per_small)
    return None


def target_lines(report: dict[str, Any]) -> list[str]:
    """Each target of the README's table, with where this run left it."""
    by = {r["borrowers"]: r for r in report["sizes"]}
    lines = []

    def show(name: str, value: float | None, limit: float, fmt: str, at_most: bool = True) -> None:
        if value is None:
            return
        met = value <= limit if at_most else value >= limit
        sign = "<=" if at_most else ">="
        lines.append(f"  {name}: {value:{fmt}} (target {sign} {limit:{fmt}}) {'met' if met else 'MISSED'}")

    one, four = by.get(1_000_000), by.get(4_000_000)
    if one:
        show("1M pipeline / floor", one["pipelineOverFloor"], TARGETS["pipeline_vs_floor_max_1m"], ".2f")
        show("1M seconds", one["pipelineSeconds"], TARGETS["seconds_1m_max"], ".1f")
        show("1M peak MB", one["pipelinePeakRssMb"], TARGETS["rss_1m_max_mb"], ",.0f")
        show(
            "1M reference / pipeline per contact",
            one["referenceOverPipelinePerContact"],
            TARGETS["reference_vs_pipeline_min"],
            ".0f",
            at_most=False,
        )
    if four:
        show("4M pipeline / floor", four["pipelineOverFloor"], TARGETS["pipeline_vs_floor_max_4m"], ".2f")
    show("scaling 250k -> 1M", report["scaling"], TARGETS["scaling_max"], ".2f")
    show("scaling 1M -> 4M", report.get("scaling4m"), TARGETS["scaling_4m_max"], ".2f")
    return lines


def per_size(title: str, report: dict[str, Any], key: str) -> str:
    """`title: 100,000: a 0.10, b 0.20; 250,000: ...` for a dict of seconds in every size's row."""
    return f"{title}: " + "; ".join(
        f"{r['borrowers']:,}: " + ", ".join(f"{k} {v:.2f}" for k, v in r[key].items())
        for r in report["sizes"]
    )


def render(report: dict[str, Any]) -> str:
    head = f"{'borrowers':>10} {'contacts':>10} {'floor s':>8} {'pipe s':>8} {'pipe/floor':>10} {'contacts/s':>11} {'peak MB':>8} {'ref/pipe':>9} {'prefect s':>9}"
    lines = [head, "-" * len(head)]
    for r in report["sizes"]:
        lines.append(
            f"{r['borrowers']:>10,} {r['matchedContacts']:>10,} {r['floorSeconds']:>8.2f} {r['pipelineSeconds']:>8.2f} "
            f"{r['pipelineOverFloor']:>10.2f} {r['contactsPerSecond']:>11,.0f} {r['pipelinePeakRssMb']:>8,.0f} "
            f"{r['referenceOverPipelinePerContact']:>9,.0f} {r.get('orchestratedSeconds', float('nan')):>9.2f}"
        )
    lines.append("")
    lines.append(per_size("stages (median seconds)", report, "stages"))
    lines.append(
        f"lookup cache build (once per package version, not in the runs above): {report['lookupCacheBuildSeconds']:.2f}s"
    )
    ref = report["reference"]
    lines.append(
        f"reference: {ref['contacts']:,} contacts in {ref['seconds']:.2f}s = {ref['perContact'] * 1e6:,.0f} us/contact"
    )
    lines.append(
        "reference / the screen stage alone, per contact (not the target's measure): "
        + "; ".join(f"{r['borrowers']:,}: {r['referenceOverScreenPerContact']:,.0f}" for r in report["sizes"])
    )
    lines.append(per_size("floor parts (median seconds)", report, "floorParts"))
    lines.append(
        "default run (--partitions auto): "
        + "; ".join(
            f"{r['borrowers']:,}: {r['defaultRun']['seconds']:.2f}s in {r['defaultRun']['partitions']} "
            f"partition(s), peak {r['defaultRun']['peakRssMb']:,.0f} MB"
            + ("" if r["defaultRun"]["sameFile"] else " (FILE DIFFERS)")
            for r in report["sizes"]
        )
    )
    lines.append("targets:")
    lines.extend(target_lines(report))
    return "\n".join(lines)
