"""What a compliance rule is: one named unit that owns its predicate, its evidence and whether time
clears it (COMPLIANCE.md "The rules and their reason codes").

- `blocks(judged)`: a Polars expression, true where the rule blocks a contact, over the screen's
  frame of matched contacts with their borrower's facts (`Judged` says which facts are there);
- `lasts`: true when no passing of time clears it, so a contact it blocks has no next eligible date;
- `evidence(seen)`: what `explain` shows for it, from the rows `Seen` holds for one contact.

The batch screen, the next eligible date, `explain` and `check` all read the rules from
`pipelines.rules.registry`, so a rule is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.io.files import iso_utc
from pipelines.model.config import CheckCanInteractData, Policy
from pipelines.rules.contact_history import Limit


@dataclass(frozen=True)
class Judged:
    """What a rule's predicate reads besides the frame: the columns present, the policy, the
    exporter's check and the frequency limits as of the date."""

    columns: frozenset[str]
    policy: Policy
    check: CheckCanInteractData
    limits: tuple[Limit, ...]

    def fact(self, name: str, default: bool | int) -> pl.Expr:
        """A borrower fact column, `default` where the borrower has none (or no borrower has it)."""
        return pl.col(name).fill_null(default) if name in self.columns else pl.lit(default)


@dataclass(frozen=True)
class Seen:
    """The rows `explain` gathered about one contact at the instant, for each rule's evidence."""

    contact: dict[str, Any]
    channel: str
    check: CheckCanInteractData
    policy: Policy
    as_of: date
    zone: ZoneInfo  # the company's
    zones: list[dict[str, Any]]  # candidate zones with their local time and whether it is outside
    states: list[str]  # the states of the borrower's addresses the zone rule uses
    interactions: pl.DataFrame  # the borrower's interactions any window can count, by time
    limits: tuple[Limit, ...]
    conversation_since: datetime | None  # the cool-down window's first instant (None: no cool-down)
    dni_ids: list[str]  # the borrower's DNIs active for this contact
    consents: pl.DataFrame  # the borrower's consent rows known at the instant
    rejected: pl.DataFrame  # the borrower's rejected source rows (and any naming no borrower)


def of_persons(frame: pl.LazyFrame, persons: pl.LazyFrame | None) -> pl.LazyFrame:
    """The rows of `frame` that belong to `persons` (None: every row already does)."""
    return frame if persons is None else frame.join(persons, on="personId", how="semi")


def iso(value: Any) -> Any:
    """Instants as UTC ISO-8601 (`Z`), dates as ISO dates, anything else as it is."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready dicts (dates and instants in ISO-8601)."""
    return [{k: iso(v) for k, v in r.items()} for r in frame.to_dicts()]


@dataclass(frozen=True)
class Rule:
    """One compliance rule: its reason code, predicate, permanence and evidence."""

    code: str
    blocks: Callable[[Judged], pl.Expr]
    lasts: bool
    evidence: Callable[[Seen], dict[str, Any]]


__all__ = ["Judged", "Rule", "Seen", "iso", "of_persons", "rows"]
