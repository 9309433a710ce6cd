"""Source table specs (CONTRACT.md §5): column names, Polars types, required columns, defaults.

Every reader, schema, generator and transform agrees on these frames:
strings are `pl.String`, timestamps `pl.Datetime("us", "UTC")`, dates `pl.Date`,
lists `pl.List(...)`. Columns not listed here are kept as they come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

UTC_TS: Final = pl.Datetime("us", "UTC")
TIME_WINDOW: Final = pl.Struct({"fromHour": pl.Int64, "toHour": pl.Int64})


# Readers add this List(String) column (only when some value could not be converted to its column's
# type) holding the names of the failed type checks of the row, so that a bad value is reported by
# validation instead of silently becoming null. Validation drops it.
CAST_ERRORS: Final = "__castErrors"

# A reader of part of a table (a partition) adds this column: each row's 0-based position in the
# whole table, so that a rejected row without a key is named by where it sits in the source, the
# same for every N. Validation reads it and drops it.
SOURCE_ROW: Final = "__sourceRow"

# The check a reader marks (in CAST_ERRORS) on a CSV row whose number of fields is not the header's.
FIELDS_CHECK: Final = "fields_match_header"
# Digits are ASCII only: a regex's \d would take any Unicode digit (fullwidth ９６８１３), which no
# ZIP or number lookup knows, so such a value would find no time zone and be ignored (fail-open).


def type_check_name(column: str, dtype: pl.DataType) -> str:
    """Name of the check that fails when a value cannot be converted to the column's type."""
    if isinstance(dtype, pl.Datetime):
        kind = "timestamp"
    elif isinstance(dtype, pl.Date):
        kind = "date"
    elif isinstance(dtype, pl.Boolean):
        kind = "boolean"
    elif isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(inner, pl.Struct):
            kind = "time_window_list"
        elif inner.is_integer():
            kind = "integer_list"
        else:
            kind = "string_list"
    elif dtype.is_integer():
        kind = "integer"
    else:
        kind = "typed"
    return f"{column}_is_{kind}"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    required: bool = False  # required = never null
    default: object = None  # filled where the value is null (booleans with defaults)


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str | None  # the column naming a row in reports (None: row number)
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


S = pl.String()

BORROWERS: Final = TableSpec(
    "borrowers",
    "id",
    (
        Column("id", S, True),
        Column("companyId", S, True),
        Column("externalId", S),
        Column("firstName", S),
        Column("lastName", S),
        Column("timezone", S),
    ),
)

CONTACTS: Final = TableSpec(
    "contacts",
    "id",
    (
        Column("id", S, True),
        Column("personId", S, True),
        Column("contactType", S, True),
        Column("label", S, True),
        Column("affiliation", S, True),
        Column("status", S, True),
        Column("value", S),
        Column("addressLine1", S),
        Column("addressLine2", S),
        Column("city", S),
        Column("state", S),
        Column("postalCode", S),
        Column("country", S),
        Column("valid", pl.Boolean(), default=True),
        Column("verified", pl.Boolean(), default=False),
        Column("receiveTextMessages", pl.Boolean(), default=False),
        Column("authorizedThirdParty", pl.Boolean(), default=False),
        Column("powerOfAttorney", pl.Boolean(), default=False),
        Column("timezone", S),
        # point in time (pipelines.rules.history); null: taken as it is today
        Column("createdAt", UTC_TS),
        Column("archivedAt", UTC_TS),
    ),
)

INTERACTIONS: Final = TableSpec(
    "interactions",
    "id",
    (
        Column("id", S, True),
        Column("personId", S, True),
        Column("contactId", S),
        Column("loanId", S),
        Column("channel", S, True),
        Column("direction", S, True),
        Column("status", S, True),
        Column("statusDetails", S),
        Column("theme", S),
        Column("startedAt", UTC_TS, True),
    ),
)

DO_NOT_INTERACT: Final = TableSpec(
    "do_not_interact",
    "id",
    (
        Column("id", S, True),
        Column("personId", S, True),
        Column("caseId", S),
        Column("channels", pl.List(S), True),
        Column("themes", pl.List(S), True),
        Column("startDate", pl.Date(), True),
        Column("endDate", pl.Date()),
        Column("daysOfWeek", pl.List(pl.Int64())),
        Column("timesOfDay", pl.List(TIME_WINDOW)),
        Column("timezone", S),
        Column("contactLabels", pl.List(S)),
        Column("createdAt", UTC_TS),
        Column("deletedAt", UTC_TS),
    ),
)

CONSENTS: Final = TableSpec(
    "consents",
    None,
    (
        Column("personId", S, True),
        Column("name", S, True),
        Column("status", S, True),
        Column("updatedAt", UTC_TS, True),
    ),
)

TABLES: Final = (BORROWERS, CONTACTS, INTERACTIONS, DO_NOT_INTERACT, CONSENTS)
TABLES_BY_NAME: Final = {t.name: t for t in TABLES}

# Fields an exporter's columnSettings may name (CONTRACT.md §3, §5).
CONTACT_FIELDS: Final = CONTACTS.names
BORROWER_FIELDS: Final = tuple(f"borrower.{c}" for c in BORROWERS.names)
EXPORTABLE_FIELDS: Final = CONTACT_FIELDS + BORROWER_FIELDS


@dataclass(frozen=True)
class SourceTables:
    """The five source tables as LazyFrames with the types above (validated or not, per caller)."""

    borrowers: pl.LazyFrame
    contacts: pl.LazyFrame
    interactions: pl.LazyFrame
    do_not_interact: pl.LazyFrame
    consents: pl.LazyFrame

    def get(self, name: str) -> pl.LazyFrame:
        frame: pl.LazyFrame = getattr(self, name)
        return frame
