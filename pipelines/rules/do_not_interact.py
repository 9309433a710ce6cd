"""Do Not Interact (COMPLIANCE.md "Do Not Interact"): an active DNI of the borrower that covers the
channel and the theme blocks the contact. A DNI is judged in its own time zone (default: the
company's); it clears with time (its end date, a day or hour it does not cover)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import polars as pl

from pipelines.model.config import CheckCanInteractData, Company
from pipelines.model.tables import SourceTables
from pipelines.model.vocab import EXPORT_CHANNELS
from pipelines.rules.base import Judged, Rule, Seen, of_persons

CREDENTIALS_THEME: Final = "opsAccountCredentials"  # a DNI theme `all` does not cover it


def dnis_in_scope(
    tables: SourceTables,
    persons: pl.LazyFrame | None,
    company: Company,
    check: CheckCanInteractData,
    instant: datetime,
) -> pl.LazyFrame:
    """The borrowers' DNIs that exist at the instant and cover the theme, with their zone."""
    themes = pl.col("themes")
    covers_theme = themes.list.contains(check.theme)
    if check.theme != CREDENTIALS_THEME:
        covers_theme = covers_theme | themes.list.contains("all")
    exists = (pl.col("createdAt").is_null() | (pl.col("createdAt") <= instant)) & (
        pl.col("deletedAt").is_null() | (pl.col("deletedAt") > instant)
    )
    return (
        of_persons(tables.do_not_interact, persons)
        .filter(exists & covers_theme.fill_null(False))
        .select(
            "id",
            "personId",
            "channels",
            "startDate",
            "endDate",
            "daysOfWeek",
            "timesOfDay",
            "contactLabels",
            pl.col("timezone").fill_null(company.timezone).alias("zone"),
        )  # fmt: skip
    )


def _empty_or_has(column: str, value: pl.Expr) -> pl.Expr:
    items = pl.col(column)
    return items.is_null() | (items.list.len() == 0) | items.list.contains(value).fill_null(False)


def on_date() -> pl.Expr:
    """A DNI holds on the date in its zone (`localDate`, `weekday`): started, not ended, and the
    weekday among its daysOfWeek (none given: every day)."""
    return (
        (pl.col("startDate") <= pl.col("localDate"))
        & (pl.col("endDate").is_null() | (pl.col("localDate") <= pl.col("endDate")))
        & _empty_or_has("daysOfWeek", pl.col("weekday"))
    )


def all_day() -> pl.Expr:
    """A DNI without timesOfDay covers the whole day."""
    times = pl.col("timesOfDay")
    return times.is_null() | (times.list.len() == 0)


def in_window() -> pl.Expr:
    """Over a DNI's timesOfDay unnested (fromHour, toHour): the `hour` falls in the window."""
    return (pl.col("fromHour") <= pl.col("hour")) & (pl.col("hour") < pl.col("toHour"))


def covers(channel: pl.Expr, label: pl.Expr) -> pl.Expr:
    """A DNI's channels and contactLabels cover a contact of this channel and label."""
    channels = pl.col("channels")
    fits = (channels.list.contains("all") | channels.list.contains(channel)).fill_null(False)
    return fits & _empty_or_has("contactLabels", label)


def _active_on(dnis: pl.LazyFrame, facts: pl.DataFrame) -> pl.LazyFrame:
    """The DNIs active at the instant in their zone (`facts`: zone, localDate, weekday, hour)."""
    dated = (
        dnis.join(facts.lazy().select("zone", "localDate", "weekday", "hour"), on="zone", how="inner")
        .filter(on_date())
        .with_row_index("_dni")
    )
    in_hours = (
        dated.select("_dni", "hour", "timesOfDay")
        .explode("timesOfDay")
        .unnest("timesOfDay")
        .group_by("_dni")
        .agg(in_window().any().alias("inHours"))
    )
    return dated.join(in_hours, on="_dni", how="left").filter(all_day() | pl.col("inHours").fill_null(False))


def dni_blocked(dnis: pl.LazyFrame, facts: pl.DataFrame, contacts: pl.LazyFrame) -> pl.LazyFrame:
    """id, dni=True for every contact (id, personId, label, channel) an active DNI covers."""
    channels = pl.col("channels")
    active = _active_on(dnis, facts).select(
        "personId",
        "contactLabels",
        *[(channels.list.contains("all") | channels.list.contains(ch)).fill_null(False).alias(f"covers_{ch}")
          for ch in EXPORT_CHANNELS],
    )  # fmt: skip
    covers_channel = pl.lit(False)
    for ch in EXPORT_CHANNELS:
        covers_channel = (
            pl.when(pl.col("channel") == ch).then(pl.col(f"covers_{ch}")).otherwise(covers_channel)
        )
    return (
        contacts.select("id", "personId", "label", "channel")
        .join(active, on="personId", how="inner")
        .filter(covers_channel.fill_null(False) & _empty_or_has("contactLabels", pl.col("label")))
        .select("id")
        .unique()
        .with_columns(pl.lit(True).alias("dni"))
    )


def _covered(judged: Judged) -> pl.Expr:
    return judged.fact("dni", False)


def _evidence(seen: Seen) -> dict[str, list[str]]:
    return {"dniIds": seen.dni_ids}


DO_NOT_INTERACT = Rule("DO_NOT_INTERACT", _covered, False, _evidence)
