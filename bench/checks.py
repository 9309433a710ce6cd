"""`python -m bench.checks [BORROWERS]`: the compliance-check server, from the client's side.

    .venv/bin/python -m bench.checks 1000000 [--requests 40] [--server-root DIR] [--source URI]

A real uvicorn server (`python -m flows.api`, a subprocess) over a copy of the harness's cached
DuckDB source (generated once, bench/cache/), or over `--source postgresql://…?schema=S` (a book
written there by `contact-exporter generate --out`, with whatever indexes it has; PGPASSWORD set). It times, one request at a time at a fixed instant:
the server's start, the first check, then `--requests` checks each of 1, 10 and 100 random contacts
(p50 and p95), then the first check after a write to the source (a row inserted, then removed).
The server's resident memory is read from /proc (now and its peak). With `--server-root DIR`, the
server of another checkout (DIR/.venv, e.g. a `git worktree` of an earlier commit) is measured the
same way in the same run, one server after the other, on the same source and the same requests.

Results are printed and written to bench/results/checks-<date>.json (checks-<kind>-<date>.json
with `--source`, e.g. checks-postgres-<date>.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, bench_home, ensure_data, log
from pipelines.io.source_ref import SourceRef, redact
from pipelines.model.tables import CONTACTS

CHECKS = "/campaign-workers/compliance-checks"
EXPORTER_ID = "CE-BENCHVCE"
AT = "2026-12-01T19:05:00Z"  # 14:05 in New York
API_KEY = "bench-key"  # a local benchmark value, not a secret
SIZES = (1, 10, 100)
# The check server's targets: p50 per request size, resident memory, and no reload after a write.
TARGETS = {"p50_1_ms": 15.0, "p50_10_ms": 30.0, "rss_mb": 1024.0}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak) of a process, in MiB."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def post(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post(CHECKS, json=body)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    out = response.json()
    if out["errors"] or len(out["data"]) != len(body["contactIds"]):
        raise RuntimeError(f"unexpected answer: {len(out['data'])} rows, errors {out['errors'][:3]}")
    return elapsed


def summary(latencies: list[float]) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "p50Ms": round(percentile(latencies, 50), 1),
        "p95Ms": round(percentile(latencies, 95), 1),
        "maxMs": round(max(latencies), 1),
    }


@contextmanager
def server(root: Path, home: Path, source: str, cache: Path, name: str) -> Iterator[tuple[str, int, float]]:
    """The API server of the checkout at `root` (its own .venv), until the block ends: its URL,
    its pid and the seconds it took to answer /health."""
    port = free_port()
    python = root / ".venv" / "bin" / "python"
    env = os.environ | {"CONTACT_EXPORTER_API_KEY": API_KEY, "CONTACT_EXPORTER_CACHE": str(cache / "lookups")}
    command = [
        str(python),
        "-m",
        "flows.api",
        "--home",
        str(home),
        "--port",
        str(port),
        "--source",
        str(source),
    ]
    server_log = cache / f"checks-server-{name}.log"
    started = time.perf_counter()
    with server_log.open("w") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server {name} exited:\n{server_log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, process.pid, time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


WRITES = (
    "INSERT INTO {t} (id, \"personId\") VALUES ('BENCH-WRITE', 'BENCH-NOBODY')",
    "DELETE FROM {t} WHERE id = 'BENCH-WRITE'",
)


def write_to(source: str) -> None:
    """A write to the source that leaves its rows as they were: a DNI row inserted, then removed."""
    from pipelines.io import postgres
    from pipelines.io.source_ref import SourceRef

    ref = SourceRef.parse(source)
    if ref.kind == "postgres":
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(ref.conninfo) as con, con.cursor() as cur:
            for sql in WRITES:
                cur.execute(sql.format(t=postgres.table_name(ref, "do_not_interact")))
            con.commit()
        return
    import duckdb

    with duckdb.connect(str(ref.path)) as con:
        for sql in WRITES:
            con.execute(sql.format(t="do_not_interact"))


def sample_ids(source: str, count: int, seed: int) -> list[str]:
    """`count` contact ids of the source, in a random order fixed by `seed`."""
    from pipelines.io import sources

    ref = sources.ref_of(source)
    if ref.is_local:
        with sources.reading(ref) as read:
            column = read([CONTACTS], None, {"contacts": frozenset(CONTACTS.names) - {"id"}})
            ids = [str(value) for value in column["contacts"].get_column("id").to_list()]
    else:
        ids = sources.remote_column(ref, ["contacts"], "id")["contacts"].to_list()
    rng = random.Random(seed)
    return rng.sample(sorted(ids), min(count, len(ids)))


def measure_server(
    root: Path, name: str, home: Path, source: str, cache: Path, bodies: dict[int, list[dict[str, Any]]]
) -> dict[str, Any]:
    log(f"server {name} ({root})")
    with (
        server(root, home, source, cache, name) as (url, pid, ready),
        httpx.Client(base_url=url, headers={"X-API-KEY": API_KEY}, timeout=600) as client,
    ):
        first = post(client, bodies[1][0])
        log(f"  up in {ready:.1f}s, first check {first:.0f} ms")
        for body in bodies[10][:3]:
            post(client, body)  # warm-up
        timed = {}
        for size in SIZES:
            timed[size] = summary([post(client, body) for body in bodies[size]])
            log(f"  {size} contacts: p50 {timed[size]['p50Ms']:.1f} ms, p95 {timed[size]['p95Ms']:.1f} ms")
        write_to(source)
        after_write = post(client, bodies[10][0])
        log(f"  first check of 10 after a write to the source: {after_write:.0f} ms")
        memory = memory_mb(pid)
    return {
        "root": str(root),
        "serverStartSeconds": round(ready, 2),
        "firstCheckMs": round(first, 1),
        "contacts": {str(size): timed[size] for size in SIZES},
        "firstCheckAfterWriteMs": round(after_write, 1),
        "rssMb": memory.get("VmRSS"),
        "peakRssMb": memory.get("VmHWM"),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    args.cache.mkdir(parents=True, exist_ok=True)
    home = bench_home(args.cache)
    if args.source:
        source = args.source
    else:
        cached = ensure_data(home, args.cache, args.borrowers, args.seed)
        copy = args.cache / f"checks-{args.borrowers}-{args.seed}.duckdb"  # written to: a copy
        shutil.copyfile(cached, copy)
        source = str(copy)
    ids = sample_ids(source, 2000, args.seed)
    rng = random.Random(args.seed)
    bodies = {
        size: [
            {"exporterId": EXPORTER_ID, "contactIds": rng.sample(ids, size), "at": AT}
            for _ in range(args.requests)
        ]
        for size in SIZES
    }
    servers = {"this": ROOT.parent}
    if args.server_root:
        servers["other"] = args.server_root.resolve()
    measured = {}
    for name, root in servers.items():
        try:
            measured[name] = measure_server(root, name, home, source, args.cache, bodies)
        except httpx.HTTPStatusError as exc:
            if name == "this":
                raise
            log(f"  server {name} cannot answer over this source: {exc.response.status_code}")
            measured[name] = {"root": str(root), "error": f"HTTP {exc.response.status_code}"}
    this = measured["this"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "loadAverage": os.getloadavg(),
        "borrowers": args.borrowers,
        "source": "duckdb (a copy of the cached book)" if not args.source else redact(args.source),
        "at": AT,
        "servers": measured,
        "targets": TARGETS,
        "withinTargets": {
            "p50_1_ms": this["contacts"]["1"]["p50Ms"] <= TARGETS["p50_1_ms"],
            "p50_10_ms": this["contacts"]["10"]["p50Ms"] <= TARGETS["p50_10_ms"],
            "rss_mb": (this["peakRssMb"] or 0) <= TARGETS["rss_mb"],
        },
    }
    return report


def render(r: dict[str, Any]) -> str:
    lines = [
        f"{r['borrowers']:,} borrowers, source {r['source']}, one request at a time, load average "
        + ", ".join(f"{x:.1f}" for x in r["loadAverage"]),
        f"{'server':>8} {'start':>7} {'first':>8} "
        + " ".join(f"{f'p50/p95 {n}':>17}" for n in SIZES)
        + f" {'after write':>12} {'RSS':>8} {'peak':>8}",
    ]
    for name, s in r["servers"].items():
        if "error" in s:
            lines.append(f"{name:>8} cannot answer checks over this source ({s['error']})")
            continue
        sizes = " ".join(f"{c['p50Ms']:>7.1f}/{c['p95Ms']:<7.1f}ms" for c in s["contacts"].values())
        lines.append(
            f"{name:>8} {s['serverStartSeconds']:>6.1f}s {s['firstCheckMs']:>6.0f}ms {sizes} "
            f"{s['firstCheckAfterWriteMs']:>10.0f}ms {s['rssMb']:>6.0f}MB {s['peakRssMb']:>6.0f}MB"
        )
    if "contacts" in r["servers"].get("other", {}):
        this, other = r["servers"]["this"], r["servers"]["other"]
        ratios = ", ".join(
            f"{n}: {this['contacts'][str(n)]['p50Ms'] / other['contacts'][str(n)]['p50Ms']:.2f}x"
            for n in SIZES
        )
        lines.append(
            f"this / other, p50: {ratios}; peak memory {this['peakRssMb'] / other['peakRssMb']:.2f}x"
        )
    t, met = r["targets"], r["withinTargets"]
    lines.append(
        f"targets (this server): p50 1 contact <= {t['p50_1_ms']:.0f} ms {'met' if met['p50_1_ms'] else 'MISSED'}, "
        f"p50 10 <= {t['p50_10_ms']:.0f} ms {'met' if met['p50_10_ms'] else 'MISSED'}, "
        f"peak memory <= {t['rss_mb']:.0f} MB {'met' if met['rss_mb'] else 'MISSED'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.checks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "borrowers", type=int, nargs="?", default=1_000_000, help="book size (default 1000000)"
    )
    parser.add_argument("--requests", type=int, default=40, help="requests of each size (default 40)")
    parser.add_argument("--server-root", type=Path, help="another checkout whose server is measured beside")
    parser.add_argument("--source", help="measure over this source (a URI) instead of a DuckDB copy")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    report = measure(args)
    args.results.mkdir(parents=True, exist_ok=True)
    kind = "" if args.source is None else f"-{SourceRef.parse(args.source).kind}"  # DuckDB and Postgres apart
    out = args.results / f"checks{kind}-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"results written to {out}")


if __name__ == "__main__":
    main()
