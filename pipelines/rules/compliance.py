"""The batch Compliance Guard (COMPLIANCE.md): every matched contact screened at company noon.

`screen` answers `canInteract` and every blocking reason for each matched contact, as vectorised
Polars over the whole batch: per-borrower facts (zones, counts, DNIs, consents) are computed once
per borrower, then gathered to each contact by its borrower's number. Local times are computed once per time zone (there are a few hundred at
most), never per row. Only facts known at the instant count, so a backfill a year later gives the
same answer as a run on the day.

A window of calendar days D-(n-1) … D (frequency limits, conversation cool-down) is the interval
from the first instant of day D-(n-1) in the company zone up to the instant, so counting compares
UTC timestamps with one bound per window instead of converting every interaction's time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.io.chunks import aligned, realigned
from pipelines.model.config import CheckCanInteractData, Company, Policy
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import SourceTables
from pipelines.model.vocab import (
    DEFAULT_CHANNEL_FOR_TYPE,
    REASON_CODES,
    STATUS_DETAILS,
)
from pipelines.rules import borrower_keys, contact_history, registry
from pipelines.rules.base import Judged, of_persons
from pipelines.rules.borrower_keys import BORROWER_KEY
from pipelines.rules.columns import sorted_by
from pipelines.rules.consents import consent_facts
from pipelines.rules.contact_history import Limit, counted_by, is_conversation
from pipelines.rules.contact_hours import any_outside, contact_outside, person_hours, phone_keys
from pipelines.rules.do_not_interact import dni_blocked, dnis_in_scope
from pipelines.rules.history import contacts_at
from pipelines.rules.local_time import reject_unknown_zones, zone_facts
from pipelines.rules.phone_numbers import nanp_key_position, phone_key_zones
from pipelines.rules.rejection import blocked_expr
from pipelines.rules.screen_keys import KEY, dense_key, keyed_tables, one_per_key, spread
from pipelines.rules.timezones import address_places, person_states, state_zone_table

log = logging.getLogger(__name__)

S: Final = pl.String()
REASONS: Final = pl.List(pl.String())
SCREENING_SCHEMA: Final = pl.Schema(
    {
        "contactId": S,
        "personId": S,
        "channel": S,
        "canInteract": pl.Boolean(),
        "reasons": REASONS,
    }
)

NOON: Final = time(12)

_CONTACT_COLUMNS: Final = (
    "id",
    "personId",
    "contactType",
    "label",
    "affiliation",
    "status",
    "value",
    "valid",
    "receiveTextMessages",
    "authorizedThirdParty",
    "powerOfAttorney",
    "timezone",
)

# Every source column `screen` reads, per table (tables not named here are read whole).
SOURCE_COLUMNS: Final = {
    "borrowers": ("id", "timezone"),
    "contacts": (*_CONTACT_COLUMNS, "postalCode", "state"),
    "interactions": ("id", "personId", "channel", "direction", "status", "statusDetails", "startedAt"),
}


def as_of_instant(company: Company, as_of: date) -> datetime:
    """12:00 on `as_of` in the company's time zone, as an aware UTC datetime."""
    return datetime.combine(as_of, NOON, tzinfo=ZoneInfo(company.timezone)).astimezone(UTC)


def judged_at(company: Company, as_of: date, at: datetime | None) -> tuple[datetime, date]:
    """(instant, its date in the company zone): `at` if given, else noon of `as_of`."""
    if at is None:
        return as_of_instant(company, as_of), as_of
    instant = at.astimezone(UTC)
    return instant, instant.astimezone(ZoneInfo(company.timezone)).date()


def channel_expr(check: CheckCanInteractData | None) -> pl.Expr:
    """The exporter's channel, else the default for the contact type."""
    if check is not None and check.channel is not None:
        return pl.lit(check.channel, dtype=S)
    # One comparison per contact type: a few constants compared cost less than a lookup per row.
    kind = pl.col("contactType")
    return pl.coalesce(
        pl.when(kind == contact_type).then(pl.lit(channel, dtype=S))
        for contact_type, channel in DEFAULT_CHANNEL_FOR_TYPE.items()
    ).alias("channel")


def unscreened(matched: pl.LazyFrame) -> pl.LazyFrame:
    """The screening rows of an exporter without checkCanInteractData: everyone allowed."""
    return (
        matched.select(
            pl.col("id").alias("contactId"),
            pl.col("personId"),
            channel_expr(None).alias("channel"),
            pl.lit(True).alias("canInteract"),
            pl.lit([], dtype=REASONS).alias("reasons"),
        )
        .cast(SCREENING_SCHEMA)
        .sort("contactId")
    )


