"""Warehouse tables: a rerun replaces its (exporter, as-of date) rows; a failed run leaves them intact."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.io import warehouse

AS_OF = date(2026, 11, 3)
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def run(
    run_id: str, exporter: str = "CE-AAAAAAAA", status: str = "succeeded", day: date = AS_OF
) -> warehouse.RunRecord:
    return warehouse.RunRecord(
        runId=run_id, exporterId=exporter, companyId="CP-X", asOfDate=day, asOfInstant=NOW, status=status,
        population=2, matched=2, screenedOut=1, exported=1, filePath="/x.csv", sha256="ab", startedAt=NOW, finishedAt=NOW,
    )  # fmt: skip


def screening(*contacts: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "contactId": list(contacts),
            "personId": ["B1"] * len(contacts),
            "channel": ["voice"] * len(contacts),
            "canInteract": [i % 2 == 0 for i in range(len(contacts))],
            "reasons": [
                [] if i % 2 == 0 else ["DO_NOT_INTERACT", "FREQUENCY_LIMIT"] for i in range(len(contacts))
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


def rejected(*keys: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tableName": ["contacts"] * len(keys),
            "rowKey": list(keys),
            "checks": [["value_is_e164_phone"]] * len(keys),
        },
        schema={"tableName": pl.String, "rowKey": pl.String, "checks": pl.List(pl.String)},
    )


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_rerun_replaces_rows_of_same_exporter_and_date(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(db, run("R1"), screening("C1", "C2"), rejected("X1"))
    warehouse.record_success(db, run("R-other", day=date(2026, 11, 4)), screening("C1"), rejected())
    warehouse.record_success(db, run("R2"), screening("C1", "C2", "C3"), rejected("X2"))

    assert rows(db, "SELECT runId, asOfDate FROM export_runs ORDER BY runId") == [
        ("R-other", date(2026, 11, 4)),
        ("R2", AS_OF),
    ]
    assert rows(db, "SELECT runId, count(*) FROM screening_results GROUP BY runId ORDER BY runId") == [
        ("R-other", 1),
        ("R2", 3),
    ]
    assert rows(db, "SELECT runId, rowKey FROM rejected_rows") == [("R2", "X2")]
    assert rows(db, "SELECT reasons FROM screening_results WHERE contactId = 'C2'") == [
        (["DO_NOT_INTERACT", "FREQUENCY_LIMIT"],)
    ]


def test_failed_run_keeps_earlier_success(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(db, run("R1"), screening("C1"), rejected())
    warehouse.record_failure(db, run("R2", status="failed"), rejected("bad-interaction"))
    assert rows(db, "SELECT runId, status FROM export_runs ORDER BY runId") == [
        ("R1", "succeeded"),
        ("R2", "failed"),
    ]
    assert rows(db, "SELECT count(*) FROM screening_results WHERE runId = 'R1'") == [(1,)]


def test_error_mid_transaction_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(db, run("R1"), screening("C1", "C2"), rejected())
    # contactId is NOT NULL: the insert fails after the deletes ran inside the transaction
    broken = screening("C9").with_columns(pl.lit(None, pl.String).alias("contactId"))
    with pytest.raises(duckdb.ConstraintException):
        warehouse.record_success(db, run("R2"), broken, rejected())
    assert rows(db, "SELECT runId FROM export_runs") == [("R1",)]
    assert rows(db, "SELECT count(*) FROM screening_results") == [(2,)]


def test_delivery_timestamp(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse.record_success(db, run("R1"), screening("C1"), rejected())
    warehouse.mark_delivered(db, "R1", NOW)
    ((delivered,),) = rows(db, "SELECT deliveredAt FROM export_runs")
    assert isinstance(delivered, datetime)
    assert delivered.astimezone(UTC) == NOW


def test_run_insert_names_every_run_column_in_order() -> None:
    listed = warehouse.INSERT_RUN.split("(", 1)[1].split(")", 1)[0]
    assert tuple(name.strip() for name in listed.split(",")) == warehouse.RUN_COLUMNS
    assert warehouse.INSERT_RUN.count("?") == len(warehouse.RUN_COLUMNS)


def test_daily_and_campaign_runs_of_a_date_replace_only_their_own_rows(tmp_path: Path) -> None:
    from dataclasses import replace

    path = tmp_path / "w.duckdb"
    warehouse.record_success(path, run("R-DAILY"), screening("C1", "C2"), rejected("K1"))
    campaign = replace(run("R-CAMP-1"), campaignId="spring")
    warehouse.record_success(path, campaign, screening("C3"), rejected("K2"))
    # a rerun of the campaign replaces the campaign's rows only
    warehouse.record_success(path, replace(run("R-CAMP-2"), campaignId="spring"), screening("C4"), rejected())
    # another campaign of the same date is a third set of rows
    warehouse.record_success(path, replace(run("R-OTHER"), campaignId="autumn"), screening("C5"), rejected())
    assert rows(path, "SELECT runId, campaignId FROM export_runs ORDER BY runId") == [
        ("R-CAMP-2", "spring"),
        ("R-DAILY", None),
        ("R-OTHER", "autumn"),
    ]
    assert rows(path, "SELECT runId, contactId FROM screening_results ORDER BY contactId") == [
        ("R-DAILY", "C1"),
        ("R-DAILY", "C2"),
        ("R-CAMP-2", "C4"),
        ("R-OTHER", "C5"),
    ]
    assert rows(path, "SELECT runId, rowKey FROM rejected_rows") == [("R-DAILY", "K1")]
    # and a rerun of the daily run leaves the campaigns' rows alone
    warehouse.record_success(path, run("R-DAILY-2"), screening("C6"), rejected())
    assert rows(path, "SELECT runId FROM export_runs ORDER BY runId") == [
        ("R-CAMP-2",),
        ("R-DAILY-2",),
        ("R-OTHER",),
    ]
    assert rows(path, "SELECT count(*) FROM screening_results WHERE runId LIKE 'R-DAILY%'") == [(1,)]
