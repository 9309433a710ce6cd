"""Borrower partitions: a run as N independent parts and a merge (DESIGN.md "Past one machine").

Every compliance rule is per borrower, so a run splits by borrower. A borrower's partition is

    partition(id) = crc32(UTF-8 bytes of id) mod N        (zlib's CRC-32; a null key goes to 0)

computed here, in Python, on the distinct borrower keys of the source: the borrowers' `id` and the
`personId` of contacts, interactions, do-not-interact records and consents (so a row whose borrower
is unknown lands in exactly one partition too). `split` writes each partition's keys (and its share
of a population file) to the run's staging folder once; a partition then reads only its rows, with
the filter inside the read (`sources.RowFilter`), and writes its part: the projected rows sorted by
contact id, its screening rows and its rejected rows (Arrow IPC). `merged_batches` streams a k-way
merge of the sorted parts into fixed-size batches, so the final file's bytes do not depend on N.
N = 1 reads the source as an unpartitioned run does (no filter, no keys).

`auto_partitions` picks N from the source's size on disk and a memory budget (see its docstring).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.ipc as ipc

from pipelines import duck, sources
from pipelines.tables import TABLES

SORT_KEY: Final = "__contactId"  # the contact id of each projected row in a part file
BATCH_ROWS: Final = 65_536  # rows per part-file batch and per merged batch (one Parquet row group)
# Peak memory of a run per byte of source on disk (measured on generated data, see README "Scaling
# out"): DuckDB and Parquet sources compress about alike; CSV takes about 3x the bytes on disk.
PEAK_PER_SOURCE_BYTE: Final = {"duckdb": 10.0, "parquet": 10.0, "csv": 3.5}
BASELINE_BYTES: Final = 640 << 20  # interpreter, libraries, lookup tables: memory no partition frees
MAX_AUTO_PARTITIONS: Final = 256


@dataclass(frozen=True)
class Part:
    """Partition `index` (0-based) of `count`; shown 1-based as `p3/8`."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"p{self.index + 1}/{self.count}"

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


@dataclass(frozen=True)
class PartResult:
    """What a partition leaves in the staging folder, and the counts the merge adds up."""

    part: Part
    rows_file: Path
    screening_file: Path
    rejected_file: Path
    population: int
    matched: int
    exported: int
    by_reason: dict[str, int]
    rejected: int
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- the partition function


def partition_of(ids: pl.Series, count: int) -> pl.Series:
    """Each id's partition: crc32 of its UTF-8 bytes mod `count` (UInt32); null ids are in 0."""
    if count == 1:
        return pl.Series(ids.name, [0] * ids.len(), pl.UInt32)
    crc = zlib.crc32
    values = [0 if v is None else crc(v.encode("utf-8")) % count for v in ids.cast(pl.String).to_list()]
    return pl.Series(ids.name, values, pl.UInt32)


# ---------------------------------------------------------------- choosing N


def source_format(path: Path) -> str:
    if path.is_dir():
        return "csv" if any(p.suffix == ".csv" for p in path.iterdir()) else "parquet"
    return "duckdb"


def source_bytes(path: Path) -> int:
    """Bytes on disk of a source: the DuckDB file, or the table files of a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for spec in TABLES for f in sources.table_files(path, spec))
    return path.stat().st_size if path.is_file() else 0


def auto_partitions(path: Path, memory_budget: int) -> int:
    """N for `--partitions auto`: the source's expected peak over what the budget leaves per part.

        N = ceil(source bytes x PEAK_PER_SOURCE_BYTE[format] / (budget - BASELINE_BYTES))

    at least 1 and at most MAX_AUTO_PARTITIONS (a budget at or below the baseline counts as 64 MiB).
    """
    usable = max(memory_budget - BASELINE_BYTES, 64 << 20)
    expected = source_bytes(path) * PEAK_PER_SOURCE_BYTE[source_format(path)]
    return max(1, min(MAX_AUTO_PARTITIONS, math.ceil(expected / usable)))


# ---------------------------------------------------------------- split


def borrower_keys(path: Path) -> pl.Series:
    """The distinct borrower keys (as text) of every table of a source, read column by column."""
    if path.is_dir():
        scans = []
        for spec in TABLES:
            found = sources.table_files(path, spec)
            if not found:
                continue
            file = found[0]
            scan = (
                pl.scan_csv(file, infer_schema=False, encoding="utf8")
                if file.suffix == ".csv"
                else pl.scan_parquet(file)
            )
            column = sources.BORROWER_KEYS[spec.name]
            if column in scan.collect_schema().names():
                scans.append(scan.select(pl.col(column).cast(pl.String).alias("k")).drop_nulls().unique())
        if not scans:
            return pl.Series("k", [], pl.String)
        return pl.concat(scans).unique().collect(engine="streaming").get_column("k")
    with duck.connect(path, read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        present = {
            (str(t), str(c))
            for t, c in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?",
                ["main"],
            ).fetchall()
        }
        selects = [
            f'SELECT CAST("{key}" AS VARCHAR) AS k FROM "{table}" WHERE "{key}" IS NOT NULL'  # noqa: S608
            for table, key in sources.BORROWER_KEYS.items()
            if (table, key) in present
        ]
        if not selects:
            return pl.Series("k", [], pl.String)
        try:
            keys = pl.DataFrame(con.sql(" UNION ".join(selects)).to_arrow_table()).get_column("k")
        except duckdb.Error:
            return pl.Series("k", [], pl.String)  # the read reports what is wrong with the file
    return keys


def _keys_file(folder: Path, part: Part) -> Path:
    return folder / f"keys-{part.name}.arrow"


def _population_file(folder: Path, part: Part) -> Path:
    return folder / f"population-{part.name}.arrow"


def split(source: Path, population: pl.DataFrame | None, count: int, folder: Path) -> None:
    """Write each partition's borrower keys (and its share of `population`, ids) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if count > 1:
        keys = borrower_keys(source).sort()
        _write_split(keys.to_frame("k"), partition_of(keys, count), count, folder, _keys_file)
    if population is not None:
        ids = population.get_column("id")
        _write_split(population, partition_of(ids, count), count, folder, _population_file)


