"""Property tests: on random small worlds the batch engine and the row-at-a-time reference agree.

Worlds are built around the edges the rules care about: company zones with and without daylight
saving (and across the date line), as-of dates on clock-change days, contact hours that start or
end exactly at the local time of noon somewhere, attempts right at a limit, DNIs that start or end
on the as-of date, and facts recorded at, just before and just after the instant.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.model.config import CheckCanInteractData, Company
from pipelines.model.tables import SourceTables
from pipelines.model.vocab import (
    AFFILIATIONS,
    CONTACT_STATUSES,
    EXPORT_CHANNELS,
    INTERACTION_CHANNELS,
    INTERACTION_STATUSES,
    LABELS,
    STATUS_DETAILS,
    THEMES,
)
from pipelines.rules.compliance import as_of_instant
from tests.pipelines.compliance_fixtures import eligible_both, screen_both, world

settings.register_profile(
    "compliance",
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("compliance")
pytestmark = pytest.mark.slow  # about 20 s in all: each example runs the engine and the reference

COMPANY_ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Phoenix",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Guam",
]
OTHER_ZONES = [
    "America/Los_Angeles",
    "America/Denver",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Kolkata",
]
AS_OF_DATES = [
    date(2026, 3, 8),  # US clocks go forward
    date(2026, 3, 7),
    date(2026, 3, 9),
    date(2026, 11, 1),  # US clocks go back
    date(2026, 10, 31),
    date(2025, 3, 9),
    date(2025, 11, 2),
    date(2026, 1, 1),
    date(2026, 4, 7),
    date(2026, 7, 15),
    date(2024, 2, 29),
]
PHONES = [
    None,
    "+12125550123",  # New York
    "+13105550123",  # Los Angeles
    "+18085550123",  # Honolulu
    "+19075550123",  # Alaska: two zones
    "+16175550123",  # Boston
    "+16025550123",  # Phoenix
    "+18005550123",  # toll-free: every North American zone
    "+15555550123",  # not a valid number: no zone
    "+442071838750",  # London
    "+1212555012",  # too short
    "2125550123",  # no country code: unparsable
]
POSTAL_CODES = [
    None,
    "02108",
    "02108",
    "02108-1234",
    "90210",
    "96813",
    "85001",
    "99501",
    "96910",
    "00000",
    "09001",
    "abc",
]
STATES = [None, "MA", "CA", "HI", "AZ", "AK", "GU", "TX", "ny", "ZZ"]
CONVERSATION = "voiceSpokeWithFirstParty"
CONSENT_NAMES = ["autodialedColl", "electronicComms", "contactPersonWork"]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


# Strategies are built once here; the composites below only draw from them (building strategies
# inside a draw costs more than the draw).

# When something happened: whole hours before or after the instant (0 is the instant itself), or a
# wall-clock time in the company zone k days before the as-of date (00:00 is the first instant of
# day D-k, 23:59 its last minute).
HOURS = st.one_of(st.integers(-8 * 24, 2), st.sampled_from([0, 0, 1]))
WALL_CLOCK = st.tuples(
    st.integers(0, 9), st.sampled_from([(0, 0), (0, 0), (23, 59), (11, 59), (12, 0), (3, 30)])
)
WHEN = st.one_of(HOURS.map(lambda h: ("hours", h)), WALL_CLOCK.map(lambda w: ("local", w)))
JITTERS = [
    timedelta(0),
    timedelta(0),
    timedelta(0),
    timedelta(seconds=-1),
    timedelta(seconds=1),
    timedelta(microseconds=-1),
]
JITTER = st.sampled_from(JITTERS)
MINUTES = st.sampled_from([0, 0, 0, 1, 30, 59])
LIMIT = st.fixed_dictionaries(
    {
        "channels": st.lists(
            st.sampled_from(["voice", "text", "email", "mail", "chat"]), min_size=1, unique=True
        ),
        "maxAttempts": st.integers(1, 4),
        "windowDays": st.integers(1, 8),
    }
)
LIMITS = st.one_of(
    st.lists(LIMIT, min_size=1, max_size=2), st.lists(LIMIT, min_size=1, max_size=2), st.just([])
)
DEFAULT_LIMITS = [{"channels": ["voice"], "maxAttempts": 7, "windowDays": 7}]
MA_RULE = {"MA": {"frequencyLimits": [{"channels": ["voice", "text"], "maxAttempts": 2, "windowDays": 7}]}}
STATE_RULES = st.one_of(
    st.just(MA_RULE),  # the default
    st.dictionaries(
        st.sampled_from(["MA", "CA", "HI", "TX"]),
        st.fixed_dictionaries({"frequencyLimits": LIMITS}),
        max_size=2,
    ),
)
CHECKS = st.builds(
    CheckCanInteractData,
    theme=st.sampled_from([*THEMES, "opsAccountCredentials"]),
    isAutodialed=st.booleans(),
    channel=maybe(st.sampled_from(EXPORT_CHANNELS)),
)
AS_OF = st.sampled_from(AS_OF_DATES) | st.dates(date(2024, 1, 1), date(2027, 12, 31))
CONTACT = st.fixed_dictionaries(
    {
        "contactType": st.sampled_from(["phone", "phone", "email", "address", "address"]),
        "label": st.sampled_from(LABELS),
        "affiliation": st.sampled_from(["self", "self", "self", *AFFILIATIONS]),
        "status": st.sampled_from([*CONTACT_STATUSES, "primary", "primary", "secondary", "additional"]),
        "valid": st.sampled_from([True, True, True, True, False]),
        "receiveTextMessages": st.booleans(),
        "authorizedThirdParty": st.booleans(),
        "powerOfAttorney": st.sampled_from([False, False, True]),
        "timezone": st.sampled_from([None, None, None, *COMPANY_ZONES, *OTHER_ZONES]),
        "phone": st.sampled_from(PHONES),
        "postalCode": st.sampled_from(POSTAL_CODES),
        "state": st.sampled_from([*STATES, "MA", "MA"]),
    }
)
INTERACTION = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(["voice", "voice", "voice", *INTERACTION_CHANNELS]),
        "direction": st.sampled_from(["outbound", "outbound", "inbound"]),
        "status": st.sampled_from(["attempted", "attempted", "succeeded", *INTERACTION_STATUSES]),
        "statusDetails": st.sampled_from(
            [None, None, "voiceSpokeWithFirstParty", "voiceNoAnswer", *STATUS_DETAILS]
        ),
        "when": WHEN,
        "jitter": JITTER,
    }
)
WINDOW = st.tuples(st.integers(0, 23), st.integers(1, 24)).map(
    lambda w: (
        {"fromHour": min(w), "toHour": max(w)} if w[0] != w[1] else {"fromHour": w[0] - 1, "toHour": w[1]}
    )
)
# Each DNI restriction is usually absent and, when present, close to the as-of date and hour, so
# that DNIs are often active and each restriction is often the one that decides. Theme "*" stands
# for the exporter's own theme.
DNI = st.fixed_dictionaries(
    {
        "channels": st.sampled_from(
            [
                ["all"],
                ["all"],
                ["voice"],
                ["email"],
                ["text"],
                ["mail"],
                ["voice", "text"],
                ["chat"],
                ["all", "chat"],
            ]
        ),
        "themes": st.sampled_from(
            [
                ["all"],
                ["all"],
                ["*"],
                ["opsServicing"],
                ["opsAccountCredentials"],
                ["all", "opsAccountCredentials"],
            ]
        ),
        "start": st.sampled_from([-30, -30, -1, 0, 1]),
        "end": st.sampled_from([None, None, None, -1, 0, 1]),
        "daysOfWeek": st.one_of(st.none(), st.none(), st.lists(st.integers(0, 6), max_size=6, unique=True)),
        "timesOfDay": st.one_of(st.none(), st.none(), st.lists(WINDOW, max_size=2)),
        "timezone": st.sampled_from([None, None, *COMPANY_ZONES, "Pacific/Kiritimati"]),
        "contactLabels": st.one_of(
            st.none(), st.none(), st.lists(st.sampled_from(LABELS), max_size=3, unique=True)
        ),
        "created": st.sampled_from(
            [None, None, None, timedelta(days=-1), timedelta(0), timedelta(seconds=1)]
        ),
        "deleted": st.sampled_from(
            [None, None, None, None, timedelta(0), timedelta(seconds=1), timedelta(hours=-1)]
        ),
    }
)
CONSENT = st.fixed_dictionaries(
    {
        "name": st.sampled_from([*CONSENT_NAMES, "autodialedColl", "electronicComms"]),
        "status": st.sampled_from(["consented", "revoked"]),
        "offset": st.sampled_from(
            [timedelta(days=-2), timedelta(hours=-1), timedelta(0), timedelta(0), timedelta(seconds=1)]
        ),
    }
)
BURST = st.fixed_dictionaries(
    {
        "size": st.sampled_from([0, 1, 2, 3, 4, 6, 7]),
        "channel": st.sampled_from(["voice", "voice", "text"]),
        "direction": st.just("outbound"),
        "status": st.sampled_from(["attempted", "succeeded", "scheduled", "canceled"]),
        "statusDetails": st.sampled_from(["voiceNoAnswer", None, "voiceBusy", "voiceSpokeWithFirstParty"]),
        "when": WHEN,
        "jitter": JITTER,
    }
)
BORROWER_ZONE = st.sampled_from([None, *COMPANY_ZONES, *OTHER_ZONES])


@st.composite
def companies(draw: st.DrawFn) -> Company:
    start = f"{draw(st.integers(0, 12)):02d}:{draw(MINUTES):02d}" if draw(st.booleans()) else "08:00"
    end = f"{draw(st.integers(12, 23)):02d}:{draw(MINUTES):02d}" if draw(st.booleans()) else "21:00"
    start, end = min(start, end), max(start, end)
    policy: dict[str, Any] = {
        "contactHours": {"start": start, "end": end},
        "frequencyLimits": draw(st.one_of(st.just(DEFAULT_LIMITS), LIMITS)),
        "conversationCooldownDays": draw(st.integers(0, 8)),
        "stateRules": draw(STATE_RULES),
        "unknownTimezone": draw(st.sampled_from(["block", "allow"])),
    }
    return Company.model_validate(
        {"id": "CP-P", "timezone": draw(st.sampled_from(COMPANY_ZONES)), "policy": policy}
    )


def contact_row(pid: str, k: int, c: dict[str, Any]) -> dict[str, Any]:
    row = {key: c[key] for key in CONTACT_COLUMNS} | {"id": f"{pid}-C{k}", "personId": pid}
    if c["contactType"] == "phone":
        row["value"] = c["phone"]
    elif c["contactType"] == "email":
        row["value"] = f"x{k}@example.com"
    else:
        row["postalCode"], row["state"] = c["postalCode"], c["state"]
    return row


CONTACT_COLUMNS = (
    "contactType",
    "label",
    "affiliation",
    "status",
    "valid",
    "receiveTextMessages",
    "authorizedThirdParty",
    "powerOfAttorney",
    "timezone",
)


def interaction_row(
    pid: str, k: str, i: dict[str, Any], noon: datetime, as_of: date, zone: ZoneInfo
) -> dict[str, Any]:
    fields = ("channel", "direction", "status", "statusDetails")
    kind, value = i["when"]
    if kind == "hours":
        started = noon + timedelta(hours=value)
    else:
        days_back, (hour, minute) = value
        day = as_of - timedelta(days=days_back)
        started = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
    started += i["jitter"]
    return {key: i[key] for key in fields} | {"id": f"{pid}-I{k}", "personId": pid, "startedAt": started}


def dni_row(pid: str, k: int, d: dict[str, Any], as_of: date, noon: datetime, theme: str) -> dict[str, Any]:
    """A DNI; theme "*" stands for the exporter's own theme, so that DNIs often matter."""
    return {
        "id": f"{pid}-N{k}",
        "personId": pid,
        "channels": d["channels"],
        "themes": sorted({theme if t == "*" else t for t in d["themes"]}),
        "startDate": as_of + timedelta(days=d["start"]),
        "endDate": None if d["end"] is None else as_of + timedelta(days=d["end"]),
        "daysOfWeek": d["daysOfWeek"],
        "timesOfDay": d["timesOfDay"],
        "timezone": d["timezone"],
        "contactLabels": d["contactLabels"],
        "createdAt": None if d["created"] is None else noon + d["created"],
        "deletedAt": None if d["deleted"] is None else noon + d["deleted"],
    }


