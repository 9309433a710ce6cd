"""Small worlds for the Compliance Guard tests, and a runner that checks engine and reference agree."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.model.config import CheckCanInteractData, Company
from pipelines.model.tables import (
    BORROWERS,
    CONSENTS,
    CONTACTS,
    DO_NOT_INTERACT,
    INTERACTIONS,
    SourceTables,
    TableSpec,
)
from pipelines.rules.compliance import screen
from pipelines.rules.eligibility import next_eligible
from pipelines.rules.schemas import OWNED_SCHEMA
from tests.reference.guard import next_eligible_frames, screen_frames

Row = dict[str, Any]


def frame(spec: TableSpec, rows: list[Row]) -> pl.DataFrame:
    """Rows (missing keys null, booleans at their defaults) with the spec's exact dtypes."""
    unknown = {k for r in rows for k in r} - set(spec.names)
    assert not unknown, f"{spec.name}: unknown columns {unknown}"
    full = [{c.name: r.get(c.name, c.default) for c in spec.columns} for r in rows]
    return pl.DataFrame(full, schema=spec.schema)


def world(
    borrowers: list[Row] | None = None,
    contacts: list[Row] | None = None,
    interactions: list[Row] | None = None,
    dnis: list[Row] | None = None,
    consents: list[Row] | None = None,
) -> SourceTables:
    return SourceTables(
        borrowers=frame(BORROWERS, borrowers or []).lazy(),
        contacts=frame(CONTACTS, contacts or []).lazy(),
        interactions=frame(INTERACTIONS, interactions or []).lazy(),
        do_not_interact=frame(DO_NOT_INTERACT, dnis or []).lazy(),
        consents=frame(CONSENTS, consents or []).lazy(),
    )


def borrower(pid: str = "B1", tz: str | None = None) -> Row:
    return {"id": pid, "companyId": "CP-T", "timezone": tz}


def phone(cid: str, number: str | None, pid: str = "B1", **extra: Any) -> Row:
    row = {
        "id": cid,
        "personId": pid,
        "contactType": "phone",
        "label": "personal",
        "affiliation": "self",
        "status": "primary",
        "value": number,
    }
    return row | extra


def email(cid: str, pid: str = "B1", **extra: Any) -> Row:
    row = {
        "id": cid,
        "personId": pid,
        "contactType": "email",
        "label": "personal",
        "affiliation": "self",
        "status": "primary",
        "value": f"{cid.lower()}@example.com",
    }
    return row | extra


def address(cid: str, postal: str | None, state: str | None, pid: str = "B1", **extra: Any) -> Row:
    row = {
        "id": cid,
        "personId": pid,
        "contactType": "address",
        "label": "home",
        "affiliation": "self",
        "status": "primary",
        "postalCode": postal,
        "state": state,
        "country": "US",
    }
    return row | extra


def call(
    iid: str,
    started: datetime,
    pid: str = "B1",
    details: str | None = "voiceNoAnswer",
    status: str = "attempted",
    channel: str = "voice",
    direction: str = "outbound",
) -> Row:
    return {
        "id": iid,
        "personId": pid,
        "channel": channel,
        "direction": direction,
        "status": status,
        "statusDetails": details,
        "startedAt": started,
    }


def at(zone: str, y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    """A wall-clock time in `zone`, as an aware UTC datetime."""
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def company(tz: str = "America/New_York", **policy: Any) -> Company:
    return Company.model_validate({"id": "CP-T", "timezone": tz, "policy": policy})


def check(
    theme: str = "opsCollDebt", channel: str | None = None, autodialed: bool = False
) -> CheckCanInteractData:
    return CheckCanInteractData.model_validate(
        {"theme": theme, "channel": channel, "isAutodialed": autodialed}
    )


def engine_rows(
    tables: SourceTables,
    co: Company,
    chk: CheckCanInteractData,
    as_of: date,
    matched: pl.LazyFrame | None = None,
    rejected: list[str | None] | None = None,
    at: datetime | None = None,
) -> list[Row]:
    owned = None
    if rejected is not None:
        owned = pl.DataFrame(
            {
                "tableName": ["contacts"] * len(rejected),
                "rowKey": [f"row {i}" for i in range(len(rejected))],
                "checks": [["label_in_vocabulary"]] * len(rejected),
                "personId": rejected,
            },
            schema=OWNED_SCHEMA,
        )
    chosen = tables.contacts if matched is None else matched
    result = screen(chosen, tables, co, chk, as_of, rejected=owned, at=at).collect()
    return result.to_dicts()


def screen_both(
    tables: SourceTables,
    co: Company,
    chk: CheckCanInteractData,
    as_of: date,
    matched: pl.LazyFrame | None = None,
    rejected: list[str | None] | None = None,
    at: datetime | None = None,
) -> dict[str, list[str]]:
    """Screen with the engine and the reference; assert they agree; contactId → reasons.
    `rejected`: the borrowers (personId, None for none) of rejected source rows; `at`: an instant
    to judge at instead of the as-of date's noon."""
    chosen = tables.contacts if matched is None else matched
    fast = engine_rows(tables, co, chk, as_of, chosen, rejected, at)
    slow = screen_frames(chosen, tables, co, chk, as_of, set(rejected or []), at)
    assert fast == slow
    for row in fast:
        assert row["canInteract"] == (row["reasons"] == [])
    return {r["contactId"]: r["reasons"] for r in fast}


def reasons_of(
    tables: SourceTables, co: Company, chk: CheckCanInteractData, as_of: date, contact_id: str = "C1"
) -> list[str]:
    return screen_both(tables, co, chk, as_of)[contact_id]


def today(y: int, m: int, d: int) -> date:
    return date(y, m, d)


def eligible_both(
    tables: SourceTables,
    co: Company,
    chk: CheckCanInteractData,
    as_of: date,
    matched: pl.LazyFrame | None = None,
    rejected: list[str | None] | None = None,
    at: datetime | None = None,
) -> dict[str, date | None]:
    """nextEligibleDate by the engine and by the reference's day-by-day search; assert they agree."""
    chosen = tables.contacts if matched is None else matched
    owned = None
    if rejected is not None:
        owned = pl.DataFrame(
            {
                "tableName": ["contacts"] * len(rejected),
                "rowKey": [f"row {i}" for i in range(len(rejected))],
                "checks": [["label_in_vocabulary"]] * len(rejected),
                "personId": rejected,
            },
            schema=OWNED_SCHEMA,
        )
    screening = screen(chosen, tables, co, chk, as_of, rejected=owned, at=at).collect()
    fast = next_eligible(screening, chosen, tables, co, chk, as_of, at=at)
    got = dict(zip(fast.get_column("contactId"), fast.get_column("nextEligibleDate"), strict=True))
    slow = next_eligible_frames(chosen, tables, co, chk, as_of, set(rejected or []), at)
    assert got == slow
    return got
