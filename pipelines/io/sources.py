"""Source tables IO (CONTRACT.md §5): read a DuckDB file or a folder of Parquet/CSV files, write them back.

`open_source()` returns frames with exactly the types of `pipelines.model.tables`: every column is converted
to its spec type, absent optional columns are added (nulls, or the boolean default), nulls in
booleans take their default, and columns not in the spec are kept as they come (after the spec's
columns). A value that cannot be converted (a timestamp `yesterday`, a boolean `maybe`, a list that
is not a JSON array) is not silently turned into null: the row gets the name of the failed type
check in the `CAST_ERRORS` column, which validation reports (`startedAt_is_timestamp`). That column
is only present when some value failed.

CSV files are read as text, so ids, ZIP codes and phone numbers keep their leading zeros and `+`;
list columns are JSON arrays (`["voice","text"]`, `[{"fromHour":9,"toHour":17}]`), booleans
`true`/`false`, timestamps ISO-8601 in UTC (`2026-11-03T14:00:00Z`; an offset is converted, no
offset means UTC), dates `YYYY-MM-DD`.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import polars as pl
import pyarrow.parquet as pq
from polars.datatypes import DataTypeClass

from pipelines.io import duck
from pipelines.io.files import atomic_write
from pipelines.model.errors import ErrorItem, InvalidInputError, SourceDataError
from pipelines.model.tables import (
    CAST_ERRORS,
    FIELDS_CHECK,
    SOURCE_ROW,
    TABLES,
    SourceTables,
    TableSpec,
    type_check_name,
)

log = logging.getLogger(__name__)

SourceFormat = Literal["duckdb", "parquet", "csv"]
PolarsType = pl.DataType | DataTypeClass
FOLDER_FORMATS: Final = ("parquet", "csv")
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.fZ"
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
# ISO-8601 variants accepted in text; the first two carry a zone (Z or an offset), the others are UTC.
_ZONED_FORMATS: Final = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS: Final = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")


# ---------------------------------------------------------------- reading

# The column naming the borrower a row belongs to, per table (partitions split rows by it).
BORROWER_KEYS: Final = {
    "borrowers": "id",
    "contacts": "personId",
    "interactions": "personId",
    "do_not_interact": "personId",
    "consents": "personId",
}


@dataclass(frozen=True)
class RowFilter:
    """Only the rows whose borrower key (`BORROWER_KEYS`, as text) is in [`low`, `high`) (None: no
    bound), plus the rows without one when `nulls`. Applied inside the read: a range on the key is
    a filter DuckDB and the Parquet reader push into the scan (and skip blocks by their min/max)."""

    low: str | None
    high: str | None
    nulls: bool = False

    def expr(self, column: str) -> pl.Expr:
        key = pl.col(column).cast(pl.String)
        keep = pl.lit(True)
        if self.low is not None:
            keep = keep & (key >= self.low)
        if self.high is not None:
            keep = keep & (key < self.high)
        return (keep | key.is_null()) if self.nulls else keep.fill_null(False)

    def sql(self, column: str) -> tuple[str, list[str]]:
        """The same filter as SQL over a text `column` expression, with its parameters."""
        terms, params = [], []
        if self.low is not None:
            terms.append(f"{column} >= ?")
            params.append(self.low)
        if self.high is not None:
            terms.append(f"{column} < ?")
            params.append(self.high)
        keep = " AND ".join(terms) or "TRUE"
        where = f"({keep}) OR {column} IS NULL" if self.nulls else f"{column} IS NOT NULL AND {keep}"
        return where, params


Skip = Mapping[str, Collection[str]]


def open_source(path: Path, rows: RowFilter | None = None, skip: Skip | None = None) -> SourceTables:
    """Read the five source tables from a DuckDB file or a folder of `<table>.parquet|csv` files.

    With `rows`, only the rows of those borrowers are read (the filter runs inside the read).
    `skip`: per table, columns not to read from a DuckDB or Parquet source (a CSV file is read
    whole); they come back as nulls. Only for columns no check and no step reads
    (`schemas.unchecked_columns`): a run reads the others, and the rows a check rejects stay the same.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raw = {spec.name: _read_folder_table(path, spec, rows, _skipped(skip, spec)) for spec in TABLES}
    elif path.is_file():
        raw = read_duckdb(path, rows, skip)
    else:
        raise SourceDataError(
            source,
            [ErrorItem("", "does not exist")],
            message=f"source {source} does not exist; give a DuckDB file or a folder of "
            "<table>.parquet/<table>.csv files (contact-exporter generate --out PATH makes one)",
        )
    frames = {spec.name: conform(raw[spec.name], spec, source) for spec in TABLES}
    log.info("read source %s: %s", source, ", ".join(f"{k}={v.height}" for k, v in frames.items()))
    return SourceTables(**{name: frame.lazy() for name, frame in frames.items()})