Case = tuple[SourceTables, Company, CheckCanInteractData, date, list[str]]


def edge_times(company: Company) -> st.SearchStrategy[tuple[str, Any]]:
    """WHEN, or half the time a wall-clock time on the first day inside or the last day outside
    one of this company's windows (frequency limits and conversation cool-down)."""
    policy = company.policy
    windows = {lim.windowDays for lim in policy.frequencyLimits}
    windows |= {lim.windowDays for rule in policy.stateRules.values() for lim in rule.frequencyLimits}
    windows |= {policy.conversationCooldownDays} - {0}
    edges = sorted({days - 1 for days in windows} | windows)
    if not edges:
        return WHEN
    edge = st.tuples(st.sampled_from(edges), st.sampled_from([(0, 0), (23, 59), (11, 59)]))
    on_edge = edge.map(lambda w: ("local", w))
    return st.one_of(WHEN, on_edge, on_edge)


@st.composite
def worlds(draw: st.DrawFn, parts: frozenset[str] = frozenset({"interactions", "dnis", "consents"})) -> Case:
    """A few borrowers with contacts and, as `parts` says, interactions, DNIs and consents."""
    company = draw(companies())
    check = draw(CHECKS)
    as_of = draw(AS_OF)
    noon = as_of_instant(company, as_of)
    zone = ZoneInfo(company.timezone)
    borrowers, contacts, interactions, dnis, consents = [], [], [], [], []
    for b in range(draw(st.integers(1, 3))):
        pid = f"B{b}"
        borrowers.append({"id": pid, "companyId": "CP-P", "timezone": draw(BORROWER_ZONE)})
        contacts += [
            contact_row(pid, k, c) for k, c in enumerate(draw(st.lists(CONTACT, min_size=1, max_size=4)))
        ]
        if "interactions" in parts:
            when = edge_times(company)
            interactions += [
                interaction_row(pid, str(k), i | {"when": draw(when)}, noon, as_of, zone)
                for k, i in enumerate(draw(st.lists(INTERACTION, max_size=12)))
            ]
            # A burst of identical calls puts a borrower right at (or one under) a limit.
            burst = draw(BURST) | {"when": draw(when)}
            interactions += [
                interaction_row(pid, f"X{k}", burst, noon, as_of, zone) for k in range(burst["size"])
            ]
        if "dnis" in parts:
            dnis += [
                dni_row(pid, k, d, as_of, noon, check.theme)
                for k, d in enumerate(draw(st.lists(DNI, max_size=3)))
            ]
        if "consents" in parts:
            consents += [
                {"personId": pid, "name": c["name"], "status": c["status"], "updatedAt": noon + c["offset"]}
                for c in draw(st.lists(CONSENT, max_size=4))
            ]
    ids = [c["id"] for c in contacts]
    matched = draw(st.lists(st.sampled_from(ids), min_size=1, unique=True)) if draw(st.booleans()) else ids
    tables = world(borrowers, contacts, interactions, dnis, consents)
    return tables, company, check, as_of, matched


