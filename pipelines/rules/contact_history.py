"""What a borrower's past interactions count for (COMPLIANCE.md "Counting attempts and conversations").

One home for the two definitions every path needs: when an interaction is an *attempt* against a
frequency limit, and when it is a *conversation* that starts the voice cool-down; and for the
windows they are counted in (calendar days in the company's time zone, `D-(n-1)` … `D`). The screen
counts with them, the next eligible date ages them out, and `explain` lists them as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.model.config import Policy
from pipelines.model.vocab import ATTEMPT_STATUSES, CONVERSATION_DETAIL, VOICE_ATTEMPT_DETAILS, one_of

# Scheduled and canceled interactions never happened: they count for nothing.
NEVER_COUNTED: Final = ("scheduled", "canceled")


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) of a calendar date in `zone` (windows are whole calendar days there).

    A midnight skipped by a clock change maps to the change itself, which is the day's first instant.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Limit:
    """One frequency limit as of a date: attempts on `channels` since `since` may not reach `max_attempts`."""

    channels: tuple[str, ...]
    max_attempts: int
    since: datetime  # first instant of D-(windowDays-1)
    state: str | None  # None: the company's own limit; else applies to borrowers with that state


def limits(policy: Policy, as_of: date, zone: ZoneInfo) -> list[Limit]:
    """Every limit of the policy (the company's, then each state rule's) as of `as_of`."""
    out = []
    for lim in policy.frequencyLimits:
        since = day_start(as_of - timedelta(days=lim.windowDays - 1), zone)
        out.append(Limit(tuple(lim.channels), lim.maxAttempts, since, None))
    for state, rule in sorted(policy.stateRules.items()):
        for lim in rule.frequencyLimits:
            since = day_start(as_of - timedelta(days=lim.windowDays - 1), zone)
            out.append(Limit(tuple(lim.channels), lim.maxAttempts, since, state))
    return out


def conversation_since(policy: Policy, as_of: date, zone: ZoneInfo) -> datetime | None:
    """The first instant of the cool-down window as of `as_of` (None: no cool-down)."""
    cooldown = policy.conversationCooldownDays
    return day_start(as_of - timedelta(days=cooldown - 1), zone) if cooldown > 0 else None


def is_attempt(channels: tuple[str, ...]) -> pl.Expr:
    """Whether an interaction is an attempt on one of `channels` (false, never null)."""
    outbound = pl.col("direction") == "outbound"
    others = [c for c in channels if c != "voice"]
    expr = one_of(pl.col("channel"), others) & outbound & one_of(pl.col("status"), ATTEMPT_STATUSES)
    if "voice" in channels:
        details = pl.col("statusDetails")
        voice = (
            (pl.col("channel") == "voice")
            & outbound
            & ~one_of(pl.col("status"), NEVER_COUNTED)
            & (
                one_of(details, VOICE_ATTEMPT_DETAILS)
                | (details.is_null() & one_of(pl.col("status"), ATTEMPT_STATUSES))
            )
        )
        expr = expr | voice
    return expr.fill_null(False)


def is_conversation(since: datetime) -> pl.Expr:
    """Whether an interaction is a conversation in the cool-down window starting at `since`: a voice
    call, either direction (one the borrower started counts), that spoke with the borrower."""
    return (
        (pl.col("channel") == "voice")
        & (pl.col("statusDetails") == CONVERSATION_DETAIL)
        & ~one_of(pl.col("status"), NEVER_COUNTED)
        & (pl.col("startedAt") >= since)
    ).fill_null(False)


def counted_by(limit: Limit) -> pl.Expr:
    """Whether an interaction counts toward `limit` (an attempt on its channels inside its window)."""
    return is_attempt(limit.channels) & (pl.col("startedAt") >= limit.since)


__all__ = [
    "NEVER_COUNTED",
    "Limit",
    "conversation_since",
    "counted_by",
    "day_start",
    "is_attempt",
    "is_conversation",
    "limits",
]
