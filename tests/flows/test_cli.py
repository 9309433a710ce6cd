"""The CLI as a user runs it: a separate process, JSON on stdout, messages on stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.model.config import Home
from tests.worlds import SEED_REQUEST, make_home, without_sftp


def cli(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


def test_help_explains_the_commands(tmp_path: Path) -> None:
    out = cli(tmp_path, "--help")
    assert out.returncode == 0
    for command in ("exporters", "run", "backfill", "campaigns", "generate", "serve", "demo"):
        assert command in out.stdout


def test_create_get_list_update_round_trip(home: Home) -> None:
    created = cli(home.root, "exporters", "create", "--file", "-", stdin=json.dumps(SEED_REQUEST))
    assert created.returncode == 0, created.stderr
    envelope = json.loads(created.stdout)
    assert envelope["status"] == 200
    assert envelope["message"] == "success"
    exporter = envelope["data"]
    assert exporter["id"].startswith("CE-")
    assert exporter["companyId"] == "CP-ACME"

    got = json.loads(cli(home.root, "exporters", "get", exporter["id"]).stdout)
    assert got["data"] == exporter

    listed = json.loads(cli(home.root, "exporters", "list", "--limit", "1").stdout)
    assert listed["total"] == 3
    assert listed["count"] == 1
    assert listed["data"][0]["id"] == exporter["id"]  # newest first
    assert listed["nextUrl"] is not None

    body = dict(SEED_REQUEST, name="renamed")
    updated = json.loads(
        cli(home.root, "exporters", "update", exporter["id"], "--file", "-", stdin=json.dumps(body)).stdout
    )
    assert updated["data"]["name"] == "renamed"
    assert updated["data"]["createdAt"] == exporter["createdAt"]


def test_invalid_body_exits_2_with_json_path_and_writes_nothing(home: Home) -> None:
    before = sorted(p.name for p in home.exporters_dir.iterdir())
    body = dict(SEED_REQUEST, contactMatchingCriteria={"label": []})
    out = cli(home.root, "exporters", "create", "--file", "-", stdin=json.dumps(body))
    assert out.returncode == 2
    envelope = json.loads(out.stdout)
    assert envelope["status"] == 422
    assert envelope["errors"][0]["path"] == "/contactMatchingCriteria/label"
    assert "/contactMatchingCriteria/label" in out.stderr
    assert sorted(p.name for p in home.exporters_dir.iterdir()) == before


def test_unknown_exporter_and_bad_date_exit_2(home: Home) -> None:
    missing = cli(home.root, "exporters", "get", "CE-ZZZZZZZZ")
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["status"] == 404
    bad_date = cli(home.root, "run", "CE-EMAILSVC", "--as-of", "2026-13-01", "--no-deliver")
    assert bad_date.returncode == 2
    assert "--as-of" in bad_date.stderr


def test_bad_partitions_or_memory_budget_exit_2(home: Home) -> None:
    for option, value in (("--partitions", "0"), ("--partitions", "many"), ("--memory-budget", "lots")):
        out = cli(home.root, "run", "CE-EMAILSVC", "--as-of", "2026-12-01", "--no-deliver", option, value)
        assert out.returncode == 2, (option, value, out.stderr[-1000:])
        assert option in out.stderr


@pytest.mark.integration
def test_run_in_partitions_prints_the_same_counts_and_file(home: Home) -> None:
    without_sftp(home, "CE-EMAILSVC")
    args = ("run", "CE-EMAILSVC", "--as-of", "2026-12-01", "--no-deliver")
    one = cli(home.root, *args, "--partitions", "1", timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    first = json.loads(one.stdout)
    data = Path(first["file"]).read_bytes()
    four = cli(home.root, *args, "--partitions", "4", "--memory-budget", "1GiB", timeout=300)
    assert four.returncode == 0, four.stderr[-3000:]
    second = json.loads(four.stdout)
    assert second["counts"] == first["counts"]
    assert Path(second["file"]).read_bytes() == data


def test_invalid_source_data_exits_2(home: Home) -> None:
    import duckdb

    con = duckdb.connect(str(home.warehouse))
    # one bad row only blocks its borrower; bad rows for more than maxRejectedShare of them fail the run
    con.execute("UPDATE consents SET status = 'maybe'")
    con.close()
    out = cli(home.root, "run", "CE-EMAILSVC", "--as-of", "2026-12-01", "--no-deliver", timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "consents" in out.stderr
    assert "maxRejectedShare" in out.stderr


@pytest.mark.integration
def test_run_prints_the_summary(home: Home) -> None:
    without_sftp(home, "CE-EMAILSVC")
    out = cli(home.root, "run", "CE-EMAILSVC", "--as-of", "2026-12-01", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert set(summary) >= {
        "runId",
        "exporterId",
        "companyId",
        "asOfDate",
        "asOfInstant",
        "counts",
        "file",
        "delivered",
    }
    assert summary["asOfInstant"] == "2026-12-01T17:00:00Z"
    assert set(summary["counts"]) >= {"population", "matched", "screenedOut", "exported", "byReason"}
    assert Path(summary["file"]).is_file()


def test_generate_writes_a_readable_source_and_is_deterministic(tmp_path: Path) -> None:
    from pipelines.io.sources import open_source

    outputs = []
    for name in ("a", "b"):
        out = cli(tmp_path, "generate", "--out", f"{name}.duckdb", "--borrowers", "60", "--seed", "5")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["rows"]["borrowers"] == 60
        # the sample companies were written into the empty home
        assert sorted(report["companies"]) == ["CP-ACME", "CP-ISLAND", "CP-PACIFIC"]
        outputs.append(open_source(tmp_path / f"{name}.duckdb"))
    a, b = outputs
    assert a.contacts.collect().equals(b.contacts.collect())
    assert (tmp_path / "configs" / "companies" / "CP-ACME.yaml").exists()


def test_generate_refuses_an_unknown_format(tmp_path: Path) -> None:
    out = cli(tmp_path, "generate", "--out", "x", "--borrowers", "5", "--format", "xlsx")
    assert out.returncode == 2
    assert "--format" in out.stderr


def test_a_guard_failure_exits_1_and_writes_nothing(home: Home) -> None:
    """A defect in a step (here: the unscreened rows marked blocked without a reason) stops the run."""
    import duckdb

    without_sftp(home, "CE-EMAILSVC")
    broken_step = (
        "import sys, polars as pl\n"
        "from pipelines.rules import compliance\n"
        "real = compliance.unscreened\n"
        "compliance.unscreened = lambda m: real(m).with_columns(pl.lit(False).alias('canInteract'))\n"
        "from flows.cli import main\n"
        "sys.argv = ['contact-exporter', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    out = subprocess.run(
        [sys.executable, "-c", broken_step, "--home", str(home.root), "run", "CE-EMAILSVC"]
        + ["--as-of", "2026-12-01", "--no-deliver"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "guard:screening" in out.stderr
    assert list((home.exports / "CE-EMAILSVC").rglob("*.csv")) == []
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT status FROM export_runs").fetchall() == [("failed",)]
        checks = con.execute("SELECT DISTINCT unnest(checks) FROM rejected_rows").fetchall()
    finally:
        con.close()
    assert checks == [("canInteract_iff_no_reasons",)]


def test_backfill_prints_a_table_per_date_and_exits_1_when_a_date_fails(home: Home) -> None:
    without_sftp(home, "CE-EMAILSVC")
    # a file where the 2026-12-03 export folder belongs: that date fails, the others run
    blocked = home.root / "data" / "exports" / "CE-EMAILSVC" / "2026-12-03"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    out = cli(
        home.root,
        "backfill", "CE-EMAILSVC", "--start", "2026-12-01", "--end", "2026-12-03", "--no-deliver",
        timeout=400,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert list(result["failedDates"]) == ["2026-12-03"]
    assert [(d["asOfDate"], d["status"]) for d in result["dates"]] == [
        ("2026-12-01", "succeeded"),
        ("2026-12-02", "succeeded"),
        ("2026-12-03", "failed"),
    ]
    table = [line for line in out.stderr.splitlines() if line.startswith(("asOfDate", "2026-12-0"))]
    assert table[0].split() == ["asOfDate", "status", "exported", "detail"]
    assert table[1].startswith("2026-12-01  succeeded")
    assert table[3].startswith("2026-12-03  failed")
    assert "Traceback" not in out.stderr
    for day in ("2026-12-01", "2026-12-02"):
        assert list((home.root / "data" / "exports" / "CE-EMAILSVC" / day).glob("*.csv"))


def test_campaigns_run_takes_source_and_warehouse_and_keeps_its_own_outputs(home: Home) -> None:
    import duckdb

    out = cli(
        home.root,
        "campaigns", "run", "collections-daily", "--as-of", "2026-12-01", "--no-deliver",
        "--source", "data/warehouse.duckdb", "--warehouse", "data/trial.duckdb", "--partitions", "2",
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["campaignId"] == "collections-daily"
    folder = (
        home.root
        / "data"
        / "trial.exports"
        / "CE-VOICECOL"
        / "2026-12-01"
        / "campaigns"
        / "collections-daily"
    )
    assert Path(result["file"]) == folder / "CE-VOICECOL_collections-daily_20261201.csv"
    assert Path(result["file"]).is_file()
    con = duckdb.connect(str(home.root / "data" / "trial.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT exporterId, campaignId, status FROM export_runs").fetchall()
    finally:
        con.close()
    assert runs == [("CE-VOICECOL", "collections-daily", "succeeded")]
