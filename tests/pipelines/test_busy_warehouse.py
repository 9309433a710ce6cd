"""An analyst's open connection never breaks a run: the writer waits (saying so) up to a bound, then
fails cleanly having recorded nothing. Files live with the warehouse that records them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.io import duck
from pipelines.model.config import Home
from pipelines.model.errors import WarehouseBusyError
from pipelines.run import job
from tests.worlds import make_home, without_sftp

AS_OF = date(2026, 12, 1)


@contextmanager
def analyst_session(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a read-only DuckDB connection to `path` for `seconds`."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "con.execute('SELECT count(*) FROM borrowers').fetchall()\n"
            "print('open', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "con.close()\n",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path, borrowers=60)
    without_sftp(h, "CE-EMAILSVC")
    return h


def runs(path: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT runId, status FROM export_runs ORDER BY runId").fetchall()
    finally:
        con.close()


def test_a_run_waits_for_an_analyst_who_closes_in_time(
    home: Home, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(duck.BUSY_WAIT_ENV, "60")
    plan = job.plan_run(home, "CE-EMAILSVC", AS_OF)
    with caplog.at_level(logging.WARNING, logger="pipelines.io.duck"), analyst_session(home.warehouse, 3):
        started = time.monotonic()
        summary = job.run_export(plan)
        waited = time.monotonic() - started
    assert waited >= 1.0, "the analyst's connection was open: the run must have waited for it"
    assert [r[1] for r in runs(home.warehouse)] == ["succeeded"]
    assert summary["runId"] == runs(home.warehouse)[0][0]
    warnings = [r.getMessage() for r in caplog.records if r.name == "pipelines.io.duck"]
    assert len(warnings) == 1  # one visible message, not one per attempt
    assert "waiting up to 60s" in warnings[0]


def test_a_held_warehouse_fails_cleanly_after_the_bound_and_records_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    job.run_export(job.plan_run(home, "CE-EMAILSVC", AS_OF))
    before = runs(home.warehouse)
    monkeypatch.setenv(duck.BUSY_WAIT_ENV, "1")
    plan = job.plan_run(home, "CE-EMAILSVC", AS_OF)
    with analyst_session(home.warehouse, 120) as holder:
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as caught:
            job.run_export(plan)
        assert time.monotonic() - started < 30  # bounded: no retries that wait again
    message = str(caught.value)
    assert str(home.warehouse) in message
    assert f"process {holder.pid}" in message
    assert duck.BUSY_WAIT_ENV in message
    assert "\n" not in message
    assert runs(home.warehouse) == before  # no failed row, no half-replaced rows


def test_a_bad_wait_bound_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.model.errors import InvalidInputError

    monkeypatch.setenv(duck.BUSY_WAIT_ENV, "soon")
    with pytest.raises(InvalidInputError, match=duck.BUSY_WAIT_ENV):
        duck.busy_wait_seconds()


def test_exports_of_another_warehouse_live_beside_it(home: Home, tmp_path: Path) -> None:
    daily = job.run_export(job.plan_run(home, "CE-EMAILSVC", AS_OF))
    daily_file = Path(str(daily["file"]))
    daily_bytes = daily_file.read_bytes()
    other = tmp_path / "scratch" / "trial.duckdb"
    population = tmp_path / "few.csv"
    population.write_text("id\n" + "\n".join(sorted(runs_ids(home))[:5]) + "\n")
    trial = job.run_export(
        job.plan_run(home, "CE-EMAILSVC", AS_OF, warehouse_path=other, population_file=population)
    )
    trial_file = Path(str(trial["file"]))
    assert trial_file.parent == tmp_path / "scratch" / "trial.exports" / "CE-EMAILSVC" / AS_OF.isoformat()
    assert trial_file.name == daily_file.name
    assert trial_file.read_bytes() != daily_bytes
    assert daily_file.read_bytes() == daily_bytes  # the home's warehouse still describes this file
    con = duckdb.connect(str(other), read_only=True)
    try:
        assert con.execute("SELECT filePath FROM export_runs").fetchall() == [(str(trial_file),)]
    finally:
        con.close()


def runs_ids(home: Home) -> list[str]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return [
            str(r[0]) for r in con.execute("SELECT id FROM borrowers WHERE companyId = 'CP-ACME'").fetchall()
        ]
    finally:
        con.close()


def test_cli_run_against_a_held_warehouse_exits_1_in_a_few_lines(home: Home) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env[duck.BUSY_WAIT_ENV] = "2"
    with analyst_session(home.warehouse, 120):
        out = subprocess.run(
            [sys.executable, "-m", "flows", "--home", str(home.root), "run", "CE-EMAILSVC"]
            + ["--as-of", AS_OF.isoformat(), "--no-deliver"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) <= 3, out.stderr
    assert "waiting up to 2s" in lines[0]
    assert lines[1].startswith(f"error: {home.warehouse} stayed open in process")
    assert "Traceback" not in out.stderr
    assert not home.exports.exists()  # refused before the run started: no folder, no file
