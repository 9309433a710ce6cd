"""`python -m bench.orchestration`: the whole `contact-exporter run` through a separate Prefect server
against the same run inside the library, side by side, at 1M borrowers by default.

Both are measured from a fresh process to its exit, so both pay Python's start-up and their imports:
- library: `python -c` that imports the library and calls `job.run_export` (no Prefect);
- CLI: `contact-exporter run … --no-deliver` with PREFECT_API_URL on a server started once by
  `contact-exporter server start` (the set-up an operator has), through plan → flow → tasks → artifacts.
Runs alternate (library, CLI, library, …) so that a busy machine slows both alike. Where the CLI's
extra time goes is split by the Prefect API's own account of the flow run: the flow run's span (from
its Running state to its end), and the rest (start-up, imports, planning and preflight, client calls
before and after the flow run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import AS_OF, ROOT, bench_home, ensure_data, log

EXPORTER_ID = "CE-BENCHVCE"
LIBRARY = """
import sys
from datetime import date
from pathlib import Path
from pipelines.model.config import Home
from pipelines.run import job
home, source, warehouse = (Path(a) for a in sys.argv[1:4])
plan = job.plan_run(Home(home), "CE-BENCHVCE", date.fromisoformat(sys.argv[4]), source=source, warehouse_path=warehouse)
job.run_export(plan, deliver_enabled=False)
"""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT.parent, check=False)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {out.stderr[-2000:]}")
    return seconds, out.stdout


def flow_run_seconds(api_url: str, run_id: str) -> float:
    """The flow run's span as the Prefect server recorded it (start to end), for the run whose summary
    names `run_id` (the run ids are the export's, so the newest flow run of the exporter is taken)."""
    os.environ["PREFECT_API_URL"] = api_url
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    if run.start_time is None or run.end_time is None:
        raise RuntimeError(f"flow run {run.name} ({run_id}) has no start or end time")
    return (run.end_time - run.start_time).total_seconds()


def start_server(home: Path, env: dict[str, str]) -> str:
    cli = str(Path(sys.executable).with_name("contact-exporter"))
    out = subprocess.run(
        [cli, "--home", str(home), "server", "start"], capture_output=True, text=True, env=env, check=True
    )
    url: str = json.loads(out.stdout)["url"]
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--borrowers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    args = parser.parse_args(argv)
    home = bench_home(args.cache)
    source = ensure_data(home, args.cache, args.borrowers, 42)
    warehouse = args.cache / "orchestration.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"CONTACT_EXPORTER_CACHE": str(args.cache), "PREFECT_HOME": str(home / ".prefect")}
    cli = str(Path(sys.executable).with_name("contact-exporter"))
    log("starting a Prefect server for the bench home (contact-exporter server start)")
    url = start_server(home, env)
    served = env | {"PREFECT_API_URL": url}
    library_args = [sys.executable, "-c", LIBRARY, str(home), str(source), str(warehouse), AS_OF.isoformat()]
    cli_args = [cli, "--home", str(home), "run", EXPORTER_ID, "--as-of", AS_OF.isoformat()]
    cli_args += ["--source", str(source), "--warehouse", str(warehouse), "--no-deliver"]
    try:
        timed(cli_args, served)  # warm: the first flow run registers the flow and its tasks
        library, through_cli, flow_spans = [], [], []
        for i in range(args.repeat):
            seconds, _ = timed(library_args, env)
            library.append(seconds)
            seconds, stdout = timed(cli_args, served)
            through_cli.append(seconds)
            flow_spans.append(flow_run_seconds(url, json.loads(stdout)["runId"]))
            log(
                f"  round {i + 1}: library {library[-1]:.2f} s, CLI through the server {through_cli[-1]:.2f} s"
            )
    finally:
        subprocess.run(
            [cli, "--home", str(home), "server", "stop"], capture_output=True, env=env, check=False
        )
    lib, run, span = (statistics.median(x) for x in (library, through_cli, flow_spans))
    report: dict[str, Any] = {
        "borrowers": args.borrowers,
        "repeat": args.repeat,
        "librarySeconds": round(lib, 2),
        "cliThroughServerSeconds": round(run, 2),
        "ratio": round(run / lib, 3),
        "target": 1.2,
        "flowRunSpanSeconds": round(span, 2),
        "outsideFlowRunSeconds": round(run - span, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
