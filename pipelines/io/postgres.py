"""Source tables in PostgreSQL: `postgresql://user@host:port/db[?schema=S]`, one table per source table.

Read through ADBC (Arrow batches, columnar, never row by row). A partition's borrower range is a
bound `WHERE` on the borrower key (`$1`, `$2`), compared as UTF-8 bytes (`COLLATE "C"`, the order of
the partition cuts); an index on `("personId" COLLATE "C")` lets Postgres use it. The password comes
from PGPASSWORD or ~/.pgpass (libpq reads them), never from a config, never into a message.

A rejected row without a key is named by its position in the whole table (CONTRACT.md §5). A
Postgres table has no order of its own: its position is its rank in the table's physical order
(`ctid`), which for a table loaded in one go (COPY, ingest, `generate --out`) is the order its rows
were written, so the same rows name the same positions as in a file (docs/choices.md). Only rows
without a key are ranked, and only when a read holds some (one window over the table, in Postgres).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pg  # type: ignore[import-untyped]
import polars as pl
import pyarrow as pa

from pipelines.io.source_ref import RowFilter, SourceRef
from pipelines.model.errors import ContactExporterError, ErrorItem, SourceDataError, TransientError
from pipelines.model.tables import SOURCE_ROW, TABLES, TableSpec

Cursor = Any  # adbc_driver_manager.dbapi.Cursor (untyped)
_TEXT: Final = ("text", "character varying", "character")
_TIMES: Final = ("timestamp with time zone", "timestamp without time zone", "date")
_CTID: Final = "__ctid"
_LOST: Final = ("server closed", "terminating connection", "connection", "could not receive", "eof")


def scrub(text: str, ref: SourceRef) -> str:
    for secret in (ref.password, os.environ.get("PGPASSWORD")):
        if secret:
            text = text.replace(secret, "***")
    return text


def error(ref: SourceRef, exc: BaseException, doing: str, *, during_run: bool) -> ContactExporterError:
    """A failed connection during a run may pass (transient, exit 1); before a run (unreachable server,
    refused password, unknown database) or a missing table it is invalid input (exit 2)."""
    text = scrub(" ".join(str(exc).split()), ref)[:400] or type(exc).__name__
    lost = isinstance(exc, adbc_driver_manager.OperationalError) or any(w in text.lower() for w in _LOST)
    if during_run and lost:
        return TransientError(f"source {ref}: {doing} failed, the server did not answer ({text})")
    return SourceDataError(
        str(ref),
        [ErrorItem("", f"{doing}: {text}")],
        message=f"source {ref}: {doing} failed: {text}; check the host, the database and the password "
        "(PGPASSWORD or ~/.pgpass)",
    )


# Connections a process keeps open per source between reads made with `keep` (the check server's):
# a new connection with password authentication costs ~60 ms here, more than a check's queries.
_IDLE: Final = 4
_idle: dict[str, list[Any]] = {}
_idle_lock = threading.Lock()


def _take(conninfo: str) -> Any | None:
    with _idle_lock:
        found = _idle.get(conninfo)
        return found.pop() if found else None


def _give_back(conninfo: str, con: Any) -> None:
    with _idle_lock:
        kept = _idle.setdefault(conninfo, [])
        if len(kept) < _IDLE:
            kept.append(con)
            return
    con.close()


def _begin(con: Any) -> Any:
    cur = con.cursor()
    try:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    except BaseException:
        cur.close()
        raise
    return cur


@contextmanager
def cursor(ref: SourceRef, *, during_run: bool = True, keep: bool = False) -> Iterator[Cursor]:
    """A cursor inside one read-only snapshot (the five tables are read as of one instant).

    `keep`: the connection comes from, and goes back to, the few this process keeps open for the
    source; a kept one the server has dropped meanwhile is replaced by a new one. A read that fails
    closes its connection."""
    con, cur = _take(ref.conninfo) if keep else None, None
    if con is not None:
        try:
            cur = _begin(con)
        except adbc_driver_manager.Error:
            con.close()  # dropped by the server (restarted, idle timeout): connect again
            con = None
    try:
        if con is None:
            con = pg.connect(ref.conninfo, autocommit=True)
    except adbc_driver_manager.Error as exc:
        raise error(ref, exc, "connecting", during_run=during_run) from None
    done = False
    try:
        cur = cur or _begin(con)
        with cur:
            yield cur
            cur.execute("COMMIT")
        done = True
    except adbc_driver_manager.Error as exc:
        raise error(ref, exc, "reading", during_run=during_run) from None
    finally:
        if keep and done:
            _give_back(ref.conninfo, con)
        else:
            con.close()


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(ref: SourceRef, table: str) -> str:
    return f"{quoted(ref.schema)}.{quoted(table)}"


def tables(cur: Cursor, ref: SourceRef) -> set[str]:
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", [ref.schema])
    return {str(r[0]) for r in cur.fetchall()}


def columns(cur: Cursor, ref: SourceRef, table: str) -> dict[str, str]:
    """The columns of a table, in order, with their data types."""
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        [ref.schema, table],
    )
    return {str(name): str(kind) for name, kind in cur.fetchall()}


def catalog(cur: Cursor, ref: SourceRef) -> dict[str, dict[str, str]]:
    """`columns` of every table of the source's schema, in one query."""
    cur.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
        [ref.schema],
    )
    found: dict[str, dict[str, str]] = {}
    for table, name, kind in cur.fetchall():
        found.setdefault(str(table), {})[str(name)] = str(kind)
    return found


