"""`python -m bench.scaling`: partitioned runs beside the unpartitioned one, each in a fresh process.

- 1M borrowers: the run in one partition (N = 1) and the default partitioned run
  (`--partitions auto --memory-budget 2GiB`), alternated, `--repeat` times each (median time, max peak);
- `--large`: 4M borrowers, the default partitioned run once (peak RSS, per-borrower time);
- `--dask`: the 1M run's partitions on a 2-worker Dask LocalCluster, once (time; file sha compared).

Every run must produce the same file (sha256); the harness fails if one differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ROOT, bench_home, ensure_data, log, worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--large", action="store_true", help="add 4,000,000 borrowers (partitioned, once)")
    parser.add_argument("--dask", action="store_true", help="add the 1M run on a 2-worker Dask LocalCluster")
    parser.add_argument("--budget", default="2GiB")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)

    args.cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(args.cache)
    lookups = args.cache / f"lookups-{os.getpid()}"
    worker("lookups", cache=lookups)
    source = ensure_data(home, args.cache, 1_000_000, args.seed)
    plain: list[dict[str, Any]] = []
    parted: list[dict[str, Any]] = []
    for i in range(args.repeat):
        log(f"[1M] unpartitioned / partitioned, round {i + 1} of {args.repeat}")
        plain.append(worker("pipeline", str(home), str(source), cache=lookups))
        parted.append(worker("partitioned", str(home), str(source), "auto", args.budget, cache=lookups))
    shas = {r["sha256"] for r in plain + parted}
    if len(shas) != 1:
        raise SystemExit(f"the runs wrote different files: {sorted(shas)}")
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "budget": args.budget,
        "1M": {
            "unpartitioned": summary(plain),
            "partitioned": summary(parted) | {"partitions": parted[0]["partitions"]},
        },
    }
    one = report["1M"]
    one["partitionedOverUnpartitioned"] = one["partitioned"]["seconds"] / one["unpartitioned"]["seconds"]
    if args.dask:
        log("[1M] partitions on a 2-worker Dask LocalCluster")
        run = worker("dask", str(home), str(source), str(parted[0]["partitions"]), cache=lookups)
        one["dask"] = {"seconds": run["seconds"], "sameFile": run["sha256"] in shas}
    if args.large:
        big = ensure_data(home, args.cache, 4_000_000, args.seed)
        log("[4M] partitioned, default settings")
        run = worker("partitioned", str(home), str(big), "auto", args.budget, cache=lookups)
        report["4M"] = {
            "seconds": run["seconds"],
            "peakRssMb": run["peakRssMb"],
            "partitions": run["partitions"],
            "stages": run["stages"],
            "perBorrowerOver1M": (run["seconds"] / 4) / one["partitioned"]["seconds"],
        }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"scaling-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    log(f"results written to {out}")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "allSeconds": [round(r["seconds"], 2) for r in runs],
        "peakRssMb": max(r["peakRssMb"] for r in runs),
        "stages": {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in runs[0]["stages"]},
    }


if __name__ == "__main__":
    main()
