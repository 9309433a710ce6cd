"""Why a contact is (not) exported on an as-of date: the decision with the evidence for each reason.

`explain` reads and validates the source as a run does, takes the contact as of the instant, screens
it with the batch engine (so the answer is the run's answer) and then gathers, per reason, the
records that decided it: the rejected source rows of the borrower, the DNIs in force, the attempts
counted against each limit with their times, the conversations in the cool-down, the candidate
time zones with the local time of the instant in each, and the consent records. No contact values
(numbers, addresses, emails) are printed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from pipelines import compliance, eligibility, files, matching, schemas, sources
from pipelines.config import CheckCanInteractData, Company, Exporter
from pipelines.errors import ErrorItem, NotFoundError
from pipelines.history import contacts_at
from pipelines.rules import contact_history
from pipelines.rules.contact_history import counted_by, is_conversation
from pipelines.tables import SourceTables
from pipelines.timezones import candidate_zones


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return files.iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def explain(
    exporter: Exporter,
    company: Company,
    source: Any,
    contact_id: str,
    as_of: date,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The decision for one contact of `exporter` on `as_of` (or at the instant `at`), read from
    `source` (a source path)."""
    checked = schemas.validate_sources(sources.open_source(source), source=str(source))
    return explain_tables(exporter, company, checked.tables, checked.owned, contact_id, as_of, at)


def explain_tables(
    exporter: Exporter,
    company: Company,
    tables: SourceTables,
    owned: pl.DataFrame,
    contact_id: str,
    as_of: date,
    at: datetime | None = None,
) -> dict[str, Any]:
    instant, as_of = compliance.judged_at(company, as_of, at)
    out: dict[str, Any] = {
        "exporterId": exporter.id,
        "companyId": company.id,
        "contactId": contact_id,
        "asOfDate": as_of.isoformat(),
        "asOfInstant": files.iso_utc(instant),
    }
    own_rows = owned.filter((pl.col("tableName") == "contacts") & (pl.col("rowKey") == contact_id))
    contact = contacts_at(tables.contacts, instant).filter(pl.col("id") == contact_id).collect()
    if contact.height == 0:
        if own_rows.height:
            # never read as it is, so never matched or exported; its borrower is blocked
            return out | {
                "personId": own_rows.item(0, "personId"),
                "matched": False,
                "exported": False,
                "why": "the contact's own source row was rejected by validation",
                "rejectedRows": _rows(own_rows.drop("personId")),
            }
        exists = tables.contacts.filter(pl.col("id") == contact_id).select(pl.len()).collect().item()
        if exists:
            return out | {
                "matched": False,
                "exported": False,
                "why": "the contact was created after the instant",
            }
        raise NotFoundError("contacts", [ErrorItem("/contactId", f"no contact {contact_id} in the source")])
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
        return out | {
            "screened": False,
            "canInteract": True,
            "reasons": [],
            "exported": matched,
            "why": "the exporter has no checkCanInteractData: matched contacts are not screened",
            "rejectedRows": _rows(mine.drop("personId")),
        }
    screening = compliance.screen(
        contact.lazy(), tables, company, check, as_of, rejected=owned, at=instant
    ).collect()
    screening = eligibility.next_eligible(
        screening, contact.lazy(), tables, company, check, as_of, at=instant
    )
    row = screening.row(0, named=True)
    reasons: list[str] = list(row["reasons"])
    out |= {
        "screened": True,
        "channel": row["channel"],
        "theme": check.theme,
        "canInteract": row["canInteract"],
        "reasons": reasons,
        "exported": matched and row["canInteract"],
        "nextEligibleDate": _iso(row["nextEligibleDate"]),
    }
    evidence = _evidence(contact, tables, company, check, as_of, instant, str(row["channel"]), mine)
    out["evidence"] = {code: evidence[code] for code in reasons if code in evidence}
    out["candidateZones"] = evidence["zones"]
    return out


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in r.items()} for r in frame.to_dicts()]


