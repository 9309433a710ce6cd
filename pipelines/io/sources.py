"""Source tables IO (CONTRACT.md §5): the five tables of a source, whatever kind it is, typed.

A source is a `SourceRef` (pipelines.io.source_ref): a local DuckDB file or folder of Parquet/CSV
files (pipelines.io.local_sources), Parquet under `s3://` (pipelines.io.s3) or tables in Postgres
(pipelines.io.postgres). `open_source()` returns frames with exactly the types of
`pipelines.model.tables` (pipelines.io.conform). This module is the one place that dispatches on the
kind: partitions, the table-wide checks and preflight ask it for ids, sizes and tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from pipelines.io import postgres, s3
from pipelines.io.conform import TIMESTAMP_FORMAT, conform, text_frame
from pipelines.io.local_sources import (
    FOLDER_FORMATS,
    CsvShape,
    Skip,
    csv_records_estimate,
    csv_shape,
    duckdb_catalog,
    duckdb_columns,
    duckdb_snapshot,
    duckdb_tables,
    folder_files,
    missing_table,
    not_a_duckdb_file,
    read_csv_strict,
    read_duckdb_table,
    read_folder_table,
    scan_csv_text,
    skipped,
    stage_csv_tables,
    table_files,
    unreadable_file,
)
from pipelines.io.source_ref import BORROWER_KEYS, RowFilter, SourceRef, redact
from pipelines.io.source_writes import SourceFormat, write_source, write_source_chunks
from pipelines.model.errors import ErrorItem, InvalidInputError, SourceDataError
from pipelines.model.tables import TABLES, SourceTables, TableSpec

log = logging.getLogger(__name__)

Source = SourceRef | Path | str


def ref_of(source: Source) -> SourceRef:
    """A `SourceRef` of a ref, a path or a URI (a relative path: against the working folder)."""
    if isinstance(source, SourceRef):
        return source
    return SourceRef.local(source) if isinstance(source, Path) else SourceRef.parse(source)


def open_source(
    source: Source,
    rows: RowFilter | None = None,
    skip: Skip | None = None,
    csv_shapes: Mapping[str, CsvShape] | None = None,
) -> SourceTables:
    """Read the five source tables of any kind of source, typed.

    With `rows`, only the rows of those borrowers are read (the filter runs inside the read).
    `csv_shapes`: per CSV table, its fields as counted once for the run (`csv_shape`), so that a read
    of some rows does not count the whole file again.
    `skip`: per table, columns not to read; they come back as nulls. Only
    for columns no check and no step reads (`schemas.unchecked_columns`): a run reads the others,
    and the rows a check rejects stay the same.
    """
    ref = ref_of(source)
    return typed(raw_tables(ref, rows, skip, csv_shapes), ref)


def typed(
    raw: Mapping[str, pl.DataFrame], ref: SourceRef, specs: Sequence[TableSpec] = TABLES
) -> SourceTables:
    """Raw frames as read, each typed by its spec in `specs` (`conform`); a table not among `specs`
    is empty."""
    given = {spec.name: spec for spec in specs}
    frames = {
        spec.name: conform(raw[spec.name], given[spec.name], str(ref))
        if spec.name in given
        else pl.DataFrame(schema=spec.schema)
        for spec in TABLES
    }
    log.info("read source %s: %s", ref, ", ".join(f"{k}={v.height}x{v.width}" for k, v in frames.items()))
    return SourceTables(**{name: frame.lazy() for name, frame in frames.items()})


def open_columns(source: Source, keep: Mapping[str, Collection[str]]) -> SourceTables:
    """The tables `keep` names with only those columns of their spec (and any column the source
    holds beyond its spec), typed as `open_source` types them; the other tables empty. For a reader
    of a few columns of the whole book (a campaign's query): nothing else is read."""
    ref = ref_of(source)
    specs = [spec for spec in TABLES if spec.name in keep]
    skip = {spec.name: set(spec.names) - set(keep[spec.name]) for spec in specs}
    with reading(ref) as read:
        raw = read(specs, None, skip)
    return typed(raw, ref, [_narrowed(spec, keep[spec.name]) for spec in specs])


def _narrowed(spec: TableSpec, names: Collection[str]) -> TableSpec:
    return replace(spec, columns=tuple(c for c in spec.columns if c.name in names))


def read_raw(source: Source) -> dict[str, pl.DataFrame]:
    """The five tables of a source as they are stored (before `conform`)."""
    return raw_tables(ref_of(source))


def _does_not_exist(ref: SourceRef) -> SourceDataError:
    return SourceDataError(
        str(ref),
        [ErrorItem("", "does not exist")],
        message=f"source {ref} does not exist; give a DuckDB file, a folder of "
        "<table>.parquet/<table>.csv files, s3://bucket/prefix/ or postgresql://user@host:port/db "
        "(contact-exporter generate --out SOURCE makes one)",
    )


OneTable = Callable[[TableSpec, RowFilter | None, frozenset[str], CsvShape | None], pl.DataFrame]


@dataclass(frozen=True)
class TableReader:
    """Reads tables of one source (see `reading`)."""

    one: OneTable  # one table: its spec, the rows kept, the columns not read, a CSV file's shape
    source: str = ""
    present: Collection[str] | None = None  # the source's tables (None: `one` finds a missing one)
    add: str = ""  # how to add a missing table `{name}`, for its error

    def __call__(
        self,
        specs: Sequence[TableSpec],
        rows: RowFilter | None = None,
        skip: Skip | None = None,
        csv_shapes: Mapping[str, CsvShape] | None = None,
    ) -> dict[str, pl.DataFrame]:
        """The raw frames of `specs`: only the rows `rows` keeps, without `skip`'s columns. A missing
        table is an error (exit 2) before any table is read."""
        for spec in specs:
            if self.present is not None and spec.name not in self.present:
                raise missing_table(self.source, spec.name, self.add.replace("{name}", spec.name))
        shapes = csv_shapes or {}
        return {spec.name: self.one(spec, rows, skipped(skip, spec), shapes.get(spec.name)) for spec in specs}


@contextmanager
def reading(ref: SourceRef, *, keep: bool = False) -> Iterator[TableReader]:
    """A reader of the tables of any kind of source. Every read made through one reader sees the
    source as of one instant where the source can promise it (a DuckDB transaction, a Postgres
    REPEATABLE READ snapshot); files and objects are read as they are at each read. `keep`: a
    Postgres connection is kept open for the next reader of this process (`postgres.cursor`)."""
    kind, source = ref.kind, str(ref)
    if kind == "folder":  # a folder's tables are files: `read_folder_table` names a missing one
        yield TableReader(
            lambda spec, rows, skip, shape: read_folder_table(ref.path, spec, rows, skip, shape)
        )
    elif kind == "duckdb":
        if not ref.path.is_file():
            raise _does_not_exist(ref)
        with duckdb_snapshot(ref.path) as con:
            catalog = duckdb_catalog(con)
            yield TableReader(
                lambda spec, rows, skip, _: read_duckdb_table(con, catalog[spec.name], spec, rows, skip),
                source, catalog, "create it in the DuckDB file",
            )  # fmt: skip
    elif kind == "s3":
        found = s3.list_tables(ref)
        yield TableReader(
            lambda spec, rows, skip, _: s3.read_table(ref, spec, found[spec.name], rows, skip),
            source, found, "add {name}.parquet under the prefix",
        )  # fmt: skip
    else:
        with postgres.cursor(ref, keep=keep) as cur:
            kinds = postgres.catalog(cur, ref)
            yield TableReader(
                lambda spec, rows, skip, _: postgres.read_table(cur, ref, spec, rows, skip, kinds[spec.name]),
                source, kinds, f"create it in schema {ref.schema}",  # a table: its columns
            )  # fmt: skip


def raw_tables(
    ref: SourceRef,
    rows: RowFilter | None = None,
    skip: Skip | None = None,
    csv_shapes: Mapping[str, CsvShape] | None = None,
) -> dict[str, pl.DataFrame]:
    """The raw tables of any kind of source (the rows `rows` keeps, without `skip`'s columns)."""
    with reading(ref) as read:
        return read(TABLES, rows, skip, csv_shapes)


def csv_pass(source: Source, staging: Path, skip: Skip | None = None) -> dict[str, CsvShape]:
    """For a partitioned run over a folder of CSV files: each file's fields counted and its rows
    copied to Parquet in `staging`, once (`stage_csv_tables`); nothing for other sources."""
    ref = ref_of(source)
    if ref.kind != "folder":
        return {}
    return stage_csv_tables(ref.path, staging, skip)


def missing_tables(ref: SourceRef) -> list[str]:
    """The source tables a source lacks (preflight); an unreachable or refused source raises (exit 2)."""
    kind = ref.kind
    if kind == "folder":
        return [spec.name for spec in TABLES if not table_files(ref.path, spec)]
    if kind == "duckdb":
        if not ref.path.is_file():
            raise _does_not_exist(ref)
        import duckdb

        from pipelines.io import duck

        try:
            with duck.connect(ref.path, read_only=True) as con:
                present = duckdb_tables(con)
        except duckdb.Error as exc:
            raise not_a_duckdb_file(str(ref), exc) from None
        return [spec.name for spec in TABLES if spec.name not in present]
    if kind == "s3":
        return s3.missing(ref, s3.list_tables(ref, during_run=False))
    with postgres.cursor(ref, during_run=False) as cur:
        present = postgres.tables(cur, ref)
    return [spec.name for spec in TABLES if spec.name not in present]


def remote_column(ref: SourceRef, tables: list[str], name: str) -> dict[str, pl.Series]:
    """Column `name` of each of `tables` of an S3 or Postgres source, as text, every row; a table or
    column that does not exist is left out (reading the source reports it). A failed read raises."""
    found: dict[str, pl.Series] = {}
    if ref.kind == "s3":
        where = s3.list_tables(ref)
        for table in tables:
            got = s3.column(ref, where[table], table, name) if table in where else None
            if got is not None:
                found[table] = got
        return found
    with postgres.cursor(ref) as cur:
        present = postgres.tables(cur, ref)
        for table in tables:
            got = postgres.column(cur, ref, table, name) if table in present else None
            if got is not None:
                found[table] = got
    return found


def remote_key_batches(ref: SourceRef, table: str, key: str) -> Iterator[pl.Series]:
    """Column `key` of `table` of an S3 or Postgres source, as text, in the table's own order, one
    batch at a time (for `table_wide.in_order`, which checks that order); nothing when the table or
    column does not exist. A failed read raises."""
    if ref.kind == "postgres":
        yield from postgres.key_batches(ref, table, key)
        return
    where = s3.list_tables(ref)
    if table in where:
        yield from s3.key_batches(ref, where[table], table, key)


def remote_rows(ref: SourceRef) -> int:
    """Rows in the five tables of an S3 (Parquet footers) or Postgres (planner statistics) source."""
    if ref.kind == "s3":
        return s3.row_count(ref)
    with postgres.cursor(ref) as cur:
        return postgres.row_count(cur, ref)


def read_ids(path: Path) -> pl.DataFrame:
    """Read a population file (CSV or Parquet with a column `id`) as distinct text ids."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(
            str(path), [ErrorItem("", "does not exist")], message=f"population file {path} does not exist"
        )
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
        else:
            raise InvalidInputError(
                str(path),
                [ErrorItem("", "unknown file type")],
                message=f"population file {path} must be a .csv or .parquet file with a column id",
            )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidInputError(
            str(path),
            [ErrorItem("", f"cannot be read: {type(exc).__name__}")],
            message=f"population file {path} cannot be read ({type(exc).__name__})",
        ) from None
    if "id" not in frame.columns:
        raise InvalidInputError(
            str(path),
            [ErrorItem("/id", "required column is missing")],
            message=f"population file {path} has no column id (columns: {', '.join(frame.columns) or 'none'})",
        )
    return frame.select(pl.col("id").cast(pl.String)).drop_nulls().unique(maintain_order=True)


__all__ = [
    "BORROWER_KEYS",
    "FOLDER_FORMATS",
    "TIMESTAMP_FORMAT",
    "RowFilter",
    "SourceFormat",
    "Skip",
    "SourceRef",
    "conform",
    "duckdb_columns",
    "duckdb_tables",
    "folder_files",
    "not_a_duckdb_file",
    "open_columns",
    "open_source",
    "typed",
    "read_csv_strict",
    "CsvShape",
    "csv_shape",
    "csv_records_estimate",
    "scan_csv_text",
    "reading",
    "read_ids",
    "redact",
    "table_files",
    "text_frame",
    "unreadable_file",
    "write_source",
    "write_source_chunks",
]
