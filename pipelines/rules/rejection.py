"""Fail closed per borrower on rejected source rows (CONTRACT.md §5, COMPLIANCE.md SOURCE_ROW_REJECTED).

A source row that fails validation is left out of its table, and what it said is unknown: it may be
the address that puts a borrower in Honolulu or Massachusetts, the call that reached a limit, the DNI
or the revoked consent. So every matched contact of the row's borrower is blocked with
`SOURCE_ROW_REJECTED`, and a row that names no borrower (a null `personId`) could be anyone's: it
blocks every matched contact. When more than `policy.maxRejectedShare` of the matched borrowers are
blocked this way, the feed itself is broken and the run fails (exit 2) instead.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.rules.schemas import MAX_ERROR_ITEMS, OWNED_SCHEMA, REJECTED_SCHEMA

REASON: Final = "SOURCE_ROW_REJECTED"


def empty_owned() -> pl.DataFrame:
    return pl.DataFrame(schema=OWNED_SCHEMA)


def blocked_expr(owned: pl.DataFrame | None, person: str = "personId") -> pl.Expr:
    """True where the borrower in column `person` has a rejected row (every row when one names none)."""
    if owned is None or owned.height == 0:
        return pl.lit(False)
    ids = owned.get_column("personId")
    if ids.null_count():
        return pl.lit(True)
    return pl.col(person).is_in(ids.unique().implode()).fill_null(True)


def blocked_share(
    persons: pl.Series, owned: pl.DataFrame | None, keys: pl.Series | None = None
) -> tuple[int, int]:
    """(blocked, matched): how many of the matched borrowers `persons` have a rejected row.

    `keys`, when given, are the persons' borrower keys (one integer per borrower, as validation
    gives them): the matched borrowers are then counted by key, cheaper than by id.
    """
    persons = persons.drop_nulls()
    if persons.len() == 0:
        return 0, 0
    if keys is not None and keys.len() == persons.len() and keys.null_count() == 0:
        matched = keys.n_unique()
    else:
        # The top dense rank: a sort of the ids is cheaper than hashing them into a set.
        matched = int(persons.rank("dense").max())  # type: ignore[arg-type]
    if owned is None or owned.height == 0:
        return 0, matched
    hit = persons.to_frame("personId").filter(blocked_expr(owned)).get_column("personId")
    return hit.n_unique(), matched


def check_share(persons: pl.Series, owned: pl.DataFrame | None, max_share: float, source: str) -> None:
    """Raise SourceDataError (exit 2) when more than `max_share` of the matched borrowers are blocked."""
    blocked, matched = blocked_share(persons, owned)
    if matched == 0 or blocked / matched <= max_share:
        return
    assert owned is not None
    raise broken_feed_error(source, owned, blocked, matched, max_share)


def broken_feed_error(
    source: str, owned: pl.DataFrame, blocked: int, matched: int, max_share: float
) -> SourceDataError:
    items: list[ErrorItem] = []
    total = 0
    for table, row_key, checks in owned.select("tableName", "rowKey", "checks").iter_rows():
        for check in checks:
            total += 1
            if len(items) < MAX_ERROR_ITEMS:
                items.append(ErrorItem(f"/{table}/{row_key}", f"failed check {check}"))
    if total > len(items):
        items.append(ErrorItem("", f"{total - len(items)} more failed checks not listed"))
    per_table = owned.group_by("tableName", maintain_order=True).len()
    summary = ", ".join(f"{t}: {n} rows" for t, n in per_table.iter_rows())
    first = items[0] if items else ErrorItem("", "")
    message = (
        f"{source}: rejected source rows block {blocked} of {matched} matched borrowers "
        f"({blocked / matched:.1%}, more than policy.maxRejectedShare {max_share:.1%}): the feed looks "
        f"broken ({summary}); first: {first.path}: {first.message}. Fix the source rows (see "
        "rejected_rows of this failed run)"
    )
    error = SourceDataError(source, items, message=message)
    error.rejected = owned.select(REJECTED_SCHEMA.names())
    return error


__all__ = ["REASON", "blocked_expr", "blocked_share", "broken_feed_error", "check_share", "empty_owned"]
