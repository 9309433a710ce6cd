"""Borrower keys: one integer per borrower, so that the screen groups and joins on a number.

Validation (pipelines.rules.schemas) already looks up every contact's personId among the borrowers to
reject the contacts of no borrower; that lookup (`lookup`) is now the one that gives each contact
its borrower's key (`BORROWER_KEY`, the borrower's row number among the validated borrowers), for
about the cost of the check it replaced. The screen and the projection then find a contact's
borrower by that integer rather than by the text personId: since a key is a row number, by a
gather from a column indexed by key (`by_key`).

Tables that did not come through validation (explain, tests handing frames to `screen`) are keyed by
`keyed`, which numbers every borrower id and personId it finds, so a contact whose borrower is
missing still gets a key of its own, exactly as grouping on personId would.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import polars as pl

from pipelines.io.chunks import aligned
from pipelines.model.tables import SourceTables

BORROWER_KEY: Final = "__borrower"


def numbered(borrowers: pl.DataFrame) -> pl.DataFrame:
    """The borrowers with `BORROWER_KEY`: their row number. Their ids must be unique (validation drops
    every borrower whose id is repeated)."""
    rows = pl.int_range(0, borrowers.height, dtype=pl.UInt32, eager=True).alias(BORROWER_KEY)
    return borrowers.with_columns(aligned(rows, borrowers.get_column("id")))


def keyed_contacts(contacts: pl.DataFrame, borrowers: pl.DataFrame) -> pl.DataFrame:
    """The contacts, in their order, with their borrower's key: null where no borrower has the personId.
    `borrowers` as `numbered` gives them."""
    people = contacts.get_column("personId")
    ids = borrowers.select(pl.col("id").alias("personId"), BORROWER_KEY)
    # Only the key goes through the lookup; the contacts' columns are shared, not copied.
    return contacts.with_columns(aligned(lookup(people, ids, BORROWER_KEY), people))


def lookup(people: pl.Series, ids: pl.DataFrame, key: str) -> pl.Series:
    """`key` of the row of `ids` (personId, unique, and `key`) whose personId each of `people` is;
    null where none is.

    Sorted personIds on both sides (sources usually come sorted by them) are looked up by walking
    both in order (`_sorted_lookup`), cheaper than hashing. Otherwise by a hash join.
    """
    known = ids.get_column("personId")
    if people.null_count() == 0 and known.null_count() == 0 and people.is_sorted() and known.is_sorted():
        return _sorted_lookup(people, ids, key)
    return (
        people.to_frame("personId")
        .join(ids.select("personId", key), on="personId", how="left", maintain_order="left")
        .get_column(key)
    )


def _sorted_lookup(people: pl.Series, ids: pl.DataFrame, key: str) -> pl.Series:
    """`lookup` for sorted personIds without nulls on both sides.

    Each run of equal personIds is looked up once, by its first row: when the runs' personIds are
    the ids themselves (every borrower has rows) the keys are the ids' own, else an as-of join of
    the runs with the ids, in which each personId meets the greatest id not above it, its own if
    there is one. The keys then go to every row of their run by a gather.
    """
    starts = people.ne_missing(people.shift(1))
    heads = people.filter(starts)
    run = starts.cast(pl.UInt32).cum_sum() - 1
    known = ids.get_column("personId")
    if heads.len() == known.len() and heads.equals(known, check_names=False):
        return ids.get_column(key).gather(run)
    table = ids.select(pl.col("personId").set_sorted(), pl.col("personId").alias("_id"), key)
    found = heads.set_sorted().to_frame("personId").join_asof(table, on="personId", strategy="backward")
    return (
        found.select(pl.when(pl.col("_id") == pl.col("personId")).then(pl.col(key)).alias(key))
        .to_series()
        .gather(run)
    )


def is_row_number(keys: pl.Series) -> bool:
    """Whether `keys` is 0, 1, …, n - 1 in order (as `numbered` gives them)."""
    if keys.len() == 0:
        return True
    if keys.null_count() or keys[0] != 0 or keys[-1] != keys.len() - 1:
        return False
    # From 0 to n - 1 in n values, every step at least 1: every step is exactly 1.
    return keys.len() == 1 or bool(keys.diff().min() >= 1)  # type: ignore[operator]


def by_key(values: pl.Series) -> pl.Expr:
    """`values` (indexed by borrower key: the value of key k at row k) gathered by each row's
    `BORROWER_KEY`; null where the key is null or past the end."""
    key = pl.col(BORROWER_KEY)
    return pl.lit(values).gather(pl.when(key < values.len()).then(key)).alias(values.name)


def has_keys(frame: pl.LazyFrame) -> bool:
    return BORROWER_KEY in frame.collect_schema().names()


def keyed(matched: pl.LazyFrame, tables: SourceTables) -> tuple[pl.LazyFrame, SourceTables]:
    """`matched` (some of `tables.contacts`) and `tables` with keys that agree: as they are when the
    borrowers, the contacts and `matched` all carry them (validated tables), else all keyed afresh,
    every distinct borrower id and contact personId getting a key of its own."""
    if all(has_keys(frame) for frame in (matched, tables.borrowers, tables.contacts)):
        return matched, tables
    borrowers = tables.borrowers.drop(BORROWER_KEY, strict=False)
    contacts = tables.contacts.drop(BORROWER_KEY, strict=False)
    ids = (
        pl.concat(
            [
                borrowers.select(pl.col("id").cast(pl.String).alias("personId")),
                contacts.select(pl.col("personId").cast(pl.String)),
            ]
        )
        .drop_nulls()
        .unique()
        .sort("personId")  # keys in id order, as validation gives them for a sorted source
        .with_row_index(BORROWER_KEY)
        .collect()
        .lazy()
    )

    def key(frame: pl.LazyFrame, on: str) -> pl.LazyFrame:
        return frame.drop(BORROWER_KEY, strict=False).join(
            ids, left_on=on, right_on="personId", how="left", maintain_order="left"
        )

    return key(matched, "personId"), replace(
        tables, borrowers=key(borrowers, "id"), contacts=key(contacts, "personId")
    )


__all__ = [
    "BORROWER_KEY",
    "by_key",
    "has_keys",
    "is_row_number",
    "keyed",
    "keyed_contacts",
    "lookup",
    "numbered",
]
