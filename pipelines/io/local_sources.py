"""Local sources: a DuckDB file, or a folder of `<table>.parquet` / `<table>.csv` files (CONTRACT.md §5).

Raw tables as they are stored; `pipelines.io.conform` types them. CSV files are read as text, so
ids, ZIP codes and phone numbers keep their leading zeros and `+`.
"""

from __future__ import annotations

import csv
import logging
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import duckdb
import polars as pl

from pipelines.io import duck
from pipelines.io.files import ROW_GROUP_ROWS
from pipelines.io.source_ref import RowFilter
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import CAST_ERRORS, FIELDS_CHECK, SOURCE_ROW, TABLES, TableSpec

log = logging.getLogger(__name__)

FOLDER_FORMATS: Final = ("parquet", "csv")
Skip = Mapping[str, Collection[str]]


def missing_table(source: str, table: str, how: str) -> SourceDataError:
    return SourceDataError(
        source,
        [ErrorItem(f"/{table}", "required table is missing")],
        message=f"source {source} has no table {table} ({how})",
    )


def table_files(folder: Path, spec: TableSpec) -> list[Path]:
    """The `<table>.parquet|csv` files of a folder source for one table (one expected)."""
    return [
        folder / f"{spec.name}.{ext}" for ext in FOLDER_FORMATS if (folder / f"{spec.name}.{ext}").is_file()
    ]


def folder_files(folder: Path) -> list[Path]:
    """The table files of a folder source, every table's."""
    return [f for spec in TABLES for f in table_files(folder, spec)]


def skipped(skip: Skip | None, spec: TableSpec) -> frozenset[str]:
    return frozenset(skip.get(spec.name, ())) if skip else frozenset()


def read_folder_table(
    folder: Path,
    spec: TableSpec,
    rows: RowFilter | None = None,
    skip: frozenset[str] = frozenset(),
    shape: CsvShape | None = None,
) -> pl.DataFrame:
    """One table of a folder source (the rows `rows` keeps, without `skip`'s columns). A CSV file
    read in part is marked by its `shape`, counted once for the run (counted here when not given)."""
    source = str(folder)
    found = table_files(folder, spec)
    if not found:
        raise missing_table(source, spec.name, f"add {spec.name}.parquet or {spec.name}.csv")
    if len(found) > 1:
        raise SourceDataError(
            source,
            [ErrorItem(f"/{spec.name}", "both a Parquet and a CSV file")],
            message=f"source {source} holds both {spec.name}.parquet and {spec.name}.csv; remove one",
        )
    file = found[0]
    if file.suffix == ".csv":
        if rows is None:
            return read_csv_strict(file, spec.name, skip)
        return read_csv_rows(file, spec, rows, shape or csv_shape(file, spec.name), skip)
    try:
        if rows is None and not skip:
            return pl.read_parquet(file)
        scan = pl.scan_parquet(file, row_index_name=None if rows is None else SOURCE_ROW)
        scan = scan.select([c for c in scan.collect_schema().names() if c not in skip])
        return (scan if rows is None else scan.filter(rows.expr(rows.column(spec.name)))).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise unreadable_file(file, spec.name, exc) from None


def unreadable_file(file: Path, table: str, exc: BaseException) -> SourceDataError:
    """The error for a table file that cannot be read (exit 2)."""
    return SourceDataError(
        str(file),
        [ErrorItem(f"/{table}", f"cannot be read: {type(exc).__name__}")],
        message=f"source file {file} cannot be read as {file.suffix[1:]}: {type(exc).__name__}; "
        "check that it is a complete file",
    )


def _lines_as_polars_reads(lines: Iterable[str]) -> Iterator[str]:
    """The file's lines (split at LF) for the csv module to count fields in, ending records where
    Polars ends them: at LF or CRLF outside quotes, never at a lone CR.

    The csv module ends a record at a lone CR outside quotes; Polars keeps that CR in the field (as
    does the csv module inside quotes). Python's own csv.writer leaves a field holding a lone CR
    unquoted when its line end is LF, so such files exist. Only the field count is taken from this
    reading, so a CR that is not part of a line end is replaced by a space."""
    for line in lines:
        if "\r" in line:
            end = "\r\n" if line.endswith("\r\n") else ""
            line = line[: len(line) - len(end)].replace("\r", " ") + end
        yield line


