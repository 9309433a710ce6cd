"""Pandera guards for the frames a run passes between its steps (matched → screened → exported).

Source validation (pipelines.rules.schemas) checks what comes in; these models check what the run's own
steps produce, before anything is written or delivered:

- `MatchedContacts`: the contacts the criteria selected: ids present, unique and sorted, and every
  row meets the exporter's criteria (AND across attributes, OR within);
- `ScreeningResults`: one row per matched contact, in the same order; `canInteract` exactly when
  `reasons` is empty; reasons sorted, without repeats and in the vocabulary; `nextEligibleDate` (when
  the column is there) only on blocked rows;
- `ExportFrame`: only contacts whose `canInteract` is true, each allowed contact once, ids sorted;
  exactly the configured output columns, in order, with the source types.

Each guard validates lazily (every failed check at once) at data depth. A failure raises
`GuardError`, an internal error: its `rejected` frame holds Pandera's failure cases as
`rejected_rows` rows (tableName `guard:<frame>`, rowKey = contact id, checks = failed check names),
with no values from the frame (the export frame holds phone numbers and names).

Every check is one Polars expression over whole columns (no Python per row); checks that need an
order use the frames' sortedness (a duplicate in a sorted column sits next to its twin).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from pipelines.model.config import ColumnSetting, ContactMatchingCriteria
from pipelines.model.errors import GuardError
from pipelines.model.tables import BORROWERS, CONTACTS
from pipelines.model.vocab import REASON_CODES, one_of
from pipelines.rules.columns import BORROWER_PREFIX
from pipelines.rules.schemas import REJECTED_SCHEMA

# The contact id of each export row rides along in this column while the export frame is checked
# (the file's own columns are whatever columnSettings say, possibly without the id). outputName
# refuses control characters, so no configured column can have this name.
EXPORT_KEY: Final = "\x1fcontactId"
# Checks about the whole frame (their failure is not about one row).
FRAME_CHECKS: Final = ("one_row_per_matched_contact", "one_row_per_allowed_contact")
MAX_LISTED: Final = 20


def _lf(data: PolarsData, expr: pl.Expr, name: str = "ok") -> pl.LazyFrame:
    return data.lazyframe.select(expr.fill_null(False).alias(name))


def _unique(column: pl.Series) -> pl.Expr:
    """True where the value occurs once; by its neighbours when the column is sorted (no hashing)."""
    col = pl.col(column.name)
    if column.is_sorted():
        return (col != col.shift(1)).fill_null(True) & (col != col.shift(-1)).fill_null(True)
    return ~col.is_duplicated()


def _not_below_previous(name: str) -> pl.Expr:
    """True where the value is not below the one before it (per row, so failures name rows)."""
    col = pl.col(name)
    return (col >= col.shift(1)).fill_null(True)


def _column(data: PolarsData) -> pl.Series:
    return data.lazyframe.select(data.key).collect().to_series()


def _extended(
    schema: pa.DataFrameSchema,
    columns: dict[str, pa.Column],
    column_checks: dict[str, list[pa.Check]],
    frame_checks: list[pa.Check],
) -> pa.DataFrameSchema:
    """`schema` with more columns, and more checks on some columns and on the frame."""
    merged = {**schema.columns, **columns}
    for name, checks in column_checks.items():
        merged[name] = merged[name].update_checks([*merged[name].checks, *checks])
    return pa.DataFrameSchema(
        merged,
        checks=[*schema.checks, *frame_checks],
        strict=bool(schema.strict),
        ordered=schema.ordered,
        name=schema.name,
    )


# ---------------------------------------------------------------- matched contacts


class MatchedContacts(pa.DataFrameModel):
    """The contacts the criteria selected (narrowed to the columns the run reads)."""

    id: str = pa.Field(nullable=False)
    personId: str = pa.Field(nullable=False)
    contactType: str = pa.Field(nullable=False)

    class Config:
        name = "matched"
        strict = False

    @pa.check("id", name="id_unique", ignore_na=False)
    @classmethod
    def _id_unique(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _unique(_column(data)))

    @pa.check("id", name="id_sorted", ignore_na=False)
    @classmethod
    def _id_sorted(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _not_below_previous(data.key))


def _criteria_check(key: str, values: list[str]) -> pa.Check:
    def run(data: PolarsData) -> pl.LazyFrame:
        return _lf(data, one_of(pl.col(key), values))

    return pa.Check(run, name=f"{key}_meets_criteria", ignore_na=False)


def matched_schema(criteria: ContactMatchingCriteria) -> pa.DataFrameSchema:
    """`MatchedContacts` plus one check per criteria attribute, and the source types of the others."""
    schema = MatchedContacts.to_schema()
    wanted = criteria.as_dict()
    others = {
        c.name: pa.Column(c.dtype, nullable=c.name not in wanted, required=c.name in wanted)
        for c in CONTACTS.columns
        if c.name not in schema.columns
    }
    checks = {key: [_criteria_check(key, values)] for key, values in wanted.items()}
    return _extended(schema, others, checks, [])


# ---------------------------------------------------------------- screening results


class ScreeningResults(pa.DataFrameModel):
    """One screening row per matched contact (COMPLIANCE.md)."""

    contactId: str = pa.Field(nullable=False)
    personId: str = pa.Field(nullable=False)
    channel: str = pa.Field(nullable=True)
    canInteract: bool = pa.Field(nullable=False)
    reasons: pl.List = pa.Field(nullable=False, dtype_kwargs={"inner": pl.String})
    nextEligibleDate: datetime.date | None = pa.Field(nullable=True)

    class Config:
        name = "screening"
        strict = False  # the warehouse picks its columns by name; more may be added

    @pa.check("contactId", name="contactId_unique", ignore_na=False)
    @classmethod
    def _contact_unique(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _unique(_column(data)))

    @pa.check("canInteract", name="canInteract_iff_no_reasons", ignore_na=False)
    @classmethod
    def _allowed_iff_no_reasons(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, pl.col("canInteract") == (pl.col("reasons").list.len() == 0))

    @pa.check("reasons", name="reasons_sorted_in_vocabulary", ignore_na=False)
    @classmethod
    def _reasons_sorted_known(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _reasons_ok(data.lazyframe))

    @pa.check("nextEligibleDate", name="nextEligibleDate_only_when_blocked", ignore_na=False)
    @classmethod
    def _next_only_blocked(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, pl.col("nextEligibleDate").is_null() | ~pl.col("canInteract"))


def _reasons_ok(frame: pl.LazyFrame) -> pl.Expr:
    """True where a row's reasons are strictly increasing (sorted, no repeats) and all known.

    The flattened values are compared with their neighbour in the same row: evaluating per list
    (`list.eval`) is far slower.
    """
    reason = pl.col("reasons")
    row = pl.col("__row")
    bad_rows = (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("__row"), reason)
        .explode("reasons")
        .filter(
            reason.is_not_null()
            & (((reason <= reason.shift(1)) & (row == row.shift(1))) | ~reason.is_in(REASON_CODES))
        )
        .select(row.unique())
        .collect()
        .to_series()
    )
    return ~pl.int_range(pl.len(), dtype=pl.UInt32).is_in(bad_rows.implode())


def _lines_up_check(matched_ids: pl.Series) -> pa.Check:
    """Row i is the screening of matched contact i (the run filters the matched frame by position)."""

    def run(data: PolarsData) -> pl.LazyFrame:
        ids = _column(data)
        if ids.len() == matched_ids.len():
            return _lf(data, pl.col(data.key) == pl.lit(matched_ids))
        return _lf(data, pl.lit(False))

    return pa.Check(run, name="contactId_lines_up_with_matched", ignore_na=False)


def _count_check(name: str, expected: int) -> pa.Check:
    def run(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.len() == expected).alias("ok"))

    return pa.Check(run, name=name, ignore_na=False)


def screening_schema(matched_ids: pl.Series) -> pa.DataFrameSchema:
    """`ScreeningResults` plus the checks against the matched contacts' ids (in their order)."""
    return _extended(
        ScreeningResults.to_schema(),
        {},
        {"contactId": [_lines_up_check(matched_ids)]},
        [_count_check(FRAME_CHECKS[0], matched_ids.len())],
    )


