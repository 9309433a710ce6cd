"""The row checks of the source tables (CONTRACT.md §5, §8), each defined once as a Polars expression
that is true where a row passes (a null result counts as a failure: fail closed). Which checks a
table gets is `schemas.table_checks`; both validation engines are built from these definitions."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from pipelines.model.tables import CAST_ERRORS, FIELDS_CHECK, TableSpec, type_check_name
from pipelines.model.vocab import (
    AFFILIATIONS,
    CONTACT_STATUSES,
    CONTACT_TYPES,
    DNI_CHANNELS,
    LABELS,
    THEMES,
    iana_zones,
    one_of,
)
from pipelines.rules.borrower_keys import BORROWER_KEY

E164: Final = r"^\+[1-9][0-9]{1,14}$"


NON_ASCII_DIGIT: Final = r"[\d&&[^0-9]]"


EMAIL: Final = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


STATE: Final = r"^[A-Z]{2}$"


@dataclass(frozen=True)
class RowCheck:
    """One named row check. `passes` is true where the row passes; null is a failure."""

    name: str
    column: str | None  # the column the check is about (None: the whole row)
    passes: pl.Expr
    # the same check, cheaper when `column` is sorted (used by the fast path only)
    passes_sorted: pl.Expr | None = None


@functools.cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(iana_zones()))


def _cast_failed(name: str) -> pl.Expr:
    return pl.col(CAST_ERRORS).list.contains(pl.lit(name)).fill_null(False)


def in_vocab(column: str, vocab: Sequence[str]) -> RowCheck:
    col = pl.col(column)
    return RowCheck(f"{column}_in_vocabulary", column, col.is_null() | one_of(col, vocab))


def _list_in_vocab(column: str, vocab: Sequence[str]) -> RowCheck:
    col = pl.col(column)
    each = one_of(pl.element(), vocab).fill_null(False)
    return RowCheck(f"{column}_in_vocabulary", column, col.is_null() | col.list.eval(each).list.all())


def _not_empty(column: str) -> RowCheck:
    col = pl.col(column)
    # an empty channels/themes list would be a DNI that blocks nothing: refuse it (fail closed)
    return RowCheck(f"{column}_not_empty", column, col.is_null() | (col.list.len() > 0))


def timezone_check(column: str = "timezone") -> RowCheck:
    col = pl.col(column)
    return RowCheck(f"{column}_is_iana", column, col.is_null() | col.is_in(list(_zones())))


def common_checks(spec: TableSpec, repeated: pl.Series | None = None) -> list[RowCheck]:
    # a CSV row with too few or too many fields: none of its values can be trusted
    checks: list[RowCheck] = [RowCheck(FIELDS_CHECK, None, ~_cast_failed(FIELDS_CHECK))]
    for column in spec.columns:
        typed = column.dtype != pl.String()
        type_name = type_check_name(column.name, column.dtype)
        if typed:
            checks.append(RowCheck(type_name, column.name, ~_cast_failed(type_name)))
        if column.required:
            present = pl.col(column.name).is_not_null()
            # a value that did not convert is reported by its type check, not as missing
            checks.append(
                RowCheck(
                    f"{column.name}_not_null",
                    column.name,
                    present | _cast_failed(type_name) if typed else present,
                )
            )
    if spec.key == "id":
        ident = pl.col("id")
        # on a sorted column a duplicate sits next to its twin: no hashing needed
        apart = (ident != ident.shift(1)).fill_null(True) & (ident != ident.shift(-1)).fill_null(True)
        alone, alone_sorted = ~ident.is_duplicated(), apart
        if repeated is not None:
            # the ids repeated anywhere in the whole source (pipelines.rules.table_wide): a twin in another
            # partition rejects this row too
            elsewhere = ident.cast(pl.String).is_in(repeated.cast(pl.String).implode())
            alone, alone_sorted = alone & ~elsewhere, alone_sorted & ~elsewhere
        checks.append(RowCheck("id_unique", "id", ident.is_null() | alone, ident.is_null() | alone_sorted))
    return checks


def contact_checks() -> list[RowCheck]:
    kind = pl.col("contactType")
    value = pl.col("value")
    return [
        in_vocab("contactType", CONTACT_TYPES),
        in_vocab("label", LABELS),
        in_vocab("affiliation", AFFILIATIONS),
        in_vocab("status", CONTACT_STATUSES),
        RowCheck("value_is_e164_phone", "value", kind.ne_missing("phone") | value.str.contains(E164)),
        RowCheck("value_is_email", "value", kind.ne_missing("email") | value.str.contains(EMAIL)),
        RowCheck(
            "postalCode_has_ascii_digits",
            "postalCode",
            pl.col("postalCode").is_null() | ~pl.col("postalCode").str.contains(NON_ASCII_DIGIT),
        ),
        RowCheck(
            "state_is_two_letters", "state", pl.col("state").is_null() | pl.col("state").str.contains(STATE)
        ),
        timezone_check(),
    ]


def dni_checks() -> list[RowCheck]:
    days = pl.col("daysOfWeek")
    windows = pl.col("timesOfDay")
    start = pl.element().struct.field("fromHour")
    end = pl.element().struct.field("toHour")
    window_ok = ((start >= 0) & (start < end) & (end <= 24)).fill_null(False)
    day_ok = pl.element().is_between(0, 6).fill_null(False)
    return [
        _list_in_vocab("channels", ("all", *DNI_CHANNELS)),
        _not_empty("channels"),
        _list_in_vocab("themes", ("all", *THEMES)),
        _not_empty("themes"),
        RowCheck("daysOfWeek_in_range", "daysOfWeek", days.is_null() | days.list.eval(day_ok).list.all()),
        RowCheck(
            "timesOfDay_hours_valid",
            "timesOfDay",
            windows.is_null() | windows.list.eval(window_ok).list.all(),
        ),
        _list_in_vocab("contactLabels", LABELS),
        timezone_check(),
    ]


REFERENCE_CHECK: Final = "personId_references_borrower"


def borrower_reference_check(borrower_ids: pl.Series) -> RowCheck:
    """contacts.personId must name a borrower that passed validation (fail closed)."""
    return RowCheck(
        REFERENCE_CHECK, "personId", pl.col("personId").is_in(borrower_ids.cast(pl.String).implode())
    )


def borrower_key_check() -> RowCheck:
    """The same check over contacts that carry their borrower's key (`keyed_contacts`): read from
    the lookup that gave the keys, rather than looking every personId up again."""
    return RowCheck(REFERENCE_CHECK, "personId", pl.col(BORROWER_KEY).is_not_null())
