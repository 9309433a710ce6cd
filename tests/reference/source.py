"""The front half of a run, row at a time, read straight from CONTRACT.md §2, §5 and COMPLIANCE.md:
check each source row as written in a CSV file, reject the bad ones, match, fail closed per borrower,
then screen with the reference guard. Shares no code with pipelines/ (sources, schemas, config,
matching, rejection); only the table layout (pipelines.model.tables) is used to hand typed frames to the
guard.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from pipelines.model.tables import BORROWERS, CONSENTS, CONTACTS, DO_NOT_INTERACT, INTERACTIONS, SourceTables
from tests.reference.guard import Company, instant_of, screen_frames

Row = dict[str, Any]
LABELS = {"personal", "work", "home", "military"}
AFFILIATIONS = {"self", "spouse", "parent", "guardian", "representative", "attorney", "employer", "other"}
STATUSES = {"primary", "secondary", "additional", "archived"}
TYPES = {"phone", "email", "address"}
CHANNELS = {"voice", "email", "text", "mail", "chat", "fax", "gui", "document"}
DNI_CHANNELS = {"all", "voice", "email", "text", "mail", "chat"}
INTERACTION_STATUSES = {"scheduled", "inProgress", "attempted", "succeeded", "failed", "canceled"}
DETAILS = {
    "voiceSpokeWithFirstParty", "voiceSpokeWithThirdParty", "voiceLeftVoicemail", "voiceReachedVoicemail",
    "voiceNoAnswer", "voiceAnsweredNoConversation", "voiceBusy", "voiceNotInService", "voiceWrongNumber",
}  # fmt: skip
CONSENT_NAMES = {
    "electronicComms", "autodialedColl", "contactPersonWork", "contactPersonRepByAttorney",
    "contactPersonUnusualTime",
}  # fmt: skip
THEMES = {
    "all", "opsCollDebt", "opsCollLocateBorrower", "opsCollVerifyEmployment", "opsCollContactEmployerNotice",
    "opsServicingDebtValidation", "opsServicingNegativeCreditReportNotice", "opsServicingTimeBarredNotice",
    "opsServicing", "opsAccountCredentials", "agentNotification",
}  # fmt: skip


def _text(v: str | None) -> str | None:
    return v if v not in (None, "") else None


def _bool(v: str | None, default: bool) -> bool | None:
    """None: not a boolean."""
    if v in (None, ""):
        return default
    return {"true": True, "false": False, "1": True, "0": False}.get(v.strip().lower())


def _ts(v: str | None) -> datetime | None:
    return None if v in (None, "") else datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)


def _zone_ok(v: str | None) -> bool:
    return v in (None, "") or v in zoneinfo.available_timezones()


def check_contact(r: Row) -> tuple[list[str], Row]:
    bad = []
    for name, vocab in (
        ("contactType", TYPES),
        ("label", LABELS),
        ("affiliation", AFFILIATIONS),
        ("status", STATUSES),
    ):
        if _text(r.get(name)) is None or r[name] not in vocab:
            bad.append(name)
    value = _text(r.get("value"))
    # ASCII digits only: a fullwidth number or ZIP is not one any lookup knows
    if r.get("contactType") == "phone" and not (value and re.fullmatch(r"\+[1-9][0-9]{1,14}", value)):
        bad.append("value")
    if any(ch.isdigit() and ch not in "0123456789" for ch in r.get("postalCode") or ""):
        bad.append("postalCode")
    state = (r.get("state") or "").strip().upper() or None
    if state is not None and not re.fullmatch(r"[A-Z]{2}", state):
        bad.append("state")
    flags = {k: _bool(r.get(k), d) for k, d in (("valid", True), ("receiveTextMessages", False),
                                                  ("authorizedThirdParty", False))}  # fmt: skip
    bad += [k for k, v in flags.items() if v is None]
    if not _zone_ok(r.get("timezone")):
        bad.append("timezone")
    typed = {
        "id": r["id"], "personId": r["personId"], "contactType": r.get("contactType"), "label": r.get("label"),
        "affiliation": r.get("affiliation"), "status": r.get("status"), "value": value, "state": state,
        "postalCode": _text(r.get("postalCode")), "timezone": _text(r.get("timezone")),
        "createdAt": _ts(r.get("createdAt")), "archivedAt": _ts(r.get("archivedAt")), **flags,
        "powerOfAttorney": False,
    }  # fmt: skip
    return bad, typed


def check_interaction(r: Row) -> list[str]:
    bad = [k for k, vocab in (("channel", CHANNELS), ("status", INTERACTION_STATUSES)) if r[k] not in vocab]
    if r["direction"] not in ("outbound", "inbound"):
        bad.append("direction")
    if _text(r.get("statusDetails")) is not None and r["statusDetails"] not in DETAILS:
        bad.append("statusDetails")
    return bad


def check_dni(r: Row) -> list[str]:
    bad = []
    channels, themes = json.loads(r["channels"]), json.loads(r["themes"])
    if not channels or not set(channels) <= DNI_CHANNELS:
        bad.append("channels")
    if not themes or not set(themes) <= THEMES:
        bad.append("themes")
    for name in ("startDate", "endDate"):
        try:
            if _text(r.get(name)) is not None:
                date.fromisoformat(r[name])
        except ValueError:
            bad.append(name)
    if not _zone_ok(r.get("timezone")):
        bad.append("timezone")
    return bad


def reference_run(
    raw: dict[str, list[Row]],
    short: dict[str, str],
    company_config: dict[str, Any],
    exporter: dict[str, Any],
    as_of: date,
) -> tuple[dict[str, list[str]] | None, set[tuple[str, str]]]:
    """(contactId → reasons, or None when the run must fail; rejected (table, rowKey)).

    `raw`: each table's rows as written (text cells); `short`: contact ids written as rows cut short
    (with their personId), which no check can read (written after the other contacts).

    Whole-table rules: an id held by two rows of a table rejects both; a row without its borrower
    (personId, or a borrower's id) could be anyone's. A row's key is its id, else `row N` (its place
    among the table's data rows)."""
    rejected: list[tuple[str, str, str | None]] = []

    def twice(table: str) -> set[str]:
        seen = Counter(_text(r.get("id")) for r in raw[table])
        if table == "contacts":
            seen.update(list(short))  # the ids of the rows written cut short
        return {i for i, n in seen.items() if i is not None and n > 1}

    def key(r: Row, n: int) -> str:
        return _text(r.get("id")) or f"row {n + 1}"

    def owner(r: Row, column: str = "personId") -> str | None:
        return _text(r.get(column))

    borrowers = []
    repeated = twice("borrowers")
    for n, r in enumerate(raw["borrowers"]):
        if _zone_ok(r.get("timezone")) and owner(r, "id") and r["id"] not in repeated:
            borrowers.append(
                {"id": r["id"], "companyId": r["companyId"], "timezone": _text(r.get("timezone"))}
            )
        else:
            rejected.append(("borrowers", key(r, n), owner(r, "id")))
    known = {b["id"] for b in borrowers}
    contacts = []
    repeated = twice("contacts")
    for n, r in enumerate(raw["contacts"]):
        bad, typed = check_contact(r)
        if bad or r["personId"] not in known or not owner(r, "id") or r["id"] in repeated:
            rejected.append(("contacts", key(r, n), owner(r)))
        else:
            contacts.append(typed)
    for cid, pid in short.items():
        rejected.append(("contacts", cid, pid))
    interactions = []
    repeated = twice("interactions")
    for n, r in enumerate(raw["interactions"]):
        if check_interaction(r) or not owner(r) or not owner(r, "id") or r["id"] in repeated:
            rejected.append(("interactions", key(r, n), owner(r)))
        else:
            interactions.append(r | {"statusDetails": _text(r.get("statusDetails")), "startedAt": _ts(r["startedAt"]),
                                     "contactId": None, "loanId": None, "theme": None})  # fmt: skip
    dnis = []
    repeated = twice("do_not_interact")
    for n, r in enumerate(raw["do_not_interact"]):
        if check_dni(r) or not owner(r) or not owner(r, "id") or r["id"] in repeated:
            rejected.append(("do_not_interact", key(r, n), owner(r)))
        else:
            end = _text(r.get("endDate"))
            days = _text(r.get("daysOfWeek"))
            dnis.append({
                "id": r["id"], "personId": r["personId"], "caseId": None, "channels": json.loads(r["channels"]),
                "themes": json.loads(r["themes"]), "startDate": date.fromisoformat(r["startDate"]),
                "endDate": date.fromisoformat(end) if end else None,
                "daysOfWeek": json.loads(days) if days else None, "timesOfDay": None,
                "timezone": _text(r.get("timezone")), "contactLabels": None, "createdAt": None, "deletedAt": None,
            })  # fmt: skip
    consents = []
    for n, r in enumerate(raw["consents"]):
        if not owner(r):
            rejected.append(("consents", f"row {n + 1}", None))
        elif r["name"] not in CONSENT_NAMES or r["status"] not in ("consented", "revoked"):
            rejected.append(("consents", f"{r['personId']}/{r['name']}/{r['updatedAt']}", r["personId"]))
        else:
            consents.append(r | {"updatedAt": _ts(r["updatedAt"])})

    company = Company(company_config)
    noon = instant_of(company, as_of)
    population = {b["id"] for b in borrowers if b["companyId"] == company_config["id"]}
    criteria = exporter["contactMatchingCriteria"]
    matched = [
        c
        for c in contacts
        if c["personId"] in population
        and (c["createdAt"] is None or c["createdAt"] <= noon)
        and all(c[key] in values for key, values in criteria.items())
    ]
    owners = {owner for _, _, owner in rejected}
    persons = {c["personId"] for c in matched}
    blocked = persons if None in owners else {p for p in persons if p in owners}
    share = company_config.get("policy", {}).get("maxRejectedShare", 0.01)
    keys = {(t, k) for t, k, _ in rejected}
    if persons and len(blocked) / len(persons) > share:
        return None, keys
    tables = SourceTables(
        borrowers=pl.DataFrame(borrowers, schema=BORROWERS.schema, strict=False).lazy(),
        contacts=pl.DataFrame(contacts, schema=CONTACTS.schema, strict=False).lazy(),
        interactions=pl.DataFrame(interactions, schema=INTERACTIONS.schema, strict=False).lazy(),
        do_not_interact=pl.DataFrame(dnis, schema=DO_NOT_INTERACT.schema, strict=False).lazy(),
        consents=pl.DataFrame(consents, schema=CONSENTS.schema, strict=False).lazy(),
    )
    check = exporter.get("checkCanInteractData")
    if check is None:
        return {c["id"]: [] for c in matched}, keys
    frame = pl.DataFrame(matched, schema=CONTACTS.schema, strict=False)
    rows = screen_frames(frame, tables, company_config, check, as_of, set(owners))
    return {r["contactId"]: r["reasons"] for r in rows}, keys
