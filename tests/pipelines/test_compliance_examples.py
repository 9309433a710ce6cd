"""The Compliance Guard on hand-made worlds: every reason code and COMPLIANCE.md's own examples.

Every example goes through `screen_both`, which runs the batch engine and the row-at-a-time
reference and fails unless they agree, then the expected reasons are checked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from pipelines.model.errors import SourceDataError
from pipelines.model.vocab import REASON_CODES
from pipelines.rules.compliance import SCREENING_SCHEMA, as_of_instant, screen, unscreened
from tests.pipelines.compliance_fixtures import (
    address,
    at,
    borrower,
    call,
    check,
    company,
    eligible_both,
    email,
    phone,
    reasons_of,
    screen_both,
    world,
)

NY = "America/New_York"
D = date(2026, 4, 7)  # a Tuesday
NUMBER = "+12125550123"  # a New York number


def ny_borrower(*contacts: dict[str, object], **tables: list[dict[str, object]]) -> list[str]:
    """Reasons for contact C1 of a New York borrower, as of D, default company and check."""
    chosen = list(contacts) or [phone("C1", NUMBER)]
    return reasons_of(world([borrower("B1", NY)], chosen, **tables), company(), check(), D)


def dni(**extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "N1",
        "personId": "B1",
        "channels": ["voice"],
        "themes": ["opsCollDebt"],
        "startDate": date(2026, 1, 1),
    }
    return row | extra


def consent(name: str, status: str, updated: datetime) -> dict[str, object]:
    return {"personId": "B1", "name": name, "status": status, "updatedAt": updated}


# ---------------------------------------------------------------- the instant


def test_instant_is_company_noon_in_utc_across_daylight_saving() -> None:
    assert as_of_instant(company(NY), date(2026, 1, 15)) == datetime(2026, 1, 15, 17, tzinfo=UTC)
    assert as_of_instant(company(NY), date(2026, 3, 7)) == datetime(2026, 3, 7, 17, tzinfo=UTC)
    assert as_of_instant(company(NY), date(2026, 3, 8)) == datetime(2026, 3, 8, 16, tzinfo=UTC)
    assert as_of_instant(company(NY), date(2026, 10, 31)) == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert as_of_instant(company(NY), date(2026, 11, 1)) == datetime(2026, 11, 1, 17, tzinfo=UTC)
    assert as_of_instant(company("Pacific/Honolulu"), date(2026, 7, 1)) == datetime(
        2026, 7, 1, 22, tzinfo=UTC
    )
    assert as_of_instant(company("Pacific/Guam"), date(2026, 7, 1)) == datetime(2026, 7, 1, 2, tzinfo=UTC)


# ---------------------------------------------------------------- one example per reason code


def test_clean_contact_is_allowed() -> None:
    assert ny_borrower() == []


def test_contact_archived() -> None:
    assert ny_borrower(phone("C1", NUMBER, status="archived")) == ["CONTACT_ARCHIVED"]


def test_contact_invalid() -> None:
    assert ny_borrower(phone("C1", NUMBER, valid=False)) == ["CONTACT_INVALID"]


@pytest.mark.parametrize(
    "affiliation", ["spouse", "parent", "guardian", "representative", "attorney", "employer", "other"]
)
def test_third_party_needs_a_flag(affiliation: str) -> None:
    assert ny_borrower(phone("C1", NUMBER, affiliation=affiliation)) == ["THIRD_PARTY_NOT_AUTHORIZED"]
    assert ny_borrower(phone("C1", NUMBER, affiliation=affiliation, authorizedThirdParty=True)) == []
    assert ny_borrower(phone("C1", NUMBER, affiliation=affiliation, powerOfAttorney=True)) == []


def test_do_not_interact_covers_channel_and_theme() -> None:
    assert ny_borrower(dnis=[dni()]) == ["DO_NOT_INTERACT"]
    assert ny_borrower(dnis=[dni(channels=["all"])]) == ["DO_NOT_INTERACT"]
    assert ny_borrower(dnis=[dni(channels=["email", "text"])]) == []
    assert ny_borrower(dnis=[dni(themes=["opsServicing"])]) == []
    assert ny_borrower(dnis=[dni(personId="B2")]) == []


def test_timezone_unknown_blocks_unless_policy_allows() -> None:
    tables = world([borrower("B1", None)], [phone("C1", None), email("E1"), address("A1", None, None)])
    assert screen_both(tables, company(), check(), D) == {
        "A1": [],  # mail has no contact hours
        "C1": ["TIMEZONE_UNKNOWN"],
        "E1": ["TIMEZONE_UNKNOWN"],
    }
    assert screen_both(tables, company(unknownTimezone="allow"), check(), D) == {"A1": [], "C1": [], "E1": []}
    texts = screen_both(tables, company(), check(channel="text"), D)
    assert texts["C1"] == ["TEXT_OPT_IN_MISSING", "TIMEZONE_UNKNOWN"]


def test_unknown_phone_number_gives_no_zone() -> None:
    tables = world([borrower("B1", None)], [phone("C1", "+15555550123"), phone("C2", "not a number")])
    assert screen_both(tables, company(), check(), D) == {
        "C1": ["TIMEZONE_UNKNOWN"],
        "C2": ["TIMEZONE_UNKNOWN"],
    }


def test_outside_contact_hours_in_any_zone() -> None:
    # An Eastern company never reaches a Honolulu borrower at noon: 07:00 in winter, 06:00 in summer.
    tables = world([borrower("B1", "Pacific/Honolulu")], [phone("C1", None)])
    for as_of in (date(2026, 1, 15), date(2026, 7, 15)):
        assert screen_both(tables, company(NY), check(), as_of) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}
    # Mail has no contact hours.
    assert screen_both(tables, company(NY), check(channel="mail"), date(2026, 1, 15)) == {
        "C1": ["CHANNEL_MISMATCH"]
    }


def test_chicago_company_reaches_honolulu_in_january_not_july() -> None:
    tables = world([borrower("B1", "Pacific/Honolulu")], [phone("C1", None)])
    chicago = company("America/Chicago")
    assert screen_both(tables, chicago, check(), date(2026, 1, 15)) == {"C1": []}  # 08:00 local: inclusive
    assert screen_both(tables, chicago, check(), date(2026, 7, 15)) == {
        "C1": ["OUTSIDE_CONTACT_HOURS"]
    }  # 07:00


def test_eastern_mobile_with_pacific_home_is_both_zones() -> None:
    tables = world(
        [borrower("B1", None)],
        [phone("C1", NUMBER), address("A1", "90210", "CA")],
    )
    for as_of in (date(2026, 1, 15), date(2026, 7, 15)):
        # Eastern noon: 12:00 New York, 09:00 Los Angeles.
        assert screen_both(tables, company(NY), check(), as_of)["C1"] == []
        # Hawaii noon: 17:00 (winter) or 18:00 (summer) New York, 14:00 or 15:00 Los Angeles.
        assert screen_both(tables, company("Pacific/Honolulu"), check(), as_of)["C1"] == []
    # Late enough in the evening for New York, the Pacific address no longer helps.
    late = company("Pacific/Honolulu", contactHours={"start": "08:00", "end": "16:59"})
    assert screen_both(tables, late, check(), date(2026, 1, 15))["C1"] == ["OUTSIDE_CONTACT_HOURS"]


def test_contact_hours_are_inclusive_at_both_ends() -> None:
    tables = world([borrower("B1", NY)], [phone("C1", None)])
    assert screen_both(tables, company(contactHours={"start": "12:00", "end": "12:00"}), check(), D) == {
        "C1": []
    }
    assert screen_both(tables, company(contactHours={"start": "12:01"}), check(), D) == {
        "C1": ["OUTSIDE_CONTACT_HOURS"]
    }
    assert screen_both(tables, company(contactHours={"start": "08:00", "end": "11:59"}), check(), D) == {
        "C1": ["OUTSIDE_CONTACT_HOURS"]
    }


def test_frequency_limit_worked_example() -> None:
    attempts = [call("I1", at(NY, 2026, 4, 1, 10), details="voiceLeftVoicemail")] + [
        call(f"I{d}", at(NY, 2026, 4, d, 10)) for d in range(2, 7)
    ]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], attempts)
    assert screen_both(tables, company(), check(), date(2026, 4, 7)) == {"C1": []}  # 6 < 7
    seventh = [*attempts, call("I7", at(NY, 2026, 4, 7, 11, 59))]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], seventh)
    assert screen_both(tables, company(), check(), date(2026, 4, 7)) == {"C1": ["FREQUENCY_LIMIT"]}
    assert screen_both(tables, company(), check(), date(2026, 4, 8)) == {"C1": []}  # Apr 2–8 holds six
    at_noon = [*attempts, call("I7", at(NY, 2026, 4, 7, 12, 0))]  # not before the instant
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], at_noon)
    assert screen_both(tables, company(), check(), date(2026, 4, 7)) == {"C1": []}


def test_frequency_counts_per_borrower_across_contacts_not_across_borrowers() -> None:
    attempts = [call(f"I{d}", at(NY, 2026, 4, d, 9)) for d in range(1, 8)]
    tables = world(
        [borrower("B1", NY), borrower("B2", NY)],
        [phone("C1", NUMBER), phone("C2", "+12125550199"), email("E1"), phone("C3", NUMBER, pid="B2")],
        attempts,
    )
    assert screen_both(tables, company(), check(), D) == {
        "C1": ["FREQUENCY_LIMIT"],
        "C2": ["FREQUENCY_LIMIT"],
        "E1": [],  # the 7-in-7 limit is for voice
        "C3": [],
    }


@pytest.mark.parametrize(
    ("details", "status", "direction", "counts"),
    [
        ("voiceSpokeWithFirstParty", "succeeded", "outbound", True),
        ("voiceSpokeWithThirdParty", "succeeded", "outbound", True),
        ("voiceReachedVoicemail", "attempted", "outbound", True),
        ("voiceAnsweredNoConversation", "attempted", "outbound", True),
        ("voiceNoAnswer", "failed", "outbound", True),
        (None, "inProgress", "outbound", True),
        (None, "succeeded", "outbound", True),
        (None, "failed", "outbound", False),
        ("voiceBusy", "attempted", "outbound", False),
        ("voiceNotInService", "failed", "outbound", False),
        ("voiceWrongNumber", "succeeded", "outbound", False),
        ("voiceNoAnswer", "scheduled", "outbound", False),
        ("voiceNoAnswer", "canceled", "outbound", False),
        ("voiceNoAnswer", "attempted", "inbound", False),
    ],
)
def test_what_counts_as_a_voice_attempt(
    details: str | None, status: str, direction: str, counts: bool
) -> None:
    policy = {"frequencyLimits": [{"channels": ["voice"], "maxAttempts": 1, "windowDays": 1}]}
    attempts = [call("I1", at(NY, 2026, 4, 7, 9), details=details, status=status, direction=direction)]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], attempts)
    got = screen_both(tables, company(conversationCooldownDays=0, **policy), check(), D)["C1"]
    assert got == (["FREQUENCY_LIMIT"] if counts else [])


def test_other_channels_count_outbound_attempted_succeeded_in_progress() -> None:
    policy = {"frequencyLimits": [{"channels": ["email", "chat"], "maxAttempts": 2, "windowDays": 3}]}
    rows = [
        call("I1", at(NY, 2026, 4, 5, 9), channel="email", details=None, status="succeeded"),
        call("I2", at(NY, 2026, 4, 6, 9), channel="chat", details=None, status="inProgress"),
        call("I3", at(NY, 2026, 4, 6, 9), channel="email", details=None, status="failed"),
        call("I4", at(NY, 2026, 4, 6, 9), channel="email", details=None, direction="inbound"),
    ]
    contacts = [phone("C1", NUMBER), email("E1")]
    tables = world([borrower("B1", NY)], contacts, rows)
    assert screen_both(tables, company(**policy), check(), D) == {"C1": [], "E1": ["FREQUENCY_LIMIT"]}
    tables = world([borrower("B1", NY)], contacts, rows[1:])
    assert screen_both(tables, company(**policy), check(), D) == {"C1": [], "E1": []}
    # A window of 3 days: Apr 5 drops out as of Apr 8.
    tables = world([borrower("B1", NY)], contacts, rows)
    assert screen_both(tables, company(**policy), check(), date(2026, 4, 8)) == {"C1": [], "E1": []}


def test_massachusetts_two_in_seven_for_voice_and_text() -> None:
    contacts = [phone("C1", NUMBER, receiveTextMessages=True), address("A1", "02108", "MA")]
    two_calls = [call("I1", at(NY, 2026, 4, 1, 9)), call("I2", at(NY, 2026, 4, 3, 9))]
    tables = world([borrower("B1", NY)], contacts, two_calls)
    assert reasons_of(tables, company(), check(), D) == ["FREQUENCY_LIMIT"]
    assert reasons_of(tables, company(), check(channel="text"), D) == ["FREQUENCY_LIMIT"]
    assert reasons_of(tables, company(), check(), date(2026, 4, 8)) == []  # Apr 1 left the window
    call_and_text = [two_calls[0], call("I2", at(NY, 2026, 4, 3, 9), channel="text", details=None)]
    tables = world([borrower("B1", NY)], contacts, call_and_text)
    assert reasons_of(tables, company(), check(), D) == ["FREQUENCY_LIMIT"]
    assert reasons_of(tables, company(), check(channel="text"), D) == ["FREQUENCY_LIMIT"]
    one = world([borrower("B1", NY)], contacts, two_calls[:1])
    assert reasons_of(one, company(), check(), D) == []
    # Not a Massachusetts address, or the rule removed: the company's 7-in-7 only.
    elsewhere = world([borrower("B1", NY)], [contacts[0], address("A1", "10001", "NY")], two_calls)
    assert reasons_of(elsewhere, company(), check(), D) == []
    assert reasons_of(tables, company(stateRules={}), check(), D) == []


def test_state_rule_follows_every_address_used() -> None:
    two_calls = [call("I1", at(NY, 2026, 4, 1, 9)), call("I2", at(NY, 2026, 4, 3, 9))]
    archived = world(
        [borrower("B1", NY)],
        [phone("C1", NUMBER), address("A1", "02108", "MA", status="archived")],
        two_calls,
    )
    assert reasons_of(archived, company(), check(), D) == []
    spouse = world(
        [borrower("B1", NY)],
        [phone("C1", NUMBER), address("A1", "02108", "MA", affiliation="spouse")],
        two_calls,
    )
    assert reasons_of(spouse, company(), check(), D) == []
    # An invalid address still counts. (Its state arrives trimmed and upper-cased from validation;
    # a lower-case "ma" going through reading and validation is tested in test_fail_closed.py.)
    invalid = world(
        [borrower("B1", NY)], [phone("C1", NUMBER), address("A1", None, "MA", valid=False)], two_calls
    )
    assert reasons_of(invalid, company(), check(), D) == ["FREQUENCY_LIMIT"]
    zip_only = world([borrower("B1", NY)], [phone("C1", NUMBER), address("A1", "02108", None)], two_calls)
    assert reasons_of(zip_only, company(), check(), D) == ["FREQUENCY_LIMIT"]


def test_recent_conversation_blocks_voice_for_the_cooldown() -> None:
    def talk(day: int, **extra: str) -> list[dict[str, object]]:
        spoke = {"details": "voiceSpokeWithFirstParty", "status": "succeeded", "direction": "inbound"} | extra
        return [call("I1", at(NY, 2026, 4, day, 15), **spoke)]  # type: ignore[arg-type]

    contacts = [phone("C1", NUMBER, receiveTextMessages=True)]
    assert ny_borrower(*contacts, interactions=talk(1)) == ["RECENT_CONVERSATION"]  # D-6
    assert ny_borrower(*contacts, interactions=talk(6, direction="outbound")) == ["RECENT_CONVERSATION"]
    assert (
        reasons_of(world([borrower("B1", NY)], contacts, talk(1)), company(), check(), date(2026, 4, 8)) == []
    )
    assert ny_borrower(*contacts, interactions=talk(6, status="scheduled")) == []
    assert ny_borrower(*contacts, interactions=talk(6, details="voiceSpokeWithThirdParty")) == []
    text = check(channel="text")
    assert reasons_of(world([borrower("B1", NY)], contacts, talk(6)), company(), text, D) == []
    none = company(conversationCooldownDays=0)
    assert reasons_of(world([borrower("B1", NY)], contacts, talk(6)), none, check(), D) == []
    one_day = company(conversationCooldownDays=1)
    same_day = [call("I1", at(NY, 2026, 4, 7, 8), details="voiceSpokeWithFirstParty", status="succeeded")]
    assert reasons_of(world([borrower("B1", NY)], contacts, same_day), one_day, check(), D) == [
        "RECENT_CONVERSATION"
    ]
    assert reasons_of(world([borrower("B1", NY)], contacts, talk(6)), one_day, check(), D) == []


def test_autodial_consent() -> None:
    noon = as_of_instant(company(), D)
    autodialed = check(autodialed=True)

    def reasons(*rows: dict[str, object], chk: object = autodialed) -> list[str]:
        tables = world(
            [borrower("B1", NY)], [phone("C1", NUMBER, receiveTextMessages=True)], consents=list(rows)
        )
        return reasons_of(tables, company(), chk, D)  # type: ignore[arg-type]

    assert reasons() == ["AUTODIAL_CONSENT_MISSING"]
    assert reasons(consent("autodialedColl", "consented", noon - timedelta(days=3))) == []
    assert reasons(consent("autodialedColl", "consented", noon)) == []  # updatedAt <= instant
    assert reasons(consent("autodialedColl", "consented", noon + timedelta(seconds=1))) == [
        "AUTODIAL_CONSENT_MISSING"
    ]
    assert reasons(
        consent("autodialedColl", "consented", noon - timedelta(days=3)),
        consent("autodialedColl", "revoked", noon - timedelta(days=1)),
    ) == ["AUTODIAL_CONSENT_MISSING"]
    assert (
        reasons(
            consent("autodialedColl", "revoked", noon - timedelta(days=3)),
            consent("autodialedColl", "consented", noon - timedelta(days=1)),
        )
        == []
    )
    assert reasons(chk=check(channel="text", autodialed=True)) == ["AUTODIAL_CONSENT_MISSING"]
    assert reasons(chk=check()) == []
    assert reasons(consent("electronicComms", "consented", noon - timedelta(days=3))) == [
        "AUTODIAL_CONSENT_MISSING"
    ]


def test_text_opt_in() -> None:
    text = check(channel="text")
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER), phone("C2", NUMBER, receiveTextMessages=True)])
    assert screen_both(tables, company(), text, D) == {"C1": ["TEXT_OPT_IN_MISSING"], "C2": []}


def test_electronic_consent_revoked_and_ties() -> None:
    noon = as_of_instant(company(), D)
    earlier = noon - timedelta(days=2)

    def reasons(chk: object, *rows: dict[str, object]) -> dict[str, list[str]]:
        contacts = [email("C1"), phone("C2", NUMBER, receiveTextMessages=True), address("C3", "10001", "NY")]
        tables = world([borrower("B1", NY)], contacts, consents=list(rows))
        return screen_both(tables, company(), chk, D)  # type: ignore[arg-type]

    revoked = consent("electronicComms", "revoked", earlier)
    assert reasons(check(), revoked) == {"C1": ["ELECTRONIC_CONSENT_REVOKED"], "C2": [], "C3": []}
    text = reasons(check(channel="text"), revoked)
    assert text["C2"] == ["ELECTRONIC_CONSENT_REVOKED"]
    assert reasons(check())["C1"] == []  # absent = consented
    tie = [consent("electronicComms", "consented", earlier), revoked]
    assert reasons(check(), *tie)["C1"] == ["ELECTRONIC_CONSENT_REVOKED"]
    assert reasons(check(), *reversed(tie))["C1"] == ["ELECTRONIC_CONSENT_REVOKED"]
    later = consent("electronicComms", "consented", earlier + timedelta(minutes=1))
    assert reasons(check(), revoked, later)["C1"] == []


def test_channel_mismatch_still_lists_every_other_reason() -> None:
    attempts = [call(f"I{d}", at(NY, 2026, 4, d, 9)) for d in range(1, 8)]
    tables = world(
        [borrower("B1", "Pacific/Honolulu")],
        [email("C1", affiliation="employer"), address("C2", "96813", "HI")],
        attempts,
    )
    assert screen_both(tables, company(), check(channel="voice"), D) == {
        "C1": ["CHANNEL_MISMATCH", "FREQUENCY_LIMIT", "OUTSIDE_CONTACT_HOURS", "THIRD_PARTY_NOT_AUTHORIZED"],
        "C2": ["CHANNEL_MISMATCH", "FREQUENCY_LIMIT", "OUTSIDE_CONTACT_HOURS"],
    }
    assert screen_both(tables, company(), check(channel="mail"), D) == {
        "C1": ["CHANNEL_MISMATCH", "THIRD_PARTY_NOT_AUTHORIZED"],
        "C2": [],
    }


def test_every_reason_at_once_and_all_codes_reachable() -> None:
    noon = as_of_instant(company(), D)
    contacts = [
        email("C1", status="archived", valid=False, affiliation="other", label="work"),
        address("A1", "02108", "MA"),
    ]
    rows = [
        call("I1", at(NY, 2026, 4, 6, 9), details="voiceSpokeWithFirstParty", status="succeeded"),
        call("I2", at(NY, 2026, 4, 6, 10)),
    ]
    tables = world(
        [borrower("B1", "Pacific/Honolulu")],
        contacts,
        rows,
        dnis=[dni(channels=["text"], contactLabels=["work"])],
        consents=[consent("electronicComms", "revoked", noon - timedelta(days=1))],
    )
    got = reasons_of(tables, company(), check(channel="text", autodialed=True), D)
    assert set(got) == set(REASON_CODES) - {"TIMEZONE_UNKNOWN", "RECENT_CONVERSATION", "SOURCE_ROW_REJECTED"}
    with_rejected = screen_both(
        tables, company(), check(channel="text", autodialed=True), D, rejected=["B1"]
    )["C1"]
    assert set(with_rejected) == set(got) | {"SOURCE_ROW_REJECTED"}
    voice = reasons_of(tables, company(unknownTimezone="block"), check(channel="voice", autodialed=True), D)
    assert "RECENT_CONVERSATION" in voice


# ---------------------------------------------------------------- do not interact, in detail


def test_dni_theme_all_does_not_cover_account_credentials() -> None:
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni(themes=["all"])])
    assert reasons_of(tables, company(), check("opsCollDebt"), D) == ["DO_NOT_INTERACT"]
    assert reasons_of(tables, company(), check("agentNotification"), D) == ["DO_NOT_INTERACT"]
    assert reasons_of(tables, company(), check("opsAccountCredentials"), D) == []
    named = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni(themes=["opsAccountCredentials"])])
    assert reasons_of(named, company(), check("opsAccountCredentials"), D) == ["DO_NOT_INTERACT"]


@pytest.mark.parametrize(
    ("extra", "active"),
    [
        ({"endDate": D}, True),
        ({"endDate": D - timedelta(days=1)}, False),
        ({"startDate": D}, True),
        ({"startDate": D + timedelta(days=1)}, False),
        ({"daysOfWeek": [2]}, True),  # Tuesday
        ({"daysOfWeek": [0, 1, 3, 4, 5, 6]}, False),
        ({"daysOfWeek": []}, True),
        ({"timesOfDay": [{"fromHour": 12, "toHour": 13}]}, True),
        ({"timesOfDay": [{"fromHour": 8, "toHour": 12}]}, False),
        ({"timesOfDay": [{"fromHour": 0, "toHour": 6}, {"fromHour": 11, "toHour": 24}]}, True),
        ({"timesOfDay": []}, True),
        ({"contactLabels": ["personal"]}, True),
        ({"contactLabels": ["work", "home"]}, False),
        ({"contactLabels": []}, True),
        # Judged in the DNI's own zone: noon in New York is 06:00 in Honolulu in April ...
        ({"timezone": "Pacific/Honolulu", "timesOfDay": [{"fromHour": 6, "toHour": 7}]}, True),
        ({"timezone": "Pacific/Honolulu", "timesOfDay": [{"fromHour": 12, "toHour": 13}]}, False),
        # ... and already Wednesday 06:00 on Kiritimati (UTC+14).
        ({"timezone": "Pacific/Kiritimati", "endDate": D}, False),
        ({"timezone": "Pacific/Kiritimati", "startDate": D + timedelta(days=1)}, True),
        ({"timezone": "Pacific/Kiritimati", "daysOfWeek": [3]}, True),
        ({"createdAt": datetime(2026, 4, 7, 16, tzinfo=UTC)}, True),  # exactly the instant
        ({"createdAt": datetime(2026, 4, 7, 16, 0, 1, tzinfo=UTC)}, False),
        ({"deletedAt": datetime(2026, 4, 7, 16, tzinfo=UTC)}, False),
        ({"deletedAt": datetime(2026, 4, 7, 16, 0, 1, tzinfo=UTC)}, True),
    ],
)
def test_dni_active_on_the_as_of_date(extra: dict[str, object], active: bool) -> None:
    assert as_of_instant(company(), D) == datetime(2026, 4, 7, 16, tzinfo=UTC)
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni(**extra)])
    assert reasons_of(tables, company(), check(), D) == (["DO_NOT_INTERACT"] if active else [])


# ---------------------------------------------------------------- clock changes


def test_daylight_saving_change_days_new_york() -> None:
    phoenix = world([borrower("B1", "America/Phoenix")], [phone("C1", None)])
    late_start = company(NY, contactHours={"start": "10:00"})
    # Noon EST is 10:00 in Phoenix; noon EDT (from 2026-03-08) is 09:00.
    assert screen_both(phoenix, late_start, check(), date(2026, 3, 7)) == {"C1": []}
    assert screen_both(phoenix, late_start, check(), date(2026, 3, 8)) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}
    assert screen_both(phoenix, late_start, check(), date(2026, 10, 31)) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}
    assert screen_both(phoenix, late_start, check(), date(2026, 11, 1)) == {"C1": []}


@pytest.mark.parametrize("as_of", [date(2026, 3, 8), date(2026, 11, 1)])
def test_daily_windows_on_clock_change_days(as_of: date) -> None:
    policy = company(frequencyLimits=[{"channels": ["voice"], "maxAttempts": 2, "windowDays": 1}])
    prev = as_of - timedelta(days=1)
    day = (as_of.year, as_of.month, as_of.day)
    early = call("I1", at(NY, *day, 0, 30))
    after_change = call("I2", at(NY, *day, 3, 30))
    last_night = call("I0", at(NY, prev.year, prev.month, prev.day, 23, 59))
    # 00:30 and 03:30 local on the change day belong to it; 23:59 the day before does not.
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], [early, after_change])
    assert screen_both(tables, policy, check(), as_of) == {"C1": ["FREQUENCY_LIMIT"]}
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], [early, last_night])
    assert screen_both(tables, policy, check(), as_of) == {"C1": []}
    assert screen_both(tables, policy, check(), prev) == {"C1": []}


# ---------------------------------------------------------------- point in time


def test_backfill_ignores_what_happened_after_that_noon() -> None:
    past = date(2026, 2, 10)
    noon = as_of_instant(company(), past)
    later = [call(f"I{i}", noon + timedelta(minutes=i)) for i in range(8)]  # the first is exactly noon
    tables = world(
        [borrower("B1", NY)],
        [phone("C1", NUMBER, receiveTextMessages=True)],
        later
        + [call("S1", noon + timedelta(hours=1), details="voiceSpokeWithFirstParty", status="succeeded")],
        dnis=[dni(createdAt=noon + timedelta(hours=2), startDate=date(2026, 1, 1))],
        consents=[
            consent("autodialedColl", "consented", noon - timedelta(days=30)),
            consent("autodialedColl", "revoked", noon + timedelta(minutes=30)),
            consent("electronicComms", "revoked", noon + timedelta(minutes=30)),
        ],
    )
    assert screen_both(tables, company(), check(autodialed=True), past) == {"C1": []}
    assert screen_both(tables, company(), check(channel="text", autodialed=True), past) == {"C1": []}
    # The next day all of it is known.
    assert screen_both(tables, company(), check(autodialed=True), past + timedelta(days=1)) == {
        "C1": ["AUTODIAL_CONSENT_MISSING", "DO_NOT_INTERACT", "FREQUENCY_LIMIT", "RECENT_CONVERSATION"]
    }


# ---------------------------------------------------------------- frames and failures


def test_only_matched_contacts_are_screened_but_all_addresses_count() -> None:
    tables = world(
        [borrower("B1", None)],
        [phone("C1", None), address("A1", "96813", "HI")],
    )
    matched = tables.contacts.filter(pl.col("id") == "C1")
    assert screen_both(tables, company(), check(), D, matched=matched) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}


def test_result_schema_and_order() -> None:
    tables = world([borrower("B1", NY)], [phone("C2", NUMBER), phone("C1", NUMBER, status="archived")])
    result = screen(tables.contacts, tables, company(), check(), D).collect()
    assert result.schema == SCREENING_SCHEMA
    assert result.get_column("contactId").to_list() == ["C1", "C2"]
    assert result.row(0) == ("C1", "B1", "voice", False, ["CONTACT_ARCHIVED"])
    empty = screen(tables.contacts.filter(pl.lit(False)), tables, company(), check(), D).collect()
    assert empty.schema == SCREENING_SCHEMA
    assert empty.height == 0


def test_unscreened_allows_everyone() -> None:
    tables = world(
        [borrower("B1", NY)], [phone("C2", NUMBER, status="archived"), email("C1"), address("C3", None, None)]
    )
    result = unscreened(tables.contacts).collect()
    assert result.schema == SCREENING_SCHEMA
    assert result.rows() == [
        ("C1", "B1", "email", True, []),
        ("C2", "B1", "voice", True, []),
        ("C3", "B1", "mail", True, []),
    ]


def test_unknown_status_details_fail_closed() -> None:
    rows = [call("I1", at(NY, 2026, 4, 6, 9), details="voiceMaybe")]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], rows)
    with pytest.raises(SourceDataError, match="interaction I1") as err:
        screen(tables.contacts, tables, company(), check(), D)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("where", ["borrower", "contact", "dni"])
def test_unknown_time_zone_names_fail_closed(where: str) -> None:
    tables = world(
        [borrower("B1", "Mars/Olympus" if where == "borrower" else NY)],
        [phone("C1", NUMBER, timezone="Mars/Olympus" if where == "contact" else None)],
        dnis=[dni(timezone="Mars/Olympus")] if where == "dni" else [],
    )
    with pytest.raises(SourceDataError, match="Mars/Olympus"):
        screen(tables.contacts, tables, company(), check(), D)


# ---------------------------------------------------------------- fail closed, point in time


def test_a_rejected_row_blocks_every_contact_of_its_borrower_only() -> None:
    tables = world(
        [borrower("B1", NY), borrower("B2", NY)],
        [phone("C1", NUMBER), email("E1"), phone("C2", NUMBER, pid="B2")],
    )
    got = screen_both(tables, company(), check(), D, rejected=["B1"])
    assert got == {"C1": ["SOURCE_ROW_REJECTED"], "C2": [], "E1": ["SOURCE_ROW_REJECTED"]}
    # listed with every other reason that still applies
    archived = world([borrower("B1", NY)], [phone("C1", NUMBER, status="archived")])
    assert screen_both(archived, company(), check(), D, rejected=["B1"]) == {
        "C1": ["CONTACT_ARCHIVED", "SOURCE_ROW_REJECTED"]
    }
    # a rejected row that names no borrower could be anyone's
    assert screen_both(tables, company(), check(), D, rejected=[None]) == {
        "C1": ["SOURCE_ROW_REJECTED"],
        "C2": ["SOURCE_ROW_REJECTED"],
        "E1": ["SOURCE_ROW_REJECTED"],
    }


def test_contacts_as_of_the_instant() -> None:
    noon = as_of_instant(company(), D)
    tables = world(
        [borrower("B1", NY)],
        [
            phone("C1", NUMBER, createdAt=noon),
            phone("C2", NUMBER, createdAt=noon + timedelta(seconds=1)),  # not there yet
            phone("C3", NUMBER, status="archived", archivedAt=noon + timedelta(days=1)),  # still active
            phone("C4", NUMBER, status="primary", archivedAt=noon),  # archived by then
            # archived a day later: at noon still an address in Honolulu
            address("A1", "96813", "HI", status="archived", archivedAt=noon + timedelta(days=1)),
        ],
    )
    got = screen_both(tables, company(), check(), D)
    assert got == {
        "A1": [],  # mail: no contact hours
        "C1": ["OUTSIDE_CONTACT_HOURS"],
        "C3": ["OUTSIDE_CONTACT_HOURS"],
        "C4": ["CONTACT_ARCHIVED", "OUTSIDE_CONTACT_HOURS"],
    }
    # a day after it was archived, the Honolulu address no longer counts
    later = screen_both(tables, company(), check(), D + timedelta(days=2))
    assert later["C1"] == []
    assert later["A1"] == ["CONTACT_ARCHIVED"]


# ---------------------------------------------------------------- next eligible date


def test_next_eligible_date_when_attempts_age_out_and_cooldowns_end() -> None:
    # the worked example: six attempts Apr 1-6 and a seventh on Apr 7 before noon
    calls = [call(f"I{d}", at(NY, 2026, 4, d, 9)) for d in range(1, 8)]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], calls)
    assert eligible_both(tables, company(), check(), D) == {"C1": date(2026, 4, 8)}
    # a conversation on Apr 6 blocks voice through Apr 12
    talk = [call("I1", at(NY, 2026, 4, 6, 15), details="voiceSpokeWithFirstParty", status="succeeded")]
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER)], talk)
    assert eligible_both(tables, company(), check(), D) == {"C1": date(2026, 4, 13)}
    # both: the later date wins; allowed contacts have none
    tables = world([borrower("B1", NY)], [phone("C1", NUMBER), email("E1")], calls + talk)
    assert eligible_both(tables, company(), check(), D) == {"C1": date(2026, 4, 13), "E1": None}


def test_next_eligible_date_follows_clock_changes_and_dni_days() -> None:
    honolulu = world([borrower("B1", "Pacific/Honolulu")], [phone("C1", None)])
    # Chicago noon is 07:00 in Honolulu in summer, 08:00 once Chicago's clocks go back (Nov 1)
    assert eligible_both(honolulu, company("America/Chicago"), check(), date(2026, 7, 15)) == {
        "C1": date(2026, 11, 1)
    }
    # Eastern noon never reaches Honolulu in hours: no date
    assert eligible_both(honolulu, company(), check(), date(2026, 7, 15)) == {"C1": None}
    # a DNI ending on Apr 9; one on weekdays only (D is a Tuesday)
    ending = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni(endDate=date(2026, 4, 9))])
    assert eligible_both(ending, company(), check(), D) == {"C1": date(2026, 4, 10)}
    weekdays = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni(daysOfWeek=[1, 2, 3, 4, 5])])
    assert eligible_both(weekdays, company(), check(), D) == {"C1": date(2026, 4, 11)}
    forever = world([borrower("B1", NY)], [phone("C1", NUMBER)], dnis=[dni()])
    assert eligible_both(forever, company(), check(), D) == {"C1": None}


def test_no_next_eligible_date_for_reasons_time_does_not_clear() -> None:
    calls = [call(f"I{d}", at(NY, 2026, 4, d, 9)) for d in range(1, 8)]
    tables = world(
        [borrower("B1", NY)],
        [phone("C1", NUMBER, status="archived"), phone("C2", NUMBER, valid=False), phone("C3", NUMBER)],
        calls,
    )
    assert eligible_both(tables, company(), check(), D) == {"C1": None, "C2": None, "C3": date(2026, 4, 8)}
    assert eligible_both(tables, company(), check(), D, rejected=["B1"]) == {
        "C1": None,
        "C2": None,
        "C3": None,
    }