def read_raw(path: Path) -> dict[str, pl.DataFrame]:
    """The five tables of a DuckDB file or a folder as they are stored (before `conform`)."""
    path = Path(path)
    if path.is_dir():
        return {spec.name: _read_folder_table(path, spec) for spec in TABLES}
    if path.is_file():
        return read_duckdb(path)
    raise SourceDataError(
        str(path), [ErrorItem("", "does not exist")], message=f"source {path} does not exist"
    )


def _missing_table(source: str, table: str, how: str) -> SourceDataError:
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


def _skipped(skip: Skip | None, spec: TableSpec) -> frozenset[str]:
    return frozenset(skip.get(spec.name, ())) if skip else frozenset()


def _read_folder_table(
    folder: Path, spec: TableSpec, rows: RowFilter | None = None, skip: frozenset[str] = frozenset()
) -> pl.DataFrame:
    source = str(folder)
    found = table_files(folder, spec)
    if not found:
        raise _missing_table(source, spec.name, f"add {spec.name}.parquet or {spec.name}.csv")
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

    def unreadable(why: str) -> SourceDataError:
        return SourceDataError(
            str(file),
            [ErrorItem(f"/{table}", why)],
            message=f"source file {file} cannot be read as CSV: {why}; check that it is a complete file",
        )

    with file.open("rb") as fh:
        size = fh.seek(0, 2)
        if size:
            fh.seek(size - 1)
            if fh.read(1) not in (b"\n", b"\r"):
                raise unreadable("it does not end with a line end (the file looks cut short)")
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
                    raise _missing_table(source, spec.name, "create it in the DuckDB file")
                skipped = _skipped(skip, spec)
                frames[spec.name] = (
                    _read_duckdb_table(con, spec.name, skipped)
                    if rows is None
                    else _read_duckdb_rows(con, spec.name, BORROWER_KEYS[spec.name], rows, skipped)
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


def conform(frame: pl.DataFrame, spec: TableSpec, source: str) -> pl.DataFrame:
    """Convert a raw table to the spec's types (see the module docstring); spec columns first."""
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise SourceDataError(
            source,
            [ErrorItem(f"/{spec.name}/{name}", "required column is missing") for name in missing],
            message=f"source {source}: table {spec.name} has no column {missing[0]} (required); add it"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""),
        )
    converted: list[pl.Series] = []
    failed: list[pl.Series] = []
    for column in spec.columns:
        if column.name not in frame.columns:
            converted.append(
                pl.repeat(column.default, frame.height, dtype=column.dtype, eager=True).alias(column.name)
            )
            continue
        raw = frame.get_column(column.name)
        if raw.dtype == column.dtype:
            value = raw
        else:
            value, bad = _convert(raw, column.dtype)
            if bad.any():
                failed.append(_mark(bad, type_check_name(column.name, column.dtype)))
        if column.default is not None:
            value = value.fill_null(column.default)
        converted.append(value.alias(column.name))
    extras = [frame.get_column(c) for c in frame.columns if c not in spec.names and c != CAST_ERRORS]
    out = pl.DataFrame(_aligned(converted + extras))
    if CAST_ERRORS in frame.columns:  # marks the reader made (a CSV row without the header's fields)
        failed.insert(0, frame.get_column(CAST_ERRORS).list.first().alias(FIELDS_CHECK))
    if failed:
        names = pl.DataFrame(failed).select(pl.concat_list(pl.all()).list.drop_nulls().alias(CAST_ERRORS))
        out = pl.concat([out, names], how="horizontal").with_columns(
            pl.when(pl.col(CAST_ERRORS).list.len() > 0).then(pl.col(CAST_ERRORS)).alias(CAST_ERRORS)
        )
        log.warning(
            "source %s: table %s has %d rows with values that do not convert to their column type",
            source,
            spec.name,
            out.get_column(CAST_ERRORS).is_not_null().sum(),
        )
    return out


