"""`python -m bench.guards`: what the run's guards (pipelines.rules.guards) cost, at 1M borrowers by default.

Runs the pipeline in fresh worker processes, alternately with the guards on and off (the worker's
CONTACT_EXPORTER_BENCH_GUARDS switch), and reports the medians side by side. The wall-clock
difference is noisy on a shared machine, so the guard calls are also timed inside each guarded run
and set against that run's total: that share is the figure to hold against the target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ROOT, bench_home, ensure_data, log
from bench.worker import GUARDS, GUARDS_SWITCH

TARGET_SHARE = 0.03  # guards at most 3 % of a run


def run(home: Path, source: Path, lookups: Path, guards: bool) -> dict[str, Any]:
    env = os.environ | {
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CONTACT_EXPORTER_CACHE": str(lookups),
        GUARDS_SWITCH: "on" if guards else "off",
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", "pipeline", str(home), str(source)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(borrowers: int, repeat: int, seed: int, cache: Path) -> dict[str, Any]:
    cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(cache)
    source = ensure_data(home, cache, borrowers, seed)
    lookups = cache / f"lookups-guards-{os.getpid()}"
    try:
        run(home, source, lookups, guards=True)  # builds the lookup cache; not measured
        on: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        for i in range(repeat):
            # alternate which goes first, so drift in the machine's load falls on both sides
            for guarded in (True, False) if i % 2 == 0 else (False, True):
                log(f"[{borrowers:,} borrowers] run {i + 1}/{repeat}, guards {'on' if guarded else 'off'}")
                (on if guarded else off).append(run(home, source, lookups, guarded))
    finally:
        shutil.rmtree(lookups, ignore_errors=True)
    on_s = statistics.median(r["seconds"] for r in on)
    off_s = statistics.median(r["seconds"] for r in off)
    shares = [sum(r["guards"].values()) / r["seconds"] for r in on]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "borrowers": borrowers,
        "matchedContacts": on[0]["matched"],
        "exported": on[0]["exported"],
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "withGuardsSeconds": on_s,
        "withoutGuardsSeconds": off_s,
        "wallDifferenceSeconds": on_s - off_s,
        "wallRatio": on_s / off_s,
        "guardSeconds": {g: statistics.median(r["guards"][g] for r in on) for g in GUARDS},
        "guardTotalSeconds": statistics.median(sum(r["guards"].values()) for r in on),
        "guardShareOfRun": statistics.median(shares),
        "targetShare": TARGET_SHARE,
        "runs": {"on": on, "off": off},
    }


def render(r: dict[str, Any]) -> str:
    per = ", ".join(f"{g.removeprefix('check_')} {s:.3f}s" for g, s in r["guardSeconds"].items())
    verdict = "within" if r["guardShareOfRun"] <= r["targetShare"] else "ABOVE"
    return "\n".join(
        [
            f"{r['borrowers']:,} borrowers, {r['matchedContacts']:,} matched, {r['exported']:,} exported; "
            f"median of {r['repeat']} runs each",
            f"run with guards {r['withGuardsSeconds']:.2f}s, without {r['withoutGuardsSeconds']:.2f}s: "
            f"ratio {r['wallRatio']:.3f} ({r['wallDifferenceSeconds']:+.2f}s, wall clock, noisy)",
            f"guards timed in the run: {r['guardTotalSeconds']:.3f}s ({per}) = "
            f"{r['guardShareOfRun']:.1%} of the run ({verdict} the {r['targetShare']:.0%} target)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.guards", description=__doc__)
    parser.add_argument("--borrowers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (median reported)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    report = measure(args.borrowers, args.repeat, args.seed, args.cache)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"guards-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"results written to {out}")


if __name__ == "__main__":
    main()
