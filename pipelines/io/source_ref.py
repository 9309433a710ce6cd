"""Where the source tables live (CONTRACT.md §5), as one small value parsed once from `--source`:

    data/warehouse.duckdb, /srv/book/            a local DuckDB file or folder (relative: against the home)
    s3://bucket/prefix/                          Parquet on any S3-compatible store
    postgresql://user@host:port/db[?schema=S]    one table per source table

A `SourceRef` is plain and picklable: a Dask worker receives it and reads its own partition.
Secrets never come from here: S3 credentials from the standard AWS variables, the Postgres password
from PGPASSWORD or ~/.pgpass (libpq). A password written into the URI is used but never shown:
`str()` and every message give the URI with it masked.

`RowFilter` is the part of a source a partition reads (a range of borrower keys) or a check reads
(a few keys), pushed into the read of every kind (DuckDB's scan, the Parquet reader, the Postgres
query).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import polars as pl

from pipelines.model.errors import ErrorItem, InvalidInputError

SourceKind = Literal["duckdb", "folder", "s3", "postgres"]
_REMOTE: Final = {"s3": "s3", "postgresql": "postgres", "postgres": "postgres"}

# The column naming the borrower a row belongs to, per table (partitions split rows by it).
BORROWER_KEYS: Final = {
    "borrowers": "id",
    "contacts": "personId",
    "interactions": "personId",
    "do_not_interact": "personId",
    "consents": "personId",
}


def redact(uri: str) -> str:
    """`uri` with the password of its user part (if any) masked."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True)
