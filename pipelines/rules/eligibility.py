"""Next eligible date (COMPLIANCE.md): the first later as-of date on which a blocked contact would pass.

The world is frozen at the as-of instant ("if no new record arrived"): the interactions, DNIs,
consents and contacts known then stay as they are, so only time moves. Attempts age out of their
windows and cool-downs end (both only ever clear, so they give a first possible date `T0`), while
contact hours (clock changes) and DNIs (end dates, weekdays, hours) are judged on each later date.
A contact blocked for a reason that time does not clear (missing consent, archived, invalid, third
party, text opt-in, channel mismatch, unknown zone, a rejected source row) gets null, and so does
one with no passing date within `HORIZON_DAYS`.

Only the blocked contacts that time can clear are looked at, and days are tried in growing blocks
(the first week, then two months, then the rest of the horizon) for the contacts still open, so the
usual case (a frequency limit or cool-down that simply ends) is one join.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.io.chunks import aligned, placed
from pipelines.model.config import CheckCanInteractData, Company
from pipelines.model.tables import SourceTables
from pipelines.model.vocab import one_of
from pipelines.rules import contact_history, registry
from pipelines.rules import do_not_interact as dni
from pipelines.rules.borrower_keys import BORROWER_KEY, has_keys
from pipelines.rules.compliance import (
    as_of_instant,
    interactions_in_window,
    judged_at,
)
from pipelines.rules.contact_history import Limit, counted_by, is_conversation
from pipelines.rules.contact_hours import HOURS_CHANNELS
from pipelines.rules.do_not_interact import dnis_in_scope
from pipelines.rules.history import contacts_at
from pipelines.rules.timezones import candidate_zones

HORIZON_DAYS: Final = 366
BLOCKS: Final = ((0, 7), (7, 62), (62, HORIZON_DAYS))  # day offsets from T0 tried together
DAY: Final = pl.Date()
OPEN: Final = "_open"  # an open row's position among them, the key of the day-by-day search
FOUND: Final = pl.Schema({OPEN: pl.UInt32(), "nextEligibleDate": DAY})  # what `_search` gives


def day_facts(company: Company, first: date, days: int, zones: list[str]) -> pl.DataFrame:
    """zone, day, outside, localDate, weekday (0 = Sunday), hour: company noon of each of `days`
    dates from `first`, seen in each zone."""
    policy = company.policy
    dates = [first + timedelta(days=k) for k in range(days)]
    noons = pl.Series("noon", [as_of_instant(company, d) for d in dates], pl.Datetime("us", "UTC"))
    base = pl.DataFrame({"day": pl.Series(dates, dtype=DAY), "noon": noons})
    frames = []
    start, end = policy.contactHours.start_time, policy.contactHours.end_time
    for zone in sorted(set(zones)):
        local = pl.col("noon").dt.convert_time_zone(zone)
        clock = local.dt.time()
        frames.append(
            base.select(
                pl.lit(zone).alias("zone"),
                "day",
                ((clock < start) | (clock > end)).alias("outside"),
                local.dt.date().alias("localDate"),
                (local.dt.weekday() % 7).cast(pl.Int64).alias("weekday"),
                local.dt.hour().cast(pl.Int64).alias("hour"),
            )
        )
    schema = {
        "zone": pl.String(),
        "day": DAY,
        "outside": pl.Boolean(),
        "localDate": DAY,
        "weekday": pl.Int64(),
        "hour": pl.Int64(),
    }
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def _first_dates(
    pending: pl.DataFrame,
    tables: SourceTables,
    company: Company,
    as_of: date,
    instant: datetime,
) -> pl.DataFrame:
    """OPEN, t0: the first date on which every frequency limit and the cool-down are clear."""
    policy = company.policy
    zone = ZoneInfo(company.timezone)
    limits = contact_history.limits(policy, as_of, zone)
    cooldown = policy.conversationCooldownDays
    since = contact_history.conversation_since(policy, as_of, zone)
    rows = (
        interactions_in_window(tables.interactions, company, as_of, instant)
        .join(pending.lazy().select("personId").unique(), on="personId", how="semi")
        .with_columns(pl.col("startedAt").dt.convert_time_zone(company.timezone).dt.date().alias("_day"))
    )
    per_person = _counted_days(rows, limits, since)
    frame = pending.join(per_person, on="personId", how="left")
    clears = [pl.lit(as_of + timedelta(days=1), dtype=DAY)]
    channel = pl.col("channel")
    for i, lim in enumerate(limits):
        applies = one_of(channel, lim.channels)
        if lim.state is not None:
            applies = applies & pl.col("states").list.contains(lim.state)
        window = (as_of - lim.since.astimezone(zone).date()).days + 1
        clears.append(pl.when(applies).then(pl.col(f"k{i}") + timedelta(days=window)))
    if since is not None:
        clears.append(pl.when(channel == "voice").then(pl.col("talk") + timedelta(days=cooldown)))
    return frame.select(OPEN, pl.max_horizontal(clears).alias("t0"))


def _counted_days(rows: pl.LazyFrame, limits: list[Limit], since: datetime | None) -> pl.DataFrame:
    """personId, k<i>: the day of the attempt that reached limit i; talk: the last conversation's day."""
    aggs = [
        pl.col("_day")
        .filter(counted_by(lim))
        .sort(descending=True)
        .slice(lim.max_attempts - 1, 1)
        .first()
        .alias(f"k{i}")
        for i, lim in enumerate(limits)
    ]
    if since is not None:
        aggs.append(pl.col("_day").filter(is_conversation(since)).max().alias("talk"))
    if not aggs:
        return pl.DataFrame(schema={"personId": pl.String()})
    return rows.group_by("personId").agg(aggs).collect()


