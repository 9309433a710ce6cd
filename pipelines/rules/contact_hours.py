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
from pipelines.rules.phone_numbers import nanp_key_index
from pipelines.rules.timezones import uses_state_zones

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


# ---------------------------------------------------------------- the facts the rule reads


def _lookup(column: pl.Expr, mapping: dict[str, bool]) -> pl.Expr:
    """`mapping[value]`, null for null or unmapped values."""
    if not mapping:
        return pl.lit(None, dtype=pl.Boolean())
    return column.replace_strict(mapping, default=None, return_dtype=pl.Boolean())


def person_hours(
    own: pl.DataFrame, places: pl.DataFrame, outside: dict[str, bool], state_outside: dict[str, bool]
) -> pl.LazyFrame:
    """personId, pOutside: whether the instant is outside contact hours in any of the borrower's
    zones (own zone, ZIP zones, state zones where the ZIP is missing, unknown or disagrees); one row
    per borrower with at least one known zone."""
    rows = pl.concat(
        [
            own.lazy().select("personId", _lookup(pl.col("zone"), outside).alias("out")),
            places.lazy().select("personId", _lookup(pl.col("zipZone"), outside).alias("out")),
            places.lazy()
            .filter(uses_state_zones())
            .select("personId", _lookup(pl.col("state"), state_outside).alias("out")),
        ]
    )
    return rows.drop_nulls("out").group_by("personId").agg(pl.col("out").any().alias("pOutside"))


def contact_outside(outside: dict[str, bool], key_outside: dict[str, bool]) -> dict[str, pl.Expr]:
    """zoneOutside and numberOutside: whether the instant is outside contact hours in the contact's
    own zone, and in any zone of its phone number (`key_outside`: by `phone_key`); null when unknown.
    Two columns, combined by the flags once every column is cut alike (see `screen`)."""
    number = _lookup(pl.col("_otherNumber"), {k[1:]: v for k, v in key_outside.items() if k.startswith("V")})
    index = nanp_key_index()
    if index is not None:  # +1 numbers: by the position of their key, a gather
        keys = index.keys.to_frame("key")
        by_position = keys.with_columns(_lookup(pl.col("key"), key_outside).alias("out")).get_column("out")
        number = pl.coalesce(pl.lit(by_position).gather(pl.col("_nanpKey")), number)
    return {"zoneOutside": _lookup(pl.col("timezone"), outside), "numberOutside": number}


def phone_keys(contacts: pl.DataFrame) -> list[str]:
    """The distinct `phone_key`s of the contacts' numbers (from `_nanpKey` and `_otherNumber`)."""
    index = nanp_key_index()
    positions = contacts.get_column("_nanpKey").drop_nulls().unique()
    nanp: list[str] = [] if index is None else index.keys.gather(positions).to_list()
    others = contacts.get_column("_otherNumber").drop_nulls().unique()
    return [*nanp, *("V" + v for v in others.to_list())]


def any_outside(pairs: pl.DataFrame, key: str, outside: dict[str, bool]) -> dict[str, bool]:
    """For (key, zone) pairs: key → whether the instant is outside contact hours in any of its zones."""
    flags = (
        pairs.select(key, _lookup(pl.col("zone"), outside).alias("out"))
        .drop_nulls("out")
        .group_by(key)
        .agg(pl.col("out").any())
    )
    return dict(zip(flags.get_column(key).to_list(), flags.get_column("out").to_list(), strict=True))