# ---------------------------------------------------------------- export frame


class ExportFrame(pa.DataFrameModel):
    """The rows of the file: their contact ids here; their columns are added per exporter."""

    contactId: str = pa.Field(nullable=False, alias=EXPORT_KEY)

    class Config:
        name = "export"
        strict = True
        ordered = True

    @pa.check(EXPORT_KEY, name="contact_unique", ignore_na=False)
    @classmethod
    def _contact_unique(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _unique(_column(data)))

    @pa.check(EXPORT_KEY, name="contact_sorted", ignore_na=False)
    @classmethod
    def _contact_sorted(cls, data: PolarsData) -> pl.LazyFrame:
        return _lf(data, _not_below_previous(data.key))


def field_dtype(field: str) -> pl.DataType:
    """The type a columnSettings field has in the file: its source column's type."""
    if field.startswith(BORROWER_PREFIX):
        return BORROWERS.schema[field.removeprefix(BORROWER_PREFIX)]
    return CONTACTS.schema[field]


def _allowed_check(allowed: pl.Series) -> pa.Check:
    def run(data: PolarsData) -> pl.LazyFrame:
        if _column(data).equals(allowed, check_names=False):  # the usual case: no hashing
            return _lf(data, pl.lit(True))
        return _lf(data, pl.col(data.key).is_in(allowed.implode()))

    return pa.Check(run, name="contact_can_interact", ignore_na=False)