def as_text(name: str, kinds: dict[str, str], *, collate: bool = True) -> str:
    """A column as text compared byte by byte (`COLLATE "C"`); without `collate`, in its own
    collation (enough for equality, and an index on the column stays usable)."""
    column = quoted(name) if kinds.get(name) in _TEXT else f"{quoted(name)}::text"
    return f'{column} COLLATE "C"' if collate else column


def _keyless(spec: TableSpec, kinds: dict[str, str]) -> str:
    """SQL true for a row named by its position: no id (consents: a null part of its key, or a text
    `updatedAt`, which may not convert)."""
    if spec.key is not None:
        return f"{quoted(spec.key)} IS NULL" if spec.key in kinds else "TRUE"
    parts = ("personId", "name", "updatedAt")
    if any(p not in kinds for p in parts) or kinds["updatedAt"] not in _TIMES:
        return "TRUE"
    return " OR ".join(f"{quoted(p)} IS NULL" for p in parts)


def read_table(
    cur: Cursor,
    ref: SourceRef,
    spec: TableSpec,
    rows: RowFilter | None,
    skip: frozenset[str],
    kinds: dict[str, str],
) -> pl.DataFrame:
    """One table (the rows `rows` keeps, filtered in Postgres), with SOURCE_ROW for rows without a key;
    `kinds`: its columns and their types (`catalog`)."""
    names = ", ".join(quoted(c) for c in kinds if c not in skip)
    keyless = _keyless(spec, kinds)
    where, params = "TRUE", list[str | list[str]]()
    if rows is not None and rows.column(spec.name) in kinds:
        ranged = rows.low is not None or rows.high is not None  # a range compares bytes; `among` equality
        where, params = rows.sql(as_text(rows.column(spec.name), kinds, collate=ranged), "$")
    # names are the table's own (quoted) and a constant table; the bounds are parameters
    query = (
        f"SELECT {names}{', ' if names else ''}CASE WHEN {keyless} THEN ctid::text END AS {_CTID} "  # noqa: S608
        f"FROM {table_name(ref, spec.name)} WHERE {where}"
    )
    cur.execute(query, params or None)
    return _with_positions(cur, ref, spec.name, keyless, fetched(cur))


