"""The screen's integer key: each screened borrower's number (1, 2, …, n), and every table's rows of
those borrowers keyed by it, so that per-borrower facts are grouped and placed by an integer and
gathered to each contact by position instead of joined on the text personId."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import polars as pl

from pipelines.io.chunks import placed
from pipelines.model.tables import SourceTables
from pipelines.rules.borrower_keys import BORROWER_KEY, by_key, lookup

KEY: Final = "_key"


def dense_key() -> pl.Expr:
    """_key: the borrower's number among the screened borrowers (1, 2, …, UInt32), a dense rank of
    their borrower keys (pipelines.rules.borrower_keys).

    Grouping and joining on this integer instead of the text personId is what makes the
    per-borrower facts cheap; it is only ever used inside one `screen`. The integer keys validation
    gave are ranked, which is cheaper than ranking the text ids.
    """
    return pl.col(BORROWER_KEY).rank("dense").alias(KEY)


def one_per_key(frame: pl.DataFrame) -> pl.DataFrame:
    """One row for each key 1 … n of `frame` (whose KEY is a dense rank), in key order: a contact
    of each borrower. Each row number is written at its key's place, so the last one of each key
    stays (cheaper than `arg_unique` or `unique`)."""
    frame = frame.drop_nulls(KEY)
    key = frame.get_column(KEY)
    if key.len() == 0:
        return frame
    rows = pl.Series(KEY, [0], dtype=pl.UInt32()).extend_constant(0, int(key.max()) - 1)  # type: ignore[arg-type]
    rows.scatter(key - 1, pl.int_range(0, key.len(), dtype=pl.UInt32, eager=True))
    return frame[rows]


def _keyed(frame: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
    """The rows of `frame` whose borrower key is a screened borrower's, in their order, with
    `personId` the screen's key.

    Borrower keys are row numbers, so each row's screen key is read from a table indexed by its
    borrower key: a gather, cheaper than a join on the key.
    """
    borrower = keys.get_column(BORROWER_KEY)
    top = int(borrower.max() or 0)  # type: ignore[arg-type]
    screen_key = placed(keys.get_column(KEY), borrower, top + 1)
    return (
        frame.with_columns(by_key(screen_key).alias("personId"))
        .filter(pl.col("personId").is_not_null())
        .drop(BORROWER_KEY)
    )


def _keyed_by_person(frame: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
    """The rows of `frame` whose personId is a screened borrower's, in their order, with `personId`
    the screen's key (`borrower_keys.lookup`: by walking both in order when both are sorted)."""
    rows = frame.collect()
    key = lookup(rows.get_column("personId"), keys.select("personId", KEY), KEY)
    return rows.lazy().with_columns(key.alias("personId")).filter(pl.col("personId").is_not_null())


def spread(facts: pl.DataFrame, n: int) -> pl.DataFrame:
    """The columns of `facts` (one row per borrower key 1 … n, in any order; `personId` the key)
    over n rows in key order, each row at its key - 1; null for a key without a row."""
    at = facts.get_column("personId").cast(pl.Int64) - 1
    return pl.DataFrame([placed(column, at, n) for column in facts.drop("personId").iter_columns()], height=n)


def keyed_tables(tables: SourceTables, keys: pl.DataFrame) -> SourceTables:
    """The screened borrowers' rows of every table, their `personId` replaced by the integer key
    (borrowers keep `id` and gain `personId`). `keys`: personId, BORROWER_KEY and KEY of each
    screened borrower, in key order; borrowers and contacts are keyed by their borrower key, the
    other tables (which validation does not key) by personId."""
    return replace(
        tables,
        borrowers=_keyed(tables.borrowers, keys),
        contacts=_keyed(tables.contacts, keys),
        interactions=_keyed_by_person(tables.interactions, keys),
        do_not_interact=_keyed_by_person(tables.do_not_interact, keys),
        consents=_keyed_by_person(tables.consents, keys),
    )