def check_case(case: Case) -> None:
    tables, company, check, as_of, matched_ids = case
    matched = tables.contacts.filter(pl.col("id").is_in(matched_ids))
    got = screen_both(tables, company, check, as_of, matched=matched)
    assert sorted(got) == sorted(matched_ids)


@PROFILE
@given(worlds())
def test_engine_agrees_with_reference(case: Case) -> None:
    check_case(case)


# Narrower worlds: with one kind of fact only, each example explores that rule's edges more densely.


@st.composite
def dni_worlds(draw: st.DrawFn) -> Case:
    """One borrower with a few contacts and DNIs whose every restriction sits near the as-of date
    and hour; drawn from a seeded Random like `window_worlds`."""
    rnd = random.Random(draw(st.integers(0, 2**64 - 1)))
    zone_name = rnd.choice(COMPANY_ZONES)
    company = Company.model_validate({"id": "CP-P", "timezone": zone_name})
    check = CheckCanInteractData(
        theme=rnd.choice([*THEMES, "opsAccountCredentials"]),
        channel=rnd.choice([None, None, *EXPORT_CHANNELS]),
    )
    as_of = rnd.choice(AS_OF_DATES)
    noon = as_of_instant(company, as_of)
    local = noon.astimezone(ZoneInfo(zone_name))
    kinds = [("phone", "+12125550123"), ("email", "x@example.com"), ("address", None)]
    contacts = []
    for k in range(rnd.randint(1, 3)):
        kind, value = rnd.choice(kinds)
        contacts.append(
            {"id": f"C{k}", "personId": "B1", "contactType": kind, "label": rnd.choice(LABELS), "affiliation": "self",
             "status": "primary", "value": value, "state": "NY" if kind == "address" else None}
        )  # fmt: skip

    def sometimes(value: Any) -> Any:
        return value if rnd.random() < 0.4 else None

    dnis = []
    for k in range(rnd.randint(1, 3)):
        hour = local.hour + rnd.choice([-1, 0, 0, 1])
        dnis.append(
            {
                "id": f"N{k}",
                "personId": "B1",
                "channels": rnd.choice(
                    [["all"], ["voice"], ["email"], ["text"], ["mail"], ["voice", "text"], ["chat"]]
                ),
                "themes": rnd.choice(
                    [["all"], ["all"], [check.theme], ["opsServicing"], ["all", "opsAccountCredentials"]]
                ),
                "startDate": as_of + timedelta(days=rnd.choice([-30, -1, 0, 1])),
                "endDate": sometimes(as_of + timedelta(days=rnd.choice([-1, 0, 1]))),
                "daysOfWeek": sometimes(
                    rnd.sample(range(7), rnd.randint(0, 3)) + [rnd.choice([local.isoweekday() % 7, 0])]
                ),
                "timesOfDay": sometimes(
                    [{"fromHour": max(0, hour), "toHour": min(24, max(0, hour) + rnd.randint(1, 2))}]
                ),
                "timezone": sometimes(rnd.choice([*COMPANY_ZONES, "Pacific/Kiritimati"])),
                "contactLabels": sometimes(rnd.sample(LABELS, rnd.randint(0, 2))),
                "createdAt": sometimes(
                    noon + rnd.choice([timedelta(0), timedelta(seconds=1), timedelta(days=-1)])
                ),
                "deletedAt": sometimes(
                    noon + rnd.choice([timedelta(0), timedelta(seconds=1), timedelta(hours=-1)])
                ),
            }
        )
    tables = world([{"id": "B1", "companyId": "CP-P", "timezone": zone_name}], contacts, dnis=dnis)
    return tables, company, check, as_of, [c["id"] for c in contacts]