@dataclass(frozen=True)
class CsvShape:
    """What counting a CSV file's fields once finds: its data records, and the source rows (0-based,
    `SOURCE_ROW`) of those without the header's number of fields, which validation rejects
    (`fields_match_header`) rather than fill in or cut."""

    records: int
    ragged: pl.Series
    # The file's rows as Parquet in the run's staging (`stage_csv`), each with its SOURCE_ROW: a
    # partition filters this copy by its borrower range (the filter pushed into the scan) rather
    # than parse the whole CSV file again.
    copy: str | None = None

    def marks(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` (whose `SOURCE_ROW` numbers rows of this file) with the ragged rows marked in
        `CAST_ERRORS`."""
        if self.ragged.is_empty():
            return frame
        hit = frame.get_column(SOURCE_ROW).cast(pl.Int64).is_in(self.ragged.implode())
        if not hit.any():
            return frame
        return frame.with_columns(
            pl.when(hit).then(pl.lit([FIELDS_CHECK], pl.List(pl.String()))).alias(CAST_ERRORS)
        )


def csv_shape(file: Path, table: str) -> CsvShape:
    """Count the fields of every record of a CSV file, as Polars splits its records (see
    `_lines_as_polars_reads`). A file cut short (no final line end, an unterminated quote, no
    header) or whose records two readings count differently is a source error (exit 2).

    A file without quotes and lone CRs (most machine-written files) is counted in Polars, a field
    being what lies between commas; any other file record by record by the csv module."""
    unreadable = _unreadable_csv(file, table)
    _check_ends_with_a_line_end(file, unreadable)
    try:
        counts = _plain_field_counts(file)
        if counts is None:
            counts = _quoted_field_counts(file, unreadable)
        read = int(scan_csv_text(file).select(pl.len()).collect().item()) if counts.len() else 0
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise unreadable(type(exc).__name__) from None
    if counts.is_empty():
        raise unreadable("it has no header row")
    if read != counts.len() - 1:
        raise unreadable(f"{counts.len() - 1} records by one reading and {read} by another")
    body = counts.slice(1)
    ragged = pl.int_range(0, body.len(), dtype=pl.Int64, eager=True).filter(body != counts[0])
    if not ragged.is_empty():
        log.warning("source %s: %d rows without %d fields", file, ragged.len(), counts[0])
    return CsvShape(body.len(), ragged)


def _plain_field_counts(file: Path) -> pl.Series | None:
    """The fields of each line of a file without `"` or a lone CR: the commas of the line plus one
    (none for a blank line), counted by Polars over the file's lines (split at LF, a CRLF's CR
    dropped, as its CSV reader does). None for any other file (it needs the csv module).

    `scan_lines` is marked unstable in Polars: the property test against the csv module holds it."""
    line = pl.col("line")
    fields = pl.when(line == "").then(0).otherwise(line.str.count_matches(",", literal=True) + 1)
    counted = (
        pl.scan_lines(file, name="line")
        .select(fields.cast(pl.UInt32).alias("fields"), line.str.contains('["\r]').alias("quoted"))
        .collect()
    )
    if counted.get_column("quoted").any():
        return None
    return counted.get_column("fields")


def _quoted_field_counts(file: Path, unreadable: Callable[[str], SourceDataError]) -> pl.Series:
    """The fields of each record, read by the csv module (strict: an unterminated quote is an error)."""
    counts = array("I")
    try:
        # Split at LF only, as Polars does: see _lines_as_polars_reads.
        with file.open(newline="\n", encoding="utf8") as text:
            counts.extend(len(row) for row in csv.reader(_lines_as_polars_reads(text), strict=True))
    except csv.Error as exc:
        raise unreadable(f"{exc} (an unterminated quote?)") from None
    return pl.Series("fields", counts, pl.UInt32)


def read_csv_strict(file: Path, table: str, skip: frozenset[str] = frozenset()) -> pl.DataFrame:
    """A CSV table as text, every row with exactly the header's number of fields.

    All text: ids, ZIP codes and phone numbers keep leading zeros; types come from the spec. A row
    with too few or too many fields (or a blank line) is not filled in or cut: it gets the failed
    check `fields_match_header` in CAST_ERRORS, so validation rejects it. A file that does not end
    with a line end, or ends inside a quoted field, was cut short: that is a source error.
    `skip`'s columns are not read.
    """
    shape = csv_shape(file, table)
    try:
        scan = scan_csv_text(file)
        frame = scan.select([c for c in scan.collect_schema().names() if c not in skip]).collect()
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable_csv(file, table)(type(exc).__name__) from None
    if shape.ragged.is_empty():
        return frame
    return shape.marks(frame.with_row_index(SOURCE_ROW)).drop(SOURCE_ROW)


def csv_records_estimate(file: Path, sample: int = 4 << 20) -> int:
    """About how many records a CSV file holds, from the lines of its first `sample` bytes (exact
    for a file no larger, quoted line ends aside): for sizing a run without reading the file."""
    with file.open("rb") as fh:
        head = fh.read(sample)
        size = fh.seek(0, 2)
    lines = head.count(b"\n")
    if size <= sample or not lines:
        return max(lines - 1, 0)
    return max(round(size * lines / (head.rindex(b"\n") + 1)) - 1, 0)


def scan_csv_text(file: Path, numbered: bool = False) -> pl.LazyFrame:
    """A CSV file as every reader here reads it: all text, a row with too many fields cut to the
    header's width (`csv_shape` finds it), each row numbered (`SOURCE_ROW`) when `numbered`."""
    return pl.scan_csv(
        file,
        infer_schema=False,
        encoding="utf8",
        truncate_ragged_lines=True,
        row_index_name=SOURCE_ROW if numbered else None,
    )


