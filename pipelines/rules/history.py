"""Contacts as they were at an instant (COMPLIANCE.md "Point in time"; CONTRACT.md §5).

Contacts may carry `createdAt` and `archivedAt` (optional timestamps). At the instant, a contact
created later does not exist, and one archived later was still active: its `status` then reads null
(it was not archived, and which active status it had is not recorded), so it counts as not archived
for screening, time zones and state rules, and a `status` matching criterion does not select it. A
contact whose `archivedAt` is at or before the instant is archived, whatever its `status` says
(fail closed). Without the columns (or with nulls in them) a contact is taken as it is today.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl


def contacts_at(contacts: pl.LazyFrame, instant: datetime) -> pl.LazyFrame:
    """The contacts that exist at `instant`, with `status` as of then (see the module docstring)."""
    names = contacts.collect_schema().names()
    given = [c for c in ("createdAt", "archivedAt") if c in names]
    if not given:
        return contacts
    # Most sources leave both empty: then the frame is returned as it is (no copy of every column).
    used = contacts.select(pl.col(c).is_not_null().any() for c in given).collect().row(0)
    given = [c for c, any_set in zip(given, used, strict=True) if any_set]
    out = contacts
    if "createdAt" in given:
        out = out.filter(pl.col("createdAt").is_null() | (pl.col("createdAt") <= instant))
    if "archivedAt" in given and "status" in names:
        archived_at = pl.col("archivedAt")
        out = out.with_columns(
            pl.when(archived_at.is_null())
            .then(pl.col("status"))
            .when(archived_at <= instant)
            .then(pl.lit("archived"))
            .when(pl.col("status") == "archived")
            .then(pl.lit(None, dtype=pl.String()))
            .otherwise(pl.col("status"))
            .alias("status")
        )
    return out


__all__ = ["contacts_at"]