@settings(PROFILE, max_examples=60)
@given(dni_worlds())
def test_engine_agrees_with_reference_on_dni_edges(case: Case) -> None:
    check_case(case)


@settings(PROFILE, max_examples=50)
@given(worlds(frozenset({"interactions"})))
def test_engine_agrees_with_reference_on_attempts_and_conversations(case: Case) -> None:
    check_case(case)


KINDS_OF_CALL = {
    "attempt": {
        "channel": "voice",
        "direction": "outbound",
        "status": "attempted",
        "statusDetails": "voiceNoAnswer",
    },
    "talk": {
        "channel": "voice",
        "direction": "outbound",
        "status": "succeeded",
        "statusDetails": CONVERSATION,
    },
    "called us": {
        "channel": "voice",
        "direction": "inbound",
        "status": "succeeded",
        "statusDetails": CONVERSATION,
    },
    "text": {"channel": "text", "direction": "outbound", "status": "succeeded", "statusDetails": None},
    "busy": {
        "channel": "voice",
        "direction": "outbound",
        "status": "attempted",
        "statusDetails": "voiceBusy",
    },
    "booked": {
        "channel": "voice",
        "direction": "outbound",
        "status": "scheduled",
        "statusDetails": CONVERSATION,
    },
}


@st.composite
def window_worlds(draw: st.DrawFn) -> Case:
    """One borrower reachable by phone, calls and texts placed on the edges of the windows, and
    sometimes a Massachusetts address: limits, state rules and the cool-down decide.

    Drawn from a seeded Random: Hypothesis varies the seed, and every example is a fresh world
    (its own choices explore too narrowly when a rule needs several facts to line up).
    """
    rnd = random.Random(draw(st.integers(0, 2**64 - 1)))

    def limit() -> dict[str, Any]:
        channels = rnd.sample(["voice", "text", "email"], rnd.randint(1, 2))
        return {"channels": channels, "maxAttempts": rnd.randint(1, 4), "windowDays": rnd.randint(1, 8)}

    policy = {
        "frequencyLimits": rnd.choice([DEFAULT_LIMITS, [], [limit()], [limit(), limit()]]),
        "conversationCooldownDays": rnd.randint(0, 8),
        "stateRules": rnd.choice([MA_RULE, MA_RULE, {}, {"MA": {"frequencyLimits": [limit()]}}]),
    }
    company = Company.model_validate({"id": "CP-P", "timezone": rnd.choice(COMPANY_ZONES), "policy": policy})
    check = CheckCanInteractData(theme="opsCollDebt", channel=rnd.choice([None, None, "text"]))
    as_of = rnd.choice(AS_OF_DATES)
    noon = as_of_instant(company, as_of)
    zone = ZoneInfo(company.timezone)
    contacts: list[dict[str, Any]] = [
        {"id": "C1", "personId": "B1", "contactType": "phone", "label": "personal", "affiliation": "self",
         "status": "primary", "value": "+12125550123", "receiveTextMessages": True},
    ]  # fmt: skip
    # Massachusetts by state, by ZIP only, by ZIP against another state, or not at all.
    state, postal = rnd.choice(
        [("MA", None), ("MA", None), (None, "02108"), ("NY", "02108"), ("NY", "10001")]
    )
    if rnd.random() < 0.6:
        contacts.append(
            {"id": "A1", "personId": "B1", "contactType": "address", "label": "home", "affiliation": "self",
             "status": rnd.choice(["primary", "primary", "archived"]), "state": state, "postalCode": postal}
        )  # fmt: skip
    windows = {lim["windowDays"] for lim in policy["frequencyLimits"]} | {
        7,
        policy["conversationCooldownDays"],
    }
    edges = sorted({d for w in windows for d in (w - 1, w)} - {-1})
    interactions = []
    kinds = [*sorted(KINDS_OF_CALL), "attempt", "talk", "called us"]
    for k in range(rnd.randint(0, 9)):
        if rnd.random() < 0.6:
            when = ("local", (rnd.choice(edges), rnd.choice([(0, 0), (23, 59), (11, 59), (12, 0)])))
        else:
            when = ("hours", rnd.randint(-8 * 24, 2))
        row = KINDS_OF_CALL[rnd.choice(kinds)] | {"when": when, "jitter": rnd.choice(JITTERS)}
        interactions.append(interaction_row("B1", str(k), row, noon, as_of, zone))
    tables = world(
        [{"id": "B1", "companyId": "CP-P", "timezone": "America/New_York"}], contacts, interactions
    )
    return tables, company, check, as_of, [c["id"] for c in contacts]