def stage_csv(file: Path, spec: TableSpec, shape: CsvShape, folder: Path, skip: frozenset[str]) -> CsvShape:
    """Parse a CSV file once for a partitioned run: its rows, without `skip`'s columns, streamed into
    a Parquet copy in `folder` (row groups with statistics, so that a range filter on the borrower
    key skips what it can). The shape, with the copy's path."""
    target = folder / f"csv-{spec.name}.parquet"
    try:
        scan = scan_csv_text(file, numbered=True)
        scan = scan.select([c for c in scan.collect_schema().names() if c not in skip])
        # uncompressed: the copy lives for one run, and compressing it cost more than it saved
        scan.sink_parquet(target, compression="uncompressed", row_group_size=ROW_GROUP_ROWS, statistics=True)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable_csv(file, spec.name)(type(exc).__name__) from None
    return replace(shape, copy=str(target))


def stage_csv_tables(folder: Path, staging: Path, skip: Skip | None = None) -> dict[str, CsvShape]:
    """Each CSV file of a folder source counted (`csv_shape`) and copied (`stage_csv`) once, for
    the partitions of one run to read their rows from."""
    shapes = {}
    for spec in TABLES:
        files = table_files(folder, spec)
        if len(files) == 1 and files[0].suffix == ".csv":
            staging.mkdir(parents=True, exist_ok=True)
            shape = csv_shape(files[0], spec.name)
            shapes[spec.name] = stage_csv(files[0], spec, shape, staging, skipped(skip, spec))
    return shapes


