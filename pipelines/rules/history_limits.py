"""Rules counted from the borrower's interactions (COMPLIANCE.md "Counting attempts and
conversations"): frequency limits (the company's and its state rules', each checked) and the voice
cool-down after a conversation. Both clear with time, as attempts and conversations age out of
their windows; what counts is defined once in `pipelines.rules.contact_history`."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipelines.model.vocab import one_of
from pipelines.rules.base import Judged, Rule, Seen, rows
from pipelines.rules.contact_history import counted_by, is_conversation

_channel = pl.col("channel")


def _over_a_limit(judged: Judged) -> pl.Expr:
    """Over any applicable limit: `n<i>` attempts counted by limit i (a state rule's applies to
    borrowers with an address in that state, column `state_<XX>`)."""
    over = pl.lit(False)
    for i, lim in enumerate(judged.limits):
        applies = one_of(_channel, lim.channels)
        if lim.state is not None:
            applies = applies & judged.fact(f"state_{lim.state}", False)
        over = over | (applies & (judged.fact(f"n{i}", 0) >= lim.max_attempts))
    return over


def _frequency_evidence(seen: Seen) -> dict[str, Any]:
    zone_date = seen.as_of
    limits = []
    for lim in seen.limits:
        if seen.channel not in lim.channels or (lim.state is not None and lim.state not in seen.states):
            continue
        counted = seen.interactions.filter(counted_by(lim))
        if counted.height < lim.max_attempts:
            continue
        window = (zone_date - lim.since.astimezone(seen.zone).date()).days + 1
        limits.append(
            {"channels": list(lim.channels), "maxAttempts": lim.max_attempts, "windowDays": window,
             "state": lim.state, "counted": counted.height,
             "attempts": rows(counted.select("id", "channel", "statusDetails", "startedAt"))}
        )  # fmt: skip
    return {"limits": limits, "states": seen.states}


def _recent_conversation(judged: Judged) -> pl.Expr:
    return (_channel == "voice") & judged.fact("conversation", False)


def _conversation_evidence(seen: Seen) -> dict[str, Any]:
    since = seen.conversation_since
    talks = (
        seen.interactions.filter(is_conversation(since)) if since is not None else seen.interactions.clear()
    )
    return {
        "cooldownDays": seen.policy.conversationCooldownDays,
        "conversations": rows(talks.select("id", "direction", "startedAt")),
    }


FREQUENCY = Rule("FREQUENCY_LIMIT", _over_a_limit, False, _frequency_evidence)
COOLDOWN = Rule("RECENT_CONVERSATION", _recent_conversation, False, _conversation_evidence)
