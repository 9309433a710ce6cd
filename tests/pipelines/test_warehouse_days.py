"""The warehouse answers the analysts' day-to-day questions after real runs and deliveries:
what was delivered where (and by which run, after reruns too), when runs started in company time,
and which reasons blocked the most yesterday, daily and campaign runs kept apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from flows.sftp_server import local_sftp_server
from pipelines.model.config import Home
from pipelines.run import job
from tests.worlds import make_home

AS_OF = date(2026, 11, 3)
CAMPAIGN = "collections-daily"
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class Day:
    home: Home
    daily: dict[str, Any]  # the first daily run (it uploaded the file)
    campaign: dict[str, Any]
    rerun: dict[str, Any]  # the daily run again: same bytes, already delivered


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    root = tmp_path_factory.mktemp("days")
    home = make_home(root / "home", borrowers=120)
    with local_sftp_server(root / "sftp") as server:
        server.write_setting(home, "partner")
        daily = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF))
        campaign = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF, campaign_id=CAMPAIGN))
        rerun = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF))
        yield Day(home, daily, campaign, rerun)


def fetch(home: Home, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_the_runs_delivered_then_found_the_daily_file_already_delivered(day: Day) -> None:
    assert day.daily["delivered"]
    assert day.campaign["delivered"]
    assert not day.rerun["delivered"]
    assert day.rerun["runId"] != day.daily["runId"]


def test_every_delivery_names_a_recorded_run_with_its_campaign_and_rows(day: Day) -> None:
    got = fetch(
        day.home,
        "SELECT d.runId, d.campaignId, d.rows, e.runId IS NOT NULL AS recorded FROM deliveries AS d "
        "LEFT JOIN export_runs AS e ON e.runId = d.runId ORDER BY d.campaignId NULLS FIRST",
    )
    assert got == [
        # the rerun replaced the uploading run's rows, and took over its delivery
        (day.rerun["runId"], None, day.daily["counts"]["exported"], True),
        (day.campaign["runId"], CAMPAIGN, day.campaign["counts"]["exported"], True),
    ]


def test_a_delivery_names_the_sftp_setting_of_its_run(day: Day) -> None:
    settings = fetch(day.home, "SELECT campaignId, sftpSettingId FROM deliveries ORDER BY 1 NULLS FIRST")
    assert settings == [(None, "partner"), (CAMPAIGN, "partner")]


def test_run_summary_has_start_finish_and_the_company_date(day: Day) -> None:
    rows = fetch(
        day.home,
        "SELECT runId, startedAt, finishedAt, companyStartDate FROM run_summary ORDER BY startedAt",
    )
    assert {r[0] for r in rows} == {day.campaign["runId"], day.rerun["runId"]}
    for _, started, finished, company_date in rows:
        assert started <= finished
        assert company_date == started.astimezone(NEW_YORK).date()


def test_company_days_give_today_and_yesterday_in_the_company_time_zone(day: Day) -> None:
    before = datetime.now(UTC)
    [(company, offset, today, yesterday, latest)] = fetch(day.home, "SELECT * FROM company_days")
    after = datetime.now(UTC)
    assert (company, latest) == ("CP-ACME", AS_OF)
    assert offset == -300  # New York on 2026-11-03, after daylight saving time ended
    assert today in {(moment + timedelta(minutes=offset)).date() for moment in (before, after)}
    assert yesterday == today - timedelta(days=1)


def test_blocked_contacts_tell_daily_and_campaign_runs_apart(day: Day) -> None:
    per_run = dict(
        fetch(
            day.home,
            "SELECT coalesce(campaignId, 'daily'), count(*) FROM blocked_contacts GROUP BY ALL",
        )
    )
    assert per_run == {
        "daily": day.rerun["counts"]["screenedOut"],
        CAMPAIGN: day.campaign["counts"]["screenedOut"],
    }
    twice = fetch(
        day.home,
        "SELECT count(*) FROM (SELECT contactId FROM blocked_contacts GROUP BY contactId HAVING count(*) > 1)",
    )
    assert twice[0][0] > 0  # the same contacts, blocked in both runs: only campaignId tells them apart
    daily_reasons = fetch(
        day.home,
        "SELECT reason, count(*) AS contacts FROM blocked_contacts, unnest(reasons) AS r(reason) "
        "WHERE campaignId IS NULL GROUP BY reason ORDER BY contacts DESC, reason",
    )
    assert dict(daily_reasons) == day.rerun["counts"]["byReason"]


def test_yesterday_in_company_time_is_one_documented_join(day: Day) -> None:
    """The README's query for "which reasons blocked the most yesterday", on a day made yesterday."""
    yesterday = fetch(day.home, "SELECT yesterday FROM company_days")[0][0]
    rows = fetch(
        day.home,
        "SELECT r.reason, count(*) AS contacts "
        "FROM blocked_contacts AS b JOIN company_days AS d ON d.companyId = b.companyId "
        "AND b.asOfDate = d.yesterday + CAST(? AS INTEGER), unnest(b.reasons) AS r(reason) "
        "WHERE b.campaignId IS NULL GROUP BY r.reason ORDER BY contacts DESC, r.reason",
        [(AS_OF - yesterday).days],
    )
    assert dict(rows) == day.rerun["counts"]["byReason"]
    assert [n for _, n in rows] == sorted((n for _, n in rows), reverse=True)