def read_csv_rows(
    file: Path, spec: TableSpec, rows: RowFilter, shape: CsvShape, skip: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """The rows of a CSV table that `rows` keeps, without `skip`'s columns, marked by the file's
    `shape` (counted once for the run, see `csv_shape`): read from the shape's Parquet copy when
    the run made one (`stage_csv`), else by one scan of the file that keeps only these rows."""
    try:
        scan = pl.scan_parquet(shape.copy) if shape.copy else scan_csv_text(file, numbered=True)
        scan = scan.select([c for c in scan.collect_schema().names() if c not in skip])
        key = rows.column(spec.name)
        # without its key column, the whole table: conform reports the missing column (exit 2)
        frame = (scan.filter(rows.expr(key)) if key in scan.collect_schema().names() else scan).collect()
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable_csv(file, spec.name)(type(exc).__name__) from None
    return shape.marks(frame)


def _unreadable_csv(file: Path, table: str) -> Callable[[str], SourceDataError]:
    def unreadable(why: str) -> SourceDataError:
        return SourceDataError(
            str(file),
            [ErrorItem(f"/{table}", why)],
            message=f"source file {file} cannot be read as CSV: {why}; check that it is a complete file",
        )

    return unreadable


def _check_ends_with_a_line_end(file: Path, unreadable: Callable[[str], SourceDataError]) -> None:
    with file.open("rb") as fh:
        size = fh.seek(0, 2)
        if size:
            fh.seek(size - 1)
            if fh.read(1) not in (b"\n", b"\r"):
                raise unreadable("it does not end with a line end (the file looks cut short)")


@contextmanager
def duckdb_snapshot(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to a DuckDB source inside one transaction: every query made through it
    sees the file as of one instant (the columns and the reads of a table line up). A file DuckDB
    cannot open, or a failed query, is a `SourceDataError` naming the file (exit 2)."""
    source = str(path)
    # Through duck.connect: the source may be the warehouse file that this process also writes.
    try:
        with duck.connect(path, read_only=True) as con:
            con.execute("SET enable_progress_bar = false")  # stdout carries the CLI's JSON
            duck.string_views(con)
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
    except duckdb.Error as exc:
        raise not_a_duckdb_file(source, exc) from None


Catalog = dict[str, dict[str, str]]  # per table of a DuckDB file: its columns (in order) and their types


def duckdb_catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    """The tables of a DuckDB file's main schema, with their columns' types, in one query."""
    found: Catalog = {}
    for table, column, kind in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? ORDER BY table_name, ordinal_position",
        ["main"],
    ).fetchall():
        found.setdefault(str(table), {})[str(column)] = str(kind)
    return found


def read_duckdb_table(
    con: duckdb.DuckDBPyConnection,
    columns: dict[str, str],
    spec: TableSpec,
    rows: RowFilter | None = None,
    skip: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """One table of a DuckDB source as it is stored (see `open_source` for the typed frames), the
    rows `rows` keeps, through a `duckdb_snapshot` connection; `columns`: its columns and their
    types (`duckdb_catalog`)."""
    names = [name for name in columns if name not in skip]
    key = None if rows is None else rows.column(spec.name)
    if rows is None or key not in columns:
        return _read_duckdb_table(con, spec.name, names)  # without its key: conform reports it
    return _read_duckdb_rows(con, spec.name, names, columns[key] == "VARCHAR", rows)


def duckdb_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the tables in a DuckDB file's main schema."""
    rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", ["main"])
    return {str(r[0]) for r in rows.fetchall()}


def not_a_duckdb_file(source: str, exc: duckdb.Error) -> SourceDataError:
    """The error for a source file DuckDB cannot open (exit 2)."""
    return SourceDataError(
        source,
        [ErrorItem("", f"cannot be opened as DuckDB: {type(exc).__name__}")],
        message=f"source {source} cannot be opened as a DuckDB file ({type(exc).__name__}: {exc}); "
        "give a DuckDB file or a folder of Parquet/CSV files",
    )


def duckdb_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The column names of a table in a DuckDB file's main schema, in order."""
    return _column_names(con, table, frozenset())


def _column_names(con: duckdb.DuckDBPyConnection, table: str, skip: frozenset[str]) -> list[str]:
    return [
        str(r[0])
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            ["main", table],
        ).fetchall()
        if str(r[0]) not in skip
    ]


def _read_duckdb_table(con: duckdb.DuckDBPyConnection, table: str, names: list[str]) -> pl.DataFrame:
    """One query per column: each column then owns its memory (a whole-table result shares buffers
    across columns batch by batch), so a run can drop the columns it does not read."""
    relation = con.table(table)
    return pl.DataFrame([relation.select(duckdb.ColumnExpression(name)).pl().to_series() for name in names])


def _read_duckdb_rows(
    con: duckdb.DuckDBPyConnection, table: str, names: list[str], text_key: bool, rows: RowFilter
) -> pl.DataFrame:
    """Columns `names` of the rows of `table` that `rows` keeps, in one query: the filter runs in
    DuckDB's scan, so only these rows are ever materialised."""
    key = rows.column(table)
    # a text key is compared as it is (the scan can skip blocks); another type as its text
    column = f'"{key}"' if text_key else f'CAST("{key}" AS VARCHAR)'
    where, params = rows.sql(column)
    listed = ", ".join('"' + name.replace('"', '""') + '"' for name in names)
    # the table name is a constant of pipelines.model.tables, the column names the file's own (quoted);
    # the bounds are parameters
    if rows.among is not None:
        # A few keys anywhere in the table (a check): find their rows on the key column alone, then
        # fetch only those rows. One scan of every column for them took 2.5x as long at 1M borrowers.
        where = f'rowid IN (SELECT rowid FROM "{table}" WHERE {where})'  # noqa: S608
    query = f'SELECT {listed}, rowid AS "{SOURCE_ROW}" FROM "{table}" WHERE {where}'  # noqa: S608
    # Handed over as DuckDB's batches (`pl()`, no rechunk into one piece): at 4M borrowers a tenth
    # of the contacts took 0.30 s so against 0.45 s through one Arrow table.
    frame: pl.DataFrame = con.sql(query, params=params).pl()
    return frame
