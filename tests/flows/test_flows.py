"""Prefect flows under one session-scoped test harness: runs, campaigns, backfills, retries."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.model.config import Home
from pipelines.model.errors import TerminalError, TransientError
from pipelines.model.request import RunRequest
from pipelines.run import building, job, planning, recording
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


def read_api(call: Any) -> Any:
    """Run `call(client)` against the Prefect API of the test harness."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await call(client)

    return asyncio.run(go())


def test_export_flow_runs_and_publishes_an_artifact(home: Home) -> None:
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.prefect_flows import export_contacts

    with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: True}):
        state = export_contacts(**request(home, "CE-EMAILSVC").flow_parameters(), return_state=True)
        APILogHandler().flush()
    assert state.is_completed()
    result = state.result()
    assert result["counts"]["exported"] > 0
    assert result["delivered"] is False
    assert runs_in(home) == [("CE-EMAILSVC", AS_OF, "succeeded")]

    flow_run_id = state.state_details.flow_run_id
    flow_run = read_api(lambda c: c.read_flow_run(flow_run_id))
    assert flow_run.name == "CE-EMAILSVC 2026-12-01"
    assert {"exporter:CE-EMAILSVC", "company:CP-ACME"} <= set(flow_run.tags)

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    task_runs = read_api(lambda c: c.read_task_runs(flow_run_filter=runs_filter))
    assert sorted(t.name for t in task_runs) == sorted(
        f"CE-EMAILSVC 2026-12-01 {stage}" for stage in ("plan", "split", "p1/1", "merge", "record", "deliver")
    )
    # The UI finds runs by the flow run's tags. Task runs carry none: a tagged task run takes a
    # lease on each tag's concurrency limit from the API before it starts (4.5 s a run at 1M).
    assert all(not t.tags for t in task_runs)

    logs = read_api(
        lambda c: c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    )
    names = {log.name for log in logs}
    messages = [log.message for log in logs]
    assert any(m.startswith(f"run {result['runId']}: ") for m in messages), "the flow's own log lines"
    assert "pipelines.io.sources" in names, "the library's log lines"
    assert "pipelines.run.recording" in names
    assert any(m.startswith("recorded run") for m in messages)

    # the session's Prefect server is shared: this run's artifacts are those of its flow run
    artifacts = [a for a in read_api(lambda c: c.read_artifacts()) if a.flow_run_id == flow_run_id]
    keys = {a.key for a in artifacts}
    assert {"contact-export-ce-emailsvc-2026-12-01", "contact-export-ce-emailsvc-2026-12-01-reasons"} <= keys
    (summary,) = [a for a in artifacts if a.key == "contact-export-ce-emailsvc-2026-12-01"]
    assert "| population | matched |" in str(summary.data)
    # the artifact links the run's HTML report, written beside its file
    report = Path(str(result["file"])).parent / "report.html"
    assert report.as_uri() in str(summary.data)
    assert result["runId"] in report.read_text(encoding="utf-8")
    (table,) = [a for a in artifacts if a.key == "contact-export-ce-emailsvc-2026-12-01-reasons"]
    assert table.type == "table"
    rows = [{"reason": r, "contacts": n} for r, n in result["counts"]["byReason"].items()]
    assert json.loads(str(table.data)) == (rows or [{"reason": "(none)", "contacts": 0}])


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


