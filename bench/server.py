"""The CLI run on demo-size data, side by side: without a Prefect server (each call starts a temporary
one) and with the home's local server (`contact-exporter server start`).

    .venv/bin/python -m bench.server [--borrowers 20000] [--repeat 3] [--keep DIR]

Each run is a fresh `contact-exporter run CE-EMAILSVC --no-deliver` process, timed wall clock; the
table gives every run and the median. The server's own start is timed once and reported apart.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AS_OF = "2026-11-03"


def cli(home: Path, *args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return elapsed, out


def make_home(root: Path, borrowers: int, env: dict[str, str]) -> None:
    for part in ("companies", "exporters"):
        shutil.copytree(REPO / "configs" / part, root / "configs" / part)
    exporter = root / "configs" / "exporters" / "CE-EMAILSVC.json"
    exporter.write_text(exporter.read_text().replace('"sftpSettingId": "partner"', '"sftpSettingId": null'))
    cli(
        root,
        "generate",
        "--out",
        "data/warehouse.duckdb",
        "--borrowers",
        str(borrowers),
        "--seed",
        "7",
        env=env,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--borrowers", type=int, default=20_000, help="demo size (default 20000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--keep", type=Path, help="use (and keep) this home folder instead of a temporary one"
    )
    args = parser.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API") and k != "PREFECT_HOME"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        if not (root / "data" / "warehouse.duckdb").exists():
            make_home(root, args.borrowers, env)
        run = ("run", "CE-EMAILSVC", "--as-of", AS_OF, "--no-deliver")
        cli(root, "server", "stop", env=env)
        # the first temporary server of a home creates its database: measured, reported apart
        first, _ = cli(root, *run, env=env)
        without = [cli(root, *run, env=env)[0] for _ in range(args.repeat)]
        start_seconds, started = cli(root, "server", "start", env=env)
        try:
            with_server = [cli(root, *run, env=env)[0] for _ in range(args.repeat)]
        finally:
            cli(root, "server", "stop", env=env)
        report = {
            "borrowers": args.borrowers,
            "repeat": args.repeat,
            "firstRunWithoutServer": round(first, 2),
            "withoutServer": [round(t, 2) for t in without],
            "withServer": [round(t, 2) for t in with_server],
            "serverStart": round(start_seconds, 2),
            "serverReady": json.loads(started.stdout).get("startSeconds"),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(render(report))
    print(json.dumps(report))
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        f"CLI run, {report['borrowers']:,} borrowers, CE-EMAILSVC --no-deliver, wall seconds per process",
        f"{'':28}{'runs':>28}{'median':>10}",
    ]
    for label, key in (
        ("no server (temporary each)", "withoutServer"),
        ("local server (reused)", "withServer"),
    ):
        times = report[key]
        lines.append(f"{label:28}{' '.join(f'{t:6.2f}' for t in times):>28}{statistics.median(times):10.2f}")
    lines.append(
        f"first run of a new home without a server (creates Prefect's database): {report['firstRunWithoutServer']:.2f}"
    )
    lines.append(
        f"`server start` (once per home): {report['serverStart']:.2f} (ready after {report['serverReady']})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
