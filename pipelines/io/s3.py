"""Parquet source tables on an S3-compatible store: `s3://bucket/prefix/` holds `<table>.parquet`, or a
folder `<table>/` of Parquet parts (read in key order), as a local Parquet folder does.

Reads go through Polars' own object-store reader: a partition's borrower range is a filter on the
scan, so row groups whose min/max fall outside it are skipped (only their footers are fetched), and
only the columns the run reads are fetched. Listing and writing use Arrow's S3 filesystem. Endpoint,
region and credentials come from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), never from a config, never into a message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.io.source_ref import RowFilter, SourceRef
from pipelines.model.errors import ContactExporterError, ErrorItem, SourceDataError, TransientError
from pipelines.model.tables import SOURCE_ROW, TABLES, TableSpec

_UNREACHABLE: Final = ("connect", "timed out", "timeout", "curl", "dns", "broken pipe", "reset by peer")


def scrub(text: str) -> str:
    """`text` without the secret key (a library's message could quote its configuration)."""
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    return text.replace(secret, "***") if secret else text


def storage_options() -> dict[str, str]:
    """Polars' object-store options from the AWS variables (plain HTTP allowed for an http:// endpoint)."""
    env = os.environ
    names = {
        "AWS_ENDPOINT_URL": "aws_endpoint_url",
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
        "AWS_SESSION_TOKEN": "aws_session_token",
        "AWS_REGION": "aws_region",
    }
    options = {option: env[name] for name, option in names.items() if env.get(name)}
    if options.get("aws_endpoint_url", "").startswith("http://"):
        options["aws_allow_http"] = "true"
    return options


def filesystem() -> pafs.S3FileSystem:
    """Arrow's S3 filesystem from the AWS variables."""
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    scheme = "http" if endpoint and endpoint.startswith("http://") else "https"
    return pafs.S3FileSystem(
        access_key=env.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        region=env.get("AWS_REGION") or None,
        endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
        scheme=scheme,
    )


def error(ref: SourceRef, exc: BaseException, doing: str, *, during_run: bool) -> ContactExporterError:
    """The error for a failed S3 request: the store unreachable during a run may pass (transient, exit 1);
    before a run, or a missing bucket or object, or a file that is not Parquet, is invalid input (exit 2)."""
    text = scrub(str(exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__
    lowered = text.lower()
    missing = isinstance(exc, FileNotFoundError) or "not found" in lowered or "nosuch" in lowered
    if during_run and not missing and any(word in lowered for word in _UNREACHABLE):
        return TransientError(f"source {ref}: {doing} failed, the store did not answer ({text})")
    why = "not found (check the bucket and prefix)" if missing else text
    return SourceDataError(
        str(ref),
        [ErrorItem("", f"{doing}: {why}")],
        message=f"source {ref}: {doing} failed: {why}; check AWS_ENDPOINT_URL, the bucket and the "
        "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    )


def list_tables(ref: SourceRef, *, during_run: bool = True) -> dict[str, str]:
    """Per source table found under the prefix, what to scan: `s3://b/p/<table>.parquet` or the
    parts `s3://b/p/<table>/*.parquet`; also the objects' total bytes under key `""`."""
    base = f"{ref.bucket}/{ref.prefix}".rstrip("/")
    try:
        infos = filesystem().get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise error(ref, exc, "listing the prefix", during_run=during_run) from None
    files = {info.path[len(base) + 1 :]: info.size or 0 for info in infos if info.is_file}
    found: dict[str, str] = {"": str(sum(files.values()))}
    for spec in TABLES:
        if f"{spec.name}.parquet" in files:
            found[spec.name] = f"s3://{base}/{spec.name}.parquet"
        elif any(k.startswith(f"{spec.name}/") and k.endswith(".parquet") for k in files):
            found[spec.name] = f"s3://{base}/{spec.name}/*.parquet"
    return found


def missing(ref: SourceRef, found: dict[str, str]) -> list[str]:
    return [spec.name for spec in TABLES if spec.name not in found]


def scan(location: str, row_index: bool = False) -> pl.LazyFrame:
    return pl.scan_parquet(
        location, storage_options=storage_options(), row_index_name=SOURCE_ROW if row_index else None
    )


def read_table(
    ref: SourceRef, spec: TableSpec, location: str, rows: RowFilter | None, skip: frozenset[str]
) -> pl.DataFrame:
    """One table, only the rows `rows` keeps (the filter is in the scan) and without `skip`'s columns;
    with `rows`, each row's position in the whole table in SOURCE_ROW (as the local Parquet reader)."""
    try:
        frame = scan(location, row_index=rows is not None)
        frame = frame.select([c for c in frame.collect_schema().names() if c not in skip])
        if rows is not None and rows.column(spec.name) in frame.collect_schema().names():
            frame = frame.filter(rows.expr(rows.column(spec.name)))
        return frame.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise error(ref, exc, f"reading {spec.name}", during_run=True) from None


def column(ref: SourceRef, location: str, table: str, name: str) -> pl.Series | None:
    """One column of a table as text (None: the table has no such column)."""
    try:
        frame = scan(location)
        if name not in frame.collect_schema().names():
            return None
        return frame.select(pl.col(name).cast(pl.String)).collect().get_column(name)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise error(ref, exc, f"reading {table}.{name}", during_run=True) from None


def key_batches(ref: SourceRef, location: str, table: str, key: str) -> Iterator[pl.Series]:
    """Column `key` of a table (`location` from `list_tables`) as text, one row group at a time, the
    parts of a folder in the order of their names (as a scan takes them): for the checks that
    stream sorted ids. Nothing when the table has no such column."""
    fs = filesystem()
    try:
        for path in _objects(fs, location):
            with fs.open_input_file(path) as handle:
                reader = pq.ParquetFile(handle)
                if key not in reader.schema_arrow.names:
                    return
                for group in range(reader.num_row_groups):
                    column = reader.read_row_group(group, columns=[key]).column(0)
                    yield pl.Series(key, column).cast(pl.String)
    except (OSError, pa.ArrowException) as exc:
        raise error(ref, exc, f"reading {table}.{key}", during_run=True) from None


def _objects(fs: pafs.S3FileSystem, location: str) -> list[str]:
    """The objects (`bucket/key`) of a `list_tables` location: one file, or a folder's parts."""
    path = location.removeprefix("s3://")
    if not path.endswith("/*.parquet"):
        return [path]
    folder = path.removesuffix("/*.parquet")
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    return sorted(i.path for i in infos if i.is_file and i.path.endswith(".parquet"))


def row_count(ref: SourceRef) -> int:
    """Rows in the five tables, from the Parquet footers."""
    found = list_tables(ref)
    total = 0
    for spec in TABLES:
        if spec.name in found:
            try:
                total += int(scan(found[spec.name]).select(pl.len()).collect().item())
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise error(ref, exc, f"counting {spec.name}", during_run=True) from None
    return total


def write_tables(ref: SourceRef, chunks: Iterable[dict[str, pl.DataFrame]]) -> None:
    """One `<table>.parquet` per table under the prefix, written chunk by chunk (the same bytes as a
    local Parquet folder): each under a temporary key, moved into place once every table is
    written, so a write that fails leaves the earlier objects as they were."""
    fs = filesystem()
    base = f"{ref.bucket}/{ref.prefix}".rstrip("/")
    temps = {spec.name: f"{base}/.{spec.name}.parquet.{os.getpid()}.tmp" for spec in TABLES}
    writers: dict[str, pq.ParquetWriter] = {}
    streams = {}
    try:
        for frames in chunks:
            for spec in TABLES:
                table = frames[spec.name].to_arrow()
                if spec.name not in writers:
                    streams[spec.name] = fs.open_output_stream(temps[spec.name])
                    writers[spec.name] = pq.ParquetWriter(streams[spec.name], table.schema)
                writers[spec.name].write_table(table)
        for name in list(writers):
            writers.pop(name).close()
            streams.pop(name).close()
        for name, temp in temps.items():
            fs.move(temp, f"{base}/{name}.parquet")
    except OSError as exc:
        raise error(ref, exc, "writing the tables", during_run=False) from None
    finally:
        # an open stream uploads what it holds when it is closed: close it before removing its key
        for stream in streams.values():
            with contextlib.suppress(OSError):
                stream.close()
        for temp in temps.values():
            with contextlib.suppress(OSError):
                fs.delete_file(temp)
