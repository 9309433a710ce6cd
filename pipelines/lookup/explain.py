"""Why a contact is (not) exported on an as-of date: the decision with the evidence for each reason.

`explain` reads the rows of the contact's borrower as a check does (and every row that could concern
it: rows without a borrower, rows sharing an id), validates them as a run does, takes the contact as
of the instant, screens it with the batch engine (so the answer is the run's answer) and then
gathers, per reason, the records that decided it: the rejected source rows of the borrower, the
DNIs in force, the attempts counted against each limit with their times, the conversations in the
cool-down, the candidate time zones with the local time of the instant in each, and the consent
records. No contact values (numbers, addresses, emails) are printed.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.io import duck, files, sources
from pipelines.lookup.checks import read_for_contacts
from pipelines.model.config import CheckCanInteractData, Company, Exporter, Policy
from pipelines.model.errors import NotFoundError
from pipelines.model.tables import SourceTables
from pipelines.rules import compliance, contact_history, eligibility, matching, registry, schemas
from pipelines.rules.base import Seen, iso, rows
from pipelines.rules.do_not_interact import dni_blocked, dnis_in_scope
from pipelines.rules.history import contacts_at
from pipelines.rules.local_time import zone_facts
from pipelines.rules.timezones import candidate_zones


def explain(
    exporter: Exporter,
    company: Company,
    source: Any,
    contact_id: str,
    as_of: date,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The decision for one contact of `exporter` on `as_of` (or at the instant `at`), read from
    `source` (a path or URI): only the rows of its borrower and those that could concern it, as a
    check reads them (`checks.read_for_contacts`, every column: the evidence shows them)."""
    read = read_for_contacts(source, [contact_id])
    checked = schemas.validate_sources(read, source=str(sources.ref_of(source)))
    return explain_tables(exporter, company, checked.tables, checked.owned, contact_id, as_of, at)


def recorded_decision(
    warehouse: Path, exporter_id: str, as_of: date, contact_id: str
) -> dict[str, Any] | None:
    """What the latest succeeded daily run of (exporter, as-of date) recorded for the contact:
    runId, matched, and when matched its channel, canInteract, reasons and nextEligibleDate. None
    when no such run is recorded (or no warehouse exists)."""
    if not Path(warehouse).is_file():
        return None
    with duck.connect(Path(warehouse), read_only=True) as con:
        if "export_runs" not in sources.duckdb_tables(con):
            return None
        runs = con.execute(
            "SELECT runId, finishedAt FROM export_runs WHERE exporterId = ? AND asOfDate = ? "
            "AND campaignId IS NULL AND status = 'succeeded' ORDER BY finishedAt DESC LIMIT 1",
            [exporter_id, as_of],
        ).fetchall()
        if not runs:
            return None
        run_id, finished = runs[0]
        found = con.execute(
            "SELECT channel, canInteract, reasons, nextEligibleDate FROM screening_results "
            "WHERE runId = ? AND contactId = ?",
            [run_id, contact_id],
        ).fetchall()
    out: dict[str, Any] = {"runId": run_id, "finishedAt": iso(finished), "matched": bool(found)}
    if found:
        channel, ok, reasons, next_date = found[0]
        out |= {
            "channel": channel,
            "canInteract": ok,
            "reasons": list(reasons),
            "nextEligibleDate": iso(next_date),
        }
    return out


def explain_recorded(
    exporter: Exporter,
    company: Company,
    source: Any,
    warehouse: Path,
    contact_id: str,
    as_of: date,
) -> dict[str, Any]:
    """The decision the day's run recorded for the contact (what was sent), with the evidence read
    from the source now, and whether the source, evaluated now, would decide otherwise."""
    recorded = recorded_decision(warehouse, exporter.id, as_of, contact_id)
    if recorded is None:
        raise NotFoundError(
            f"no succeeded run of {exporter.id} on {as_of.isoformat()} is recorded in {warehouse}; "
            "run it first, or add --recompute to evaluate the source now"
        )
    now = explain(exporter, company, source, contact_id, as_of)
    decided = ("matched", "canInteract", "reasons", "nextEligibleDate")
    changed = any(now.get(k) != recorded.get(k) for k in decided if k in recorded)
    out = now | {k: recorded[k] for k in decided if k in recorded} | {"recorded": recorded}
    out["exported"] = bool(recorded["matched"] and recorded.get("canInteract"))
    out["sourceChanged"] = changed
    if changed:
        out["now"] = {k: now.get(k) for k in decided}
        out["note"] = (
            f"the source has changed since run {recorded['runId']}: evaluated now the decision would differ "
            "(see `now`); the evidence shown is the source as it is now"
        )
    return out