@settings(PROFILE, max_examples=80)
@given(window_worlds())
def test_engine_agrees_with_reference_on_window_edges(case: Case) -> None:
    check_case(case)


@settings(PROFILE, max_examples=30)
@given(worlds(frozenset({"consents"})))
def test_engine_agrees_with_reference_on_consents(case: Case) -> None:
    check_case(case)


# nextEligibleDate against a day-by-day search with the reference (each example screens every later
# day of the horizon for each blocked contact, so fewer examples).


def check_eligible(case: Case) -> None:
    tables, company, check, as_of, matched_ids = case
    matched = tables.contacts.filter(pl.col("id").is_in(matched_ids))
    eligible_both(tables, company, check, as_of, matched=matched)


@settings(PROFILE, max_examples=40)
@given(worlds())
def test_next_eligible_date_agrees_with_brute_force(case: Case) -> None:
    check_eligible(case)


@settings(PROFILE, max_examples=40)
@given(window_worlds())
def test_next_eligible_date_agrees_with_brute_force_on_window_edges(case: Case) -> None:
    check_eligible(case)


@settings(PROFILE, max_examples=40)
@given(dni_worlds())
def test_next_eligible_date_agrees_with_brute_force_on_dni_edges(case: Case) -> None:
    check_eligible(case)


