"""Where the borrower may be (COMPLIANCE.md "Candidate time zones"): for voice, text and email the
instant must be inside contact hours in EVERY candidate zone, and a contact with no candidate zone is
blocked when the policy says `unknownTimezone: block` (fail closed). The screen computes, per
contact, whether the instant is outside contact hours in the borrower's zones (`pOutside`), the
contact's own zone (`zoneOutside`) and its number's zones (`numberOutside`); null where none is
known. Outside hours clears with time (another day's noon may fall inside); an unknown zone does not."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from pipelines.model.vocab import one_of
from pipelines.rules.base import Judged, Rule, Seen

HOURS_CHANNELS: Final = ("voice", "text", "email")  # the channels contact hours and zones apply to
_channel = pl.col("channel")


def _outside_any() -> pl.Expr:
    """Outside contact hours in any zone known (null: no zone known)."""
    return pl.max_horizontal("pOutside", "zoneOutside", "numberOutside")


def _outside(_: Judged) -> pl.Expr:
    return one_of(_channel, HOURS_CHANNELS) & _outside_any().fill_null(False)


def _unknown(judged: Judged) -> pl.Expr:
    fail_closed = pl.lit(judged.policy.unknownTimezone == "block")
    return one_of(_channel, HOURS_CHANNELS) & _outside_any().is_null() & fail_closed


def _outside_evidence(seen: Seen) -> dict[str, Any]:
    hours = {"start": seen.policy.contactHours.start, "end": seen.policy.contactHours.end}
    return {"contactHours": hours, "zones": seen.zones}


OUTSIDE_HOURS = Rule("OUTSIDE_CONTACT_HOURS", _outside, False, _outside_evidence)
TIMEZONE_UNKNOWN = Rule(
    "TIMEZONE_UNKNOWN",
    _unknown,
    True,
    lambda seen: {"zones": [], "unknownTimezone": seen.policy.unknownTimezone},
)
