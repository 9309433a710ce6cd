"""The compliance rules are one registry of units: every reason code has exactly one rule, the ones
time never clears are those COMPLIANCE.md names, and what counts as an attempt or a conversation is
defined in one module only."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.model.config import CheckCanInteractData, Policy
from pipelines.model.vocab import REASON_CODES
from pipelines.rules import contact_history, registry
from pipelines.rules.base import Seen

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def test_every_reason_code_has_one_rule() -> None:
    codes = [rule.code for rule in registry.RULES]
    assert sorted(codes) == sorted(REASON_CODES)
    assert len(set(codes)) == len(codes)


def test_the_reasons_time_never_clears_are_the_ones_compliance_names() -> None:
    # COMPLIANCE.md "Next eligible date": null for a missing consent, archived, invalid, third party,
    # text opt-in, channel mismatch, unknown zone, SOURCE_ROW_REJECTED (a revoked consent is a
    # missing one until a new record arrives).
    assert set(registry.LASTING) == {
        "AUTODIAL_CONSENT_MISSING", "ELECTRONIC_CONSENT_REVOKED", "CONTACT_ARCHIVED", "CONTACT_INVALID",
        "THIRD_PARTY_NOT_AUTHORIZED", "TEXT_OPT_IN_MISSING", "CHANNEL_MISMATCH", "TIMEZONE_UNKNOWN",
        "SOURCE_ROW_REJECTED",
    }  # fmt: skip


def test_what_counts_in_the_history_is_defined_in_one_module() -> None:
    names = re.compile(r"\b(CONVERSATION_DETAIL|VOICE_ATTEMPT_DETAILS|NEVER_COUNTED)\b")
    users = {
        str(p.relative_to(PIPELINES))
        for p in PIPELINES.rglob("*.py")
        if names.search(p.read_text(encoding="utf-8"))
    }
    assert users == {"model/vocab.py", "rules/contact_history.py"}


def test_every_rule_gives_json_evidence() -> None:
    policy = Policy()
    zone = ZoneInfo("America/New_York")
    as_of = date(2026, 4, 7)
    interactions = pl.DataFrame(
        {"id": ["I1"], "personId": ["B1"], "channel": ["voice"], "direction": ["outbound"], "status": ["attempted"],
         "statusDetails": ["voiceSpokeWithFirstParty"], "startedAt": [datetime(2026, 4, 6, 15, tzinfo=UTC)]}
    )  # fmt: skip
    seen = Seen(
        contact={
            "contactType": "phone",
            "status": "archived",
            "archivedAt": datetime(2026, 1, 1, tzinfo=UTC),
            "valid": False,
            "affiliation": "spouse",
            "authorizedThirdParty": False,
            "powerOfAttorney": False,
            "receiveTextMessages": None,
        },  # fmt: skip
        channel="voice",
        check=CheckCanInteractData(theme="opsCollDebt", isAutodialed=True),
        policy=policy,
        as_of=as_of,
        zone=zone,
        zones=[],
        states=[],
        interactions=interactions,
        limits=tuple(contact_history.limits(policy, as_of, zone)),
        conversation_since=contact_history.conversation_since(policy, as_of, zone),
        dni_ids=["N1"],
        consents=pl.DataFrame(
            schema={"name": pl.String, "status": pl.String, "updatedAt": pl.Datetime("us", "UTC")}
        ),
        rejected=pl.DataFrame(schema={"tableName": pl.String, "rowKey": pl.String, "personId": pl.String}),
    )
    shown = registry.evidence(seen, sorted(REASON_CODES))
    assert json.loads(json.dumps(shown)) == shown
    assert shown["CONTACT_ARCHIVED"] == {"status": "archived", "archivedAt": "2026-01-01T00:00:00Z"}
    assert shown["RECENT_CONVERSATION"]["conversations"] == [
        {"id": "I1", "direction": "outbound", "startedAt": "2026-04-06T15:00:00Z"}
    ]