def _evidence(
    contact: pl.DataFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
    channel: str,
    rejected: pl.DataFrame,
) -> dict[str, Any]:
    policy = company.policy
    zone = ZoneInfo(company.timezone)
    person = str(contact.item(0, "personId"))
    c = contact.row(0, named=True)
    persons = pl.LazyFrame({"personId": [person]})
    start, end = policy.contactHours.start_time, policy.contactHours.end_time

    places = candidate_zones(
        contact.lazy(), contacts_at(tables.contacts, instant), tables.borrowers
    ).collect()
    zone_names: list[str] = places.item(0, "zones").to_list() if places.height else []
    states: list[str] = places.item(0, "states").to_list() if places.height else []
    zones = []
    for name in zone_names:
        local = instant.astimezone(ZoneInfo(name))
        zones.append(
            {
                "zone": name,
                "localTime": local.isoformat(timespec="minutes"),
                "outsideContactHours": local.time() < start or local.time() > end,
            }
        )

    interactions = (
        compliance.interactions_in_window(tables.interactions, company, as_of, instant)
        .filter(pl.col("personId") == person)
        .sort("startedAt", "id")
        .collect()
    )
    limits: list[dict[str, Any]] = []
    for lim in contact_history.limits(policy, as_of, zone):
        if channel not in lim.channels or (lim.state is not None and lim.state not in states):
            continue
        counted = interactions.filter(counted_by(lim))
        limits.append(
            {
                "channels": list(lim.channels),
                "maxAttempts": lim.max_attempts,
                "windowDays": (as_of - lim.since.astimezone(zone).date()).days + 1,
                "state": lim.state,
                "counted": counted.height,
                "attempts": _rows(counted.select("id", "channel", "statusDetails", "startedAt")),
            }
        )
    since = contact_history.conversation_since(policy, as_of, zone)
    talks = interactions.filter(is_conversation(since)) if since is not None else interactions.clear()

    dnis = compliance._dnis_in_scope(tables, persons, company, check, instant).collect()
    facts = compliance.zone_facts(instant, policy, dnis.get_column("zone").to_list())
    framed = contact.select("id", "personId", "label").with_columns(pl.lit(channel).alias("channel"))
    active = [
        dni_id
        for dni_id in dnis.get_column("id").to_list()
        if compliance._dni_blocked(dnis.filter(pl.col("id") == dni_id).lazy(), facts, framed.lazy())
        .collect()
        .height
    ]

    consents = (
        tables.consents.filter(
            (pl.col("personId") == person)
            & (pl.col("updatedAt") <= instant)
            & pl.col("name").is_in(["autodialedColl", "electronicComms"])
        )
        .sort("name", "updatedAt")
        .collect()
    )

    def consent_rows(name: str) -> list[dict[str, Any]]:
        return _rows(consents.filter(pl.col("name") == name).select("name", "status", "updatedAt"))

    hours = {"start": policy.contactHours.start, "end": policy.contactHours.end}
    return {
        "zones": zones,
        "AUTODIAL_CONSENT_MISSING": {
            "isAutodialed": check.isAutodialed,
            "consents": consent_rows("autodialedColl"),
        },
        "CHANNEL_MISMATCH": {"channel": channel, "contactType": c["contactType"]},
        "CONTACT_ARCHIVED": {"status": c["status"], "archivedAt": _iso(c.get("archivedAt"))},
        "CONTACT_INVALID": {"valid": c["valid"]},
        "DO_NOT_INTERACT": {"dniIds": active},
        "ELECTRONIC_CONSENT_REVOKED": {"consents": consent_rows("electronicComms")},
        "FREQUENCY_LIMIT": {
            "limits": [lim for lim in limits if lim["counted"] >= lim["maxAttempts"]],
            "states": states,
        },
        "OUTSIDE_CONTACT_HOURS": {"contactHours": hours, "zones": zones},
        "RECENT_CONVERSATION": {
            "cooldownDays": policy.conversationCooldownDays,
            "conversations": _rows(talks.select("id", "direction", "startedAt")),
        },
        "SOURCE_ROW_REJECTED": {"rejectedRows": _rows(rejected.drop("personId"))},
        "TEXT_OPT_IN_MISSING": {"receiveTextMessages": c["receiveTextMessages"]},
        "THIRD_PARTY_NOT_AUTHORIZED": {
            "affiliation": c["affiliation"],
            "authorizedThirdParty": c["authorizedThirdParty"],
            "powerOfAttorney": c["powerOfAttorney"],
        },
        "TIMEZONE_UNKNOWN": {"zones": [], "unknownTimezone": policy.unknownTimezone},
    }


__all__ = ["explain", "explain_tables"]
