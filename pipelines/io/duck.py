"""DuckDB connections to a file, opened briefly and one writer at a time.

DuckDB allows one read-write process per file. Every write in this project opens the file, writes in
one transaction and closes it at once, under a lock file beside the database, so concurrent runs (in
threads or processes) queue instead of failing, and analysts can open the file between runs. A writer
that finds the file open in another process (an analyst's session, read-only or not) waits for it with
one warning, up to $CONTACT_EXPORTER_WAREHOUSE_WAIT_SECONDS (default 120 s), then fails with
WarehouseBusyError having written nothing.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import duckdb
from filelock import FileLock, Timeout

from pipelines.model.errors import ErrorItem, InvalidInputError, TransientError, WarehouseBusyError

log = logging.getLogger(__name__)

_PROCESS_LOCK = threading.RLock()
LOCK_TIMEOUT_SECONDS = 300.0
# A writer that finds the file open in another process (an analyst's DuckDB session, even a
# read-only one, holds DuckDB's own file lock) waits this long, saying so, then fails cleanly.
BUSY_WAIT_ENV = "CONTACT_EXPORTER_WAREHOUSE_WAIT_SECONDS"
BUSY_WAIT_SECONDS = 120.0
_BUSY_POLL_SECONDS = 0.5
_HELD_BY = re.compile(r"\(PID (\d+)\)")
# Files this project creates are written in DuckDB's 1.1 storage format, which every DuckDB client
# from 1.1 on opens (DuckDB 2's own default format is refused by 1.x clients, the CLI included).
# A file keeps the format it was created in; this applies to new files.
STORAGE_VERSION = "v1.1.0"


def open_file(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """`duckdb.connect` on a file; a file created here gets STORAGE_VERSION."""
    config: dict[str, str | bool | int | float | list[str]] = (
        {} if read_only else {"storage_compatibility_version": STORAGE_VERSION}
    )
    return duckdb.connect(str(path), read_only=read_only, config=config)


def string_views(con: duckdb.DuckDBPyConnection) -> None:
    """Hand text to Polars as Arrow string views, Polars' own layout: no copy on the way, which
    saves read time and peak memory."""
    con.execute("SET arrow_output_version = '1.5'")
    con.execute("SET produce_arrow_string_view = true")


def busy_wait_seconds() -> float:
    """The bound on waiting for another process to close the file: $CONTACT_EXPORTER_WAREHOUSE_WAIT_SECONDS."""
    raw = os.environ.get(BUSY_WAIT_ENV)
    if raw is None or not raw.strip():
        return BUSY_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(
            "environment", [ErrorItem(BUSY_WAIT_ENV, f"{raw!r} is not a number of seconds")]
        ) from None
    return max(value, 0.0)


def _held_elsewhere(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


# What DuckDB says of a file that is not a whole database: empty or another kind of file, a block
# whose checksum fails, a file cut short.
_DAMAGED = ("not a valid DuckDB database file", "Corrupt database file", "Could not read enough bytes")


class UnopenableDatabaseError(InvalidInputError, duckdb.IOException):
    """A DuckDB file that cannot be opened, named with what to do (exit 2). It is a DuckDB error too:
    a source's reader turns it into its own source error as it does any DuckDB error."""


def unopenable(path: Path, exc: duckdb.Error) -> UnopenableDatabaseError:
    """The error for a database file DuckDB cannot open: the file, why, and what to do."""
    said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if any(sign in said for sign in _DAMAGED):
        size = path.stat().st_size if path.is_file() else 0
        what = "is empty" if size == 0 else f"is not a whole DuckDB database ({size:,} bytes; DuckDB: {said})"
        action = (
            "restore it from a backup, or move it aside and run again (a missing warehouse is created "
            "anew, without the runs the old one held)"
        )
    elif _held_elsewhere(exc):
        held = _HELD_BY.search(said)
        what = f"is open for writing in {f'process {held.group(1)}' if held else 'another process'}"
        action = "run again once that process has closed it"
    else:
        what = f"cannot be opened ({said})"
        action = "check that the file and its folder may be read and written"
    return UnopenableDatabaseError(
        str(path), [ErrorItem("", f"{what}; {action}")], message=f"DuckDB file {path} {what}: {action}"
    )


def open_for_writing(path: Path, wait_seconds: float | None = None) -> duckdb.DuckDBPyConnection:
    """`open_file` read-write; while another process has the file open, wait up to `wait_seconds`
    (default `busy_wait_seconds()`) with one warning, then raise WarehouseBusyError."""
    bound = busy_wait_seconds() if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + bound
    warned = False
    while True:
        try:
            return open_file(path)
        except duckdb.Error as exc:
            if not _held_elsewhere(exc):
                raise unopenable(path, exc) from None
            held = _HELD_BY.search(str(exc))
            holder = f"process {held.group(1)}" if held else "another process"
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"{path} stayed open in {holder} for {bound:.0f}s (an analyst's session?); nothing "
                    f"was written: close that connection and run again (wait bound: ${BUSY_WAIT_ENV})"
                ) from None
            if not warned:
                log.warning(
                    "%s is open in %s (an analyst's session?): waiting up to %.0fs for it to close",
                    path,
                    holder,
                    bound,
                )
                warned = True
            time.sleep(min(_BUSY_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))


@contextmanager
def file_lock(path: Path, *, timeout: float = LOCK_TIMEOUT_SECONDS, optional: bool = False) -> Iterator[None]:
    """Hold `<path>.lock` (and the process lock): the one lock every writer of `path` takes.

    With `optional`, a lock file that cannot be created (a read-only mount) is done without.
    """
    lock = FileLock(str(path) + ".lock", timeout=timeout)
    with _PROCESS_LOCK:
        locked = False
        try:
            lock.acquire()
            locked = True
        except Timeout:
            raise TransientError(f"{path} is busy: another writer held it for {timeout:.0f}s") from None
        except OSError:
            if not optional:
                raise
        try:
            yield
        finally:
            if locked:
                lock.release()


def _open_to_read(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return open_file(path, read_only=True)
    except duckdb.Error as exc:
        raise unopenable(path, exc) from None


# What DuckDB may keep in memory while it writes a large insert. Unbounded, it caches every block it
# wrote, up to 80 % of the machine's memory; bounded, it writes them out and drops them.
WRITE_MEMORY: Final = "512MB"


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, timeout: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path` under the process lock and the file lock; close it on exit. A file DuckDB cannot
    open raises UnopenableDatabaseError."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    # A read-only source on a read-only mount cannot hold a lock file; reading needs none there.
    with file_lock(path, timeout=timeout, optional=read_only):
        con = _open_to_read(path) if read_only else open_for_writing(path)
        con.execute("SET enable_progress_bar = false")  # it would print to stdout, our JSON channel
        try:
            yield con
        finally:
            con.close()