def explain_tables(
    exporter: Exporter,
    company: Company,
    tables: SourceTables,
    owned: pl.DataFrame,
    contact_id: str,
    as_of: date,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One contact's decision from these tables, with the evidence of each reason (`owned`: the
    rejected source rows with their borrower)."""
    instant, as_of = compliance.judged_at(company, as_of, at)
    out: dict[str, Any] = {
        "exporterId": exporter.id,
        "companyId": company.id,
        "contactId": contact_id,
        "asOfDate": as_of.isoformat(),
        "asOfInstant": files.iso_utc(instant),
    }
    contact = contacts_at(tables.contacts, instant).filter(pl.col("id") == contact_id).collect()
    if contact.height == 0:
        return out | _not_readable(tables, owned, contact_id)
    person = str(contact.item(0, "personId"))
    population = matching.company_population(tables.borrowers, company.id)
    matched = (
        matching.match_contacts(contact.lazy(), population, exporter.contactMatchingCriteria).collect().height
        == 1
    )
    # the borrower's rejected rows, and any that names no borrower (it could be theirs)
    mine = owned.filter((pl.col("personId") == person).fill_null(True))
    out |= {"personId": person, "matched": matched}
    check = exporter.checkCanInteractData
    if check is None:
        return out | _unscreened(mine, matched)
    return out | _screened(contact, tables, company, check, as_of, instant, owned, mine, matched)


def _unscreened(mine: pl.DataFrame, matched: bool) -> dict[str, Any]:
    return {
        "screened": False,
        "canInteract": True,
        "reasons": [],
        "exported": matched,
        "why": "the exporter has no checkCanInteractData: matched contacts are not screened",
        "rejectedRows": rows(mine.drop("personId")),
    }


def _not_readable(tables: SourceTables, owned: pl.DataFrame, contact_id: str) -> dict[str, Any]:
    """Why a contact absent at the instant was not decided: its row was rejected, or it came later."""
    own_rows = owned.filter((pl.col("tableName") == "contacts") & (pl.col("rowKey") == contact_id))
    if own_rows.height:
        # never read as it is, so never matched or exported; its borrower is blocked
        return {
            "personId": own_rows.item(0, "personId"),
            "matched": False,
            "exported": False,
            "why": "the contact's own source row was rejected by validation",
            "rejectedRows": rows(own_rows.drop("personId")),
        }
    exists = tables.contacts.filter(pl.col("id") == contact_id).select(pl.len()).collect().item()
    if exists:
        return {"matched": False, "exported": False, "why": "the contact was created after the instant"}
    raise NotFoundError(f"contact {contact_id!r} not found: no such contact in the source")


def _screened(
    contact: pl.DataFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
    owned: pl.DataFrame,
    mine: pl.DataFrame,
    matched: bool,
) -> dict[str, Any]:
    """The screen's answer for the contact, its next eligible date and each reason's evidence."""
    screening = compliance.screen(
        contact.lazy(), tables, company, check, as_of, rejected=owned, at=instant
    ).collect()
    screening = eligibility.next_eligible(
        screening, contact.lazy(), tables, company, check, as_of, at=instant
    )
    row = screening.row(0, named=True)
    reasons: list[str] = list(row["reasons"])
    seen = _evidence(contact, tables, company, check, as_of, instant, str(row["channel"]), mine)
    return {
        "screened": True,
        "channel": row["channel"],
        "theme": check.theme,
        "canInteract": row["canInteract"],
        "reasons": reasons,
        "exported": matched and row["canInteract"],
        "nextEligibleDate": iso(row["nextEligibleDate"]),
        "evidence": registry.evidence(seen, reasons),
        "candidateZones": seen.zones,
    }


def _evidence(
    contact: pl.DataFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
    channel: str,
    rejected: pl.DataFrame,
) -> Seen:
    """The rows each rule's evidence is read from, for one contact at the instant."""
    policy = company.policy
    zone = ZoneInfo(company.timezone)
    places = candidate_zones(
        contact.lazy(), contacts_at(tables.contacts, instant), tables.borrowers
    ).collect()
    interactions, consents = _history(tables, company, as_of, instant, str(contact.item(0, "personId")))
    return Seen(
        contact=contact.row(0, named=True),
        channel=channel,
        check=check,
        policy=policy,
        as_of=as_of,
        zone=zone,
        zones=_zones(places.item(0, "zones").to_list() if places.height else [], policy, instant),
        states=places.item(0, "states").to_list() if places.height else [],
        interactions=interactions,
        limits=tuple(contact_history.limits(policy, as_of, zone)),
        conversation_since=contact_history.conversation_since(policy, as_of, zone),
        dni_ids=_active_dnis(contact, tables, company, check, instant, channel),
        consents=consents,
        rejected=rejected,
    )


def _history(
    tables: SourceTables, company: Company, as_of: date, instant: datetime, person: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The borrower's interactions any rule can count at `as_of`, and its consents known at the instant."""
    interactions = (
        compliance.interactions_in_window(tables.interactions, company, as_of, instant)
        .filter(pl.col("personId") == person)
        .sort("startedAt", "id")
        .collect()
    )
    consents = (
        tables.consents.filter((pl.col("personId") == person) & (pl.col("updatedAt") <= instant))
        .sort("name", "updatedAt")
        .collect()
    )
    return interactions, consents


def _zones(names: list[str], policy: Policy, instant: datetime) -> list[dict[str, Any]]:
    """Each candidate zone with the instant's local time there and whether it is outside hours."""
    start, end = policy.contactHours.start_time, policy.contactHours.end_time
    zones = []
    for name in names:
        local = instant.astimezone(ZoneInfo(name))
        zones.append(
            {"zone": name, "localTime": local.isoformat(timespec="minutes"),
             "outsideContactHours": local.time() < start or local.time() > end}
        )  # fmt: skip
    return zones


def _active_dnis(
    contact: pl.DataFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    instant: datetime,
    channel: str,
) -> list[str]:
    """The ids of the borrower's DNIs that block this contact at the instant, each judged alone."""
    persons = contact.lazy().select("personId")
    dnis = dnis_in_scope(tables, persons, company, check, instant).collect()
    facts = zone_facts(instant, company.policy, dnis.get_column("zone").to_list())
    framed = contact.select("id", "personId", "label").with_columns(pl.lit(channel).alias("channel")).lazy()
    ids: list[str] = dnis.get_column("id").to_list()
    return [
        i for i in ids if dni_blocked(dnis.filter(pl.col("id") == i).lazy(), facts, framed).collect().height
    ]


__all__ = ["explain", "explain_recorded", "explain_tables", "recorded_decision"]
