"""The delivery ledger (CONTRACT.md §7): the `deliveries` table in the warehouse, one row per delivery
of (exporterId, asOfDate, sha256), which makes delivery idempotent. A row is written after the
manifest is in place, the last remote step."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines.delivery.delivery_journal import Journal
from pipelines.io import duck
from pipelines.io.warehouse import DELIVERIES_DDL
from pipelines.model.errors import TransientError


def _epoch_to_utc(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


@contextmanager
def _ledger(warehouse: Path, action: str) -> Iterator[duckdb.DuckDBPyConnection]:
    # Opened per call and closed at once: other steps write other tables of the same file.
    try:
        with duck.connect(warehouse) as con:
            con.execute(DELIVERIES_DDL)
            yield con
    except duckdb.Error as exc:
        raise TransientError(
            f"cannot {action} the delivery ledger (table deliveries) in {warehouse}: {exc}; "
            "check that no other process holds the DuckDB file open for writing"
        ) from exc


def last_delivery(
    warehouse: Path, exporter_id: str, as_of: date, sha256: str, file_name: str | None = None
) -> datetime | None:
    """When these exact bytes (exporter, as-of date, sha256) were last delivered, in UTC, or None.

    With `file_name`, only deliveries under that name (or its `.pgp`) count: a campaign run's file,
    named after its campaign, is not "already delivered" by the daily file of the same bytes."""
    if not warehouse.exists():
        return None
    names = [file_name, f"{file_name}.pgp"] if file_name else [None, None]
    with _ledger(warehouse, "read") as con:
        row = con.execute(
            "SELECT epoch_us(max(deliveredAt)) FROM deliveries "
            "WHERE exporterId = ? AND asOfDate = ? AND sha256 = ? "
            "AND (CAST(? AS VARCHAR) IS NULL OR fileName IN (?, ?))",
            [exporter_id, as_of, sha256, names[0], *names],
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return _epoch_to_utc(int(row[0]))


def already_delivered(warehouse: Path, exporter_id: str, as_of: date, sha256: str) -> bool:
    """True when the ledger holds a delivery of these bytes for (exporter, as-of date)."""
    return last_delivery(warehouse, exporter_id, as_of, sha256) is not None


def record_delivery(
    warehouse: Path,
    *,
    exporter_id: str,
    as_of: date,
    sha256: str,
    file_name: str,
    remote_path: str,
    host: str,
    delivered_at: datetime,
    size: int,
    run_id: str | None,
) -> None:
    """Append one row to the ledger. A redelivery appends another row: the table is the history."""
    if delivered_at.tzinfo is None:
        raise ValueError("delivered_at must be timezone-aware (UTC)")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with _ledger(warehouse, "record a delivery in") as con:
        con.execute(
            "INSERT INTO deliveries (exporterId, asOfDate, sha256, fileName, remotePath, host, "
            "deliveredAt, bytes, runId) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                exporter_id,
                as_of,
                sha256,
                file_name,
                remote_path,
                host,
                delivered_at.astimezone(UTC),
                size,
                run_id,
            ],
        )


def record_completed(journal: Journal, warehouse: Path, run_id: str | None) -> datetime:
    """Write the ledger row once (a crash after the insert finds it: `recorded_at`), naming `run_id`:
    the run completing the delivery, which replaced the rows of the run that started it."""
    as_of = date.fromisoformat(journal.asOfDate)
    remote_path = posixpath.join(journal.remoteDir, journal.dataName)
    earlier = recorded_at(warehouse, journal)
    delivered_at = earlier or datetime.now(UTC)
    if earlier is None:
        try:
            record_delivery(
                warehouse,
                exporter_id=journal.exporterId,
                as_of=as_of,
                sha256=journal.localSha256,
                file_name=journal.dataName,
                remote_path=remote_path,
                host=journal.host,
                delivered_at=delivered_at,
                size=journal.bytes,
                run_id=run_id,
            )
        except TransientError as exc:
            raise TransientError(
                f"{journal.dataName} was delivered to {journal.host}:{remote_path} but not recorded: {exc}. "
                "A retry records it without sending it again"
            ) from exc
    journal.mark("recorded")
    return delivered_at


def recorded_at(warehouse: Path, journal: Journal) -> datetime | None:
    """When the ledger got this record's row (written after its intent), or None.

    Found by what was sent and where, not by runId: the next run's record step hands the rows of the
    run it replaces over to itself (pipelines.io.warehouse), so a row written just before a crash carries
    the rerun's runId by the time the rerun completes the record."""
    if not warehouse.exists():
        return None
    with _ledger(warehouse, "read") as con:
        row = con.execute(
            "SELECT epoch_us(max(deliveredAt)) FROM deliveries WHERE exporterId = ? AND asOfDate = ? "
            "AND sha256 = ? AND fileName = ? AND host = ? AND remotePath = ? AND deliveredAt >= ?",
            [
                journal.exporterId,
                date.fromisoformat(journal.asOfDate),
                journal.localSha256,
                journal.dataName,
                journal.host,
                posixpath.join(journal.remoteDir, journal.dataName),
                datetime.fromisoformat(journal.steps["intent"]),
            ],
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return _epoch_to_utc(int(row[0]))