def test_a_campaign_run_never_touches_the_daily_run_of_the_same_date(home: Home) -> None:
    from flows.prefect_flows import export_contacts, run_campaign

    without_sftp(home, "CE-VOICECOL")
    daily = export_contacts(**request(home, "CE-VOICECOL").flow_parameters())
    daily_file = Path(daily["file"])
    daily_bytes, daily_manifest = (
        daily_file.read_bytes(),
        daily_file.with_name(daily_file.name + ".manifest.json"),
    )
    manifest_bytes = daily_manifest.read_bytes()

    def warehouse_rows(run_id: str) -> tuple[Any, ...]:
        con = duckdb.connect(str(home.warehouse), read_only=True)
        try:
            run = con.execute("SELECT * FROM export_runs WHERE runId = ?", [run_id]).fetchall()
            screening = con.execute(
                "SELECT contactId, canInteract, reasons FROM screening_results WHERE runId = ? ORDER BY contactId",
                [run_id],
            ).fetchall()
        finally:
            con.close()
        return run, screening

    before = warehouse_rows(daily["runId"])
    assert before[1], "the daily run has screening rows"
    state = run_campaign("collections-daily", AS_OF, home=str(home.root), deliver=False, return_state=True)
    campaign = state.result()
    again = run_campaign("collections-daily", AS_OF, home=str(home.root), deliver=False)

    assert daily_file.read_bytes() == daily_bytes, "the daily file is unchanged"
    assert daily_manifest.read_bytes() == manifest_bytes
    assert warehouse_rows(daily["runId"]) == before, "the daily run's warehouse rows are unchanged"
    campaign_file = Path(again["file"])
    assert campaign_file.parent == daily_file.parent / "campaigns" / "collections-daily"
    assert "collections-daily" in campaign_file.name
    assert campaign_file.name != daily_file.name
    assert campaign["counts"]["population"] < daily["counts"]["population"]
    con = duckdb.connect(str(home.warehouse), read_only=True)
    runs = con.execute(
        "SELECT runId, campaignId FROM export_runs WHERE exporterId = 'CE-VOICECOL' ORDER BY campaignId NULLS FIRST"
    ).fetchall()
    campaign_screening = con.execute(
        "SELECT count(*) FROM screening_results WHERE runId = ?", [again["runId"]]
    ).fetchone()
    con.close()
    # the second campaign run replaced the first one's rows, and only those
    assert runs == [(daily["runId"], None), (again["runId"], "collections-daily")]
    assert campaign_screening == (again["counts"]["matched"],)

    flow_run = read_api(lambda c: c.read_flow_run(state.state_details.flow_run_id))
    assert flow_run.name == "campaign collections-daily 2026-12-01"
    assert "campaign:collections-daily" in flow_run.tags
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]))
    (subflow,) = read_api(lambda c: c.read_flow_runs(flow_run_filter=children))
    assert subflow.name == "CE-VOICECOL 2026-12-01 campaign collections-daily"
    assert {"exporter:CE-VOICECOL", "company:CP-ACME", "campaign:collections-daily"} <= set(subflow.tags)
    keys = {a.key for a in read_api(lambda c: c.read_artifacts())}
    assert "contact-export-ce-voicecol-2026-12-01-campaign-collections-daily" in keys
    assert "contact-export-ce-voicecol-2026-12-01-campaign-collections-daily-reasons" in keys