class SourceRef:
    """A source: a local path (absolute) or an `s3://` / `postgresql://` URI."""

    uri: str = field(repr=False)

    @staticmethod
    def parse(text: SourceRef | str | os.PathLike[str], root: Path | None = None) -> SourceRef:
        """A `--source` value; a relative local path resolves against `root` (the home)."""
        if isinstance(text, SourceRef):
            return text
        value = os.fspath(text)
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme in _REMOTE:
            return SourceRef._remote(value, scheme)
        if scheme and scheme != "file":
            raise InvalidInputError(
                "arguments",
                [ErrorItem("--source", f"{redact(value)}: unknown kind of source ({scheme}://)")],
                message=f"source {redact(value)}: give a path, s3://bucket/prefix/ or "
                "postgresql://user@host:port/db",
            )
        path = Path(value.removeprefix("file://")).expanduser()
        if not path.is_absolute():
            path = (root or Path.cwd()) / path
        return SourceRef(str(path))

    @staticmethod
    def _remote(value: str, scheme: str) -> SourceRef:
        parts = urlsplit(value)
        where = "bucket" if scheme == "s3" else "host"
        if not parts.hostname:
            raise InvalidInputError(
                "arguments",
                [ErrorItem("--source", f"{redact(value)} names no {where}")],
                message=f"source {redact(value)} names no {where}",
            )
        if scheme == "s3" and not parts.path.endswith("/"):
            parts = parts._replace(path=parts.path + "/")  # a prefix is a folder
        return SourceRef(urlunsplit(parts._replace(scheme="postgresql" if scheme == "postgres" else scheme)))

    @staticmethod
    def local(path: Path) -> SourceRef:
        return SourceRef(str(Path(path).absolute()))

    @property
    def kind(self) -> SourceKind:
        """s3, postgres, or (a local path) folder when it is a folder, else duckdb."""
        scheme = self.uri.partition("://")[0] if "://" in self.uri else ""
        if scheme in _REMOTE:
            return "s3" if scheme == "s3" else "postgres"
        return "folder" if Path(self.uri).is_dir() else "duckdb"

    @property
    def is_local(self) -> bool:
        return self.kind in ("duckdb", "folder")

    @property
    def path(self) -> Path:
        """The local file or folder (a remote source has none: asking is invalid input, exit 2)."""
        if not self.is_local:
            raise InvalidInputError(
                "arguments",
                [ErrorItem("--source", f"{self} is not a local file or folder")],
                message=f"source {self}: this reads local sources only (a DuckDB file or a folder)",
            )
        return Path(self.uri)

    @property
    def name(self) -> str:
        """A short name for file names and labels (the last part of the path or prefix, or the database)."""
        parts = urlsplit(self.uri) if not self.is_local else None
        tail = Path(self.uri).name if parts is None else parts.path.rstrip("/").rpartition("/")[2]
        return tail or (parts.hostname or "source" if parts else "source")

    # ---------------------------------------------------------------- S3

    @property
    def bucket(self) -> str:
        return urlsplit(self.uri).hostname or ""

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, ending with `/` (empty: the bucket's top)."""
        return urlsplit(self.uri).path.lstrip("/")

    # ---------------------------------------------------------------- Postgres

    @property
    def schema(self) -> str:
        """The Postgres schema holding the tables (`?schema=`, default public)."""
        return dict(parse_qsl(urlsplit(self.uri).query)).get("schema", "public")

    @property
    def conninfo(self) -> str:
        """The URI libpq connects with (without the `schema` parameter, which libpq does not know)."""
        parts = urlsplit(self.uri)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def password(self) -> str | None:
        return urlsplit(self.uri).password

    def __str__(self) -> str:
        return redact(self.uri)

    def __fspath__(self) -> str:
        """A local source is a path (`Path(ref)`); a remote one has none (exit 2, see `path`)."""
        return str(self.path)


@dataclass(frozen=True)
class RowFilter:
    """Only the rows whose borrower key (`BORROWER_KEYS`, as text) is in [`low`, `high`) (None: no
    bound), plus the rows without one when `nulls`. Applied inside the read: a range on the key is
    a filter DuckDB, the Parquet reader and Postgres push into the scan (and skip what is outside).
    Keys compare as UTF-8 bytes (Postgres: `COLLATE "C"`), the order of the partition cuts.

    `among` (see `of`): only the rows whose key is one of these values, within the range; `on`
    names the column compared instead of the table's borrower key (a check reads the rows sharing
    an id: `on="id"`). Equality needs no collation, so Postgres can use an index on the column."""

    low: str | None = None
    high: str | None = None
    nulls: bool = False
    among: tuple[str, ...] | None = None
    on: str | None = None

    @staticmethod
    def of(values: Iterable[str], on: str | None = None, nulls: bool = False) -> RowFilter:
        """The rows whose key (or column `on`) is one of `values` (sorted, without repeats), and
        those without one when `nulls`."""
        return RowFilter(nulls=nulls, among=tuple(sorted(set(values))), on=on)

    def column(self, table: str) -> str:
        """The column of `table` this filter compares."""
        return self.on or BORROWER_KEYS[table]

    def expr(self, column: str) -> pl.Expr:
        key = pl.col(column).cast(pl.String)
        keep = pl.lit(True)
        if self.low is not None:
            keep = keep & (key >= self.low)
        if self.high is not None:
            keep = keep & (key < self.high)
        if self.among is not None:
            keep = keep & key.is_in(pl.Series(self.among, dtype=pl.String()).implode())
        return (keep | key.is_null()) if self.nulls else keep.fill_null(False)

    def sql(self, column: str, placeholder: str = "?") -> tuple[str, list[str | list[str]]]:
        """The same filter as SQL over a text `column` expression, with its parameters
        (`placeholder` `?`, or `$` for numbered `$1`, `$2`). `among` is one parameter, a text array
        (`= ANY`), however many keys it holds: Postgres takes at most 65,535 parameters a query, and
        a check of many contacts of borrowers with long histories asks for more ids than that."""
        terms: list[str] = []
        params: list[str | list[str]] = []

        def mark(value: str | list[str]) -> str:
            params.append(value)
            return f"${len(params)}" if placeholder == "$" else "?"

        for op, bound in ((">=", self.low), ("<", self.high)):
            if bound is not None:
                terms.append(f"{column} {op} {mark(bound)}")
        if self.among is not None:
            # the same plan as an IN list (Postgres uses an index on the column; DuckDB skips blocks)
            terms.append(f"{column} = ANY({mark(list(self.among))}::TEXT[])" if self.among else "FALSE")
        keep = " AND ".join(terms) or "TRUE"
        where = f"({keep}) OR {column} IS NULL" if self.nulls else f"{column} IS NOT NULL AND {keep}"
        return where, params
