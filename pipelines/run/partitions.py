"""Borrower partitions: a run as N independent parts and a merge (DESIGN.md "Past one machine").

Every compliance rule is per borrower, so a run splits by borrower. Partitions are ranges of
borrower ids in text (UTF-8 byte) order, cut at the N-quantiles of the source's borrower ids:

    ids = the distinct non-null borrowers.id of the source, as text, sorted; K = len(ids)
    cut k = ids[floor(k * K / N)]                for k = 1 .. N-1
    partition(id) = the number of cuts <= id     (0 .. N-1; a row without a key is in 0)

so each partition holds about K/N borrowers, and every text, a borrower's or not, is in exactly one
partition. A row belongs to the partition of its borrower key: `borrowers.id`, and the `personId`
of contacts, interactions, do-not-interact records and consents. Reading a partition is a range
filter on that key inside the read (`sources.RowFilter`): DuckDB and the Parquet reader apply it in
the scan and skip the blocks whose min/max fall outside. The same cuts split a population file.

A partition writes its part into the run's staging folder: the projected rows with their contact
id, sorted by it, its screening rows and its rejected rows (Arrow IPC). `merged_batches` streams a
k-way merge of the sorted parts in fixed-size batches, so the final file's bytes do not depend on N.
N = 1 reads the source as an unpartitioned run does (no filter).

`auto_partitions` picks N from the source's size and a memory budget (see its docstring); the cuts
are found in pipelines/run/cuts.py.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipelines.io import duck, sources
from pipelines.io.files import ROW_GROUP_ROWS, WrittenFile, side_by_side
from pipelines.io.local_sources import Skip
from pipelines.model.tables import TABLES
from pipelines.rules import table_wide
from pipelines.run import cuts

SORT_KEY: Final = "__contactId"  # the contact id of each projected row in a part file
# Rows per merged batch (one Parquet row group), and at most per batch of a part file.
BATCH_ROWS: Final = ROW_GROUP_ROWS
# Rows the merge holds across its parts, one batch of each, whatever their number: a part file's
# batches shrink as the parts grow in number (at 108 parts, about 9,700 rows each).
MERGE_HELD_ROWS: Final = 1 << 20


def part_batch_rows(count: int) -> int:
    """Rows per batch of a part file when a run has `count` parts."""
    return max(4096, min(BATCH_ROWS, MERGE_HELD_ROWS // count))


# Peak memory of one partition per source row (all five tables), and the memory every run has
# whatever its partitions (interpreter, libraries, lookup tables): the peak RSS of a run, less the
# baseline, per row of its largest partition, with a margin over the worst measured (the
# measurements are in bench/results and the README's "Scaling out"; a slow test holds the model
# above the measured peak).
PEAK_PER_ROW: Final = 300
# A Postgres source's rows arrive as Arrow batches that are converted (strings copied into Polars'
# layout), so a partition peaks higher per row: at 1M borrowers in 2 partitions, 2,215 MiB against
# 1,512 MiB from DuckDB (bench/sources.py, side by side), i.e. 400 bytes per row above the baseline
# against 236; with a margin:
PEAK_PER_POSTGRES_ROW: Final = 500
BASELINE_BYTES: Final = 512 << 20
MAX_AUTO_PARTITIONS: Final = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """Partition `index` (0-based) of `count`: borrower keys in [`low`, `high`) (None: unbounded).
    Shown 1-based as `p3/8`."""

    index: int
    count: int
    low: str | None = None
    high: str | None = None

    @property
    def label(self) -> str:
        return f"p{self.index + 1}/{self.count}"

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    @property
    def rows(self) -> sources.RowFilter | None:
        """The filter that reads this partition's rows of the source (None: everything, N = 1)."""
        if self.count == 1:
            return None
        # Every partition reads the rows without a borrower key: a rejected one could be anyone's, so it
        # blocks every matched contact (fail closed) in each partition; only the first reports it.
        return sources.RowFilter(self.low, self.high, nulls=True)

    @property
    def reports_unowned(self) -> bool:
        """Whether this partition lists the rejected rows that name no borrower (the first one does)."""
        return self.index == 0


@dataclass(frozen=True)
class PartResult:
    """What a partition leaves in the staging folder, and the counts the merge adds up."""

    part: Part
    rows_file: Path | None  # None: the part is the whole run and wrote the export file itself (`file`)
    screening_file: Path
    rejected_file: Path
    population: int
    matched: int
    exported: int
    by_reason: dict[str, int]
    rejected: int
    blocked_borrowers: int = 0  # matched borrowers blocked by SOURCE_ROW_REJECTED
    matched_borrowers: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    file: WrittenFile | None = None  # the export file, when the part is the whole run


# ---------------------------------------------------------------- the partition function


