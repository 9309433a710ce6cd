"""The warehouse for analysts: reason_codes, the views, comments, the storage format, the README's SQL."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.io import analyst, duck, warehouse
from pipelines.model import vocab
from pipelines.model.config import Home
from pipelines.run import job
from tests.worlds import REPO, make_home, without_sftp

AS_OF = date(2026, 11, 3)
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def record(
    run_id: str,
    *,
    day: date = AS_OF,
    status: str = "succeeded",
    minute: int = 0,
    campaign: str | None = None,
    exporter: str = "CE-AAAAAAAA",
) -> warehouse.RunRecord:
    finished = T0.replace(minute=minute, second=30)
    return warehouse.RunRecord(
        runId=run_id, exporterId=exporter, companyId="CP-X", asOfDate=day, asOfInstant=T0, status=status,
        population=4, matched=4, screenedOut=2, exported=2, filePath="/x.csv", sha256="ab",
        startedAt=T0.replace(minute=minute), finishedAt=finished, error=None if status == "succeeded" else "boom",
        campaignId=campaign,
    )  # fmt: skip


def screening(
    blocked: dict[str, list[str]], allowed: list[str], next_date: date | None = None
) -> pl.DataFrame:
    contacts = [*blocked, *allowed]
    return pl.DataFrame(
        {
            "contactId": contacts,
            "personId": ["B-" + c for c in contacts],
            "channel": ["voice"] * len(contacts),
            "canInteract": [c not in blocked for c in contacts],
            "reasons": [blocked.get(c, []) for c in contacts],
            "nextEligibleDate": [next_date if c in blocked else None for c in contacts],
        },
        schema={
            "contactId": pl.String,
            "personId": pl.String,
            "channel": pl.String,
            "canInteract": pl.Boolean,
            "reasons": pl.List(pl.String),
            "nextEligibleDate": pl.Date,
        },
    )


def rejected(rows: dict[str, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"tableName": ["contacts"] * len(rows), "rowKey": list(rows), "checks": list(rows.values())},
        schema={"tableName": pl.String, "rowKey": pl.String, "checks": pl.List(pl.String)},
    )


def fetch(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_reason_codes_cover_every_code_the_guard_gives(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.ensure_tables(db)
    codes = {row[0] for row in fetch(db, "SELECT code FROM reason_codes")}
    assert codes == set(vocab.REASON_CODES) | {"SOURCE_ROW_REJECTED"}
    for code, meaning, rule, clears in fetch(
        db, "SELECT code, meaning, rule, clearsWithTime FROM reason_codes"
    ):
        assert meaning, code
        assert str(rule).startswith("COMPLIANCE.md#"), code
        assert isinstance(clears, bool)
    regulated = dict(fetch(db, "SELECT code, regulation FROM reason_codes"))
    assert "1006.14(b)(2)(i)" in str(regulated["FREQUENCY_LIMIT"])
    assert "1006.6(b)(1)(i)" in str(regulated["OUTSIDE_CONTACT_HOURS"])
    assert regulated["CONTACT_ARCHIVED"] is None


def test_rule_anchors_name_sections_of_compliance_md() -> None:
    compliance = Path(__file__).resolve().parents[3] / "shared" / "COMPLIANCE.md"  # ../shared beside the repo
    if not compliance.exists():
        pytest.skip("COMPLIANCE.md is not beside the repository here")
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in compliance.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for reason in analyst.REASON_CODES:
        assert reason.rule.split("#", 1)[1] in headings, reason


def test_every_table_view_and_column_has_a_comment(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(db, record("R1"), screening({"C1": ["DO_NOT_INTERACT"]}, ["C2"]), rejected({}))
    objects = fetch(
        db,
        "SELECT table_name, comment FROM duckdb_tables() WHERE NOT internal "
        "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE NOT internal",
    )
    names = {name for name, _ in objects}
    assert {"export_runs", "screening_results", "rejected_rows", "deliveries", "reason_codes"} <= names
    assert {"blocked_contacts", "run_summary", "rejected_by_check"} <= names
    assert [name for name, comment in objects if not comment] == []
    uncommented = fetch(
        db, "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND comment IS NULL"
    )
    assert uncommented == []


def test_blocked_contacts_come_from_the_latest_successful_run(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    later = date(2026, 11, 10)
    warehouse.record_success(
        db,
        record("R1"),
        screening({"C1": ["FREQUENCY_LIMIT"], "C2": ["CONTACT_INVALID"]}, ["C3"], later),
        rejected({}),
    )
    # A failed rerun keeps the earlier rows; blocked_contacts keeps showing them.
    warehouse.record_failure(db, record("R2", status="failed", minute=5))
    # A campaign run of the same exporter and date sits beside the daily run (CONTRACT.md §6): its rows
    # are written here directly, whatever record_success does with them.
    with duck.connect(db) as con:
        campaign_run = record("R3", minute=9, campaign="camp")
        con.execute(warehouse.INSERT_RUN, [getattr(campaign_run, name) for name in warehouse.RUN_COLUMNS])
        con.execute(
            "INSERT INTO screening_results VALUES ('R3', 'CE-AAAAAAAA', ?, 'C3', 'B-C3', 'voice', false, "
            "['RECENT_CONVERSATION'], NULL)",
            [AS_OF],
        )
    got = fetch(
        db,
        "SELECT runId, campaignId, contactId, personId, reasons, nextEligibleDate FROM blocked_contacts "
        "ORDER BY runId, contactId",
    )
    assert got == [
        ("R1", None, "C1", "B-C1", ["FREQUENCY_LIMIT"], later),
        ("R1", None, "C2", "B-C2", ["CONTACT_INVALID"], later),
        ("R3", "camp", "C3", "B-C3", ["RECENT_CONVERSATION"], None),
    ]
    # A successful rerun replaces the day's daily rows: only the new run's contacts are listed.
    warehouse.record_success(
        db, record("R4", minute=20), screening({"C9": ["DO_NOT_INTERACT"]}, ["C1"]), rejected({})
    )
    assert fetch(db, "SELECT runId, contactId FROM blocked_contacts WHERE campaignId IS NULL") == [
        ("R4", "C9")
    ]


def test_run_summary_and_rejected_by_check(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(
        db,
        record("R1"),
        screening({"C1": ["SOURCE_ROW_REJECTED"]}, ["C2"]),
        rejected({"K1": ["value_is_e164_phone", "state_is_2_letters"], "K2": ["value_is_e164_phone"]}),
    )
    warehouse.record_failure(db, record("R2", status="failed", minute=3))
    summary = fetch(
        db,
        "SELECT runId, status, matched, screenedOut, screenedOutPct, rejectedRows, seconds, error "
        "FROM run_summary ORDER BY runId",
    )
    assert summary == [
        ("R1", "succeeded", 4, 2, 50.0, 2, 30.0, None),
        ("R2", "failed", 4, 2, 50.0, 0, 30.0, "boom"),
    ]
    by_check = fetch(
        db,
        "SELECT runId, tableName, checkName, rowCount, exampleRowKey FROM rejected_by_check ORDER BY checkName",
    )
    assert by_check == [
        ("R1", "contacts", "state_is_2_letters", 1, "K1"),
        ("R1", "contacts", "value_is_e164_phone", 2, "K1"),
    ]


def test_install_rewrites_a_stale_view_and_leaves_a_current_warehouse_alone(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.ensure_tables(db)
    with duck.connect(db) as con:
        con.execute("CREATE OR REPLACE VIEW blocked_contacts AS SELECT 1 AS x")
        con.execute("UPDATE reason_codes SET meaning = 'edited' WHERE code = 'CONTACT_INVALID'")
    warehouse.ensure_tables(db)
    assert [
        r[0]
        for r in fetch(db, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'blocked_contacts'")
    ][:2] == ["exporterId", "asOfDate"]
    assert fetch(db, "SELECT meaning FROM reason_codes WHERE code = 'CONTACT_INVALID'") != [("edited",)]
    # Up to date: a further install changes nothing in the catalog (no commit is needed).
    with duck.connect(db) as con:
        before = con.execute(
            "SELECT sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()
        con.execute("BEGIN TRANSACTION")
        warehouse.create_tables(con)
        con.execute("COMMIT")
        assert (
            con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name").fetchall()
            == before
        )


def test_new_warehouse_is_written_in_the_pinned_storage_version(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.ensure_tables(db)
    tags = fetch(db, "SELECT tags FROM duckdb_databases() WHERE database_name = 'w'")
    # DuckDB names the file format by the first version that wrote it: the 1.1 format is 1.0's.
    assert duck.STORAGE_VERSION == "v1.1.0"
    assert tags == [({"storage_version": "v1.0.0+"},)]


# DuckDB 1.0 cannot read primary-key indexes that DuckDB 2 writes, even in the 1.0 format: 1.1 is the oldest.
OLDEST_CLIENT = "duckdb==1.1.0"


@pytest.mark.integration
@pytest.mark.slow
def test_oldest_supported_duckdb_client_reads_the_warehouse(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", borrowers=60)
    without_sftp(home, "CE-VOICECOL")
    job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", OLDEST_CLIENT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if pip.returncode != 0:
        pytest.skip(f"pip could not install {OLDEST_CLIENT}: {pip.stderr.strip()[-300:]}")
    script = textwrap.dedent(
        """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1], read_only=True)
        print(duckdb.__version__)
        for name in ("export_runs", "screening_results", "reason_codes", "blocked_contacts",
                     "run_summary", "rejected_by_check"):
            print(name, con.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
        """
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, str(home.warehouse)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == OLDEST_CLIENT.split("==")[1]
    counts = dict(line.split() for line in lines[1:])
    assert counts["export_runs"] == "1"
    assert counts["reason_codes"] == str(len(analyst.REASON_CODES))
    assert int(counts["blocked_contacts"]) > 0


# ---------------------------------------------------------------- the README's analyst section


def readme_sql_blocks() -> list[str]:
    text = (REPO / "docs" / "outputs.md").read_text(encoding="utf-8")
    return re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(scope="module")
def demo_like_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = make_home(tmp_path_factory.mktemp("readme"), borrowers=300)
    without_sftp(home, "CE-VOICECOL")
    without_sftp(home, "CE-EMAILSVC")
    for exporter in ("CE-VOICECOL", "CE-EMAILSVC"):
        job.run_export(job.plan_run(home, exporter, AS_OF))
    return home


def test_readme_has_analyst_queries() -> None:
    blocks = readme_sql_blocks()
    assert len(blocks) >= 4
    text = "\n".join(blocks)
    for view in ("blocked_contacts", "run_summary", "rejected_by_check", "reason_codes"):
        assert view in text


@pytest.mark.parametrize("index", range(len(readme_sql_blocks())))
def test_readme_sql_block_runs(demo_like_home: Home, index: int) -> None:
    sql = readme_sql_blocks()[index]
    with duckdb.connect(str(demo_like_home.warehouse), read_only=True) as con:
        for statement in (s for s in sql.split(";") if s.strip()):
            con.execute(statement).fetchall()