def _aligned(series: list[pl.Series]) -> list[pl.Series]:
    """The columns cut into the same chunks (zero-copy slices).

    DuckDB hands an all-null column over as one chunk and the others in several; a frame whose
    columns are chunked differently is copied whole (rechunked) by the next `with_columns`, which
    cost 200 MB at 250,000 borrowers when `createdAt`/`archivedAt` arrived empty.
    """
    layouts = [s.chunk_lengths() for s in series]
    target = max(layouts, key=len, default=[])
    if len(target) <= 1 or all(layout == target for layout in layouts):
        return series
    starts = [0, *itertools.accumulate(target)][:-1]
    out = []
    for s, layout in zip(series, layouts, strict=True):
        if layout == target or len(layout) != 1:
            out.append(s)
            continue
        out.append(pl.concat([s.slice(o, n) for o, n in zip(starts, target, strict=True)], rechunk=False))
    return out


def _mark(bad: pl.Series, name: str) -> pl.Series:
    """`name` where `bad`, else null."""
    return bad.to_frame("bad").select(pl.when(pl.col("bad")).then(pl.lit(name)).alias(name)).to_series()


def _convert(raw: pl.Series, dtype: pl.DataType) -> tuple[pl.Series, pl.Series]:
    """Convert a column to `dtype`; return it with a mask of values that could not be converted."""
    if raw.dtype == pl.Null:
        return pl.Series(raw.name, [None] * raw.len(), dtype), pl.Series([False] * raw.len())
    if isinstance(dtype, pl.List) and raw.dtype == pl.String:
        return _decode_json_lists(raw, dtype)
    if raw.dtype == pl.String:
        value = _parse_text(raw, dtype)
    elif isinstance(dtype, pl.Datetime) and isinstance(raw.dtype, pl.Datetime):
        value = (
            raw.dt.convert_time_zone("UTC") if raw.dtype.time_zone else raw.dt.replace_time_zone("UTC")
        ).cast(dtype)
    elif isinstance(dtype, pl.Datetime) and raw.dtype == pl.Date:
        value = raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Date) and isinstance(raw.dtype, pl.Datetime):
        utc = raw.dt.convert_time_zone("UTC") if raw.dtype.time_zone else raw
        value = utc.dt.date()
    else:
        value = raw.cast(dtype, strict=False)
    return value.alias(raw.name), raw.is_not_null() & value.is_null()


TextParser = Callable[[pl.Series], pl.Series]


def _boolean(text: pl.Series) -> pl.Series:
    return text.replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)


def _zoned(fmt: str) -> TextParser:
    return lambda text: text.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)


def _naive(fmt: str) -> TextParser:
    return lambda text: text.str.to_datetime(fmt, time_unit="us", strict=False).dt.replace_time_zone("UTC")


def _parsers(dtype: pl.DataType) -> list[TextParser]:
    """Ways to read text as `dtype`, most common (and fastest) first."""
    if isinstance(dtype, pl.Boolean):
        return [_boolean, lambda text: _boolean(text.str.to_lowercase())]
    if isinstance(dtype, pl.Datetime):
        # whole seconds with Z (what write_source writes) has a fast fixed-width path
        return (
            [_zoned("%Y-%m-%dT%H:%M:%SZ")]
            + [_zoned(f) for f in _ZONED_FORMATS]
            + [_naive(f) for f in _NAIVE_FORMATS]
        )
    if isinstance(dtype, pl.Date):
        return [lambda text: text.str.to_date("%Y-%m-%d", strict=False)]
    return [lambda text: text.cast(dtype, strict=False)]