# ---------------------------------------------------------------- limits


def interaction_window(
    company: Company, as_of: date, instant: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until): the interactions any rule can count at `as_of` (every other one is ignored).
    `instant`: the moment judged on that date (default: its noon)."""
    zone = ZoneInfo(company.timezone)
    instant = instant or as_of_instant(company, as_of)
    conversation_since = contact_history.conversation_since(company.policy, as_of, zone)
    starts = [lim.since for lim in contact_history.limits(company.policy, as_of, zone)]
    since = min(starts + ([conversation_since] if conversation_since else []), default=instant)
    return since, instant


def interactions_in_window(
    interactions: pl.LazyFrame, company: Company, as_of: date, instant: datetime | None = None
) -> pl.LazyFrame:
    """The interactions any rule can count at `as_of` (see `interaction_window`)."""
    since, until = interaction_window(company, as_of, instant)
    return interactions.filter((pl.col("startedAt") >= since) & (pl.col("startedAt") < until))


def _interactions_in_scope(
    tables: SourceTables, persons: pl.LazyFrame | None, company: Company, as_of: date, instant: datetime
) -> pl.LazyFrame:
    """The borrowers' interactions that any window can see (`persons`: see `_of`)."""
    columns = tables.interactions.select(SOURCE_COLUMNS["interactions"])
    return of_persons(interactions_in_window(columns, company, as_of, instant), persons)


def _reject_unknown_details(rows: pl.DataFrame) -> None:
    bad = rows.filter(pl.col("statusDetails").is_not_null() & ~pl.col("statusDetails").is_in(STATUS_DETAILS))
    if bad.height:
        raise SourceDataError(
            "interactions",
            [
                ErrorItem(
                    "/statusDetails",
                    f"interaction {bad.item(0, 'id')}: statusDetails is not one of "
                    f"{', '.join(STATUS_DETAILS)}; {bad.height} row(s) affected, fix the source",
                )
            ],
        )


def _interaction_counts(
    rows: pl.LazyFrame, limits: list[Limit], conversation_since: datetime | None
) -> pl.LazyFrame:
    """personId, n<i> (attempts counted by limit i), conversation: one row per borrower with any."""
    aggs = [counted_by(lim).sum().alias(f"n{i}") for i, lim in enumerate(limits)]
    if conversation_since is not None:
        aggs.append(is_conversation(conversation_since).any().alias("conversation"))
    if not aggs:
        return rows.select("personId").unique()
    return rows.group_by("personId").agg(aggs)


# ---------------------------------------------------------------- screening


def screen(
    matched: pl.LazyFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    *,
    rejected: pl.DataFrame | None = None,
    at: datetime | None = None,
) -> pl.LazyFrame:
    """One row per matched contact: contactId, personId, channel, canInteract, reasons (sorted).

    Rows come sorted by contactId; a `matched` already sorted by id keeps its order, row for row.
    `matched` is a subset of `tables.contacts`; contacts are taken as of the instant
    (pipelines.rules.history: one created later is not screened). `rejected`: the rejected source rows
    with their `personId` (`ValidatedSources.owned`); their borrowers' contacts are blocked with
    SOURCE_ROW_REJECTED. `at`: judge at this instant instead of the as-of date's noon (`as_of` is
    then ignored: the dates are the instant's in the zones COMPLIANCE.md names, and only records
    that exist at the instant count). Raises SourceDataError for source values the rules cannot judge (unknown
    statusDetails or time zone names), since skipping them could let a blocked contact through.
    The work is done here; the LazyFrame returned is over the finished result.
    """
    instant, as_of = judged_at(company, as_of, at)
    matched, tables = borrower_keys.keyed(matched, tables)
    tables = replace(tables, contacts=contacts_at(tables.contacts, instant))
    contacts = _prepared(contacts_at(matched, instant), check)
    if contacts.height == 0:
        return pl.LazyFrame(schema=SCREENING_SCHEMA)
    # Per-borrower facts are collected, grouped and placed by an integer key, not by personId.
    contacts = realigned(contacts.with_columns(dense_key()))
    keys = one_per_key(contacts.select("personId", BORROWER_KEY, KEY))
    keyed = keyed_tables(tables, keys)
    return _screened(contacts, keyed, keys.height, company, check, as_of, instant, rejected).lazy()


