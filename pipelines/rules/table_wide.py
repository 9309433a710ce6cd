"""Rules that span a whole source table, found once over the whole source (CONTRACT.md §5).

A partition reads only its own borrowers' rows, so a rule about the whole table cannot be checked
inside it: an id used by rows of two borrowers in two partitions would be seen by neither, and both
rows would pass (a fail-open). Such rules are therefore answered once, over every row of the source,
before the partitions run; the answer reaches each partition as data (`split/table_wide.parquet` in
the run's staging) and validation applies it to the rows the partition holds. A run over the whole
source in one piece finds the same answer among the rows it read (`validate_sources` without one).

Today's one table-wide rule is `id_unique`: an id held by two or more rows of contacts,
interactions, do_not_interact or borrowers rejects every one of those rows, wherever they live.
Which records of a CSV file lack the header's number of fields (`fields_match_header`) is likewise
a fact of the whole file: counted once (`sources.csv_pass`), it is kept here beside the cuts
(`csv_shapes.parquet`), with the path of the file's Parquet copy that the partitions read.
Rows without a borrower key are the other cross-borrower case; every partition reads them (see
`partitions.Part.rows`), so they need nothing here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import duck, sources
from pipelines.model.tables import TABLES

log = logging.getLogger(__name__)

# The tables whose rows carry an `id` that must be unique across the whole table.
UNIQUE_ID_TABLES: Final = tuple(spec.name for spec in TABLES if spec.key == "id")
FILE_NAME: Final = "table_wide.parquet"
SHAPES_FILE_NAME: Final = "csv_shapes.parquet"
_SCHEMA: Final = pl.Schema({"tableName": pl.String(), "id": pl.String()})
# one row per ragged record, and one with a null sourceRow per CSV table (counted, maybe none ragged)
_SHAPES_SCHEMA: Final = pl.Schema(
    {"tableName": pl.String(), "records": pl.Int64(), "copy": pl.String(), "sourceRow": pl.Int64()}
)


@dataclass(frozen=True)
class TableWide:
    """The answers of the table-wide rules for one source: per table, the ids held by more than one row."""

    repeated: Mapping[str, pl.Series] = field(default_factory=dict)
    csv_shapes: Mapping[str, sources.CsvShape] = field(default_factory=dict)

    def repeated_ids(self, table: str) -> pl.Series:
        """The ids of `table` that more than one row of the whole source holds (as text)."""
        return self.repeated.get(table, pl.Series("id", [], pl.String))

    def to_frame(self) -> pl.DataFrame:
        frames = [
            pl.DataFrame({"tableName": pl.Series([name] * ids.len(), dtype=pl.String), "id": ids})
            for name, ids in sorted(self.repeated.items())
        ]
        return pl.concat(frames).cast(_SCHEMA) if frames else pl.DataFrame(schema=_SCHEMA)

    @staticmethod
    def from_frame(frame: pl.DataFrame) -> TableWide:
        return TableWide(
            {
                str(name): group.get_column("id").sort()
                for (name,), group in frame.group_by("tableName", maintain_order=True)
            }
        )

    def shapes_frame(self) -> pl.DataFrame:
        frames = [
            pl.DataFrame(
                {
                    "tableName": [name] * (shape.ragged.len() + 1),
                    "records": [shape.records] * (shape.ragged.len() + 1),
                    "copy": [shape.copy] * (shape.ragged.len() + 1),
                    "sourceRow": [None, *shape.ragged.to_list()],
                },
                schema=_SHAPES_SCHEMA,
            )
            for name, shape in sorted(self.csv_shapes.items())
        ]
        return pl.concat(frames) if frames else pl.DataFrame(schema=_SHAPES_SCHEMA)

    @staticmethod
    def shapes_from_frame(frame: pl.DataFrame) -> dict[str, sources.CsvShape]:
        return {
            str(name): sources.CsvShape(
                int(group.item(0, "records")),
                group.get_column("sourceRow").drop_nulls().sort(),
                group.item(0, "copy"),
            )
            for (name,), group in frame.group_by("tableName", maintain_order=True)
        }

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE_NAME
        self.to_frame().write_parquet(path)
        self.shapes_frame().write_parquet(folder / SHAPES_FILE_NAME)
        return path

    @staticmethod
    def load(folder: Path) -> TableWide:
        shapes = TableWide.shapes_from_frame(pl.read_parquet(folder / SHAPES_FILE_NAME))
        return replace(TableWide.from_frame(pl.read_parquet(folder / FILE_NAME)), csv_shapes=shapes)


def scan(source: sources.Source, csv_shapes: Mapping[str, sources.CsvShape] | None = None) -> TableWide:
    """Answer the table-wide rules over every row of `source` (one aggregate per table, reading the
    ids only; from S3 or Postgres the `id` column of each table). `csv_shapes`: the CSV files as
    counted and copied for the run (`sources.csv_pass`), kept with the answers; their ids are read
    from the copies.

    A table or column that is missing is left out here: reading the source reports it (exit 2). A
    read that fails raises: never "no repeats" for a table that could not be read."""
    started = time.perf_counter()
    ref = sources.ref_of(source)
    if not ref.is_local:
        found = _scan_remote(ref)
    elif ref.path.is_dir():
        shapes = dict(csv_shapes or {})
        found = _repeated_in_folder(ref.path, shapes)
        _log_scan(ref, started, found)
        return TableWide(found, shapes)
    else:
        found = _scan_duckdb(ref.path) if ref.path.is_file() else {}
    _log_scan(ref, started, found)
    return TableWide(found)


def _scan_remote(ref: sources.SourceRef) -> dict[str, pl.Series]:
    """One table at a time. A table whose ids come sorted (S3 Parquet in its row order, Postgres in its
    physical order) is streamed (`sources.remote_key_batches`); any other is read whole."""
    found = {}
    for name in UNIQUE_ID_TABLES:
        streamed = repeated_streamed(sources.remote_key_batches(ref, name, "id"))
        if streamed is None:
            column = sources.remote_column(ref, [name], "id").get(name)
            if column is None:
                continue
            streamed = repeated(column)
        found[name] = streamed
    return found


def _log_scan(ref: sources.SourceRef, started: float, found: Mapping[str, pl.Series]) -> None:
    log.info(
        "table-wide checks over %s in %.2fs: repeated ids %s",
        ref,
        time.perf_counter() - started,
        ", ".join(f"{name} {ids.len()}" for name, ids in found.items()) or "none",
    )


def repeated(ids: pl.Series) -> pl.Series:
    """The values held more than once in `ids` (as text, sorted, each once; nulls are no value).

    Ids usually come sorted (a source written in id order): then a repeat sits next to its twin and
    neighbours are compared, which is several times cheaper than hashing every id."""
    ids = ids.cast(pl.String).drop_nulls()
    neighbours = repeated_streamed([ids])
    if neighbours is not None:
        return neighbours
    return ids.filter(ids.is_duplicated()).unique().sort().alias("id")


BATCH_IDS: Final = 1 << 20  # ids per batch when a table's ids are compared as they stream by


class UnsortedError(Exception):
    """Ids read in batches did not come in byte order."""


def in_order(batches: Iterable[pl.Series]) -> Iterator[tuple[pl.Series, str | None]]:
    """Each batch's non-null ids as text, checked to continue the byte order of the batches before,
    with the last id of the batch before (None for the first: a repeat may straddle two batches);
    empty batches skipped. Raises UnsortedError at the first batch out of order, for the caller to
    read the column whole instead. `batches` is closed when this ends, however it ends (a reader's
    result closed before the caller's next query)."""
    last: str | None = None
    try:
        for batch in batches:
            ids = batch.cast(pl.String).drop_nulls()
            if ids.is_empty():
                continue
            first = str(ids[0])
            if not ids.is_sorted() or (last is not None and first.encode() < last.encode()):
                raise UnsortedError
            yield ids, last
            last = str(ids[-1])
    finally:
        if isinstance(batches, Generator):
            batches.close()


def repeated_streamed(batches: Iterable[pl.Series]) -> pl.Series | None:
    """`repeated` over a column read in batches, holding one batch at a time, when the ids come
    sorted (a repeat then sits next to its twin, perhaps across two batches); None as soon as they
    are not. Ids compare as UTF-8 bytes, as the cuts do."""
    twins: list[pl.Series] = []
    try:
        for ids, last in in_order(batches):
            if str(ids[0]) == last:
                twins.append(ids.head(1))
            twins.append(ids.slice(1).filter(ids.slice(1) == ids.slice(0, ids.len() - 1)))
    except UnsortedError:
        return None
    if not twins:
        return pl.Series("id", [], pl.String)
    return pl.concat(twins).unique().sort().alias("id")


def parquet_id_batches(file: str | Path, column: str = "id") -> Iterator[pl.Series]:
    """A Parquet file's `column`, one row group read at a time, in slices of BATCH_IDS values.
    (`ParquetFile.iter_batches` holds on to what it has read: 1.1 GB for the 230M contact ids of
    64M borrowers, against 136 MB read by row group, and twice as slow.)"""
    reader = pq.ParquetFile(file)
    for group in range(reader.num_row_groups):
        ids = pl.Series(column, reader.read_row_group(group, columns=[column]).column(0))
        for at in range(0, ids.len(), BATCH_IDS):
            yield ids.slice(at, BATCH_IDS)


def _repeated_in_parquet(file: str | Path) -> pl.Series:
    """The repeated ids of a Parquet file: streamed when sorted, else read whole."""
    found = repeated_streamed(parquet_id_batches(file))
    if found is not None:
        return found
    return repeated(pl.scan_parquet(file).select(pl.col("id").cast(pl.String)).collect().get_column("id"))


def _repeated_in_folder(folder: Path, shapes: Mapping[str, sources.CsvShape]) -> dict[str, pl.Series]:
    found = {}
    for spec in TABLES:
        if spec.name not in UNIQUE_ID_TABLES:
            continue
        files = sources.table_files(folder, spec)
        if len(files) != 1:
            continue
        file = files[0]
        # CSV read as the partitions read it (all text, ragged lines cut to the header's width), so
        # an id means the same here as there.
        copy = shapes[spec.name].copy if spec.name in shapes else None
        scan = pl.scan_parquet(copy or file) if copy or file.suffix != ".csv" else sources.scan_csv_text(file)
        try:
            if "id" not in scan.collect_schema().names():
                continue  # reading the table reports the missing column (exit 2)
            if copy or file.suffix != ".csv":
                found[spec.name] = _repeated_in_parquet(copy or file)
            else:
                found[spec.name] = repeated(
                    scan.select(pl.col("id").cast(pl.String)).collect().get_column("id")
                )
        except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as exc:
            # never "no repeats" for a table that could not be read: that would fail open
            raise sources.unreadable_file(file, spec.name, exc) from None
    return found


def _duckdb_ids_query(table: str) -> str:
    # the table name is a constant of pipelines.model.tables; no value is formatted in
    return f'SELECT CAST(id AS VARCHAR) AS id FROM "{table}"'  # noqa: S608


def duckdb_id_batches(con: duckdb.DuckDBPyConnection, table: str) -> Iterator[pl.Series]:
    """A DuckDB table's ids as text, in the table's storage order (a plain scan keeps it), in
    batches of BATCH_IDS: for the checks that stream sorted ids (`in_order`)."""
    reader = con.sql(_duckdb_ids_query(table)).to_arrow_reader(BATCH_IDS)
    try:
        for batch in reader:
            yield pl.Series("id", batch.column(0))
    finally:
        reader.close()  # the connection takes no other query while a result is open


def duckdb_ids(con: duckdb.DuckDBPyConnection, table: str) -> pl.Series:
    """A DuckDB table's ids as text, whole (when they do not come sorted)."""
    ids: pl.Series = con.sql(_duckdb_ids_query(table)).pl().get_column("id")
    return ids


def _scan_duckdb(path: Path) -> dict[str, pl.Series]:
    found = {}
    try:
        with duck.connect(path, read_only=True) as con:
            con.execute("SET enable_progress_bar = false")
            duck.string_views(con)
            present = sources.duckdb_tables(con)
            for name in UNIQUE_ID_TABLES:
                if name not in present or "id" not in sources.duckdb_columns(con, name):
                    continue
                streamed = repeated_streamed(duckdb_id_batches(con, name))
                found[name] = streamed if streamed is not None else repeated(duckdb_ids(con, name))
    except duckdb.Error as exc:
        # never "no repeats" for a source that could not be read: that would fail open
        raise sources.not_a_duckdb_file(str(path), exc) from None
    return found
