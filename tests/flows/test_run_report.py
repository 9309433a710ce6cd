"""`contact-exporter report RUN_ID` after a real run that delivered and rejected rows: the page is
written beside the export, reads as it should in headless Chromium, and holds no contact values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from flows.sftp_server import local_sftp_server
from pipelines.model.config import Home
from pipelines.run import job
from tests import browser
from tests.worlds import make_home

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
