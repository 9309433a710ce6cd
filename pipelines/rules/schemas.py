"""Row checks for the source tables (CONTRACT.md §5, §8) as Pandera models and as a fast batch path.

Every check is defined once, as a Polars expression that is true where a row passes (a null result
counts as a failure: fail closed). The same definitions build the Pandera (polars backend) schemas
in `pandera_schema()` and the vectorised path that `validate_sources()` uses by default; the two
engines give the same report, which the tests check.

Policy (CONTRACT.md §5): an invalid row of any table is rejected and left out, and contacts of a
rejected or unknown borrower are rejected too (`personId_references_borrower`). Nothing is dropped
silently: every rejected row is reported with the borrower it belongs to (`ValidatedSources.owned`),
so that screening blocks every matched contact of that borrower (`SOURCE_ROW_REJECTED`, fail closed
per borrower; see pipelines/rules/rejection.py for when the whole run fails instead). `state` is trimmed
and upper-cased before the checks (`ma`, ` HI`); nothing else is guessed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from pipelines.io.chunks import realigned
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import (
    BORROWERS,
    CAST_ERRORS,
    CONSENTS,
    CONTACTS,
    DO_NOT_INTERACT,
    FIELDS_CHECK,
    INTERACTIONS,
    SOURCE_ROW,
    TABLES,
    SourceTables,
    TableSpec,
    type_check_name,
)
from pipelines.model.vocab import (
    CONSENT_NAMES,
    CONSENT_STATUSES,
    DIRECTIONS,
    INTERACTION_CHANNELS,
    INTERACTION_STATUSES,
    STATUS_DETAILS,
    THEMES,
)
from pipelines.rules.borrower_keys import keyed_contacts, numbered
from pipelines.rules.row_checks import (
    REFERENCE_CHECK,
    STATE,
    RowCheck,
    borrower_key_check,
    borrower_reference_check,
    common_checks,
    contact_checks,
    dni_checks,
    in_vocab,
    timezone_check,
)

if TYPE_CHECKING:
    from pipelines.rules.table_wide import TableWide

log = logging.getLogger(__name__)

MAX_ERROR_ITEMS: Final = 50

REJECTED_SCHEMA: Final = pl.Schema(
    {"tableName": pl.String(), "rowKey": pl.String(), "checks": pl.List(pl.String())}
)
# The rejected rows with the borrower each one belongs to (null: the row names none).
OWNED_SCHEMA: Final = pl.Schema({**REJECTED_SCHEMA, "personId": pl.String()})

Engine = Literal["polars", "pandera"]


@dataclass(frozen=True)
class ValidatedSources:
    """Validated tables (rejected borrowers and contacts left out) and the rejected rows."""

    tables: SourceTables
    rejected: pl.DataFrame  # tableName, rowKey, checks
    owned: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=OWNED_SCHEMA))
    # the same rows plus personId: the borrower each belongs to (null when the row names none)


# ---------------------------------------------------------------- which checks a table gets (row_checks.py)


def table_checks(spec: TableSpec, repeated: pl.Series | None = None) -> tuple[RowCheck, ...]:
    """Every row check of a table, in report order (the cross-table borrower check excluded).

    `repeated`: the ids the whole source holds more than once (`pipelines.rules.table_wide`), for a table
    read in part; without it `id_unique` looks only at the rows given."""
    if repeated is None:
        return _whole_table_checks(spec)  # built once: a check of a few contacts must not rebuild them
    return _built_checks(spec, repeated)


@functools.cache
def _whole_table_checks(spec: TableSpec) -> tuple[RowCheck, ...]:
    return _built_checks(spec, None)


def _built_checks(spec: TableSpec, repeated: pl.Series | None) -> tuple[RowCheck, ...]:
    specific: dict[str, list[RowCheck]] = {
        BORROWERS.name: [timezone_check()],
        CONTACTS.name: contact_checks(),
        INTERACTIONS.name: [
            in_vocab("channel", INTERACTION_CHANNELS),
            in_vocab("direction", DIRECTIONS),
            in_vocab("status", INTERACTION_STATUSES),
            in_vocab("statusDetails", STATUS_DETAILS),
            in_vocab("theme", THEMES),
        ],
        DO_NOT_INTERACT.name: dni_checks(),
        CONSENTS.name: [in_vocab("name", CONSENT_NAMES), in_vocab("status", CONSENT_STATUSES)],
    }
    return tuple(common_checks(spec, repeated) + specific[spec.name])


def unchecked_columns(spec: TableSpec) -> frozenset[str]:
    """The spec's columns that no row check reads: optional text with no vocabulary or format rule.

    A value there can never reject its row, so a run that does not use such a column need not read
    it (`sources.open_source(skip=...)`): the decisions and the rejected rows are the same.
    """
    checked = {check.column for check in table_checks(spec) if check.column is not None}
    if spec.name == CONTACTS.name:
        checked.add("personId")  # REFERENCE_CHECK
    return frozenset(
        c.name for c in spec.columns if c.name not in checked and not c.required and c.dtype == pl.String()
    )


# ---------------------------------------------------------------- Pandera models


def _prepare(frame: pl.LazyFrame) -> pl.LazyFrame:
    if CAST_ERRORS in frame.collect_schema().names():
        return frame
    return frame.with_columns(pl.lit(None, pl.List(pl.String())).alias(CAST_ERRORS))


def _pandera_check(check: RowCheck) -> pa.Check:
    expr = check.passes.fill_null(False)

    def run(data: PolarsData) -> pl.LazyFrame:
        return _prepare(data.lazyframe).select(expr.alias(check.name))

    return pa.Check(run, name=check.name, ignore_na=False)


def pandera_schema(
    spec: TableSpec, borrower_ids: pl.Series | None = None, repeated: pl.Series | None = None
) -> pa.DataFrameSchema:
    """The Pandera model of a table: column types plus every row check of `table_checks()`.

    Nullability and uniqueness are named checks (`<column>_not_null`, `id_unique`) so that Pandera's
    failure cases carry the same names as the fast path. Give `borrower_ids` (contacts only) to add
    `personId_references_borrower`.
    """
    checks = list(table_checks(spec, repeated))
    if borrower_ids is not None:
        checks.append(borrower_reference_check(borrower_ids))
    by_column: dict[str | None, list[pa.Check]] = {}
    for check in checks:
        by_column.setdefault(check.column, []).append(_pandera_check(check))
    columns = {
        c.name: pa.Column(c.dtype, nullable=True, required=c.required, checks=by_column.get(c.name, []))
        for c in spec.columns
    }
    return pa.DataFrameSchema(
        columns, checks=by_column.get(None, []), name=spec.name, strict=False, coerce=False
    )


# ---------------------------------------------------------------- validation


def _conform(frame: pl.DataFrame, spec: TableSpec, source: str) -> pl.DataFrame:
    """Check column presence and types; add absent optional columns (typed nulls or defaults)."""
    added = []
    for column in spec.columns:
        if column.name not in frame.columns:
            if column.required:
                raise SourceDataError(
                    source,
                    [ErrorItem(f"/{spec.name}/{column.name}", "required column is missing")],
                    message=f"{source}: table {spec.name} has no required column {column.name}; "
                    "add it to the source",
                )
            added.append(pl.lit(column.default, column.dtype).alias(column.name))
            continue
        actual = frame.schema[column.name]
        if actual != column.dtype:
            raise SourceDataError(
                source,
                [ErrorItem(f"/{spec.name}/{column.name}", f"has type {actual}, expected {column.dtype}")],
                message=f"{source}: column {spec.name}.{column.name} has type {actual}, expected "
                f"{column.dtype}; read sources with pipelines.io.sources.open_source",
            )
    if added:
        frame = frame.with_columns(added)
    if CAST_ERRORS not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.List(pl.String())).alias(CAST_ERRORS))
    extras = [c for c in frame.columns if c not in spec.names]
    # The columns added here are one chunk each: cut like the source's (pipelines.io.chunks).
    return realigned(frame.select(*spec.names, *extras))


def _position(frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    """A row's 0-based position in its whole source table: as the reader gave it for a table read in
    part (`sources.SOURCE_ROW`), else its position in the frame (the whole table)."""
    names = frame.collect_schema().names()
    return pl.col(SOURCE_ROW if SOURCE_ROW in names else "__row").cast(pl.Int64)


def _row_keys(spec: TableSpec, position: pl.Expr) -> pl.Expr:
    """The row's key: its id, personId/name/updatedAt for consents, else `row N` (1-based position
    in the source table, the same whatever partition read it)."""
    row = pl.format("row {}", position + 1)
    if spec.key is not None:
        return pl.coalesce(pl.col(spec.key).cast(pl.String), row)
    parts = [
        pl.col("personId"),
        pl.col("name"),
        pl.col("updatedAt").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
    ]
    return (
        pl.when(pl.all_horizontal(p.is_not_null() for p in parts))
        .then(pl.concat_str(parts, separator="/"))
        .otherwise(row)
    )


def _failures_polars(frame: pl.DataFrame, spec: TableSpec, checks: Sequence[RowCheck]) -> pl.DataFrame:
    """Rows failing any check: `__row` (0-based), rowKey, checks (names in check order)."""
    oks = [_fast_expr(frame, c).fill_null(False).alias(f"__ok{i}") for i, c in enumerate(checks)]
    flagged = (
        frame.lazy()
        .with_row_index("__row")
        .with_columns(oks)
        .filter(~pl.all_horizontal(pl.col(f"__ok{i}") for i in range(len(checks))))
    )
    names = [pl.when(~pl.col(f"__ok{i}")).then(pl.lit(c.name)) for i, c in enumerate(checks)]
    return flagged.select(
        pl.col("__row").cast(pl.Int64),
        _row_keys(spec, _position(frame)).alias("rowKey"),
        pl.concat_list(names).list.drop_nulls().alias("checks"),
    ).collect()


def _fast_expr(frame: pl.DataFrame, check: RowCheck) -> pl.Expr:
    if check.passes_sorted is not None and check.column is not None:
        column = frame.get_column(check.column)
        if column.null_count() == 0 and column.is_sorted():
            return check.passes_sorted
    return check.passes


def _failures_pandera(
    frame: pl.DataFrame,
    spec: TableSpec,
    borrower_ids: pl.Series | None,
    source: str,
    repeated: pl.Series | None = None,
) -> pl.DataFrame:
    schema = pandera_schema(spec, borrower_ids, repeated)
    order = {c.name: i for i, c in enumerate(table_checks(spec))}
    order[REFERENCE_CHECK] = len(order)
    try:
        with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
            schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases: pl.DataFrame = exc.failure_cases
    else:
        return pl.DataFrame(schema={"__row": pl.Int64, "rowKey": pl.String, "checks": pl.List(pl.String)})
    unplaced = cases.filter(pl.col("index").is_null())
    if unplaced.height:
        where = ", ".join(f"{c}: {k}" for c, k in unplaced.select("column", "check").unique().iter_rows())
        raise SourceDataError(source, [ErrorItem(f"/{spec.name}", f"schema check failed ({where})")])
    per_row = (
        cases.select(
            pl.col("index").cast(pl.Int64).alias("__row"),
            pl.col("check"),
            pl.col("check").replace_strict(order, return_dtype=pl.Int64).alias("__order"),
        )
        .unique()
        .sort("__row", "__order")
        .group_by("__row", maintain_order=True)
        .agg(pl.col("check").alias("checks"))
    )
    keys = (
        frame.lazy()
        .with_row_index("__row")
        .select(pl.col("__row").cast(pl.Int64), _row_keys(spec, _position(frame)).alias("rowKey"))
    )
    joined = per_row.lazy().join(keys, on="__row", how="left", maintain_order="left")
    return joined.select("__row", "rowKey", "checks").collect()


def _failures(
    frame: pl.DataFrame,
    spec: TableSpec,
    engine: Engine,
    source: str,
    borrower_ids: pl.Series | None = None,
    table_wide: TableWide | None = None,
) -> pl.DataFrame:
    repeated = None if table_wide is None else table_wide.repeated_ids(spec.name)
    if engine == "pandera":
        return _failures_pandera(frame, spec, borrower_ids, source, repeated)
    checks = list(table_checks(spec, repeated))
    if borrower_ids is not None:
        checks.append(borrower_key_check())
    return _failures_polars(frame, spec, checks)


def validate_sources(
    tables: SourceTables,
    *,
    source: str = "source",
    engine: Engine = "polars",
    table_wide: TableWide | None = None,
) -> ValidatedSources:
    """Validate the five tables at data depth; see the module docstring for the policy.

    `source` names the source in error messages. `engine="pandera"` runs the Pandera models and
    reads their failure cases instead of the vectorised path (same checks, same report; slower).
    `table_wide`: the answers of the rules that span the whole source (`pipelines.rules.table_wide.scan`),
    required when `tables` hold only part of it (a partition); without it the tables given are taken
    as the whole source.
    """
    started = time.perf_counter()
    frames = _conformed(tables, source)
    failures, kept = _checked(frames, engine, source, table_wide)
    owned = pl.concat(
        [_owned(spec, frames[spec.name], failures[spec.name]) for spec in TABLES], how="vertical"
    ).cast(OWNED_SCHEMA)
    validated = SourceTables(
        **{name: frame.drop(CAST_ERRORS, SOURCE_ROW, strict=False).lazy() for name, frame in kept.items()}
    )
    log.info(
        "validated source %s in %.2fs: rejected %s",
        source,
        time.perf_counter() - started,
        ", ".join(f"{name} {f.height}" for name, f in failures.items()),
    )
    return ValidatedSources(validated, owned.select(REJECTED_SCHEMA.names()), owned)


def _conformed(tables: SourceTables, source: str) -> dict[str, pl.DataFrame]:
    """Each table collected in its declared shape, contacts' `state` trimmed and upper-cased."""
    frames = {spec.name: _conform(tables.get(spec.name).collect(), spec, source) for spec in TABLES}
    contacts = frames[CONTACTS.name]
    state = pl.col("state")
    # Only a source with some state not already two capitals pays for the rewrite.
    if contacts.select((~state.str.contains(STATE)).any()).item():
        frames[CONTACTS.name] = contacts.with_columns(
            pl.when(state.str.contains(STATE)).then(state).otherwise(normalized_state(state)).alias("state")
        )
    return frames