def partition_of(ids: pl.Series, cut_ids: Sequence[str]) -> pl.Series:
    """Each id's partition: the number of cuts <= id (UInt32); a null id is in partition 0."""
    bounds = pl.Series("cuts", list(cut_ids), pl.String)
    text = ids.cast(pl.String)
    where = bounds.search_sorted(text.fill_null(""), side="right").cast(pl.UInt32)
    return (
        pl.select(pl.when(text.is_null()).then(0).otherwise(where))
        .to_series()
        .cast(pl.UInt32)
        .alias(ids.name)
    )


def parts_of(cut_ids: Sequence[str], count: int) -> list[Part]:
    """The N partitions the cuts make, each with its key range. Without cuts (N = 1, or a source
    without borrower ids) every row is in partition 0 and the others read nothing."""
    if count == 1:
        return [Part(0, 1)]
    if not cut_ids:
        return [Part(0, count)] + [Part(k, count, "", "") for k in range(1, count)]
    bounds: list[str | None] = [None, *cut_ids, None]
    return [Part(k, count, bounds[k], bounds[k + 1]) for k in range(count)]


# ---------------------------------------------------------------- choosing N


def source_rows(source: sources.Source) -> int | None:
    """Rows in the five tables, from metadata (DuckDB table counts, Parquet footers, Postgres
    statistics, a CSV file's size over the length of its first lines); None for a file that cannot
    be opened (a Parquet file cut short): the read then fails with an error that names it (exit 2),
    rather than this estimate with a library's traceback."""
    ref = sources.ref_of(source)
    if not ref.is_local:
        return sources.remote_rows(ref)
    try:
        return _source_rows(ref.path)
    except (OSError, pa.ArrowException, duckdb.Error):
        return None


def _source_rows(path: Path) -> int | None:
    if path.is_dir():
        return sum(
            sources.csv_records_estimate(f) if f.suffix == ".csv" else int(pq.read_metadata(f).num_rows)
            for f in sources.folder_files(path)
        )
    if not path.is_file():
        return 0
    total = 0
    with duck.connect(path, read_only=True) as con:
        present = sources.duckdb_tables(con)
        for spec in TABLES:
            if spec.name in present:
                total += int(con.execute(f'SELECT count(*) FROM "{spec.name}"').fetchall()[0][0])  # noqa: S608
    return total


def auto_partitions(source: sources.Source, memory_budget: int) -> int:
    """N for `--partitions auto`: the run's expected memory over what the budget leaves per part.

        N = ceil(expected / usable), at least 1, at most MAX_AUTO_PARTITIONS
        usable   = budget - BASELINE_BYTES             (at least 64 MiB)
        expected = source rows x PEAK_PER_ROW          (PEAK_PER_POSTGRES_ROW from Postgres)

    The rows come from metadata (`source_rows`): a CSV file's are estimated from its first lines.
    The partitions of a CSV source read a Parquet copy of their rows (made once by the split), so
    they hold what a partition of Parquet files holds.
    """
    usable = max(memory_budget - BASELINE_BYTES, 64 << 20)
    per_row = PEAK_PER_POSTGRES_ROW if sources.ref_of(source).kind == "postgres" else PEAK_PER_ROW
    return max(1, min(MAX_AUTO_PARTITIONS, math.ceil((source_rows(source) or 0) * per_row / usable)))


# ---------------------------------------------------------------- split


def _population_file(folder: Path, part: Part) -> Path:
    return folder / f"population-{part.name}.arrow"


def split(
    source: sources.Source,
    population: pl.DataFrame | None,
    count: int,
    folder: Path,
    skip: Skip | None = None,
) -> list[Part]:
    """Cut the source's borrower ids into `count` ranges; write each part's share of `population`
    and, when the parts read only some rows, the table-wide checks over the whole source (and each
    CSV file counted and copied once, without `skip`'s columns, for the parts to read by range)."""
    cut_ids = cuts.borrower_cuts(source, count) if count > 1 else []
    parts = parts_of(cut_ids, count)
    if count > 1:
        # An id repeated in two partitions is seen by neither: answer it once, over every row.
        table_wide.scan(source, sources.csv_pass(source, folder, skip)).save(folder)
    if population is not None:
        folder.mkdir(parents=True, exist_ok=True)
        which = partition_of(population.get_column("id"), cut_ids)
        for part in parts:
            population.filter(which == part.index).write_ipc(_population_file(folder, part))
    return parts


def population_of(folder: Path, part: Part) -> pl.DataFrame:
    """The partition's share of the run's population file, as `split` wrote it."""
    return pl.read_ipc(_population_file(folder, part))


# ---------------------------------------------------------------- parts