def export_schema(settings: Sequence[ColumnSetting], allowed: pl.Series) -> pa.DataFrameSchema:
    """The configured columns in order with their types, then the contact ids of the rows.

    `allowed`: the ids of the contacts the screening allowed, sorted.
    """
    base = ExportFrame.to_schema()
    columns = {s.output: pa.Column(field_dtype(s.field), nullable=True) for s in settings}
    # The configured columns first, in their order; the key last (it is not in the file).
    ordered = _extended(base, columns, {EXPORT_KEY: [_allowed_check(allowed)]}, [])
    return pa.DataFrameSchema(
        {**columns, EXPORT_KEY: ordered.columns[EXPORT_KEY]},
        checks=[*base.checks, _count_check(FRAME_CHECKS[1], allowed.len())],
        strict=True,
        ordered=True,
        name=base.name,
    )


# ---------------------------------------------------------------- running the guards


def _validate(schema: pa.DataFrameSchema, frame: pl.DataFrame, key: str, source: str) -> None:
    try:
        with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
            schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        raise guard_error(source, exc.failure_cases, frame, key) from None


def failed_checks(failure_cases: pl.DataFrame, frame: pl.DataFrame, key: str, table: str) -> pl.DataFrame:
    """Pandera's failure cases as rejected rows: tableName, rowKey (the row's id), checks.

    A check about a row names the row by its id; a check about the frame or its columns (missing
    or extra column, order, type, row count) has no rowKey and says what it saw (column names,
    types, never values).
    """
    cases = failure_cases.select(
        pl.col("index").cast(pl.Int64),
        pl.col("column").cast(pl.String),
        pl.col("check").cast(pl.String),
        pl.col("failure_case").cast(pl.String),
    )
    return (
        pl.concat([_about_frame(cases), _about_rows(cases, frame, key)])
        .select(pl.lit("guard:" + table).alias("tableName"), "rowKey", "checks")
        .cast(REJECTED_SCHEMA)
    )


