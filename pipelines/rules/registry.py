"""Every compliance rule, once. Adding a rule: a module with its `Rule`, and a line here.

`flags` gives the screen one boolean per reason code, `lasting` the codes no passing of time clears
(their contacts get no next eligible date), `evidence` what `explain` shows for each code."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from pipelines.model.vocab import REASON_CODES
from pipelines.rules import (
    consents,
    contact_hours,
    contact_record,
    do_not_interact,
    history_limits,
    rejected_rows,
)
from pipelines.rules.base import Judged, Rule, Seen

RULES: Final[tuple[Rule, ...]] = (
    consents.AUTODIAL_CONSENT,
    contact_record.CHANNEL_MISMATCH,
    contact_record.ARCHIVED,
    contact_record.INVALID,
    do_not_interact.DO_NOT_INTERACT,
    consents.ELECTRONIC_CONSENT,
    history_limits.FREQUENCY,
    contact_hours.OUTSIDE_HOURS,
    history_limits.COOLDOWN,
    rejected_rows.SOURCE_ROW_REJECTED,
    contact_record.TEXT_OPT_IN,
    contact_record.THIRD_PARTY,
    contact_hours.TIMEZONE_UNKNOWN,
)
# Every reason code of the vocabulary has exactly one rule.
assert sorted(r.code for r in RULES) == sorted(REASON_CODES), "a reason code without its rule"

LASTING: Final = tuple(sorted(r.code for r in RULES if r.lasts))


def flags(judged: Judged) -> dict[str, pl.Expr]:
    """One non-null boolean expression per reason code: true where the rule blocks the contact."""
    return {rule.code: rule.blocks(judged).fill_null(False) for rule in RULES}


def evidence(seen: Seen, codes: list[str]) -> dict[str, Any]:
    """What each of `codes` (a contact's reasons) rests on, rule by rule."""
    by_code = {rule.code: rule for rule in RULES}
    return {code: by_code[code].evidence(seen) for code in codes}


__all__ = ["LASTING", "RULES", "evidence", "flags"]
