"""Deployment runs as an operator starts them: `contact-exporter deployments serve` in its own process,
then `prefect deployment run … --param as_of=… --param deliver=false` (the command docs/deployments.md
shows) against a real (test) Prefect server. The flat parameters work, the run is named at creation,
and a run that could not deliver is refused by its plan step before it reads a row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.model.config import Home
from tests.flows.served import deployments_serving
from tests.worlds import make_home

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Home]:
    """A home whose deployments are being served (polling) by `contact-exporter deployments serve`."""
    home = make_home(tmp_path / "home", borrowers=60)
    with deployments_serving(home.root, _env()):
        yield home


def deployment_run(*params: str) -> subprocess.CompletedProcess[str]:
    """`prefect deployment run 'export-contacts/daily-ce-voicecol-served' --param … --watch`."""
    args = [PREFECT, "deployment", "run", "export-contacts/daily-ce-voicecol-served", "--watch"]
    for param in params:
        args += ["--param", param]
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=600, check=False)


def flow_run_named(name: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        assert found, f"no flow run named {name!r}"
        run = found[-1]
        tasks = client.read_task_runs()
    return run, sorted(t.name for t in tasks if t.flow_run_id == run.id)


def test_a_deployment_run_takes_flat_parameters_and_is_named_by_its_date(served: Home) -> None:
    out = deployment_run("as_of=2026-11-03", "deliver=false")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    run, tasks = flow_run_named("CE-VOICECOL 2026-11-03")
    assert run.state.is_completed()
    assert run.parameters["as_of"] == "2026-11-03"
    assert "CE-VOICECOL 2026-11-03 plan" in tasks  # planned (and checked) once, by the flow itself
    con = duckdb.connect(str(served.warehouse), read_only=True)
    try:
        rows = con.execute(
            "SELECT exporterId, asOfDate::VARCHAR, status, deliveryStatus FROM run_summary"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("CE-VOICECOL", "2026-11-03", "succeeded", "skipped")]


def test_a_deployment_run_that_cannot_deliver_stops_at_its_plan(served: Home) -> None:
    """The home's SFTP setting names a known_hosts file that does not exist: the CLI refuses such a
    run before Prefect starts; a deployment run fails in its plan step, having written nothing."""
    started = time.monotonic()
    out = deployment_run("as_of=2026-11-04")
    assert out.returncode != 0, out.stdout[-2000:]
    run, tasks = flow_run_named("CE-VOICECOL 2026-11-04")
    assert run.state.is_failed()
    assert "known_hosts" in (run.state.message or "") + out.stdout + out.stderr
    assert tasks == ["CE-VOICECOL 2026-11-04 plan"], "nothing after the plan step ran"
    assert not (served.exports / "CE-VOICECOL" / "2026-11-04").exists()
    assert _no_run_rows(served)
    assert time.monotonic() - started < 120


def _no_run_rows(home: Home) -> bool:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "export_runs" not in tables:
            return True
        count = con.execute("SELECT count(*) FROM export_runs WHERE asOfDate = DATE '2026-11-04'").fetchone()
        return count == (0,)
    finally:
        con.close()