def _about_rows(cases: pl.DataFrame, frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """rowKey (the row's id, else `row <n>`), checks: one row per row that failed a row check."""
    about_rows = cases.filter(pl.col("index").is_not_null() & ~pl.col("check").is_in(FRAME_CHECKS))
    keys = (
        frame.select(pl.col(key).cast(pl.String).alias("rowKey"))
        .with_row_index("index")
        .cast({"index": pl.Int64})
        if key in frame.columns
        else pl.DataFrame(schema={"index": pl.Int64, "rowKey": pl.String})
    )
    return (
        about_rows.join(keys, on="index", how="left")
        .with_columns(pl.coalesce("rowKey", pl.format("row {}", pl.col("index") + 1)).alias("rowKey"))
        .unique(["index", "check"], maintain_order=True)
        .group_by("index", maintain_order=True)
        .agg(pl.col("rowKey").first(), pl.col("check").alias("checks"))
        .sort("index")
        .select("rowKey", "checks")
    )


def _about_frame(cases: pl.DataFrame) -> pl.DataFrame:
    """rowKey null, checks: the checks about the frame or its columns, with what they saw."""
    return (
        cases.filter(pl.col("index").is_null() | pl.col("check").is_in(FRAME_CHECKS))
        .select(
            pl.lit(None, pl.String).alias("rowKey"),
            pl.concat_list(
                pl.when(pl.col("check").is_in(FRAME_CHECKS))
                .then(pl.col("check"))
                .otherwise(pl.format("{}: {}", pl.col("check"), pl.col("failure_case")))
            ).alias("checks"),
        )
        .unique(maintain_order=True)
    )


def guard_error(table: str, failure_cases: pl.DataFrame, frame: pl.DataFrame, key: str) -> GuardError:
    rejected = failed_checks(failure_cases, frame, key, table)
    names = rejected.select(
        pl.col("checks").explode().str.split(":").list.first().unique(maintain_order=True)
    )
    listed = names.to_series().to_list()
    rows = rejected.filter(pl.col("rowKey").is_not_null()).height
    shown = ", ".join(listed[:MAX_LISTED]) + (
        f" (and {len(listed) - MAX_LISTED} more)" if len(listed) > MAX_LISTED else ""
    )
    message = (
        f"internal error: the {table} frame failed its guard ({shown}; {rows} rows); "
        "nothing was written or delivered. The failed checks are in rejected_rows "
        f"(tableName 'guard:{table}')"
    )
    return GuardError(table, message, rejected)


def check_matched(matched: pl.DataFrame, criteria: ContactMatchingCriteria) -> None:
    """Raise GuardError unless `matched` is a valid set of contacts meeting `criteria`."""
    _validate(matched_schema(criteria), matched, "id", "matched")


def check_screening(screening: pl.DataFrame, matched: pl.DataFrame) -> None:
    """Raise GuardError unless `screening` holds one valid row per matched contact, in its order."""
    _validate(screening_schema(matched.get_column("id")), screening, "contactId", "screening")


def check_export(
    out: pl.DataFrame, ids: pl.Series, screening: pl.DataFrame, settings: Sequence[ColumnSetting]
) -> None:
    """Raise GuardError unless `out` holds exactly the contacts the screening allowed, sorted by id,
    in the configured columns and types.

    A row's contact is read from the file's own id column when columnSettings export the id, else
    taken from `ids` (the ids of the contacts `out` was projected from, row for row).
    """
    id_column = next((s.output for s in settings if s.field == "id"), None)
    if id_column is not None and id_column in out.columns:
        keys = out.get_column(id_column)
    else:  # rows without a contact id fail `not_nullable`; extra ids are cut
        keys = ids.head(out.height).extend_constant(None, max(out.height - ids.len(), 0))
    allowed = screening.filter(pl.col("canInteract")).get_column("contactId")
    frame = out.with_columns(keys.alias(EXPORT_KEY))
    _validate(export_schema(settings, allowed), frame, EXPORT_KEY, "export")
