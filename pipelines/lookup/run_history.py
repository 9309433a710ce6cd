"""Recorded runs, read back from the warehouse for people: a list, one run in full, and what changed
between two runs (`contact-exporter runs list | show | diff`). Read-only; values are bound."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Final

import duckdb

from pipelines.io import duck
from pipelines.model.errors import NotFoundError
from pipelines.rules.base import iso

LISTED: Final = (
    "runId", "exporterId", "campaignId", "asOfDate", "status", "matched", "screenedOut", "exported",
    "deliveryStatus", "startedAt", "finishedAt",
)  # fmt: skip
SHOWN_CONTACTS: Final = 50  # contacts listed per kind of change in a diff (the counts are whole)


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description or []]
    return [{n: iso(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _open(warehouse: Path) -> Any:
    if not warehouse.is_file():
        raise NotFoundError(
            f"no warehouse at {warehouse}: no run is recorded there yet (run an exporter first)"
        )
    return duck.connect(warehouse, read_only=True)


def list_runs(
    warehouse: Path, exporter_id: str | None = None, since: date | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recorded runs, newest first, with their counts, delivery and seconds taken."""
    columns = ", ".join(f'"{c}"' for c in LISTED)
    # column names are the constants above; the filters are bound
    sql = (
        f"SELECT {columns}, round(epoch(finishedAt) - epoch(startedAt), 2) AS seconds FROM export_runs "  # noqa: S608
        "WHERE (? IS NULL OR exporterId = ?) AND (? IS NULL OR asOfDate >= ?) "
        "ORDER BY startedAt DESC NULLS LAST, runId DESC LIMIT ?"
    )
    with _open(warehouse) as con:
        return _records(con, sql, [exporter_id, exporter_id, since, since, limit])


def show_run(warehouse: Path, run_id: str) -> dict[str, Any]:
    """One run: its record, contacts blocked by reason (largest first), rejected rows by table and
    its deliveries."""
    with _open(warehouse) as con:
        found = _records(con, "SELECT * FROM export_runs WHERE runId = ?", [run_id])
        if not found:
            raise NotFoundError(
                f"run {run_id!r} not found: it is not recorded in {warehouse} (see runs list)"
            )
        reasons = _records(
            con,
            "SELECT reason, count(*) AS contacts FROM screening_results, unnest(reasons) AS r(reason) "
            "WHERE runId = ? GROUP BY reason ORDER BY contacts DESC, reason",
            [run_id],
        )
        rejected = _records(
            con,
            "SELECT tableName, count(*) AS rows FROM rejected_rows WHERE runId = ? GROUP BY tableName ORDER BY rows DESC",
            [run_id],
        )
        delivered = _records(con, "SELECT * FROM deliveries WHERE runId = ? ORDER BY deliveredAt", [run_id]) if (
            "deliveries" in {t[0] for t in con.execute("SHOW TABLES").fetchall()}
        ) else []  # fmt: skip
    return found[0] | {"blockedByReason": reasons, "rejectedByTable": rejected, "deliveries": delivered}


_DIFF = """
WITH a AS (SELECT contactId, canInteract, reasons FROM screening_results WHERE runId = ?),
     b AS (SELECT contactId, canInteract, reasons FROM screening_results WHERE runId = ?)
SELECT coalesce(a.contactId, b.contactId) AS contactId,
       CASE WHEN a.contactId IS NULL THEN 'onlyInB'
            WHEN b.contactId IS NULL THEN 'onlyInA'
            WHEN a.canInteract AND NOT b.canInteract THEN 'newlyBlocked'
            WHEN NOT a.canInteract AND b.canInteract THEN 'newlyAllowed'
            ELSE 'changedReasons' END AS change,
       a.reasons AS reasonsA, b.reasons AS reasonsB
FROM a FULL OUTER JOIN b USING (contactId)
WHERE a.contactId IS NULL OR b.contactId IS NULL OR a.canInteract <> b.canInteract OR a.reasons <> b.reasons
ORDER BY change, contactId
"""


def diff_runs(warehouse: Path, run_a: str, run_b: str) -> dict[str, Any]:
    """Which contacts became blocked or eligible from run A to run B, and why: per kind of change its
    count, the reasons behind it (largest first) and its first contacts."""
    for run_id in (run_a, run_b):
        show_run(warehouse, run_id)  # both must exist: a clear error instead of an empty diff
    with _open(warehouse) as con:
        rows = _records(con, _DIFF, [run_a, run_b])
    kinds: dict[str, dict[str, Any]] = {}
    for row in rows:
        kind = kinds.setdefault(row["change"], {"contacts": 0, "reasons": {}, "first": []})
        kind["contacts"] += 1
        why = row["reasonsB"] if row["change"] != "newlyAllowed" else row["reasonsA"]
        for reason in why or []:
            kind["reasons"][reason] = kind["reasons"].get(reason, 0) + 1
        if len(kind["first"]) < SHOWN_CONTACTS:
            kind["first"].append({k: row[k] for k in ("contactId", "reasonsA", "reasonsB")})
    for kind in kinds.values():
        kind["reasons"] = dict(sorted(kind["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return {"runA": run_a, "runB": run_b, "changes": kinds}


__all__ = ["diff_runs", "list_runs", "show_run"]
