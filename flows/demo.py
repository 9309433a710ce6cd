"""`contact-exporter demo`: the whole job end to end on sample data, on this machine only.

It builds a demo home under <home>/data/demo (copies of the committed configs), generates a sample
DuckDB source, starts a throwaway SFTP server on 127.0.0.1 (pinned host key, client key), runs the
example campaign and the unscreened exporter through the Prefect flows at today's company noon,
delivers the files, stops the server and says where everything is.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable
from typing import Any

from flows import settings
from flows.failures import shown
from pipelines.model.config import Home

DEMO_SEED = 20261127
EXPLORE_QUERIES = (
    "SELECT exporterId, campaignId, asOfDate, status, matched, screenedOut, exported, deliveryStatus "
    "FROM run_summary ORDER BY asOfDate",
    "SELECT coalesce(campaignId, 'daily') AS run, reason, count(*) AS contacts "
    "FROM blocked_contacts, unnest(reasons) AS r(reason) GROUP BY ALL ORDER BY contacts DESC, reason",
    "SELECT * FROM rejected_by_check",
)


def prepare_home(home: Home, borrowers: int, say: Callable[[str], None]) -> Home:
    """Copy the committed configs into data/demo and generate the sample source once per size."""
    demo = Home((home.root / "data" / "demo").resolve())
    for part in ("companies", "exporters", "campaigns", "sftp"):
        src = home.configs / part
        dst = demo.configs / part
        shutil.rmtree(dst, ignore_errors=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))
    if (home.configs / "schedules.yaml").exists():
        shutil.copy2(home.configs / "schedules.yaml", demo.configs / "schedules.yaml")

    marker = demo.root / "data" / f".generated-{borrowers}-{DEMO_SEED}"
    if not (marker.exists() and demo.warehouse.exists()):
        from pipelines.io import sources
        from pipelines.synth import book as synth

        say(f"generating {borrowers:,} sample borrowers into {demo.warehouse}")
        for old in (demo.root / "data").glob(".generated-*"):
            old.unlink()
        demo.warehouse.unlink(missing_ok=True)
        companies = [demo.company(c) for c in demo.company_ids()]
        tables = synth.generate(borrowers, DEMO_SEED, companies, progress=lambda m: say("  " + m))
        sources.write_source(tables, demo.warehouse, "duckdb")
        marker.touch()
    else:
        say(f"sample data already in {demo.warehouse} (seed {DEMO_SEED}, {borrowers:,} borrowers)")
    return demo


def largest_first(by_reason: dict[str, int]) -> list[tuple[str, int]]:
    """Reason counts, the reason blocking the most contacts first (ties by code)."""
    return sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))


def describe(result: dict[str, Any]) -> list[str]:
    counts = result["counts"]
    lines = [
        f"  {result['exporterId']}"
        + (f"  campaign {result['campaignId']}" if result.get("campaignId") else "")
        + f"  as of {result['asOfDate']} (noon = {result['asOfInstant']})",
        f"    population {counts['population']:,}  matched {counts['matched']:,}  "
        f"screened out {counts['screenedOut']:,}  exported {counts['exported']:,}  rejected rows {counts['rejected']:,}",
    ]
    if counts["byReason"]:
        lines.append(
            "    blocked by reason: "
            + ", ".join(f"{code} {n:,}" for code, n in largest_first(counts["byReason"]))
        )
    lines.append(f"    file: {result['file']}")
    lines.append(f"    delivery: {result['delivery']}")
    return lines


def run_demo(
    home: Home, *, borrowers: int, redeliver: bool, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    from flows.sftp_server import local_sftp_server

    started = time.perf_counter()
    demo = prepare_home(home, borrowers, say)
    say("starting Prefect (the first start on a new machine migrates its database: up to a minute)")
    settings.connect(demo.root, say=say)
    from flows import prefect_flows

    sftp_root = demo.root / "sftp-root"
    results: list[dict[str, Any]] = []
    # The client key stays in the demo's home: its SFTP setting then still passes a dry run's checks
    # after the demo (deliveries need the server, which stops with the demo).
    with local_sftp_server(sftp_root, keys_dir=demo.root / "sftp-keys") as server:
        server.write_setting(demo, "partner", remote_dir="/upload")
        say(
            f"throwaway SFTP server on {server.host}:{server.port} (host key pinned in {server.known_hosts_file})"
        )
        say("running campaign collections-daily (exporter CE-VOICECOL, screened at company noon)")
        campaign = prefect_flows.run_campaign("collections-daily", None, home=str(demo.root))
        results.append(campaign)
        say("running exporter CE-EMAILSVC (unscreened)")
        results.append(prefect_flows.export_contacts("CE-EMAILSVC", home=str(demo.root), redeliver=redeliver))
    say("SFTP server stopped")

    delivered = sorted(p for p in (sftp_root / "upload").glob("*") if p.is_file())
    cli = f".venv/bin/contact-exporter --home {shlex.quote(shown(demo.root))}"
    lines = ["", "What ran:"]
    for result in results:
        lines += describe(result)
    lines += ["", f"Delivered files on the (stopped) SFTP server, under {sftp_root / 'upload'}:"]
    lines += [f"  {p.name}  ({p.stat().st_size:,} bytes)" for p in delivered] or ["  (none)"]
    lines += [
        "",
        "Explore the results (read-only; any DuckDB client works too):",
        *[f"  {cli} sql {shlex.quote(q)}" for q in EXPLORE_QUERIES],
        "",
        "Run it yourself on the same sample data (the demo's home holds the source and the configs):",
        f"  {cli} exporters list",
        f"  {cli} run CE-EMAILSVC --as-of {results[-1]['asOfDate']} --no-deliver",
        f"  {cli} campaigns run collections-daily --as-of {results[0]['asOfDate']} --no-deliver",
        f"  {cli} server start    # a Prefect server and its UI for the runs of this home",
        "",
        f"demo finished in {time.perf_counter() - started:.1f}s; run `make demo` again: nothing is delivered twice "
        "(add --redeliver to the demo command to send again).",
    ]
    say("\n".join(lines))
    return results