def fetched(cur: Cursor) -> pl.DataFrame:
    """The result as a frame, converted one Arrow batch at a time: each batch's Arrow copy is freed
    once converted, so the read holds the frame and one batch rather than the frame twice."""
    reader = cur.fetch_record_batch()
    frames = []
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame)
    if not frames:
        empty = pl.from_arrow(reader.schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        return empty
    return pl.concat(frames, rechunk=False)


def _with_positions(
    cur: Cursor, ref: SourceRef, table: str, keyless: str, frame: pl.DataFrame
) -> pl.DataFrame:
    """SOURCE_ROW: the 0-based rank in `ctid` order of the rows without a key, null for the others."""
    held = frame.get_column(_CTID)
    if held.null_count() == held.len():
        return frame.drop(_CTID).with_columns(pl.lit(None, pl.Int64).alias(SOURCE_ROW))
    query = (
        f"SELECT c AS {_CTID}, p AS {quoted(SOURCE_ROW)} FROM (SELECT ctid::text AS c, ({keyless}) AS k, "  # noqa: S608
        f"row_number() OVER (ORDER BY ctid) - 1 AS p FROM {table_name(ref, table)}) s WHERE k"
    )
    cur.execute(query)
    ranks = fetched(cur).with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))
    return frame.join(ranks, on=_CTID, how="left", maintain_order="left").drop(_CTID)


def column(cur: Cursor, ref: SourceRef, table: str, name: str) -> pl.Series | None:
    """One column of a table as text, every row (None: the table or column does not exist)."""
    kinds = columns(cur, ref, table)
    if name not in kinds:
        return None
    cur.execute(f"SELECT {quoted(name)}::text AS v FROM {table_name(ref, table)}")  # noqa: S608
    return fetched(cur).get_column("v").cast(pl.String).alias(name)


def key_batches(ref: SourceRef, table: str, key: str) -> Iterator[pl.Series]:
    """Column `key` of `table` as text, in the table's physical order (a plain sequential scan: not
    parallel, not joined to another scan midway), one Arrow batch at a time, in a read-only snapshot.
    For the checks that stream sorted ids (`table_wide.in_order`, which verifies the order and gives
    up on the first batch out of it): a table loaded in key order comes back in key order. Nothing
    when the table has no such column."""
    with cursor(ref) as cur:
        kinds = columns(cur, ref, table)
        if key not in kinds:
            return
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute("SET LOCAL synchronize_seqscans = off")
        cur.execute(f"SELECT {as_text(key, kinds)} AS id FROM {table_name(ref, table)}")  # noqa: S608
        reader = cur.fetch_record_batch()
        try:
            for batch in reader:
                yield pl.Series("id", batch.column(0)).cast(pl.String)
        finally:
            reader.close()


def row_count(cur: Cursor, ref: SourceRef) -> int:
    """Rows in the five tables: the planner's estimate, counted for a table never analysed."""
    present = tables(cur, ref)
    total = 0
    for spec in TABLES:
        if spec.name not in present:
            continue
        cur.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", [table_name(ref, spec.name)]
        )
        estimate = int(cur.fetchall()[0][0])
        if estimate < 0:
            cur.execute(f"SELECT count(*) FROM {table_name(ref, spec.name)}")  # noqa: S608
            estimate = int(cur.fetchall()[0][0])
        total += estimate
    return total


def _storable(frame: pl.DataFrame) -> pa.Table:
    """Lists of structs (time windows) as JSON text: Postgres arrays hold no records."""
    structs = [
        n for n, t in frame.schema.items() if isinstance(t, pl.List) and isinstance(t.inner, pl.Struct)
    ]
    if structs:
        from pipelines.io.conform import text_frame

        frame = frame.with_columns(text_frame(frame.select(structs)))
    return frame.to_arrow()


def write_tables(ref: SourceRef, chunks: Iterable[dict[str, pl.DataFrame]]) -> None:
    """The five tables, replaced in one transaction (ADBC bulk ingest, chunk by chunk)."""
    try:
        with pg.connect(ref.conninfo) as con, con.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(ref.schema)}")
            for i, frames in enumerate(chunks):
                for spec in TABLES:
                    mode = "replace" if i == 0 else "append"
                    cur.adbc_ingest(
                        spec.name, _storable(frames[spec.name]), mode=mode, db_schema_name=ref.schema
                    )
            con.commit()
    except adbc_driver_manager.Error as exc:
        raise error(ref, exc, "writing the tables", during_run=False) from None
