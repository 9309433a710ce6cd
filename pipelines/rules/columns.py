"""Projection and renaming per columnSettings, rows in a stable order (by contact id)."""

from __future__ import annotations

import polars as pl

from pipelines.model.config import ColumnSetting
from pipelines.rules.borrower_keys import BORROWER_KEY, by_key, has_keys, is_row_number

BORROWER_PREFIX = "borrower."


def sorted_by(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """The frame in `column` order, flagged as sorted: checking costs one scan, far less than
    sorting already-sorted strings without the flag, and sources usually come sorted."""
    if frame.get_column(column).is_sorted():
        return frame.with_columns(pl.col(column).set_sorted())
    return frame.sort(column)


def contact_columns(settings: list[ColumnSetting], available: list[str]) -> list[str]:
    """The columns of `available` (a contacts frame's) that `project` reads: the contact's own
    fields of `settings`, its id and what finds its borrower (personId, the borrower key)."""
    fields = [s.field for s in settings if not s.field.startswith(BORROWER_PREFIX)]
    wanted = {"id", "personId", BORROWER_KEY, *fields}
    return [c for c in available if c in wanted]


def project(contacts: pl.LazyFrame, borrowers: pl.LazyFrame, settings: list[ColumnSetting]) -> pl.LazyFrame:
    """Select `settings` fields (contacts columns or borrower.<column>) under their output names.

    Rows are ordered by contact id so that the same inputs always give the same file.
    """
    borrower_fields = [
        s.field.removeprefix(BORROWER_PREFIX) for s in settings if s.field.startswith(BORROWER_PREFIX)
    ]
    frame = contacts.sort("id")  # no work when the frame is flagged as sorted; joins below keep the order
    if borrower_fields:
        wanted = sorted(set(borrower_fields))
        # Validated tables carry integer borrower keys: borrowers are found by them rather than by
        # the text ids.
        keyed = has_keys(contacts) and has_keys(borrowers)
        if keyed:
            rows = borrowers.select(BORROWER_KEY, *wanted).collect()
            if is_row_number(rows.get_column(BORROWER_KEY)):
                # The key is the borrower's row: its fields are gathered, cheaper than a join.
                return frame.with_columns(
                    by_key(rows.get_column(c)).alias(BORROWER_PREFIX + c) for c in wanted
                ).select([pl.col(s.field).alias(s.output) for s in settings])
        own, theirs = (BORROWER_KEY, BORROWER_KEY) if keyed else ("personId", "id")
        renamed = borrowers.select(
            pl.col(theirs).alias("__borrowerKey"),
            *[pl.col(c).alias(BORROWER_PREFIX + c) for c in wanted],
        )
        frame = frame.join(renamed, left_on=own, right_on="__borrowerKey", how="left", maintain_order="left")
    return frame.select([pl.col(s.field).alias(s.output) for s in settings])
