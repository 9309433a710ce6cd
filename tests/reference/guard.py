"""The Compliance Guard, one contact at a time, read straight from COMPLIANCE.md.

Deliberately naive: plain dicts, zoneinfo, one loop per rule. It shares no code with
pipelines/rules/compliance.py, pipelines/rules/timezones.py or pipelines/model/config.py (it reads the company's
policy itself, defaults included); only the lookup packages are the same.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import polars as pl
import us
import zipcodes
from phonenumbers.timezone import time_zones_for_number

from pipelines.model.tables import SourceTables

Row = dict[str, Any]

# Vocabulary as COMPLIANCE.md states it.
VOICE_ATTEMPT_DETAILS = {
    "voiceSpokeWithFirstParty",
    "voiceSpokeWithThirdParty",
    "voiceLeftVoicemail",
    "voiceReachedVoicemail",
    "voiceNoAnswer",
    "voiceAnsweredNoConversation",
}
ATTEMPT_STATUSES = {"attempted", "succeeded", "inProgress"}
DEFAULT_CHANNEL = {"phone": "voice", "email": "email", "address": "mail"}
FITS = {"voice": "phone", "text": "phone", "email": "email", "mail": "address"}


DEFAULT_LIMITS = [{"channels": ["voice"], "maxAttempts": 7, "windowDays": 7}]
DEFAULT_STATE_RULES = {
    "MA": {"frequencyLimits": [{"channels": ["voice", "text"], "maxAttempts": 2, "windowDays": 7}]}
}


class Company:
    """A company config as CONTRACT.md §2 writes it (a dict, or a config object's given fields)."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raw = raw.model_dump(exclude_unset=True)
        policy = raw.get("policy") or {}
        hours = policy.get("contactHours") or {}
        self.timezone: str = raw["timezone"]
        self.start = time.fromisoformat(hours.get("start", "08:00"))
        self.end = time.fromisoformat(hours.get("end", "21:00"))
        self.limits: list[Row] = policy.get("frequencyLimits", DEFAULT_LIMITS)
        self.cooldown: int = policy.get("conversationCooldownDays", 7)
        self.state_rules: dict[str, Row] = policy.get("stateRules", DEFAULT_STATE_RULES)
        self.unknown_timezone: str = policy.get("unknownTimezone", "block")
        self.max_rejected_share: float = policy.get("maxRejectedShare", 0.01)


class Check:
    """checkCanInteractData as CONTRACT.md §3 writes it."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raw = raw.model_dump(exclude_unset=True)
        self.theme: str = raw["theme"]
        self.isAutodialed: bool = raw.get("isAutodialed", False)
        self.channel: str | None = raw.get("channel")


def instant_of(company: Company, as_of: date) -> datetime:
    return datetime.combine(as_of, time(12), tzinfo=ZoneInfo(company.timezone))


def channel_of(contact: Row, check: Check) -> str:
    return check.channel or DEFAULT_CHANNEL[contact["contactType"]]


def exists_at(contact: Row, noon: datetime) -> bool:
    created = contact.get("createdAt")
    return created is None or created <= noon


def archived_at(contact: Row, noon: datetime) -> bool:
    """COMPLIANCE.md "Point in time": archived later counts as not archived; archivedAt at or
    before the instant is archived."""
    when = contact.get("archivedAt")
    if when is None:
        return bool(contact["status"] == "archived")
    return bool(when <= noon)


# ---------------------------------------------------------------- where is the borrower?


@functools.cache
def _iana() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def _zips() -> dict[str, Row]:
    return {r["zip_code"]: r for r in zipcodes.list_all()}


def _state_zones(state: str) -> set[str]:
    found = us.states.lookup(state, field="abbr")
    return set(found.time_zones) & _iana() if found else set()


def _phone_zones(value: str) -> set[str]:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return set()
    return {z for z in time_zones_for_number(number) if z != "Etc/Unknown"} & _iana()


def places(
    contact: Row, borrower: Row | None, contacts_of_borrower: list[Row], noon: datetime
) -> tuple[set[str], set[str]]:
    """(candidate zones, states of the addresses used)."""
    zones: set[str] = set()
    states: set[str] = set()
    if borrower and borrower.get("timezone"):
        zones.add(borrower["timezone"])
    if contact.get("timezone"):
        zones.add(contact["timezone"])
    for c in contacts_of_borrower:
        if not exists_at(c, noon) or archived_at(c, noon):
            continue
        if c["contactType"] != "address" or c["affiliation"] != "self":
            continue
        m = re.match(r"[ \t]*([0-9]{5})", c.get("postalCode") or "")
        record = _zips().get(m.group(1)) if m else None
        zip_zone = record["timezone"] if record and record["timezone"] in _iana() else None
        zip_state = (record["state"] or None) if record else None
        state = (c.get("state") or "").strip().upper() or None
        if zip_zone:
            zones.add(zip_zone)
        if state and (zip_zone is None or (zip_state is not None and zip_state != state)):
            zones |= _state_zones(state)
        states |= {s for s in (state, zip_state) if s}
    if contact["contactType"] == "phone" and contact.get("value"):
        zones |= _phone_zones(contact["value"])
    return zones, states


# ---------------------------------------------------------------- the rules


def _local_date(ts: datetime, company: Company) -> date:
    return ts.astimezone(ZoneInfo(company.timezone)).date()


def _is_attempt(i: Row, channels: list[str]) -> bool:
    if i["channel"] not in channels or i["direction"] != "outbound":
        return False
    if i["channel"] != "voice":
        return bool(i["status"] in ATTEMPT_STATUSES)
    if i["status"] in ("scheduled", "canceled"):
        return False
    if i["statusDetails"] is None:
        return bool(i["status"] in ATTEMPT_STATUSES)
    return bool(i["statusDetails"] in VOICE_ATTEMPT_DETAILS)


def _is_conversation(i: Row) -> bool:
    return bool(
        i["channel"] == "voice"
        and i["statusDetails"] == "voiceSpokeWithFirstParty"
        and i["status"] not in ("scheduled", "canceled")
    )


def _dni_blocks(dni: Row, contact: Row, channel: str, theme: str, noon: datetime, company: Company) -> bool:
    if dni["createdAt"] is not None and dni["createdAt"] > noon:
        return False
    if dni["deletedAt"] is not None and dni["deletedAt"] <= noon:
        return False
    local = noon.astimezone(ZoneInfo(dni["timezone"] or company.timezone))
    d, w, h = local.date(), local.isoweekday() % 7, local.hour
    if dni["startDate"] > d or (dni["endDate"] is not None and d > dni["endDate"]):
        return False
    if dni["daysOfWeek"] and w not in dni["daysOfWeek"]:
        return False
    if dni["timesOfDay"] and not any(t["fromHour"] <= h < t["toHour"] for t in dni["timesOfDay"]):
        return False
    if dni["contactLabels"] and contact["label"] not in dni["contactLabels"]:
        return False
    covers_channel = "all" in dni["channels"] or channel in dni["channels"]
    covers_theme = theme in dni["themes"] or ("all" in dni["themes"] and theme != "opsAccountCredentials")
    return covers_channel and covers_theme


def _consent(consents: list[Row], name: str, noon: datetime) -> str | None:
    known = [c for c in consents if c["name"] == name and c["updatedAt"] <= noon]
    if not known:
        return None
    latest = max(known, key=lambda c: (c["updatedAt"], c["status"] == "revoked"))
    return str(latest["status"])


def screen_row(
    contact: Row,
    borrower: Row | None,
    contacts_of_borrower: list[Row],
    interactions: list[Row],
    dnis: list[Row],
    consents: list[Row],
    company: Company,
    check: Check,
    as_of: date,
    rejected: bool = False,
    at: datetime | None = None,
) -> tuple[bool, list[str]]:
    """(canInteract, sorted reasons) for one contact; the lists hold the borrower's rows only.
    `rejected`: some source row of the borrower was rejected by validation. `at`: judge at this
    instant instead of noon of `as_of` (the date is then the instant's, in the company zone)."""
    policy = company
    noon = instant_of(company, as_of) if at is None else at
    as_of = noon.astimezone(ZoneInfo(company.timezone)).date()
    channel = channel_of(contact, check)
    reasons: set[str] = set()

    if FITS[channel] != contact["contactType"]:
        reasons.add("CHANNEL_MISMATCH")
    if archived_at(contact, noon):
        reasons.add("CONTACT_ARCHIVED")
    if rejected:
        reasons.add("SOURCE_ROW_REJECTED")
    if contact["valid"] is False:
        reasons.add("CONTACT_INVALID")
    if contact["affiliation"] != "self" and not (
        contact["authorizedThirdParty"] or contact["powerOfAttorney"]
    ):
        reasons.add("THIRD_PARTY_NOT_AUTHORIZED")
    if any(_dni_blocks(d, contact, channel, check.theme, noon, company) for d in dnis):
        reasons.add("DO_NOT_INTERACT")

    zones, states = places(contact, borrower, contacts_of_borrower, noon)
    if channel in ("voice", "text", "email"):
        if not zones and policy.unknown_timezone == "block":
            reasons.add("TIMEZONE_UNKNOWN")
        start, end = policy.start, policy.end
        for z in zones:
            local = noon.astimezone(ZoneInfo(z)).time()
            if local < start or local > end:
                reasons.add("OUTSIDE_CONTACT_HOURS")

    known = [i for i in interactions if i["startedAt"] < noon]
    limits = list(policy.limits)
    for state, rule in policy.state_rules.items():
        if state in states:
            limits += rule.get("frequencyLimits", [])
    for lim in limits:
        if channel not in lim["channels"]:
            continue
        first = as_of - timedelta(days=lim["windowDays"] - 1)
        n = sum(
            1
            for i in known
            if _is_attempt(i, list(lim["channels"]))
            and first <= _local_date(i["startedAt"], company) <= as_of
        )
        if n >= lim["maxAttempts"]:
            reasons.add("FREQUENCY_LIMIT")

    if channel == "voice":
        first = as_of - timedelta(days=policy.cooldown - 1)
        if any(_is_conversation(i) and first <= _local_date(i["startedAt"], company) <= as_of for i in known):
            reasons.add("RECENT_CONVERSATION")

    if (
        check.isAutodialed
        and channel in ("voice", "text")
        and _consent(consents, "autodialedColl", noon) != "consented"
    ):
        reasons.add("AUTODIAL_CONSENT_MISSING")
    if channel == "text" and contact["receiveTextMessages"] is not True:
        reasons.add("TEXT_OPT_IN_MISSING")
    if channel in ("email", "text") and _consent(consents, "electronicComms", noon) == "revoked":
        reasons.add("ELECTRONIC_CONSENT_REVOKED")

    return not reasons, sorted(reasons)


World = tuple[Row | None, list[Row], list[Row], list[Row], list[Row]]


def _worlds(rows: list[Row], tables: SourceTables, noon: datetime) -> Iterator[tuple[Row, World]]:
    """Each matched contact that exists at `noon` with its borrower's world: the borrower row, their
    contacts, interactions, DNIs and consents (the arguments screen_row and next_eligible_row take)."""

    def by_person(frame: pl.LazyFrame) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = defaultdict(list)
        for row in frame.collect().to_dicts():
            out[row["personId"]].append(row)
        return out

    borrowers = {b["id"]: b for b in tables.borrowers.collect().to_dicts()}
    contacts = by_person(tables.contacts)
    interactions = by_person(tables.interactions)
    dnis = by_person(tables.do_not_interact)
    consents = by_person(tables.consents)
    for c in rows:
        if exists_at(c, noon):
            p = c["personId"]
            yield c, (borrowers.get(p), contacts[p], interactions[p], dnis[p], consents[p])


def screen_frames(
    matched: pl.LazyFrame | pl.DataFrame,
    tables: SourceTables,
    company_config: Any,
    check_config: Any,
    as_of: date,
    rejected_persons: set[str | None] | None = None,
    at: datetime | None = None,
) -> list[Row]:
    """screen_row over every matched contact that exists at the instant: rows like the engine's,
    sorted by contactId. `rejected_persons`: borrowers with a rejected source row (None in it: a
    rejected row that names no borrower, which could be anyone's). `at`: as in screen_row."""
    company, check = Company(company_config), Check(check_config)
    noon = instant_of(company, as_of) if at is None else at
    bad = rejected_persons or set()
    rows = sorted(matched.lazy().collect().to_dicts(), key=lambda r: r["id"])
    out = []
    for c, world in _worlds(rows, tables, noon):
        p = c["personId"]
        ok, reasons = screen_row(
            c,
            *world,
            company,
            check,
            as_of,
            rejected=p in bad or None in bad,
            at=at,
        )
        out.append(
            {
                "contactId": c["id"],
                "personId": p,
                "channel": channel_of(c, check),
                "canInteract": ok,
                "reasons": reasons,
            }
        )
    return out


# ---------------------------------------------------------------- next eligible date, by brute force

HORIZON_DAYS = 366  # README: no date within this many days gives null


def _frozen_contact(c: Row, noon: datetime) -> Row:
    """A contact as it stands at `noon`, with no later change recorded."""
    if archived_at(c, noon):
        status = "archived"
    else:
        status = c["status"] if c["status"] != "archived" else "primary"
    return c | {"status": status, "createdAt": None, "archivedAt": None}


def next_eligible_row(
    contact: Row,
    borrower: Row | None,
    contacts_of_borrower: list[Row],
    interactions: list[Row],
    dnis: list[Row],
    consents: list[Row],
    company: Company,
    check: Check,
    as_of: date,
    rejected: bool = False,
    at: datetime | None = None,
) -> date | None:
    """Try every later day with the world as known at the as-of instant (or `at`, whose date is
    then the as-of date); the first whose noon passes."""
    noon = instant_of(company, as_of) if at is None else at
    as_of = noon.astimezone(ZoneInfo(company.timezone)).date()
    args = (contact, borrower, contacts_of_borrower, interactions, dnis, consents, company, check)
    ok, _ = screen_row(*args, as_of, rejected, at=noon)
    if ok:
        return None
    frozen_contacts = [_frozen_contact(c, noon) for c in contacts_of_borrower if exists_at(c, noon)]
    known = [i for i in interactions if i["startedAt"] < noon]
    existing = [
        d | {"deletedAt": None}
        for d in dnis
        if (d["createdAt"] is None or d["createdAt"] <= noon)
        and (d["deletedAt"] is None or d["deletedAt"] > noon)
    ]
    given = [c for c in consents if c["updatedAt"] <= noon]
    me = _frozen_contact(contact, noon)
    for k in range(1, HORIZON_DAYS + 1):
        day = as_of + timedelta(days=k)
        ok, _ = screen_row(
            me, borrower, frozen_contacts, known, existing, given, company, check, day, rejected
        )
        if ok:
            return day
    return None


def next_eligible_frames(
    matched: pl.LazyFrame | pl.DataFrame,
    tables: SourceTables,
    company_config: Any,
    check_config: Any,
    as_of: date,
    rejected_persons: set[str | None] | None = None,
    at: datetime | None = None,
) -> dict[str, date | None]:
    """contactId → next eligible date, for every matched contact that exists at the instant."""
    company, check = Company(company_config), Check(check_config)
    noon = instant_of(company, as_of) if at is None else at
    bad = rejected_persons or set()
    out = {}
    for c, world in _worlds(matched.lazy().collect().to_dicts(), tables, noon):
        p = c["personId"]
        out[c["id"]] = next_eligible_row(
            c,
            *world,
            company,
            check,
            as_of,
            rejected=p in bad or None in bad,
            at=at,
        )
    return out