@st.composite
def eligibility_worlds(draw: st.DrawFn) -> Case:
    """One borrower whose contacts are blocked mostly for reasons time clears: DNIs that end soon or
    cover some weekdays and hours, attempts and conversations near the windows' edges, zones whose
    noon crosses the contact hours with the clocks; as-of dates near clock changes."""
    rnd = random.Random(draw(st.integers(0, 2**64 - 1)))
    policy = {
        "contactHours": rnd.choice(
            [{}, {}, {}, {"start": "09:00"}, {"end": "15:00"}, {"start": "11:30"}]
        ),
        "frequencyLimits": [
            {"channels": rnd.sample(["voice", "text", "email"], rnd.randint(1, 2)),
             "maxAttempts": rnd.randint(1, 3), "windowDays": rnd.randint(1, 10)}
        ],
        "conversationCooldownDays": rnd.randint(0, 9),
    }  # fmt: skip
    company = Company.model_validate({"id": "CP-P", "timezone": rnd.choice(COMPANY_ZONES), "policy": policy})
    check = CheckCanInteractData(theme="opsCollDebt", channel=rnd.choice([None, None, None, "text"]))
    as_of = rnd.choice(AS_OF_DATES) + timedelta(days=rnd.choice([0, 0, -3, -1, 1, 3]))
    noon = as_of_instant(company, as_of)
    zone = ZoneInfo(company.timezone)
    kinds = [("phone", rnd.choice(PHONES[1:8])), ("email", "x@example.com")]
    contacts = []
    for k in range(rnd.randint(1, 3)):
        kind, value = rnd.choice(kinds)
        contacts.append(
            {"id": f"C{k}", "personId": "B1", "contactType": kind, "label": rnd.choice(LABELS),
             "affiliation": "self", "status": "primary", "value": value, "receiveTextMessages": True,
             "timezone": rnd.choice([None, None, None, *COMPANY_ZONES])}
        )  # fmt: skip
    if rnd.random() < 0.4:
        contacts.append(
            {"id": "A1", "personId": "B1", "contactType": "address", "label": "home", "affiliation": "self",
             "status": "primary", "postalCode": rnd.choice(POSTAL_CODES), "state": rnd.choice(STATES)}
        )  # fmt: skip
    dnis = []
    for k in range(rnd.randint(0, 3)):
        dnis.append(
            {
                "id": f"N{k}",
                "personId": "B1",
                "channels": rnd.choice([["all"], ["voice"], ["email"], ["text"], ["voice", "text"]]),
                "themes": ["all"],
                "startDate": as_of + timedelta(days=rnd.choice([-30, -1, 0, 2, 5])),
                "endDate": rnd.choice([None, as_of + timedelta(days=rnd.randint(-1, 12))]),
                "daysOfWeek": rnd.choice([None, None, rnd.sample(range(7), rnd.randint(1, 6))]),
                "timesOfDay": rnd.choice(
                    [
                        None,
                        None,
                        [{"fromHour": h, "toHour": h + rnd.randint(1, 3)} for h in [rnd.randint(8, 16)]],
                    ]
                ),
                "timezone": rnd.choice([None, *COMPANY_ZONES]),
                "contactLabels": rnd.choice([None, None, rnd.sample(LABELS, 2)]),
                "createdAt": rnd.choice([None, noon + timedelta(days=1)]),
                "deletedAt": rnd.choice([None, None, noon + timedelta(days=2)]),
            }
        )
    interactions = []
    kinds_of_call = [*sorted(KINDS_OF_CALL), "attempt", "attempt", "talk"]
    for k in range(rnd.randint(0, 12)):
        when = ("local", (rnd.randint(0, 10), rnd.choice([(0, 0), (23, 59), (11, 59), (12, 0)])))
        row = KINDS_OF_CALL[rnd.choice(kinds_of_call)] | {"when": when, "jitter": timedelta(0)}
        interactions.append(interaction_row("B1", str(k), row, noon, as_of, zone))
    borrower_zone = rnd.choice([company.timezone, company.timezone, *COMPANY_ZONES, "America/Los_Angeles"])
    tables = world(
        [{"id": "B1", "companyId": "CP-P", "timezone": borrower_zone}], contacts, interactions, dnis
    )
    return tables, company, check, as_of, [c["id"] for c in contacts]