def _parse_text(raw: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Try each parser in turn; later ones only see the (stripped) values still unparsed."""
    parsers = _parsers(dtype)
    value = parsers[0](raw)
    for parse in [*parsers, None]:
        pending = (raw.is_not_null() & value.is_null()).arg_true()
        if pending.len() == 0 or parse is None:
            break
        retry = parse(raw.gather(pending).str.strip_chars())
        value = value.scatter(pending, retry)
    return value.cast(dtype)


def _decode_json_lists(raw: pl.Series, dtype: pl.List) -> tuple[pl.Series, pl.Series]:
    """Decode JSON arrays, one distinct text at a time (list columns repeat a few values)."""
    distinct = raw.drop_nulls().unique(maintain_order=True)
    decoded: list[list[Any] | None] = []
    ok: list[bool] = []
    for text in distinct.to_list():
        value = _json_list(text, dtype.inner)
        decoded.append(value)
        ok.append(value is not None or text.strip() == "null")
    table = pl.DataFrame(
        [distinct.alias("__raw"), pl.Series("__value", decoded, dtype), pl.Series("__ok", ok, pl.Boolean)]
    )
    joined = raw.alias("__raw").to_frame().join(table, on="__raw", how="left", maintain_order="left")
    return joined.get_column("__value").alias(raw.name), ~joined.get_column("__ok").fill_null(True)


def _json_list(text: str, inner: PolarsType) -> list[Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if all(_fits(item, inner) for item in value):
        return value
    return None


def _fits(item: object, dtype: PolarsType) -> bool:
    if isinstance(dtype, pl.Struct):
        if not isinstance(item, dict) or set(item) != {f.name for f in dtype.fields}:
            return False
        return all(_fits(item[f.name], f.dtype) for f in dtype.fields)
    if dtype.is_integer():
        return isinstance(item, int) and not isinstance(item, bool)
    if dtype == pl.String:
        return isinstance(item, str)
    if isinstance(dtype, pl.Boolean):
        return isinstance(item, bool)
    return False


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


# ---------------------------------------------------------------- writing


def write_source(tables: SourceTables, path: Path, fmt: SourceFormat) -> None:
    """Write the five tables as a DuckDB file or a folder of Parquet/CSV files, atomically.

    DuckDB: the file is built under a temporary name beside `path` (starting from a copy of an
    existing file, whose other tables are kept) and renamed over it. Folders: each table file is
    written under a temporary name in the folder and renamed; a file of the other format for the
    same table is removed so the folder holds one version of each table.
    """
    frames = {spec.name: tables.get(spec.name).collect() for spec in TABLES}
    _write_frames([frames], Path(path), fmt, memory_limit=None)


def write_source_chunks(chunks: Iterable[SourceTables], path: Path, fmt: SourceFormat) -> dict[str, int]:
    """Write the tables of consecutive chunks (rows appended in order) as one source, atomically,
    holding one chunk at a time; returns the rows per table. Same tables as `write_source` of
    their concatenation (Parquet row groups follow the chunks)."""
    counts = {spec.name: 0 for spec in TABLES}

    def frames() -> Iterator[dict[str, pl.DataFrame]]:
        for chunk in chunks:
            got = {spec.name: chunk.get(spec.name).collect() for spec in TABLES}
            for name, frame in got.items():
                counts[name] += frame.height
            yield got

    _write_frames(frames(), Path(path), fmt, memory_limit=CHUNKED_WRITE_MEMORY)
    return counts


def _write_frames(
    chunks: Iterable[dict[str, pl.DataFrame]], path: Path, fmt: str, *, memory_limit: str | None
) -> None:
    if fmt == "duckdb":
        _write_duckdb(chunks, path, memory_limit=memory_limit)
    elif fmt in FOLDER_FORMATS:
        _write_folder(chunks, path, fmt)
    else:
        raise InvalidInputError(
            "arguments", [ErrorItem("/format", f"unknown format {fmt!r}; use duckdb, parquet or csv")]
        )
    log.info("wrote source %s (%s)", path, fmt)


# What DuckDB may keep of a file written chunk by chunk (it caches the blocks it wrote otherwise).
CHUNKED_WRITE_MEMORY: Final = "512MB"


def _write_duckdb(
    chunks: Iterable[dict[str, pl.DataFrame]], path: Path, *, memory_limit: str | None = None
) -> None:
    if path.is_dir():
        raise InvalidInputError(
            str(path), [ErrorItem("", "is a folder")], message=f"{path} is a folder; a DuckDB file is needed"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The target may be the warehouse, which other runs write in place: holding its lock from copy to
    # rename means no write of theirs is lost in between.
    with duck.file_lock(path):
        if path.with_name(path.name + ".wal").exists():
            raise InvalidInputError(
                str(path),
                [ErrorItem("", "has a write-ahead log")],
                message=f"{path} has a write-ahead log ({path.name}.wal): another process has it open "
                "or stopped while writing; close it (or open and close it once) first",
            )

        def write(temp: Path) -> None:
            if path.exists():
                shutil.copyfile(path, temp)
            con = duck.open_file(temp)
            try:
                # stdout carries the CLI's JSON: no progress bar on long writes
                con.execute("SET enable_progress_bar = false")
                if memory_limit is not None:
                    con.execute("SET memory_limit = ?", [memory_limit])
                for i, frames in enumerate(chunks):
                    for spec in TABLES:
                        rows = con.from_arrow(frames[spec.name].to_arrow())
                        if i == 0:
                            con.execute(f'DROP TABLE IF EXISTS "{spec.name}"')  # table names are constants
                            rows.create(spec.name)
                        else:
                            rows.insert_into(spec.name)
                    # each chunk goes to the file before the next: memory does not grow with the chunks
                    con.execute("CHECKPOINT")
            finally:
                con.close()

        atomic_write(path, write)


def _write_folder(chunks: Iterable[dict[str, pl.DataFrame]], folder: Path, fmt: str) -> None:
    """One `<table>.<fmt>` file per table, written one chunk at a time: every table file grows under
    a temporary name, then each is renamed into place once all chunks are written."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(
            str(folder),
            [ErrorItem("", "is not a folder")],
            message=f"{folder} is a file; {fmt} sources are folders of <table>.{fmt} files",
        )
    folder.mkdir(parents=True, exist_ok=True)
    temps = {spec.name: folder / f".{spec.name}.{fmt}.{os.getpid()}.tmp" for spec in TABLES}
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for i, frames in enumerate(chunks):
            for spec in TABLES:
                frame = frames[spec.name]
                if fmt == "csv":
                    with temps[spec.name].open("ab" if i else "wb") as fh:
                        _text_frame(frame).write_csv(fh, include_header=i == 0, line_terminator="\n")
                    continue
                table = frame.to_arrow()
                if spec.name not in writers:
                    writers[spec.name] = pq.ParquetWriter(temps[spec.name], table.schema)
                writers[spec.name].write_table(table)
        for writer in writers.values():
            writer.close()
        writers.clear()
        for spec in TABLES:
            with temps[spec.name].open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(temps[spec.name], folder / f"{spec.name}.{fmt}")
            for other in FOLDER_FORMATS:
                if other != fmt:
                    (folder / f"{spec.name}.{other}").unlink(missing_ok=True)
    finally:
        for writer in writers.values():
            writer.close()
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists as JSON arrays, timestamps as ISO-8601 UTC with `Z`, everything else as polars writes it."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            encoded = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")
            exprs.append(pl.when(col.is_not_null()).then(encoded).alias(name))
        elif isinstance(dtype, pl.Datetime):
            utc = col.dt.convert_time_zone("UTC") if dtype.time_zone else col
            exprs.append(utc.dt.to_string(TIMESTAMP_FORMAT if dtype.time_zone else "%Y-%m-%dT%H:%M:%S%.f"))
        else:
            exprs.append(col)
    return frame.select(exprs)


__all__ = [
    "SourceFormat",
    "conform",
    "duckdb_tables",
    "not_a_duckdb_file",
    "open_source",
    "read_duckdb",
    "read_ids",
    "write_source",
    "write_source_chunks",
]
