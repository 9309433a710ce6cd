"""A source kept warm for checks: in memory, sorted by borrower, reloaded when its files change.

A check for a few contacts must answer in milliseconds, and a source file has no index: a DuckDB
query filtering 3.6M contacts by id takes 25-200 ms per table at 1M borrowers even when the filter
is pushed into the scan (zone maps prune row groups, the rows inside them are still compared), and
five tables are read per check. So a long-running process (the HTTP API) reads the source once per
version of its files, keeps each table sorted by its borrower key, and answers a check by binary
search: the rows of the borrowers concerned are found in microseconds, whatever the source's order.

The DuckDB file is opened only while it is read (read-only, under the same lock file as every
writer, see pipelines/io/duck.py) and closed at once: the server never holds DuckDB's file lock between
requests, so a run writing to the same file is never blocked by an idle server, only queued behind
a load in progress (~4 s at 1M borrowers) as it would be behind any reader. A load happens on the
first check and again on the first check after the files change (their size, modification time or
inode, and DuckDB's `.wal` beside the file); until then every check reads the snapshot loaded last,
which is the source as of its last complete write.

What is selected is exactly what `pipelines.lookup.checks.read_for_contacts` reads from the file: the
requested contacts' borrowers, every row of those borrowers, and any row sharing an id with one of
them (so that a duplicate id is rejected as in a run).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.io import sources
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import TABLES, TableSpec

log = logging.getLogger(__name__)

S = pl.String()
ROW = "__row"  # position of a row in its sorted table (index frames only)
Version = tuple[tuple[str, int, int, int] | None, ...]


@dataclass(frozen=True)
class _Table:
    frame: pl.DataFrame  # raw rows, sorted by `key` (as text), rows without a key last
    keys: pl.Series  # the sorted non-null keys, for search_sorted
    twins: pl.DataFrame  # (id, ROW) of the rows whose id occurs more than once, sorted by id
    by_id: pl.DataFrame | None  # contacts only: (id, ROW) of every row, sorted by id


def _key(spec: TableSpec) -> str:
    return "id" if spec.name == "borrowers" else "personId"


def _positions(keys: pl.Series, wanted: pl.Series) -> pl.Series:
    """Indexes into `keys` (sorted) of every element equal to one of `wanted`."""
    if keys.is_empty() or wanted.is_empty():
        return pl.Series(ROW, [], pl.UInt32())
    lo = keys.search_sorted(wanted, side="left")
    hi = keys.search_sorted(wanted, side="right")
    return (
        pl.DataFrame({"lo": lo, "hi": hi})
        .select(pl.int_ranges("lo", "hi", dtype=pl.UInt32()).explode().drop_nulls().alias(ROW))
        .get_column(ROW)
    )


def _index(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.select(pl.col("id").cast(S), pl.int_range(pl.len(), dtype=pl.UInt32()).alias(ROW))
        .drop_nulls("id")
        .sort("id")
    )


def _prepare(frame: pl.DataFrame, spec: TableSpec, source: str) -> _Table:
    key = _key(spec)
    wanted = [key] if spec.name not in {"contacts", "interactions", "do_not_interact"} else [key, "id"]
    if any(column not in frame.columns for column in wanted):
        sources.conform(frame.head(0), spec, source)  # raises: a required column is missing
        raise SourceDataError(source, [ErrorItem(f"/{spec.name}/{key}", "required column is missing")])
    frame = frame.sort(pl.col(key).cast(S), nulls_last=True, maintain_order=True)
    keys = frame.get_column(key).cast(S)
    keys = keys.head(keys.len() - keys.null_count())
    if "id" in wanted:
        index = _index(frame)
        twins = index.filter(pl.col("id").is_duplicated())
        by_id = index if spec.name == "contacts" else None
    else:
        twins, by_id = pl.DataFrame(schema={"id": S, ROW: pl.UInt32()}), None
    return _Table(frame=frame, keys=keys, twins=twins, by_id=by_id)


def _stat(path: Path) -> tuple[str, int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns)


class WarmSource:
    """One source path, loaded on first use and again whenever its files change. Thread-safe."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._loaded: tuple[Version, dict[str, _Table]] | None = None

    def version(self) -> Version:
        """What identifies the files' content: (name, inode, size, mtime) of each file read."""
        if self.path.is_dir():
            names = [f"{spec.name}.{ext}" for spec in TABLES for ext in sources.FOLDER_FORMATS]
            return tuple(_stat(self.path / name) for name in names)
        return (_stat(self.path), _stat(self.path.with_name(self.path.name + ".wal")))

    def tables(self) -> dict[str, _Table]:
        version = self.version()
        loaded = self._loaded
        if loaded is not None and loaded[0] == version:
            return loaded[1]
        with self._lock:  # one load at a time; the others wait for it and use it
            loaded = self._loaded
            if loaded is not None and loaded[0] == version:
                return loaded[1]
            self._loaded = None  # let the old snapshot go before reading the new one
            started = time.perf_counter()
            raw = sources.read_raw(self.path)
            source = str(self.path)
            prepared = {}
            for spec in TABLES:
                prepared[spec.name] = _prepare(raw.pop(spec.name), spec, source)
            # The version read before loading: a change made while loading is loaded next time.
            self._loaded = (version, prepared)
            log.info(
                "loaded source %s for checks in %.2fs: %s",
                source,
                time.perf_counter() - started,
                ", ".join(f"{k}={v.frame.height}" for k, v in prepared.items()),
            )
            return prepared

    def rows_for_contacts(self, contact_ids: Sequence[str]) -> dict[str, pl.DataFrame]:
        """The raw rows `checks.read_for_contacts` would read for `contact_ids`, from memory."""
        tables = self.tables()
        ids = pl.Series("id", list(dict.fromkeys(contact_ids)), S).sort()
        contacts = tables["contacts"]
        assert contacts.by_id is not None
        own = contacts.by_id.get_column(ROW).gather(_positions(contacts.by_id.get_column("id"), ids))
        persons = contacts.frame.get_column("personId").gather(own).cast(S).drop_nulls().unique().sort()
        out: dict[str, pl.DataFrame] = {}
        for spec in TABLES:
            table = tables[spec.name]
            rows = _positions(table.keys, persons)
            if spec.name == "contacts":
                rows = pl.concat([rows, own])
            if not table.twins.is_empty() and not rows.is_empty():
                mine = table.frame.get_column("id").gather(rows).cast(S).drop_nulls().unique().sort()
                twin_ids = table.twins.get_column("id")
                rows = pl.concat([rows, table.twins.get_column(ROW).gather(_positions(twin_ids, mine))])
            out[spec.name] = table.frame[rows.unique().sort()]
        return out


_WARM: dict[Path, WarmSource] = {}
_WARM_LOCK = threading.Lock()


def warm_source(path: Path) -> WarmSource:
    """The process-wide WarmSource of `path` (one per resolved path)."""
    key = Path(os.path.abspath(path))
    with _WARM_LOCK:
        found = _WARM.get(key)
        if found is None:
            found = _WARM[key] = WarmSource(key)
        return found


__all__ = ["WarmSource", "warm_source"]
