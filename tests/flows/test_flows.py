"""Prefect flows under one session-scoped test harness: runs, campaigns, backfills, retries."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines import job
from pipelines.config import Home
from pipelines.errors import TerminalError, TransientError
from pipelines.request import RunRequest
from tests.worlds import make_home, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AS_OF = date(2026, 12, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path)
    without_sftp(h, "CE-EMAILSVC")
    return h


def request(home: Home, exporter_id: str, **options: Any) -> RunRequest:
    return RunRequest(exporter_id=exporter_id, as_of=AS_OF, home=str(home.root), **options)


def runs_in(home: Home) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute(
            "SELECT exporterId, asOfDate, status FROM export_runs ORDER BY asOfDate, exporterId"
        ).fetchall()
    finally:
        con.close()


def test_export_flow_runs_and_publishes_an_artifact(home: Home) -> None:
    from prefect.client.orchestration import get_client

    from flows.prefect_flows import export_contacts

    state = export_contacts(request(home, "CE-EMAILSVC"), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["counts"]["exported"] > 0
    assert result["delivered"] is False
    assert runs_in(home) == [("CE-EMAILSVC", AS_OF, "succeeded")]

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            return list(await client.read_artifacts())

    import asyncio

    found = [a for a in asyncio.run(artifacts()) if a.key == "contact-export-ce-emailsvc"]
    assert found, "the run must publish its summary artifact"
    assert "| population | matched |" in str(found[-1].data)


def test_campaign_flow_uses_the_query_population(home: Home) -> None:
    from flows.prefect_flows import run_campaign

    without_sftp(home, "CE-VOICECOL")
    result = run_campaign("collections-daily", AS_OF, home=str(home.root))
    assert result["campaignId"] == "collections-daily"
    con = duckdb.connect(str(home.warehouse), read_only=True)
    expected = con.execute(
        "SELECT count(*) FROM borrowers b WHERE companyId = 'CP-ACME' AND EXISTS "
        "(SELECT 1 FROM interactions i WHERE i.personId = b.id AND i.theme = 'opsCollDebt')"
    ).fetchone()
    con.close()
    assert expected is not None
    assert result["counts"]["population"] == expected[0] > 0


def test_backfill_continues_past_a_failed_date(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import backfill

    real_build = job.build_part
    bad_day = date(2026, 12, 3)

    def build_part(plan: job.RunPlan, run_id: str, part: Any, progress: Any = None) -> Any:
        if plan.as_of == bad_day:
            raise RuntimeError("disk on fire")
        return real_build(plan, run_id, part)

    monkeypatch.setattr(job, "build_part", build_part)
    state = backfill(
        "CE-EMAILSVC", date(2026, 12, 1), date(2026, 12, 5), home=str(home.root), return_state=True
    )
    assert state.is_failed()
    assert "2026-12-03" in str(state.message)
    data = state.result(raise_on_failure=False)
    assert list(data["failedDates"]) == ["2026-12-03"]
    assert len(data["runs"]) == 4
    statuses = {(d.isoformat(), s) for _, d, s in runs_in(home)}
    assert statuses == {
        ("2026-12-01", "succeeded"),
        ("2026-12-02", "succeeded"),
        ("2026-12-03", "failed"),
        ("2026-12-04", "succeeded"),
        ("2026-12-05", "succeeded"),
    }


def _flaky_delivery(monkeypatch: pytest.MonkeyPatch, error: Exception, failures: int) -> list[int]:
    calls: list[int] = []

    def deliver(
        built: job.Built, *, enabled: bool = True, redeliver: bool = False, password: str | None = None
    ) -> job.Delivery:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return job.Delivery(True, "delivered (test double)")

    monkeypatch.setattr(job, "deliver", deliver)
    from flows import prefect_flows

    monkeypatch.setattr(
        prefect_flows, "deliver_task", prefect_flows.deliver_task.with_options(retry_delay_seconds=0)
    )
    return calls


def test_transient_delivery_error_is_retried(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import export_contacts

    calls = _flaky_delivery(monkeypatch, TransientError("connection reset by 127.0.0.1:22"), failures=1)
    result = export_contacts(request(home, "CE-VOICECOL"))
    assert len(calls) == 2
    assert result["delivered"] is True


def test_terminal_delivery_error_is_not_retried(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import export_contacts

    calls = _flaky_delivery(monkeypatch, TerminalError("host key mismatch"), failures=5)
    with pytest.raises(TerminalError, match="host key"):
        export_contacts(request(home, "CE-VOICECOL"))
    assert len(calls) == 1
    # the file was written and recorded before delivery failed; a later run can deliver it
    assert runs_in(home) == [("CE-VOICECOL", AS_OF, "succeeded")]


def test_deployments_carry_schedules_and_parameters(home: Home) -> None:
    from flows.deployments import build_deployments, deployment_specs

    specs = {s.name: s for s in deployment_specs(home)}
    assert specs["daily-ce-voicecol"].cron == "0 6 * * *"
    assert specs["daily-ce-voicecol"].timezone == "America/New_York"
    assert specs["campaign-collections-daily"].parameters == {
        "campaign_id": "collections-daily",
        "home": str(home.root),
    }
    deployments = {d.name: d for d in build_deployments(home)}
    assert set(deployments) == set(specs)
    voice = deployments["daily-ce-voicecol"]
    assert voice.parameters == {"request": {"exporter_id": "CE-VOICECOL", "home": str(home.root)}}
    (schedule,) = voice.schedules
    assert schedule.schedule.cron == "0 6 * * *"
    assert schedule.schedule.timezone == "America/New_York"
    campaign = deployments["campaign-collections-daily"]
    assert campaign.schedules[0].schedule.cron == "0 7 * * 1-5"