@settings(PROFILE, max_examples=150)
@given(eligibility_worlds())
def test_next_eligible_date_agrees_with_brute_force_when_time_clears(case: Case) -> None:
    check_eligible(case)


# Any instant (`check --at`): the engine and the reference judged at an instant around the as-of
# date's noon, on the hour, a minute either side, or anywhere in the day before or after.
OFFSETS = st.one_of(
    st.sampled_from([timedelta(0), timedelta(minutes=-1), timedelta(minutes=1), timedelta(hours=9)]),
    st.integers(-36 * 60, 36 * 60).map(lambda m: timedelta(minutes=m)),
)


@settings(PROFILE, max_examples=80)
@given(worlds(), OFFSETS)
def test_engine_agrees_with_reference_at_any_instant(case: Case, offset: timedelta) -> None:
    tables, company, check, as_of, matched_ids = case
    at = as_of_instant(company, as_of) + offset
    matched = tables.contacts.filter(pl.col("id").is_in(matched_ids))
    screen_both(tables, company, check, as_of, matched=matched, at=at)


@settings(PROFILE, max_examples=60)
@given(eligibility_worlds(), OFFSETS)
def test_next_eligible_date_agrees_with_brute_force_at_any_instant(case: Case, offset: timedelta) -> None:
    tables, company, check, as_of, matched_ids = case
    at = as_of_instant(company, as_of) + offset
    matched = tables.contacts.filter(pl.col("id").is_in(matched_ids))
    eligible_both(tables, company, check, as_of, matched=matched, at=at)
