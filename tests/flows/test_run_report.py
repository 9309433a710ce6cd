"""`contact-exporter report RUN_ID` after a real run that delivered and rejected rows: the page is
written beside the export, reads as it should in headless Chromium, and holds no contact values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.sftp_server import local_sftp_server
from pipelines.model.config import Home
from pipelines.run import job
from tests import browser
from tests.worlds import make_home, without_sftp

pytestmark = pytest.mark.integration

AS_OF = date(2026, 11, 3)


def spoil_two_contacts(home: Home) -> None:
    """Two phone rows that fail validation: the run rejects them and blocks their borrowers."""
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute(
            "INSERT INTO contacts SELECT * REPLACE ('C-SPOILED-' || row_number() OVER () AS id, "
            "'not a phone' AS value, 'Massachusetts' AS state) "
            "FROM (SELECT * FROM contacts WHERE contactType = 'phone' ORDER BY id LIMIT 2)"
        )


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home.root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_runs_report_is_written_beside_its_file_and_renders(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", borrowers=400)
    spoil_two_contacts(home)
    with local_sftp_server(tmp_path / "sftp") as server:
        server.write_setting(home, "partner")
        result = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF))
    assert result["delivered"]

    made = cli(home, "report", result["runId"])
    assert made.returncode == 0, made.stderr
    page_path = Path(json.loads(made.stdout)["file"])
    assert page_path == Path(result["file"]).parent / "report.html"
    page = page_path.read_text(encoding="utf-8")

    by_reason = result["counts"]["byReason"]
    expected = sorted(by_reason, key=lambda code: (-by_reason[code], code))
    assert [code for code in expected if code in page] == expected
    assert sorted(expected, key=page.index) == expected  # largest first on the page too
    assert "value_is_e164_phone" in page
    assert ">127.0.0.1<" in page  # the delivery's host
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        values = [
            v
            for (v,) in con.execute("SELECT value FROM contacts WHERE value IS NOT NULL LIMIT 200").fetchall()
        ]
    assert not [v for v in values if v in page]  # no phone number or email on the page

    url = page_path.as_uri()
    rendered = browser.rendered_text(url)
    assert "Blocked contacts by reason" in rendered
    png = browser.screenshot(url, tmp_path / "run-report.png", size="1280,1100")
    assert png.stat().st_size > 30_000  # bars, tables and text; an empty page is a few KB
    browser.keep(png, "run-report.png")


def test_report_of_an_unknown_run_is_a_usage_error(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", borrowers=20)
    missing = cli(home, "report", "RUN-NOPE")
    assert missing.returncode == 2
    assert "no run RUN-NOPE" in missing.stderr


def test_the_page_across_days_links_each_days_run_and_renders(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", borrowers=300, with_sftp=False)
    without_sftp(home, "CE-VOICECOL")
    first = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF), deliver_enabled=False)
    for day in (AS_OF + timedelta(days=2), AS_OF + timedelta(days=3), AS_OF + timedelta(days=3)):  # a rerun
        job.run_export(job.plan_run(home, "CE-VOICECOL", day), deliver_enabled=False)

    made = cli(home, "report", "--exporter", "CE-VOICECOL", "--days", "30")
    assert made.returncode == 0, made.stderr
    page_path = Path(json.loads(made.stdout)["file"])
    assert page_path == Path(first["file"]).parent.parent / "days.html"
    page = page_path.read_text(encoding="utf-8")

    assert page.count('<rect class="exported"') == 30
    links = sorted(set(re.findall(r'<a href="([^"]+)">', page)))
    assert links == [f"{d}/report.html" for d in ("2026-11-03", "2026-11-05", "2026-11-06")]
    assert all((page_path.parent / link).is_file() for link in links)  # each day's run page is written
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        shown = con.execute(
            "SELECT runId FROM blocked_contacts WHERE exporterId = 'CE-VOICECOL' AND asOfDate = ? LIMIT 1",
            [AS_OF + timedelta(days=3)],
        ).fetchall()
        reasons = con.execute(
            "SELECT u.code, count(*) AS n FROM blocked_contacts AS b, unnest(b.reasons) AS u(code) "
            "WHERE b.exporterId = 'CE-VOICECOL' GROUP BY u.code ORDER BY n DESC, u.code"
        ).fetchall()
    assert shown[0][0] in page  # the rerun's day shows the run blocked_contacts counts
    section = page[page.index("Blocked contacts by reason") :]
    expected = [code for code, _ in reasons]
    assert len(expected) > 1
    assert sorted(expected, key=section.index) == expected  # by count, not by name

    url = page_path.as_uri()
    rendered = browser.rendered_text(url)
    assert "Exported and blocked per day" in rendered
    png = browser.screenshot(url, tmp_path / "days-report.png", size="1280,1300")
    assert png.stat().st_size > 30_000
    browser.keep(png, "days-report.png")


def test_a_page_across_days_needs_an_exporter_that_ran(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", borrowers=50, with_sftp=False)
    both = cli(home, "report", "RUN-1", "--exporter", "CE-VOICECOL")
    assert both.returncode == 2
    assert "not both" in both.stderr
    never = cli(home, "report", "--exporter", "CE-VOICECOL")
    assert never.returncode == 2
    assert "no daily run of CE-VOICECOL" in never.stderr
