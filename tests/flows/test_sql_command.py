"""`contact-exporter sql` as an analyst runs it: formats, limits, the true row count, DuckDB's messages."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines.io import warehouse

AS_OF = date(2026, 11, 3)
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CONTACTS = 1_234


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), "sql", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sqlhome")
    run = warehouse.RunRecord(
        runId="R1", exporterId="CE-AAAAAAAA", companyId="CP-X", asOfDate=AS_OF, asOfInstant=NOW,
        status="succeeded", population=CONTACTS, matched=CONTACTS, screenedOut=CONTACTS // 2,
        exported=CONTACTS - CONTACTS // 2, filePath="/x.csv", sha256="ab", startedAt=NOW, finishedAt=NOW,
    )  # fmt: skip
    ids = [f"CT-{i:09d}" for i in range(CONTACTS)]
    screening = pl.DataFrame(
        {
            "contactId": ids,
            "personId": ["B1"] * CONTACTS,
            "channel": ["voice"] * CONTACTS,
            "canInteract": [i % 2 == 0 for i in range(CONTACTS)],
            "reasons": [
                [] if i % 2 == 0 else ["DO_NOT_INTERACT", "FREQUENCY_LIMIT"] for i in range(CONTACTS)
            ],
        },
        schema={
            "contactId": pl.String,
            "personId": pl.String,
            "channel": pl.String,
            "canInteract": pl.Boolean,
            "reasons": pl.List(pl.String),
        },
    )
    rejected = pl.DataFrame(
        {"tableName": [], "rowKey": [], "checks": []},
        schema={"tableName": pl.String, "rowKey": pl.String, "checks": pl.List(pl.String)},
    )
    warehouse.record_success(root / "data" / "warehouse.duckdb", run, screening, rejected)
    return root


def test_table_says_the_true_row_count(home: Path) -> None:
    out = cli(home, "SELECT contactId FROM screening_results ORDER BY contactId")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "1,234 rows (50 shown; --limit N shows more)"
    assert "CT-000000049" in out.stdout
    assert "CT-000000050" not in out.stdout


def test_limit_and_csv_output(home: Path) -> None:
    out = cli(
        home,
        "--format",
        "csv",
        "--limit",
        "3",
        "SELECT contactId, canInteract, reasons, nextEligibleDate FROM screening_results ORDER BY contactId",
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows == [
        ["contactId", "canInteract", "reasons", "nextEligibleDate"],
        ["CT-000000000", "true", "[]", ""],
        ["CT-000000001", "false", '["DO_NOT_INTERACT", "FREQUENCY_LIMIT"]', ""],
        ["CT-000000002", "true", "[]", ""],
    ]
    assert out.stderr.strip() == "1,234 rows (3 shown; --limit N shows more)"


def test_csv_and_json_print_every_row_by_default(home: Path) -> None:
    out = cli(home, "--format", "csv", "SELECT contactId FROM screening_results")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == CONTACTS + 1
    assert out.stderr.strip() == "1,234 rows"
    out = cli(home, "--format", "json", "SELECT contactId, reasons FROM blocked_contacts")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data) == CONTACTS // 2
    assert data[0]["reasons"] == ["DO_NOT_INTERACT", "FREQUENCY_LIMIT"]
    assert out.stderr.strip() == "617 rows"


def test_json_is_an_array_of_objects(home: Path) -> None:
    out = cli(home, "--format", "json", "SELECT runId, asOfDate, matched FROM export_runs")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"runId": "R1", "asOfDate": "2026-11-03", "matched": CONTACTS}]
    empty = cli(home, "--format", "json", "SELECT runId FROM export_runs WHERE false")
    assert json.loads(empty.stdout) == []
    assert empty.stderr.strip() == "0 rows"


def test_duckdb_errors_come_through_whole(home: Path) -> None:
    out = cli(home, "SELECT * FROM screening_result")
    assert out.returncode == 2
    assert 'Did you mean "screening_results"?' in out.stderr
    envelope = json.loads(out.stdout)
    assert envelope["status"] == 422
    assert 'Did you mean "screening_results"?' in envelope["message"]
    parse = cli(home, "SELECT reason, count(*) FROM screening_results, unnest(reasons) AS r(check)")
    assert parse.returncode == 2
    assert "syntax error at or near" in parse.stderr
    assert "LINE 1:" in parse.stderr  # the position in the query, on the lines after the first


def test_the_warehouse_is_opened_read_only(home: Path) -> None:
    out = cli(home, "DELETE FROM export_runs")
    assert out.returncode == 2
    assert "read-only" in out.stderr
    assert cli(home, "--format", "csv", "SELECT count(*) AS n FROM export_runs").stdout == "n\n1\n"


def test_unknown_format_is_refused(home: Path) -> None:
    out = cli(home, "--format", "xml", "SELECT 1")
    assert out.returncode == 2
    assert "use table, csv or json" in out.stderr