def _screened(
    contacts: pl.DataFrame,
    keyed: SourceTables,
    borrowers: int,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
    rejected: pl.DataFrame | None,
) -> pl.DataFrame:
    """The decisions for `contacts` (with their KEY), from the rows of their `borrowers` in `keyed`."""
    seen = _borrower_rows(keyed, contacts, company, check, as_of, instant)
    zones = _zones_seen(seen, contacts, instant, company.policy)
    limits = contact_history.limits(company.policy, as_of, ZoneInfo(company.timezone))
    facts = _borrower_facts(seen, zones, keyed, borrowers, company, as_of, instant, limits)
    frame = _contact_frame(contacts, facts, seen, zones, rejected)
    result = _decided(
        frame, Judged(frozenset(frame.collect_schema().names()), company.policy, check, tuple(limits))
    )
    log.info(
        "screened %d contacts of %d borrowers as of %s: %d blocked",
        result.height,
        borrowers,
        as_of.isoformat(),
        result.height - int(result.get_column("canInteract").sum()),
    )
    return result


def _prepared(matched: pl.LazyFrame, check: CheckCanInteractData) -> pl.DataFrame:
    """The matched contacts' columns the rules read, with the exporter's channel. A phone's number
    is keyed by the position of its +1 key (`_nanpKey`); any other number (`_otherNumber`) is
    looked up by its value."""
    phone = pl.col("contactType") == "phone"
    return realigned(
        matched.select(*_CONTACT_COLUMNS, BORROWER_KEY)
        .with_columns(
            channel_expr(check).alias("channel"),
            pl.when(phone).then(nanp_key_position(pl.col("value"))).alias("_nanpKey"),
        )
        .with_columns(
            pl.when(phone & pl.col("_nanpKey").is_null()).then(pl.col("value")).alias("_otherNumber")
        )
        .collect()
    )


@dataclass(frozen=True)
class _BorrowerRows:
    """The screened borrowers' rows the rules read (personId is the screen's integer key)."""

    places: pl.DataFrame  # their own addresses, read once for both time zones and state rules
    own: pl.DataFrame  # id, personId, zone: the borrower rows with a zone
    interactions: pl.DataFrame
    dnis: pl.DataFrame


def _borrower_rows(
    keyed: SourceTables,
    contacts: pl.DataFrame,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
) -> _BorrowerRows:
    """Collect the rows, then look at the values the rules cannot judge (unknown zone names or
    statusDetails): skipping them could let a blocked contact through, so they fail the screen."""
    places, own, interactions, dnis = pl.collect_all(
        [
            address_places(keyed.contacts, None),
            keyed.borrowers.select("id", "personId", pl.col("timezone").alias("zone")).drop_nulls("zone"),
            _interactions_in_scope(keyed, None, company, as_of, instant),
            dnis_in_scope(keyed, None, company, check, instant),
        ]
    )
    reject_unknown_zones(own.select("id", "zone"), "borrowers", "borrower")
    reject_unknown_zones(
        contacts.select("id", pl.col("timezone").alias("zone")).drop_nulls("zone"), "contacts", "contact"
    )
    reject_unknown_zones(dnis.select("id", "zone"), "do_not_interact", "DNI")
    _reject_unknown_details(interactions)
    return _BorrowerRows(places, own, interactions, dnis)


@dataclass(frozen=True)
class _Zones:
    """Every zone the screen meets, with the instant's local facts there (`zone_facts`)."""

    facts: pl.DataFrame
    outside: dict[str, bool]  # zone -> the instant is outside contact hours there
    by_key: pl.DataFrame  # phone key -> zone
    states: pl.DataFrame  # state -> zone


def _zones_seen(seen: _BorrowerRows, contacts: pl.DataFrame, instant: datetime, policy: Policy) -> _Zones:
    """Local times are computed once per zone (a few hundred at most), never per row."""
    by_key = phone_key_zones(phone_keys(contacts))
    states = state_zone_table()
    columns = (
        seen.own.get_column("zone"),
        seen.places.get_column("zipZone"),
        states.get_column("zone"),
        contacts.get_column("timezone"),
        by_key.get_column("zone"),
        seen.dnis.get_column("zone"),
    )
    names = set(pl.concat([c.cast(pl.String).alias("zone") for c in columns]).drop_nulls().unique().to_list())
    facts = zone_facts(instant, policy, names)
    outside = dict(
        zip(facts.get_column("zone").to_list(), facts.get_column("outside").to_list(), strict=True)
    )
    return _Zones(facts, outside, by_key, states)


