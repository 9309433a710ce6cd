"""`contact-exporter sql`: a read-only query of the warehouse, printed as a table, CSV or JSON.

The query runs once and its result is streamed: the first rows are printed, the rest only counted,
so the count on stderr is the true one however large the result. DuckDB's error messages are passed
on whole (its "Did you mean ...?" hints included).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.io import duck
from pipelines.model.errors import ErrorItem, InvalidInputError

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
TABLE_DEFAULT_LIMIT = 50
_BATCH_ROWS = 10_000


def _plain(value: Any) -> Any:
    """A value as JSON has it: dates and times as ISO-8601 text, decimals as numbers."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    """A CSV cell: null empty, booleans true/false, lists and structs as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    return plain if isinstance(plain, str) else str(plain)


def _query_error(exc: duckdb.Error) -> InvalidInputError:
    """DuckDB's message whole: its hints ("Did you mean ...?") and the position in the query."""
    text = str(exc).strip()
    return InvalidInputError("query", [ErrorItem("", text)], message=text)


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def run_query(
    path: Path, query: str, fmt: Format, limit: int | None, out: TextIO, err: TextIO
) -> tuple[int, int]:
    """Print the result of `query` on `out`; returns (rows in the result, rows printed)."""
    if limit is not None and limit < 0:
        raise InvalidInputError("arguments", [ErrorItem("--limit", "must be 0 or more")])
    if limit is None and fmt == "table":
        limit = TABLE_DEFAULT_LIMIT
    with duck.connect(path, read_only=True) as con:
        try:
            relation = con.sql(query)
            if relation is None:  # a statement without a result
                return 0, 0
            columns = list(relation.columns)
            reader = relation.to_arrow_reader(_BATCH_ROWS)
        except duckdb.Error as exc:
            raise _query_error(exc) from None
        total = 0
        shown: list[pa.RecordBatch] = []
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(columns)
        if fmt == "json":
            out.write("[")
        first = True
        try:
            for batch in _batches(reader):
                room = batch.num_rows if limit is None else max(0, min(batch.num_rows, limit - total))
                total += batch.num_rows
                if room == 0:
                    continue
                part = batch.slice(0, room)
                if fmt == "table":
                    shown.append(part)
                elif writer is not None:
                    for row in part.to_pylist():
                        writer.writerow([_cell(row[c]) for c in part.schema.names])
                else:
                    for row in part.to_pylist():
                        out.write(
                            ("\n  " if first else ",\n  ")
                            + json.dumps({c: _plain(row[c]) for c in part.schema.names}, ensure_ascii=False)
                        )
                        first = False
        except duckdb.Error as exc:  # raised while streaming (e.g. a cast failing on a later row)
            raise _query_error(exc) from None
    printed = min(total, limit) if limit is not None else total
    if fmt == "json":
        out.write("\n]\n" if not first else "]\n")
    elif fmt == "table":
        frame = (
            pl.from_arrow(pa.Table.from_batches(shown)) if shown else pl.DataFrame({c: [] for c in columns})
        )
        assert isinstance(frame, pl.DataFrame)
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            tbl_width_chars=10_000,
            fmt_str_lengths=200,
            fmt_table_cell_list_len=20,
            tbl_hide_dataframe_shape=True,
            tbl_hide_column_data_types=True,
            tbl_hide_dtype_separator=True,
        ):
            out.write(str(frame) + "\n")
    out.flush()
    noun = "row" if total == 1 else "rows"
    if printed < total:
        err.write(f"{total:,} {noun} ({printed:,} shown; --limit N shows more)\n")
    else:
        err.write(f"{total:,} {noun}\n")
    err.flush()
    return total, printed


def main_sql(path: Path, query: str, fmt: str, limit: int | None) -> None:
    if fmt not in FORMATS:
        raise InvalidInputError("arguments", [ErrorItem("--format", f"{fmt!r}: use table, csv or json")])
    run_query(path, query, fmt, limit, sys.stdout, sys.stderr)
