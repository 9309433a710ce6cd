"""Writing source tables (`generate --out`, tests, benchmarks): a DuckDB file, a folder of Parquet or
CSV files, Parquet under an `s3://` prefix, or tables in a Postgres database, the same rows in each."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from pipelines.io import duck
from pipelines.io.conform import text_frame
from pipelines.io.files import atomic_write
from pipelines.io.local_sources import FOLDER_FORMATS
from pipelines.io.source_ref import SourceRef
from pipelines.model.errors import ErrorItem, InvalidInputError
from pipelines.model.tables import TABLES, SourceTables

log = logging.getLogger(__name__)

SourceFormat = Literal["duckdb", "parquet", "csv"]


Target = SourceRef | Path | str


def write_source(tables: SourceTables, path: Target, fmt: SourceFormat) -> None:
    """Write the five tables as a DuckDB file, a folder of Parquet/CSV files, Parquet files under an
    `s3://` prefix or tables in Postgres (`path` a path or a URI; `fmt` is that of a local target).

    DuckDB: the file is built under a temporary name beside `path` (starting from a copy of an
    existing file, whose other tables are kept) and renamed over it. Folders: each table file is
    written under a temporary name in the folder and renamed; a file of the other format for the
    same table is removed so the folder holds one version of each table.
    """
    frames = {spec.name: tables.get(spec.name).collect() for spec in TABLES}
    _write_frames([frames], _target(path), fmt, memory_limit=None)


def write_source_chunks(chunks: Iterable[SourceTables], path: Target, fmt: SourceFormat) -> dict[str, int]:
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

    _write_frames(frames(), _target(path), fmt, memory_limit=duck.WRITE_MEMORY)
    return counts


def _target(path: Target) -> SourceRef:
    if isinstance(path, SourceRef):
        return path
    return SourceRef.local(path) if isinstance(path, Path) else SourceRef.parse(path)


def _write_frames(
    chunks: Iterable[dict[str, pl.DataFrame]], ref: SourceRef, fmt: str, *, memory_limit: str | None
) -> None:
    if ref.kind == "s3":
        from pipelines.io import s3

        s3.write_tables(ref, chunks)
    elif ref.kind == "postgres":
        from pipelines.io import postgres

        postgres.write_tables(ref, chunks)
    elif fmt == "duckdb":
        _write_duckdb(chunks, ref.path, memory_limit=memory_limit)
    elif fmt in FOLDER_FORMATS:
        _write_folder(chunks, ref.path, fmt)
    else:
        raise InvalidInputError(
            "arguments", [ErrorItem("/format", f"unknown format {fmt!r}; use duckdb, parquet or csv")]
        )
    log.info("wrote source %s (%s)", ref, fmt)


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

        atomic_write(path, lambda temp: _fill_duckdb(temp, path, chunks, memory_limit))


def _fill_duckdb(
    temp: Path, path: Path, chunks: Iterable[dict[str, pl.DataFrame]], memory_limit: str | None
) -> None:
    """Write the chunks' tables into `temp`, a copy of `path` when it exists (its other tables kept)."""
    if path.exists():
        shutil.copyfile(path, temp)
    con = duck.open_file(temp)
    try:
        con.execute("SET enable_progress_bar = false")  # stdout carries the CLI's JSON
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
                        text_frame(frame).write_csv(fh, include_header=i == 0, line_terminator="\n")
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
