"""The cuts of a source's borrower ids into N ranges (pipelines/run/partitions.py has the partition
function they define):

    ids = the distinct non-null borrowers.id of the source, as text, sorted; K = len(ids)
    cut k = ids[floor(k * K / N)]                for k = 1 .. N-1

A `borrowers` table whose ids come sorted (as generated, and as most exports come), in a local
Parquet or DuckDB file, on S3 or in Postgres (`sources.remote_key_batches`), is read twice in
batches, once to count the distinct ids and once to pick the cuts, so the split holds one batch at
a time whatever the book's size (`cuts_streamed`). Ids that do not come sorted, and a CSV file's,
are read whole and sorted (`sorted_borrower_ids`); `cuts` is the plain definition over them, and
the streamed cuts are held equal to it by tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import duck, sources
from pipelines.model.tables import BORROWERS
from pipelines.rules import table_wide


def cuts(sorted_ids: pl.Series, count: int) -> list[str]:
    """The N-1 cuts between partitions: ids[floor(k * K / N)] of the sorted distinct ids."""
    return [str(sorted_ids[k]) for k in _cut_positions(sorted_ids.len(), count)]


def _cut_positions(total: int, count: int) -> list[int]:
    """Where the cuts fall among `total` sorted distinct ids: floor(k * K / N), none without ids."""
    return [k * total // count for k in range(1, count)] if total else []


def cuts_streamed(batches: Callable[[], Iterable[pl.Series]], count: int) -> list[str] | None:
    """`cuts` over ids read twice in batches, holding one batch at a time: once to count the distinct
    ids, once to pick the cuts. None when the ids do not come sorted (the caller then sorts them)."""
    try:
        total = sum(_distinct(ids, last).len() for ids, last in table_wide.in_order(batches()))
        wanted = _cut_positions(total, count)
        found: list[str] = []
        seen = 0  # distinct ids in the batches before this one
        for ids, last in table_wide.in_order(batches()):
            distinct = _distinct(ids, last)
            while wanted and wanted[0] < seen + distinct.len():
                found.append(str(distinct[wanted.pop(0) - seen]))
            seen += distinct.len()
        return found
    except table_wide.UnsortedError:
        return None


def _distinct(ids: pl.Series, last: str | None) -> pl.Series:
    """A sorted batch's distinct ids, less the one that continues the batch before (`last`)."""
    distinct = ids.filter(ids.ne_missing(ids.shift(1)))
    return distinct.slice(1) if last is not None and str(distinct[0]) == last else distinct


def borrower_cuts(source: sources.Source, count: int) -> list[str]:
    """The cuts of a source's borrower ids into `count` ranges. A `borrowers` table whose ids come
    sorted (as sources usually do) is read in batches, so memory does not grow with the book; one
    whose ids do not, or a CSV file, is read whole and sorted."""
    ref = sources.ref_of(source)
    if ref.is_local and ref.path.is_dir():
        found = sources.table_files(ref.path, BORROWERS)
        if found and found[0].suffix == ".parquet" and _has_id(found[0]):
            file = found[0]
            streamed = cuts_streamed(lambda: table_wide.parquet_id_batches(file), count)
            if streamed is not None:
                return streamed
    elif ref.is_local and ref.path.is_file():
        streamed = _duckdb_cuts_streamed(ref.path, count)
        if streamed is not None:
            return streamed
    elif not ref.is_local:
        streamed = cuts_streamed(lambda: sources.remote_key_batches(ref, "borrowers", "id"), count)
        if streamed is not None:
            return streamed
    return cuts(sorted_borrower_ids(source), count)


@contextmanager
def _duckdb_borrowers(path: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection to a DuckDB source for its borrower ids; None when it has no
    `borrowers.id` (its cuts are then none)."""
    with duck.connect(path, read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        duck.string_views(con)
        tables = sources.duckdb_tables(con)
        yield con if "borrowers" in tables and "id" in sources.duckdb_columns(con, "borrowers") else None


def _duckdb_cuts_streamed(path: Path, count: int) -> list[str] | None:
    """`cuts_streamed` over a DuckDB file's borrower ids in storage order; None when they are not
    sorted or cannot be read here (the whole read then sorts them, or reports the file)."""
    try:
        with _duckdb_borrowers(path) as con:
            if con is None:
                return None
            return cuts_streamed(lambda: table_wide.duckdb_id_batches(con, "borrowers"), count)
    except duckdb.Error:
        return None


def _has_id(file: Path) -> bool:
    try:
        return "id" in pq.read_schema(file).names
    except (OSError, pa.ArrowException):
        return False  # read whole below, which reports the file


def sorted_borrower_ids(source: sources.Source) -> pl.Series:
    """The distinct non-null borrower ids of a source, as text, sorted (one column read)."""
    ref = sources.ref_of(source)
    if not ref.is_local:
        ids = sources.remote_column(ref, ["borrowers"], "id").get("borrowers")
        return pl.Series("id", [], pl.String) if ids is None else _distinct_sorted(ids.drop_nulls())
    path = ref.path
    if path.is_dir():
        found = sources.table_files(path, BORROWERS)
        if not found:
            return pl.Series("id", [], pl.String)
        file = found[0]
        scan = sources.scan_csv_text(file) if file.suffix == ".csv" else pl.scan_parquet(file)
        if "id" not in scan.collect_schema().names():
            return pl.Series("id", [], pl.String)
        return _distinct_sorted(
            scan.select(pl.col("id").cast(pl.String)).drop_nulls().collect().get_column("id")
        )
    if not path.is_file():
        return pl.Series("id", [], pl.String)
    return _duckdb_borrower_ids(path)


def _duckdb_borrower_ids(path: Path) -> pl.Series:
    with _duckdb_borrowers(path) as con:
        if con is None:
            return pl.Series("id", [], pl.String)
        return _distinct_sorted(table_wide.duckdb_ids(con, "borrowers").drop_nulls())


def _distinct_sorted(ids: pl.Series) -> pl.Series:
    """`ids` without repeats, sorted (byte order). Sources usually come sorted by borrower id: then
    only neighbours are compared, far cheaper than sorting or hashing them."""
    if ids.is_sorted():
        return _distinct(ids, None).alias("id")
    return ids.unique().sort().alias("id")