def _borrower_facts(
    seen: _BorrowerRows,
    zones: _Zones,
    keyed: SourceTables,
    borrowers: int,
    company: Company,
    as_of: date,
    instant: datetime,
    limits: list[Limit],
) -> pl.DataFrame:
    """One row per borrower key 1 … n, in key order: hours, attempt counts, the conversation,
    consents and rule states, each table's rows placed at key - 1 (no join, no sort)."""
    since = contact_history.conversation_since(company.policy, as_of, ZoneInfo(company.timezone))
    per_borrower = [
        person_hours(seen.own, seen.places, zones.outside, any_outside(zones.states, "state", zones.outside)),
        _interaction_counts(seen.interactions.lazy(), limits, since),
        consent_facts(keyed.consents, instant),
    ]
    rule_states = sorted({lim.state for lim in limits if lim.state is not None})
    if rule_states:
        per_borrower.append(
            person_states(seen.places.lazy())
            .filter(pl.col("state").is_in(rule_states))
            .group_by("personId")
            .agg([(pl.col("state") == st).any().alias(f"state_{st}") for st in rule_states])
        )
    return pl.concat([spread(f, borrowers) for f in pl.collect_all(per_borrower)], how="horizontal")


def _contact_frame(
    contacts: pl.DataFrame,
    borrower_facts: pl.DataFrame,
    seen: _BorrowerRows,
    zones: _Zones,
    rejected: pl.DataFrame | None,
) -> pl.LazyFrame:
    """Each contact with its borrower's facts and its own (DNI, rejected rows, its zones' hours)."""
    by_key_contacts = contacts.lazy().with_columns(pl.col(KEY).alias("personId"))
    blocked_by_dni = dni_blocked(seen.dnis.lazy(), zones.facts, by_key_contacts).collect().get_column("id")
    # Each contact's borrower is at its key - 1: the facts are gathered by position instead of
    # joined, and the contact columns are not copied.
    facts_per_contact = borrower_facts.select(pl.all().gather(pl.lit(contacts.get_column(KEY) - 1)))
    # Every column cut alike before the flags combine them (pipelines.io.chunks): one column chunked
    # otherwise makes each flag copy its columns first.
    return realigned(
        realigned(contacts.hstack(facts_per_contact)).with_columns(
            pl.col("id").is_in(blocked_by_dni.implode()).alias("dni"),
            blocked_expr(rejected).alias("sourceRejected"),
            **contact_outside(zones.outside, any_outside(zones.by_key, "key", zones.outside)),
        )
    ).lazy()


def _decided(frame: pl.LazyFrame, judged: Judged) -> pl.DataFrame:
    """contactId, personId, channel, canInteract, reasons (sorted), sorted by contactId.

    Reasons as a bitmask first: building a list per row is slow, and there are few distinct sets;
    each row's list is then gathered from one list per mask present, by the mask itself."""
    flags = registry.flags(judged)
    codes = sorted(REASON_CODES)
    mask = pl.sum_horizontal([flags[code].cast(pl.UInt32) * (1 << bit) for bit, code in enumerate(codes)])
    decided = frame.select(
        pl.col("id").alias("contactId"), "personId", "channel", mask.alias("_mask")
    ).collect()
    masks = decided.get_column("_mask")
    by_mask: list[list[str] | None] = [None] * (int(masks.max() or 0) + 1)  # type: ignore[arg-type]
    for m in masks.unique().to_list():
        by_mask[m] = [c for bit, c in enumerate(codes) if m >> bit & 1]
    # Cut like the other columns, so that adding it copies none of them (pipelines.io.chunks).
    reasons = aligned(pl.Series("reasons", by_mask, dtype=REASONS).gather(masks), masks)
    return sorted_by(
        decided.select("contactId", "personId", "channel", (pl.col("_mask") == 0).alias("canInteract"))
        .with_columns(reasons)
        .cast(SCREENING_SCHEMA),
        "contactId",
    )


__all__ = [
    "SCREENING_SCHEMA",
    "as_of_instant",
    "channel_expr",
    "interaction_window",
    "interactions_in_window",
    "judged_at",
    "screen",
    "unscreened",
]
