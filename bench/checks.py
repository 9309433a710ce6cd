"""`python -m bench.checks`: latency of POST /campaign-workers/compliance-checks, server warm.

A real uvicorn server (`python -m flows.api`, a subprocess) over the harness's cached 1M-borrower
DuckDB source (generated once, bench/cache/). After the first check (which waits for the source to
be loaded: the cold start, reported on its own), it times from the client: N requests of 10 random
contacts and M requests of 1,000, one at a time, at a fixed instant. Also reported, for the choice of
a warm in-memory copy: a pushed-down read from the file (what the one-shot `check` CLI does) for 10
contacts, and opening + closing the DuckDB file read-only.

Results are printed and written to bench/results/checks-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, bench_home, ensure_data, log

CHECKS = "/campaign-workers/compliance-checks"
EXPORTER_ID = "CE-BENCHVCE"
AT = "2026-12-01T19:05:00Z"  # 14:05 in New York
API_KEY = "bench-key"  # a local benchmark value, not a secret
TARGETS = {"p50_10_ms": 100.0, "p99_10_ms": 300.0, "p99_1000_ms": 1000.0}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def sample_ids(source: Path, count: int, seed: int) -> list[str]:
    import duckdb

    con = duckdb.connect(str(source), read_only=True)
    try:
        rows = con.execute("SELECT id FROM contacts ORDER BY hash(id, ?) LIMIT ?", [seed, count]).fetchall()
    finally:
        con.close()
    ids = [str(r[0]) for r in rows]
    random.Random(seed).shuffle(ids)
    return ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def timed_posts(client: httpx.Client, bodies: list[dict[str, Any]]) -> list[float]:
    latencies = []
    for body in bodies:
        started = time.perf_counter()
        response = client.post(CHECKS, json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        out = response.json()
        if out["errors"] or len(out["data"]) != len(body["contactIds"]):
            raise RuntimeError(f"unexpected answer: {len(out['data'])} rows, errors {out['errors'][:3]}")
    return latencies


def summary(latencies: list[float]) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "p50Ms": round(percentile(latencies, 50), 1),
        "p99Ms": round(percentile(latencies, 99), 1),
        "meanMs": round(statistics.fmean(latencies), 1),
        "maxMs": round(max(latencies), 1),
    }


def file_reads(home: Path, source: Path, ids: list[str], repeat: int) -> dict[str, Any]:
    """What a check costs without the warm copy: the pushed-down read, and opening the file."""
    import duckdb

    from pipelines.lookup import checks
    from pipelines.model.config import Home
    from pipelines.run import job

    plan = job.plan_run(Home(home), EXPORTER_ID, source=source)
    at = datetime.fromisoformat(AT)
    read, check, opened = [], [], []
    for i in range(repeat):
        part = ids[i * 10 : i * 10 + 10]
        started = time.perf_counter()
        checks.read_for_contacts(source, part)
        read.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        checks.check_contacts(plan.exporter, plan.company, source, part, at)
        check.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        duckdb.connect(str(source), read_only=True).close()
        opened.append((time.perf_counter() - started) * 1000)
    return {
        "pushedDownRead10Ms": round(statistics.median(read), 1),
        "checkFromFile10Ms": round(statistics.median(check), 1),
        "duckdbOpenCloseMs": round(statistics.median(opened), 1),
        "repeat": repeat,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    args.cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(args.cache)
    source = ensure_data(home, args.cache, args.borrowers, args.seed)
    ids = sample_ids(source, args.small * 10 + args.large * 1000, args.seed)
    rng = random.Random(args.seed)
    small = [
        {"exporterId": EXPORTER_ID, "contactIds": rng.sample(ids, 10), "at": AT} for _ in range(args.small)
    ]
    large = [
        {"exporterId": EXPORTER_ID, "contactIds": rng.sample(ids, 1000), "at": AT} for _ in range(args.large)
    ]

    port = free_port()
    server_log = args.cache / "checks-server.log"
    env = os.environ | {
        "CONTACT_EXPORTER_API_KEY": API_KEY,
        "CONTACT_EXPORTER_CACHE": str(args.cache / "lookups"),
    }
    command = [
        sys.executable,
        "-m",
        "flows.api",
        "--home",
        str(home),
        "--port",
        str(port),
        "--source",
        str(source),
    ]
    with server_log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{server_log.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ready = time.perf_counter() - started
        with httpx.Client(base_url=url, headers={"X-API-KEY": API_KEY}, timeout=300) as client:
            log(f"server up in {ready:.1f}s; first check (waits for the source to load)")
            (first,) = timed_posts(client, small[:1])
            log(f"first check {first / 1000:.1f}s; warm-up")
            timed_posts(client, small[1:6] + large[:1])
            log(f"{args.small} checks of 10 contacts")
            ten = timed_posts(client, small)
            log(f"{args.large} checks of 1,000 contacts")
            thousand = timed_posts(client, large)
        server_rss = rss_mb(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log("reading from the file instead (the one-shot CLI path)")
    cold = file_reads(home, source, ids, args.file_repeat)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "loadAverage": os.getloadavg(),
        "borrowers": args.borrowers,
        "source": source.name,
        "at": AT,
        "serverStartSeconds": round(ready, 2),
        "firstCheckSeconds": round(first / 1000, 2),
        "serverRssMb": round(server_rss, 0) if server_rss else None,
        "contacts10": summary(ten),
        "contacts1000": summary(thousand),
        "fromFile": cold,
        "targets": TARGETS,
    }
    report["withinTargets"] = (
        report["contacts10"]["p50Ms"] <= TARGETS["p50_10_ms"]
        and report["contacts10"]["p99Ms"] <= TARGETS["p99_10_ms"]
        and report["contacts1000"]["p99Ms"] <= TARGETS["p99_1000_ms"]
    )
    return report


def render(r: dict[str, Any]) -> str:
    def line(name: str, s: dict[str, Any]) -> str:
        return f"{name:>14}: p50 {s['p50Ms']:7.1f} ms  p99 {s['p99Ms']:7.1f} ms  mean {s['meanMs']:7.1f} ms  ({s['requests']} requests)"

    f = r["fromFile"]
    return "\n".join(
        [
            f"{r['borrowers']:,} borrowers (DuckDB), server warm, one request at a time, load average "
            + ", ".join(f"{x:.1f}" for x in r["loadAverage"]),
            line("10 contacts", r["contacts10"]),
            line("1,000 contacts", r["contacts1000"]),
            f"cold: server up {r['serverStartSeconds']:.1f}s, first check {r['firstCheckSeconds']:.1f}s "
            f"(loads the source); server RSS {r['serverRssMb']} MB",
            f"from the file instead (10 contacts): pushed-down read {f['pushedDownRead10Ms']:.0f} ms, whole check "
            f"{f['checkFromFile10Ms']:.0f} ms; DuckDB open+close {f['duckdbOpenCloseMs']:.0f} ms",
            f"targets (p50/p99 10: {TARGETS['p50_10_ms']:.0f}/{TARGETS['p99_10_ms']:.0f} ms, p99 1,000: "
            f"{TARGETS['p99_1000_ms']:.0f} ms): {'met' if r['withinTargets'] else 'MISSED'}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checks", description=__doc__)
    parser.add_argument("--borrowers", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=200, help="requests of 10 contacts")
    parser.add_argument("--large", type=int, default=30, help="requests of 1,000 contacts")
    parser.add_argument("--file-repeat", type=int, default=5, help="reads from the file (the CLI path)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    report = measure(args)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"checks-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"results written to {out}")


if __name__ == "__main__":
    main()
