"""Local facts per time zone at the instant judged: whether it is outside contact hours there, and
the local date, weekday and hour (for do-not-interact scopes). Computed once per zone (a few hundred
at most), never per row; a zone name the IANA database does not know fails the screen."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl

from pipelines.model.config import Policy
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.rules.lookups import known_zones


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_facts(instant: datetime, policy: Policy, zones: Iterable[str]) -> pl.DataFrame:
    """For each zone: whether the instant is outside contact hours there, and its local date,
    weekday (0 = Sunday) and hour (for DNIs). Names must be known IANA zones."""
    start, end = policy.contactHours.start_time, policy.contactHours.end_time
    rows = []
    for name in sorted(set(zones)):
        local = instant.astimezone(_zone(name))
        clock = local.time()
        rows.append((name, clock < start or clock > end, local.date(), local.isoweekday() % 7, local.hour))
    return pl.DataFrame(
        rows,
        schema={
            "zone": pl.String(),
            "outside": pl.Boolean(),
            "localDate": pl.Date(),
            "weekday": pl.Int64(),
            "hour": pl.Int64(),
        },
        orient="row",
    )


def reject_unknown_zones(zones: pl.DataFrame, table: str, what: str) -> None:
    """Fail on a zone name the IANA database does not know (`zones`: an id column, then `zone`)."""
    unknown = set(zones.get_column("zone").unique()) - known_zones()
    if unknown:
        bad = zones.filter(pl.col("zone").is_in(sorted(unknown)))
        first_id, zone = bad.row(0)
        raise SourceDataError(
            table,
            [
                ErrorItem(
                    "/timezone",
                    f"{what} {first_id}: {zone!r} is not an IANA time zone name "
                    f"(for example 'America/New_York'); {bad.height} row(s) affected, fix the source",
                )
            ],
        )