def _write_split(
    frame: pl.DataFrame, parts: pl.Series, count: int, folder: Path, name: Callable[[Path, Part], Path]
) -> None:
    by_part = frame.with_columns(parts.alias("__part")).partition_by(
        "__part", as_dict=True, include_key=False
    )
    for index in range(count):
        part = Part(index, count)
        rows = by_part.get((index,), frame.clear())
        rows.write_ipc(name(folder, part))


def rows_of(folder: Path, part: Part) -> sources.RowFilter | None:
    """The partition's row filter for reading the source (None: the whole source, N = 1)."""
    if part.count == 1:
        return None
    keys = pl.read_ipc(_keys_file(folder, part)).get_column("k")
    return sources.RowFilter(keys, nulls=part.index == 0)


def population_of(folder: Path, part: Part) -> pl.DataFrame:
    """The partition's share of the run's population file, as `split` wrote it."""
    return pl.read_ipc(_population_file(folder, part))


# ---------------------------------------------------------------- parts


def write_part(
    folder: Path,
    part: Part,
    rows: pl.DataFrame,
    keys: pl.Series,
    screening: pl.DataFrame,
    rejected: pl.DataFrame,
) -> tuple[Path, Path, Path]:
    """Write a partition's projected rows (with their contact id, sorted), screening and rejected rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows_file = folder / f"rows-{part.name}.arrow"
    screening_file = folder / f"screening-{part.name}.arrow"
    rejected_file = folder / f"rejected-{part.name}.arrow"
    table = rows.with_columns(keys.alias(SORT_KEY)).to_arrow()
    with ipc.new_file(str(rows_file), table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    if "nextEligibleDate" not in screening.columns:
        screening = screening.with_columns(nextEligibleDate=pl.lit(None, dtype=pl.Date))
    screening.write_ipc(screening_file, compression="lz4")
    rejected.write_ipc(rejected_file, compression="lz4")
    return rows_file, screening_file, rejected_file


def screening_dataset(files: Sequence[Path]) -> pads.Dataset:
    """The screening rows of every part as one Arrow dataset, scanned (not loaded) by the warehouse insert."""
    return pads.dataset([str(f) for f in files], format="ipc")


def rejected_rows(files: Sequence[Path]) -> pl.DataFrame:
    return pl.concat([pl.read_ipc(f) for f in files])


# ---------------------------------------------------------------- merge


class _PartReader:
    """The batches of one sorted part file, one at a time."""

    def __init__(self, path: Path) -> None:
        self._file = ipc.open_file(pa.memory_map(str(path)))
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


def merged_batches(paths: Sequence[Path], batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The rows of every sorted part in contact-id order, in batches of exactly `batch_rows` (the
    last one shorter), without the sort key. Memory: one batch per part plus one output batch."""
    readers = [_PartReader(p) for p in paths]
    buffers: list[pl.DataFrame | None] = [r.read() for r in readers]
    pending: list[pl.DataFrame] = []
    held = 0
    while True:
        live = [i for i, b in enumerate(buffers) if b is not None]
        if not live:
            break
        # Every row up to the smallest last key of the buffers can be placed now.
        bound = min(str(buffers[i].get_column(SORT_KEY)[-1]) for i in live)  # type: ignore[union-attr]
        taken: list[pl.DataFrame] = []
        for i in live:
            buffer = buffers[i]
            assert buffer is not None
            cut = int(buffer.get_column(SORT_KEY).search_sorted(bound, side="right"))
            if cut:
                taken.append(buffer.head(cut))
            rest = buffer.slice(cut)
            buffers[i] = rest if rest.height else readers[i].read()
        step = pl.concat(taken).sort(SORT_KEY, maintain_order=True) if len(taken) > 1 else taken[0]
        pending.append(step)
        held += step.height
        while held >= batch_rows:
            joined = pl.concat(pending)
            yield joined.head(batch_rows).drop(SORT_KEY)
            rest = joined.slice(batch_rows)
            pending, held = [rest], rest.height
    if held:
        yield pl.concat(pending).drop(SORT_KEY)