def next_eligible(
    screening: pl.DataFrame,
    matched: pl.LazyFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    *,
    at: datetime | None = None,
) -> pl.DataFrame:
    """`screening` (as `compliance.screen` returns it) with `nextEligibleDate`, rows in their order.
    `at`: the screen was judged at this instant (its date is the as-of date; later dates at noon)."""
    instant, as_of = judged_at(company, as_of, at)
    permanent = pl.col("reasons").list.eval(pl.element().is_in(registry.LASTING)).list.any()
    is_open = screening.select(~pl.col("canInteract") & ~permanent).to_series()
    open_rows = screening.select("contactId", "personId", "channel").filter(is_open)
    found = pl.DataFrame(schema=FOUND)
    if open_rows.height:
        found = _search(open_rows, matched, tables, company, check, as_of, instant)
    # Each date goes to its row by position (`OPEN` numbers the open rows): nothing is joined.
    rows = is_open.arg_true().gather(found.get_column(OPEN))
    dates = placed(found.get_column("nextEligibleDate"), rows, screening.height)
    # Cut like the screening rows: a column in one chunk beside them would make the next steps copy
    # them into one chunk first (pipelines.io.chunks).
    return screening.with_columns(aligned(dates, screening.get_column("contactId")))


def _search(
    open_rows: pl.DataFrame,
    matched: pl.LazyFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    as_of: date,
    instant: datetime,
) -> pl.DataFrame:
    """OPEN, nextEligibleDate: the first passing date of each open row that has one (OPEN: the
    row's position in `open_rows`; the day-by-day work is keyed by it rather than by contact id)."""
    pending, mine = _pending(open_rows, matched, tables, instant)
    first = _first_dates(pending, tables, company, as_of, instant)
    last = as_of + timedelta(days=HORIZON_DAYS)
    covering = _covering_dnis(pending, mine, tables, company, check, instant)
    hours_pairs = (
        pending.filter(one_of(pl.col("channel"), HOURS_CHANNELS))
        .select(OPEN, pl.col("zones").alias("zone"))
        .explode("zone")
        .drop_nulls("zone")
    )
    zones = hours_pairs.get_column("zone").to_list() + covering.get_column("zone").to_list()
    facts = day_facts(company, as_of + timedelta(days=1), HORIZON_DAYS, zones)
    never = _never(hours_pairs, covering, facts, as_of)
    todo = first.join(never, on=OPEN, how="anti").filter(pl.col("t0") <= last)
    # A zone whose contact hours hold the company's noon on every day of the horizon never blocks;
    # an open row with no other zone and no DNI covering it passes on its first possible date.
    always = facts.group_by("zone").agg(pl.col("outside").not_().all().alias("always")).filter("always")
    hours_pairs = hours_pairs.join(always, on="zone", how="anti")
    constrained = pl.concat([hours_pairs.select(OPEN), covering.select(OPEN)])
    found = [todo.join(constrained, on=OPEN, how="anti").select(OPEN, pl.col("t0").alias("nextEligibleDate"))]
    todo = todo.join(constrained, on=OPEN, how="semi")
    found += _day_by_day(todo, hours_pairs, covering, facts, last)
    return pl.concat(found).cast(FOUND)


def _pending(
    open_rows: pl.DataFrame, matched: pl.LazyFrame, tables: SourceTables, instant: datetime
) -> tuple[pl.DataFrame, pl.LazyFrame]:
    """The open rows numbered (OPEN) with their candidate zones and states, and their contacts."""
    all_contacts, borrowers = contacts_at(tables.contacts, instant), tables.borrowers
    mine = (
        contacts_at(matched, instant)
        .join(open_rows.lazy().select(pl.col("contactId").alias("id")), on="id", how="semi")
        .collect()
        .lazy()
    )
    if all(has_keys(frame) for frame in (matched, all_contacts, borrowers)):
        # Only these borrowers' rows, picked by their integer keys rather than by personId.
        keys = mine.select(BORROWER_KEY).collect().get_column(BORROWER_KEY).unique().implode()
        all_contacts = all_contacts.filter(pl.col(BORROWER_KEY).is_in(keys))
        borrowers = borrowers.filter(pl.col(BORROWER_KEY).is_in(keys))
    places = candidate_zones(mine, all_contacts, borrowers).collect()
    pending = open_rows.with_row_index(OPEN).join(
        places.select("contactId", "zones", "states"), on="contactId", how="left"
    )
    return pending, mine