def test_backfill_continues_past_a_failed_date(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import backfill

    real_build = building.build_part
    bad_day = date(2026, 12, 3)

    def build_part(plan: job.RunPlan, run_id: str, part: Any, progress: Any = None) -> Any:
        if plan.as_of == bad_day:
            raise RuntimeError("disk on fire")
        return real_build(plan, run_id, part)

    monkeypatch.setattr(building, "build_part", build_part)
    state = backfill(
        "CE-EMAILSVC", date(2026, 12, 1), date(2026, 12, 5), home=str(home.root), return_state=True
    )
    assert state.is_failed()
    assert "2026-12-03" in str(state.message)
    data = state.result(raise_on_failure=False)
    assert list(data["failedDates"]) == ["2026-12-03"]
    assert len(data["runs"]) == 4
    assert [(row["asOfDate"], row["status"]) for row in data["dates"]] == [
        ("2026-12-01", "succeeded"),
        ("2026-12-02", "succeeded"),
        ("2026-12-03", "failed"),
        ("2026-12-04", "succeeded"),
        ("2026-12-05", "succeeded"),
    ]
    parent = read_api(lambda c: c.read_flow_run(state.state_details.flow_run_id))
    assert parent.name == "CE-EMAILSVC 2026-12-01..2026-12-05"
    assert "exporter:CE-EMAILSVC" in parent.tags
    # every date is its own export-contacts flow run, a subflow of the backfill, named after its date
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    children = read_api(
        lambda c: c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
    )
    by_name = {run.name: run for run in children}
    assert sorted(by_name) == [f"CE-EMAILSVC 2026-12-0{d}" for d in range(1, 6)]
    assert by_name["CE-EMAILSVC 2026-12-03"].state.is_failed()
    assert all(by_name[f"CE-EMAILSVC 2026-12-0{d}"].state.is_completed() for d in (1, 2, 4, 5))
    keys = {a.key for a in read_api(lambda c: c.read_artifacts())}
    assert {f"contact-export-ce-emailsvc-2026-12-0{d}" for d in (1, 2, 4, 5)} <= keys
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
        built: building.Built, *, enabled: bool = True, redeliver: bool = False, password: str | None = None
    ) -> recording.Delivery:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return recording.Delivery(True, "delivered (test double)")

    monkeypatch.setattr(recording, "deliver_run", deliver)
    from flows import prefect_flows

    monkeypatch.setattr(
        prefect_flows, "deliver_task", prefect_flows.deliver_task.with_options(retry_delay_seconds=0)
    )
    return calls


def handed_down(run: RunRequest) -> dict[str, Any]:
    """The flow's parameters with a plan handed down, as the CLI hands it after its checks (the
    partner's known_hosts of this home does not exist: the delivery itself is a test double)."""
    return {**run.flow_parameters(), "plan": planning.plan_request(run)}


def test_transient_delivery_error_is_retried(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import export_contacts

    calls = _flaky_delivery(monkeypatch, TransientError("connection reset by 127.0.0.1:22"), failures=1)
    result = export_contacts(**handed_down(request(home, "CE-VOICECOL")))
    assert len(calls) == 2
    assert result["delivered"] is True


def test_terminal_delivery_error_is_not_retried(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_flows import export_contacts

    calls = _flaky_delivery(monkeypatch, TerminalError("host key mismatch"), failures=5)
    with pytest.raises(TerminalError, match="host key"):
        export_contacts(**handed_down(request(home, "CE-VOICECOL")))
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
    assert set(deployments) == {s.served_name for s in specs.values()}
    voice = deployments["daily-ce-voicecol-served"]
    assert voice.parameters == {"exporter_id": "CE-VOICECOL", "home": str(home.root)}
    (schedule,) = voice.schedules
    assert schedule.schedule.cron == "0 6 * * *"
    assert schedule.schedule.timezone == "America/New_York"
    campaign = deployments["campaign-collections-daily-served"]
    assert campaign.schedules[0].schedule.cron == "0 7 * * 1-5"


def test_sftp_check_reads_a_password_from_a_prefect_secret_block(home: Home) -> None:
    from prefect.blocks.system import Secret

    from flows.runs import secret_password
    from pipelines.model.config import SftpSetting
    from pipelines.model.errors import TerminalError

    Secret(value="s3cret-from-block").save("partner-sftp-password", overwrite=True)
    setting = SftpSetting(
        host="127.0.0.1", username="u", knownHostsFile="kh", passwordSecretBlock="partner-sftp-password"
    )
    password = secret_password(home, setting)
    assert password is not None
    assert password.get_secret_value() == "s3cret-from-block"
    assert "s3cret" not in repr(password)
    missing = setting.model_copy(update={"passwordSecretBlock": "no-such-block"})
    with pytest.raises(TerminalError, match="no-such-block"):
        secret_password(home, missing)
    assert secret_password(home, setting.model_copy(update={"passwordSecretBlock": None})) is None
