"""DuckDB connections to a file, opened briefly and one writer at a time.

DuckDB allows one read-write process per file. Every write in this project opens the file, writes in
one transaction and closes it at once, under a lock file beside the database, so concurrent runs (in
threads or processes) queue instead of failing, and analysts can open the file between runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

from pipelines.errors import TransientError

_PROCESS_LOCK = threading.RLock()
LOCK_TIMEOUT_SECONDS = 300.0
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


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, timeout: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path` under the process lock and the file lock; close it on exit."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    # A read-only source on a read-only mount cannot hold a lock file; reading needs none there.
    with file_lock(path, timeout=timeout, optional=read_only):
        con = open_file(path, read_only=read_only)
        con.execute("SET enable_progress_bar = false")  # it would print to stdout, our JSON channel
        try:
            yield con
        finally:
            con.close()
