"""Local sources: a DuckDB file, or a folder of `<table>.parquet` / `<table>.csv` files (CONTRACT.md §5).

Raw tables as they are stored; `pipelines.io.conform` types them. CSV files are read as text, so
ids, ZIP codes and phone numbers keep their leading zeros and `+`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import duckdb
import polars as pl

from pipelines.io import duck
from pipelines.io.source_ref import BORROWER_KEYS, RowFilter
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
    folder: Path, spec: TableSpec, rows: RowFilter | None = None, skip: frozenset[str] = frozenset()
) -> pl.DataFrame:
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
        # Read whole (strictly: every row with the header's fields), then this partition's rows.
        frame = read_csv_strict(file, spec.name)
        if rows is None:
            return frame
        return frame.with_row_index(SOURCE_ROW).filter(rows.expr(BORROWER_KEYS[spec.name]))
    try:
        if rows is None and not skip:
            return pl.read_parquet(file)
        scan = pl.scan_parquet(file, row_index_name=None if rows is None else SOURCE_ROW)
        scan = scan.select([c for c in scan.collect_schema().names() if c not in skip])
        return (scan if rows is None else scan.filter(rows.expr(BORROWER_KEYS[spec.name]))).collect()
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


def read_csv_strict(file: Path, table: str) -> pl.DataFrame:
    """A CSV table as text, every row with exactly the header's number of fields.

    All text: ids, ZIP codes and phone numbers keep leading zeros; types come from the spec. A row
    with too few or too many fields (or a blank line) is not filled in or cut: it gets the failed
    check `fields_match_header` in CAST_ERRORS, so validation rejects it. A file that does not end
    with a line end, or ends inside a quoted field, was cut short: that is a source error.
    """

    unreadable = _unreadable_csv(file, table)
    _check_ends_with_a_line_end(file, unreadable)
    counts: list[int] = []
    try:
        # Split at LF only, as Polars does: see _lines_as_polars_reads.
        with file.open(newline="\n", encoding="utf8") as text:
            counts = [len(row) for row in csv.reader(_lines_as_polars_reads(text), strict=True)]
        frame = pl.read_csv(file, infer_schema=False, encoding="utf8", truncate_ragged_lines=True)
    except csv.Error as exc:
        raise unreadable(f"{exc} (an unterminated quote?)") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise unreadable(type(exc).__name__) from None
    if not counts:
        raise unreadable("it has no header row")
    fields = counts[0]
    if frame.height != len(counts) - 1:
        raise unreadable(f"{len(counts) - 1} records by one reading and {frame.height} by another")
    ragged = pl.Series([n != fields for n in counts[1:]], dtype=pl.Boolean)
    if ragged.any():
        log.warning("source %s: %d rows without %d fields", file, int(ragged.sum()), fields)
        frame = frame.with_columns(
            pl.when(pl.lit(ragged)).then(pl.lit([FIELDS_CHECK], pl.List(pl.String()))).alias(CAST_ERRORS)
        )
    return frame


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


def read_duckdb(
    path: Path, rows: RowFilter | None = None, skip: Skip | None = None
) -> dict[str, pl.DataFrame]:
    """The five tables of a DuckDB file as they are stored (see `open_source` for the typed frames)."""
    source = str(path)
    # Through duck.connect: the source may be the warehouse file that this process also writes.
    try:
        with duck.connect(path, read_only=True) as con:
            con.execute("SET enable_progress_bar = false")  # stdout carries the CLI's JSON
            duck.string_views(con)
            # One snapshot for every per-column query below: the columns of a table line up.
            con.execute("BEGIN TRANSACTION")
            present = duckdb_tables(con)
            frames = {}
            for spec in TABLES:
                if spec.name not in present:
                    raise missing_table(source, spec.name, "create it in the DuckDB file")
                unread = skipped(skip, spec)
                frames[spec.name] = (
                    _read_duckdb_table(con, spec.name, unread)
                    if rows is None
                    else _read_duckdb_rows(con, spec.name, BORROWER_KEYS[spec.name], rows, unread)
                )
            con.execute("COMMIT")
            return frames
    except duckdb.Error as exc:
        raise not_a_duckdb_file(source, exc) from None


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


def _read_duckdb_table(
    con: duckdb.DuckDBPyConnection, table: str, skip: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """One query per column: each column then owns its memory (a whole-table result shares buffers
    across columns batch by batch), so a run can drop the columns it does not read."""
    names = _column_names(con, table, skip)
    relation = con.table(table)
    return pl.DataFrame([relation.select(duckdb.ColumnExpression(name)).pl().to_series() for name in names])


def _read_duckdb_rows(
    con: duckdb.DuckDBPyConnection, table: str, key: str, rows: RowFilter, skip: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """The rows of `table` that `rows` keeps, in one query: the range filter runs in DuckDB's scan,
    so only these rows are ever materialised."""
    kind = con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        ["main", table, key],
    ).fetchall()
    if not kind:
        return _read_duckdb_table(con, table, skip)  # conform reports the missing column
    # a text key is compared as it is (the scan can skip blocks); another type as its text
    column = f'"{key}"' if kind and kind[0][0] == "VARCHAR" else f'CAST("{key}" AS VARCHAR)'
    where, params = rows.sql(column)
    names = ", ".join('"' + name.replace('"', '""') + '"' for name in _column_names(con, table, skip))
    # the table name is a constant of pipelines.model.tables, the column names the file's own (quoted);
    # the bounds are parameters
    query = f'SELECT {names}, rowid AS "{SOURCE_ROW}" FROM "{table}" WHERE {where}'  # noqa: S608
    # Handed over as DuckDB's batches (`pl()`, no rechunk into one piece): at 4M borrowers a tenth
    # of the contacts took 0.30 s so against 0.45 s through one Arrow table.
    frame: pl.DataFrame = con.sql(query, params=params).pl()
    return frame