def write_part(
    folder: Path,
    part: Part,
    rows: pl.DataFrame | None,
    keys: pl.Series,
    screening: pl.DataFrame,
    rejected: pl.DataFrame,
) -> tuple[Path | None, Path, Path]:
    """Write a partition's projected rows (with their contact id, sorted), screening and rejected rows.
    Without `rows` (a part that is the whole run writes the export file itself), only the latter two."""
    folder.mkdir(parents=True, exist_ok=True)
    rows_file = folder / f"rows-{part.name}.arrow"
    screening_file = folder / f"screening-{part.name}.arrow"
    rejected_file = folder / f"rejected-{part.name}.arrow"
    if "nextEligibleDate" not in screening.columns:
        screening = screening.with_columns(nextEligibleDate=pl.lit(None, dtype=pl.Date))

    # Each in one chunk first: a frame read and filtered in many small chunks would otherwise give
    # as many small batches, each a step of the merge and of the warehouse insert.
    def write_rows() -> None:
        if rows is None:
            return
        table = rows.with_columns(keys.alias(SORT_KEY)).rechunk().to_arrow()
        with ipc.new_file(str(rows_file), table.schema) as writer:
            writer.write_table(table, max_chunksize=part_batch_rows(part.count))

    def write_screening() -> None:
        screening.rechunk().write_ipc(screening_file, compression="lz4")
        rejected.write_ipc(rejected_file, compression="lz4")

    side_by_side(write_rows, write_screening)
    return (None if rows is None else rows_file), screening_file, rejected_file


def screening_batches(files: Sequence[Path]) -> pa.RecordBatchReader:
    """The screening rows of every part, one part's batch at a time, for the warehouse insert to
    stream. (Scanned as an Arrow dataset instead, several parts are read ahead at once: 2.4 GB at 16M
    borrowers.)"""
    schema = ipc.open_file(pa.OSFile(str(files[0]))).schema

    def batches() -> Iterator[pa.RecordBatch]:
        for file in files:
            reader = ipc.open_file(pa.OSFile(str(file)))
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    return pa.RecordBatchReader.from_batches(schema, batches())


def rejected_rows(files: Sequence[Path]) -> pl.DataFrame:
    return pl.concat([pl.read_ipc(f) for f in files])


# ---------------------------------------------------------------- merge


class _PartReader:
    """The batches of one sorted part file, one at a time. Read, not memory-mapped: a mapped file's
    pages stay resident as the merge walks through it, so the merge's memory would grow with the book."""

    def __init__(self, path: Path) -> None:
        self._file = ipc.open_file(pa.OSFile(str(path)))
        self._next = 0

    @property
    def schema(self) -> pa.Schema:
        return self._file.schema

    def read(self) -> pl.DataFrame | None:
        while self._next < self._file.num_record_batches:
            batch = self._file.get_batch(self._next)
            self._next += 1
            if batch.num_rows:
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                return frame
        return None


def empty_part(path: Path) -> pl.DataFrame:
    """A part file's columns without rows (and without the sort key)."""
    frame = pl.from_arrow(_PartReader(path).schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.drop(SORT_KEY)


@dataclass(frozen=True)
class _Buffer:
    """The rows of a part read and not yet placed, with their first and last sort keys."""

    frame: pl.DataFrame
    first: str
    last: str

    @staticmethod
    def of(frame: pl.DataFrame | None) -> _Buffer | None:
        if frame is None:
            return None
        keys = frame.get_column(SORT_KEY)
        return _Buffer(frame, str(keys[0]), str(keys[-1]))

    def split(self, bound: str) -> tuple[pl.DataFrame, _Buffer | None]:
        """The rows up to `bound` (at least the first), and the buffer of the others (None if none)."""
        if self.last <= bound:
            return self.frame, None
        cut = int(self.frame.get_column(SORT_KEY).search_sorted(bound, side="right"))
        rest = self.frame.slice(cut)
        return self.frame.head(cut), _Buffer(rest, str(rest.get_column(SORT_KEY)[0]), self.last)


def merged_batches(paths: Sequence[Path], batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The rows of every sorted part in contact-id order, in batches of exactly `batch_rows` (the
    last one shorter), without the sort key. Memory: one batch per part plus one output batch.
    A step touches only the parts whose next row can be placed: parts that hold ranges of ids one
    after the other (as they usually do) are read one at a time, not all at every step."""
    readers = [_PartReader(p) for p in paths]
    buffers = {i: b for i, r in enumerate(readers) if (b := _Buffer.of(r.read())) is not None}
    pending: list[pl.DataFrame] = []
    held = 0
    while buffers:
        # Every row up to the smallest last key of the buffers can be placed now.
        bound = min(b.last for b in buffers.values())
        taken: list[pl.DataFrame] = []
        for i in [i for i, b in buffers.items() if b.first <= bound]:  # in part order
            head, rest = buffers[i].split(bound)
            taken.append(head)
            following = rest if rest is not None else _Buffer.of(readers[i].read())
            if following is None:
                del buffers[i]
            else:
                buffers[i] = following
        step = pl.concat(taken).sort(SORT_KEY, maintain_order=True) if len(taken) > 1 else taken[0]
        pending.append(step)
        held += step.height
        while held >= batch_rows:
            joined = pl.concat(pending)
            yield joined.head(batch_rows).drop(SORT_KEY)
            rest_rows = joined.slice(batch_rows)
            pending, held = [rest_rows], rest_rows.height
    if held:
        yield pl.concat(pending).drop(SORT_KEY)
