"""Warehouse output tables (CONTRACT.md §6) in a DuckDB file.

A rerun of the same (exporterId, asOfDate, campaignId) replaces its earlier rows in one transaction; a failed run
is recorded beside the earlier successful rows and leaves them intact. The delivery ledger is never
replaced (it is the history of what was sent); a rerun takes over the deliveries of the run it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.io import analyst, duck

DDL = (
    """CREATE TABLE IF NOT EXISTS export_runs (
        runId VARCHAR PRIMARY KEY, exporterId VARCHAR NOT NULL, companyId VARCHAR, asOfDate DATE NOT NULL,
        asOfInstant TIMESTAMPTZ, status VARCHAR NOT NULL, population BIGINT, matched BIGINT,
        screenedOut BIGINT, exported BIGINT, filePath VARCHAR, sha256 VARCHAR, deliveredAt TIMESTAMPTZ,
        startedAt TIMESTAMPTZ, finishedAt TIMESTAMPTZ, error VARCHAR, campaignId VARCHAR,
        deliveryStatus VARCHAR, deliveryError VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS screening_results (
        runId VARCHAR NOT NULL, exporterId VARCHAR NOT NULL, asOfDate DATE NOT NULL, contactId VARCHAR NOT NULL,
        personId VARCHAR NOT NULL, channel VARCHAR, canInteract BOOLEAN NOT NULL, reasons VARCHAR[] NOT NULL,
        nextEligibleDate DATE)""",
    """CREATE TABLE IF NOT EXISTS rejected_rows (
        runId VARCHAR NOT NULL, tableName VARCHAR NOT NULL, rowKey VARCHAR, checks VARCHAR[] NOT NULL)""",
)

# The delivery ledger (CONTRACT.md §7), written by pipelines.delivery.ledger. Kept here with the other
# tables: the warehouse step creates it without importing the SFTP client.
# The ledger's own columns are written with the upload; campaignId, rows and sftpSettingId are
# filled in from the run's record when the run's delivery status is recorded (`complete_deliveries`).
DELIVERIES_DDL = """
CREATE TABLE IF NOT EXISTS deliveries (
    exporterId VARCHAR NOT NULL,
    asOfDate DATE NOT NULL,
    sha256 VARCHAR NOT NULL,
    fileName VARCHAR NOT NULL,
    remotePath VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    deliveredAt TIMESTAMPTZ NOT NULL,
    bytes BIGINT NOT NULL,
    runId VARCHAR,
    campaignId VARCHAR,
    sftpSettingId VARCHAR,
    rows BIGINT
)
"""

# Columns added after the first release: a warehouse written by an older version gains them on open.
MIGRATIONS = (
    "ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS campaignId VARCHAR",
    "ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS deliveryStatus VARCHAR",
    "ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS deliveryError VARCHAR",
    "ALTER TABLE screening_results ADD COLUMN IF NOT EXISTS nextEligibleDate DATE",
)
DELIVERIES_MIGRATIONS = (
    "ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS campaignId VARCHAR",
    "ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS sftpSettingId VARCHAR",
    "ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS rows BIGINT",
)

RUN_COLUMNS = (
    "runId", "exporterId", "companyId", "asOfDate", "asOfInstant", "status", "population", "matched",
    "screenedOut", "exported", "filePath", "sha256", "startedAt", "finishedAt", "error", "campaignId",
    "deliveryStatus", "deliveryError",
)  # fmt: skip
INSERT_RUN = (
    "INSERT INTO export_runs (runId, exporterId, companyId, asOfDate, asOfInstant, status, population, "
    "matched, screenedOut, exported, filePath, sha256, startedAt, finishedAt, error, campaignId, "
    "deliveryStatus, deliveryError) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SCREENING_COLUMNS = ("contactId", "personId", "channel", "canInteract", "reasons")
REJECTED_COLUMNS = ("tableName", "rowKey", "checks")


@dataclass(frozen=True)
class RunRecord:
    runId: str
    exporterId: str
    companyId: str | None
    asOfDate: date
    asOfInstant: datetime | None
    status: str  # succeeded | failed
    population: int | None
    matched: int | None
    screenedOut: int | None
    exported: int | None
    filePath: str | None
    sha256: str | None
    startedAt: datetime
    finishedAt: datetime
    error: str | None = None
    campaignId: str | None = None
    deliveryStatus: str | None = None  # delivered | already_delivered | skipped | failed
    deliveryError: str | None = None


def to_arrow(frame: pl.DataFrame) -> Any:
    """The frame as Arrow for DuckDB to scan, its text kept as Polars holds it (string views): the
    default conversion copies every string."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The output tables, created or brought up to the current columns, and the analysts' objects."""
    for ddl in (*DDL, *MIGRATIONS, DELIVERIES_DDL, *DELIVERIES_MIGRATIONS):
        con.execute(ddl)
    analyst.install(con, (*DDL, DELIVERIES_DDL))


def ensure_tables(path: Path) -> None:
    with duck.connect(path) as con:
        create_tables(con)


def _insert_run(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    con.execute(INSERT_RUN, [getattr(run, name) for name in RUN_COLUMNS])


def _insert_rejected(con: duckdb.DuckDBPyConnection, run_id: str, rejected: pl.DataFrame) -> None:
    con.register("new_rejected", to_arrow(rejected.select(REJECTED_COLUMNS)))
    con.execute(
        "INSERT INTO rejected_rows SELECT ?, tableName, rowKey, CAST(checks AS VARCHAR[]) "
        "FROM new_rejected ORDER BY tableName, rowKey",
        [run_id],
    )


def record_success(
    path: Path, run: RunRecord, screening: pl.DataFrame | pa.RecordBatchReader, rejected: pl.DataFrame
) -> None:
    """Replace every earlier row of (exporterId, asOfDate, campaignId) with this run's, atomically.

    The daily run (campaignId NULL) and each campaign's runs of the same exporter and date are kept
    apart: a campaign run never replaces the daily run's rows, nor the other way round.

    `screening` may be a stream of Arrow batches (a partitioned run's parts, with every screening
    column and nextEligibleDate): DuckDB then inserts it batch by batch instead of holding every row.
    """
    screening_arrow = _screening_arrow(screening)
    with duck.connect(path) as con:
        # Rows are stored in any order (queries sort): DuckDB then writes a large insert straight
        # to the file in parallel instead of through the WAL.
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET memory_limit = ?", [duck.WRITE_MEMORY])
        create_tables(con)
        con.register("new_screening", screening_arrow)
        con.execute("BEGIN TRANSACTION")
        try:
            _replace_rows(con, run, rejected)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _screening_arrow(screening: pl.DataFrame | pa.RecordBatchReader) -> Any:
    """The screening rows as Arrow, with nextEligibleDate (null when a frame has none)."""
    if isinstance(screening, pl.DataFrame):
        if "nextEligibleDate" not in screening.columns:
            screening = screening.with_columns(nextEligibleDate=pl.lit(None, dtype=pl.Date))
        return to_arrow(screening.select(*SCREENING_COLUMNS, "nextEligibleDate"))
    return screening


def _replace_rows(con: duckdb.DuckDBPyConnection, run: RunRecord, rejected: pl.DataFrame) -> None:
    """Inside the caller's transaction: drop the earlier runs' rows of the key, insert this run's."""
    key = [run.exporterId, run.asOfDate, run.campaignId]
    con.execute(
        "DELETE FROM rejected_rows WHERE runId IN (SELECT runId FROM export_runs WHERE exporterId = ? "
        "AND asOfDate = ? AND campaignId IS NOT DISTINCT FROM ?)",
        key,
    )
    con.execute(
        "DELETE FROM screening_results WHERE exporterId = ? AND asOfDate = ? AND runId IN "
        "(SELECT runId FROM export_runs WHERE exporterId = ? AND asOfDate = ? "
        "AND campaignId IS NOT DISTINCT FROM ?)",
        [run.exporterId, run.asOfDate, *key],
    )
    _hand_deliveries_over(con, run.runId, key)
    con.execute(
        "DELETE FROM export_runs WHERE exporterId = ? AND asOfDate = ? AND campaignId IS NOT DISTINCT FROM ?",
        key,
    )
    _insert_run(con, run)
    con.execute(
        "INSERT INTO screening_results SELECT ?, ?, ?, contactId, personId, channel, canInteract, "
        "CAST(reasons AS VARCHAR[]), nextEligibleDate FROM new_screening",
        [run.runId, run.exporterId, run.asOfDate],
    )
    _insert_rejected(con, run.runId, rejected)


def _hand_deliveries_over(con: duckdb.DuckDBPyConnection, run_id: str, key: list[Any]) -> None:
    """Point the deliveries of the runs this one replaces at this run.

    Their export_runs rows are about to go: without this, a rerun leaves the ledger naming a run no
    table holds. Each delivery's campaignId and rows are taken from its own run first, so they still
    describe the bytes that were sent.
    """
    con.execute(
        "UPDATE deliveries SET campaignId = e.campaignId, rows = coalesce(deliveries.rows, e.exported) "
        "FROM export_runs AS e WHERE deliveries.runId = e.runId AND e.exporterId = ? AND e.asOfDate = ? "
        "AND e.campaignId IS NOT DISTINCT FROM ?",
        key,
    )
    con.execute(
        "UPDATE deliveries SET runId = ? WHERE runId IN (SELECT runId FROM export_runs "
        "WHERE exporterId = ? AND asOfDate = ? AND campaignId IS NOT DISTINCT FROM ?)",
        [run_id, *key],
    )


def complete_deliveries(
    con: duckdb.DuckDBPyConnection, run_id: str, sftp_setting_id: str | None = None
) -> None:
    """Fill a run's ledger rows with what the upload itself does not know: campaign, rows, setting."""
    con.execute(
        "UPDATE deliveries SET campaignId = e.campaignId, rows = coalesce(deliveries.rows, e.exported), "
        "sftpSettingId = coalesce(?, deliveries.sftpSettingId) "
        "FROM export_runs AS e WHERE deliveries.runId = e.runId AND e.runId = ?",
        [sftp_setting_id, run_id],
    )


def record_failure(path: Path, run: RunRecord, rejected: pl.DataFrame | None = None) -> None:
    """Add a failed run; earlier successful rows of the same (exporterId, asOfDate) stay as they are."""
    with duck.connect(path) as con:
        create_tables(con)
        con.execute("BEGIN TRANSACTION")
        try:
            _insert_run(con, run)
            if rejected is not None and rejected.height:
                _insert_rejected(con, run.runId, rejected)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def mark_delivered(path: Path, run_id: str, delivered_at: datetime) -> None:
    with duck.connect(path) as con:
        con.execute("UPDATE export_runs SET deliveredAt = ? WHERE runId = ?", [delivered_at, run_id])


def record_delivery_status(
    path: Path,
    run_id: str,
    status: str,
    *,
    delivered_at: datetime | None = None,
    error: str | None = None,
    sftp_setting_id: str | None = None,
) -> None:
    """Set a run's deliveryStatus and deliveryError; deliveredAt only changes when a time is given.

    The run's rows in the delivery ledger get their campaignId, rows and sftpSettingId here.
    """
    with duck.connect(path) as con:
        create_tables(con)
        con.execute(
            "UPDATE export_runs SET deliveryStatus = ?, deliveryError = ?, "
            "deliveredAt = coalesce(?, deliveredAt) WHERE runId = ?",
            [status, error, delivered_at, run_id],
        )
        complete_deliveries(con, run_id, sftp_setting_id)