def _checked(
    frames: dict[str, pl.DataFrame], engine: Engine, source: str, table_wide: TableWide | None
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """Each table's failures, and its rows kept; contacts are checked against the borrowers kept."""
    failures: dict[str, pl.DataFrame] = {}
    kept: dict[str, pl.DataFrame] = {}
    for spec in TABLES:
        frame = frames[spec.name]
        if spec.name == CONTACTS.name:
            borrowers = kept[BORROWERS.name]
            frame = keyed_contacts(frame, borrowers)
            found = _failures(frame, spec, engine, source, borrowers.get_column("id"), table_wide)
        else:
            found = _failures(frame, spec, engine, source, table_wide=table_wide)
        failures[spec.name] = found
        kept[spec.name] = _drop_rows(frame, found)
        if spec.name == BORROWERS.name:
            kept[spec.name] = numbered(kept[spec.name])
    return failures, kept


def normalized_state(state: pl.Expr) -> pl.Expr:
    """A state code trimmed and upper-cased (`ma`, ` HI`); blank is null. Nothing else is guessed."""
    cleaned = state.str.strip_chars().str.to_uppercase()
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def _owned(spec: TableSpec, frame: pl.DataFrame, failures: pl.DataFrame) -> pl.DataFrame:
    """The rejected rows of a table with the borrower each belongs to (its id for a borrower)."""
    if failures.height == 0:
        return pl.DataFrame(schema=OWNED_SCHEMA)
    owner = "id" if spec.name == BORROWERS.name else "personId"
    persons = frame.get_column(owner).cast(pl.String).gather(failures.get_column("__row"))
    return failures.select(pl.lit(spec.name).alias("tableName"), "rowKey", "checks").with_columns(
        persons.alias("personId")
    )


def _spec(name: str) -> TableSpec:
    return next(t for t in TABLES if t.name == name)


def _drop_rows(frame: pl.DataFrame, failures: pl.DataFrame) -> pl.DataFrame:
    if not failures.height:
        return frame
    drop = failures.get_column("__row")
    return (
        frame.with_row_index("__row")
        .filter(~pl.col("__row").cast(pl.Int64).is_in(drop.implode()))
        .drop("__row")
    )


def check_names(spec: TableSpec) -> tuple[str, ...]:
    """Names of a table's checks (for documentation and tests)."""
    names = tuple(c.name for c in table_checks(spec))
    return names + ((REFERENCE_CHECK,) if spec.name == CONTACTS.name else ())


__all__ = [
    "CAST_ERRORS",
    "FIELDS_CHECK",
    "OWNED_SCHEMA",
    "REJECTED_SCHEMA",
    "RowCheck",
    "ValidatedSources",
    "check_names",
    "normalized_state",
    "pandera_schema",
    "table_checks",
    "type_check_name",
    "unchecked_columns",
    "validate_sources",
]