def _covering_dnis(
    pending: pl.DataFrame,
    mine: pl.LazyFrame,
    tables: SourceTables,
    company: Company,
    check: CheckCanInteractData,
    instant: datetime,
) -> pl.DataFrame:
    """OPEN and the scope of each DNI that covers the open row's channel and label."""
    persons = pending.select("personId").unique().lazy()
    dnis = dnis_in_scope(tables, persons, company, check, instant).collect()
    labels = mine.select(pl.col("id").alias("contactId"), "label").collect()
    return (
        pending.select(OPEN, "contactId", "personId", "channel")
        .join(labels, on="contactId", how="left")
        .join(dnis, on="personId", how="inner")
        .filter(dni.covers(pl.col("channel"), pl.col("label")))
        .select(OPEN, "zone", "startDate", "endDate", "daysOfWeek", "timesOfDay")
    )


def _never(
    hours_pairs: pl.DataFrame, covering: pl.DataFrame, facts: pl.DataFrame, as_of: date
) -> pl.DataFrame:
    """OPEN of the rows never eligible: a zone whose contact hours never hold the company's noon, or a
    DNI that covers every later day (started, no end date, every weekday and hour)."""
    never_zones = facts.group_by("zone").agg(pl.col("outside").all().alias("never")).filter("never")
    return pl.concat(
        [
            hours_pairs.join(never_zones, on="zone", how="semi").select(OPEN),
            covering.filter(
                (pl.col("startDate") <= as_of)
                & pl.col("endDate").is_null()
                & (pl.col("daysOfWeek").is_null() | (pl.col("daysOfWeek").list.len() == 0))
                & (pl.col("timesOfDay").is_null() | (pl.col("timesOfDay").list.len() == 0))
            ).select(OPEN),
        ]
    )


def _day_by_day(
    todo: pl.DataFrame, hours_pairs: pl.DataFrame, covering: pl.DataFrame, facts: pl.DataFrame, last: date
) -> list[pl.DataFrame]:
    """OPEN, nextEligibleDate of the rows in `todo` that pass on a day up to `last`, tried in blocks
    of days from each row's first possible date (`t0`)."""
    found = []
    for lo, hi in BLOCKS:
        if todo.height == 0:
            break
        days = (
            todo.with_columns(pl.int_ranges(lo, hi).alias("k"))
            .explode("k")
            .select(OPEN, (pl.col("t0") + pl.duration(days=pl.col("k"))).cast(DAY).alias("day"))
            .filter(pl.col("day") <= last)
        )
        blocked = _blocked_days(days, hours_pairs, covering, facts)
        first_pass = (
            days.join(blocked, on=[OPEN, "day"], how="anti")
            .group_by(OPEN)
            .agg(pl.col("day").min().alias("nextEligibleDate"))
        )
        found.append(first_pass)
        todo = todo.join(first_pass, on=OPEN, how="anti")
    return found


def _blocked_days(
    days: pl.DataFrame, hours_pairs: pl.DataFrame, covering: pl.DataFrame, facts: pl.DataFrame
) -> pl.DataFrame:
    """(OPEN, day) pairs on which the contact is outside contact hours or under a DNI (a pair
    may be listed more than once)."""
    outside = (
        days.join(hours_pairs, on=OPEN, how="inner")
        .join(facts.select("zone", "day", "outside"), on=["zone", "day"], how="inner")
        .filter("outside")
        .select(OPEN, "day")
    )
    under_dni = (
        days.join(covering, on=OPEN, how="inner")
        .join(facts.select("zone", "day", "localDate", "weekday", "hour"), on=["zone", "day"], how="inner")
        .filter(dni.on_date())
    )
    # A DNI without hours covers the whole day; one with hours only when one of them holds the hour.
    in_hours = (
        under_dni.filter(~dni.all_day())
        .select(OPEN, "day", "hour", "timesOfDay")
        .explode("timesOfDay")
        .unnest("timesOfDay")
        .filter(dni.in_window())
        .select(OPEN, "day")
    )
    return pl.concat([outside, under_dni.filter(dni.all_day()).select(OPEN, "day"), in_hours])


__all__ = ["HORIZON_DAYS", "day_facts", "next_eligible"]
