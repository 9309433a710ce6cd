"""A run is planned once, whichever door it comes in by: the CLI's (plan and checks before Prefect
starts, the plan handed to the flow), a deployment's (the flow plans itself, in its first task), a
campaign's and a backfill's (one plan per date). Counted on the one function that makes a plan."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest

from flows import runs
from pipelines.model.config import Home
from pipelines.model.request import RunRequest
from pipelines.run import planning
from tests.worlds import make_home, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
AS_OF = date(2026, 11, 3)


@pytest.fixture
def home(tmp_path: Any) -> Home:
    home = make_home(tmp_path, borrowers=120)
    without_sftp(home, "CE-VOICECOL")
    return home


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> Counter[date]:
    """Counts the plans made, by as-of date; runs.py talks to the test's Prefect server."""
    from flows import prefect_flows

    made: Counter[date] = Counter()
    real = planning.plan_run

    def counted(*args: Any, **kwargs: Any) -> planning.RunPlan:
        plan = real(*args, **kwargs)
        made[plan.as_of] += 1
        return plan

    monkeypatch.setattr(planning, "plan_run", counted)
    monkeypatch.setattr(runs, "_flows", lambda _home: prefect_flows)
    return made


def request(**options: Any) -> RunRequest:
    return RunRequest(exporter_id="CE-VOICECOL", as_of=AS_OF, deliver=False, **options)


def test_a_cli_run_is_planned_once(home: Home, plans: Counter[date]) -> None:
    result = runs.run_exporter(home, request(partitions=3))
    assert result["counts"]["matched"] > 0
    assert plans == {AS_OF: 1}


def test_a_deployment_run_plans_itself_once(home: Home, plans: Counter[date]) -> None:
    from flows.prefect_flows import export_contacts

    export_contacts("CE-VOICECOL", as_of="2026-11-03", home=str(home.root), deliver=False, partitions=2)
    assert plans == {AS_OF: 1}


def test_a_campaign_run_is_planned_once(home: Home, plans: Counter[date]) -> None:
    result = runs.run_campaign(home, request(campaign_id="collections-daily"))
    assert result["campaignId"] == "collections-daily"
    assert plans == {AS_OF: 1}
    assert (
        home.root / "data" / "campaigns" / "collections-daily" / "2026-11-03" / "population.parquet"
    ).is_file()


def test_a_backfill_plans_each_date_once(home: Home, plans: Counter[date]) -> None:
    result = runs.run_backfill(home, request(), date(2026, 11, 1), date(2026, 11, 3))
    assert not result["failedDates"]
    assert plans == {date(2026, 11, d): 1 for d in (1, 2, 3)}
