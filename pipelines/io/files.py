"""Export files and manifests: deterministic bytes, written to a temp name then renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, TypeVar

import polars as pl
import pyarrow.parquet as pq

from pipelines.model.file_names import PLAIN_NUMBER, FileSettings, render_file_name

T = TypeVar("T")
U = TypeVar("U")


# Rows per Parquet row group of an export file (and per batch of a merge of parts).
ROW_GROUP_ROWS: Final = 65_536


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    manifest_path: Path
    sha256: str
    bytes: int
    rows: int
    columns: list[str]


def export_dir(exports_root: Path, exporter_id: str, as_of: date, campaign_id: str | None = None) -> Path:
    """`<exporterId>/<asOfDate>/` for the daily run; a campaign run's files go to
    `<exporterId>/<asOfDate>/campaigns/<campaignId>/`, never beside the daily file."""
    folder = exports_root / exporter_id / as_of.isoformat()
    return folder / "campaigns" / campaign_id if campaign_id else folder


def file_name(
    settings: FileSettings, exporter_id: str, as_of: date, company_id: str, campaign_id: str | None = None
) -> str:
    if campaign_id:
        return render_file_name(settings.campaign_template(), exporter_id, as_of, company_id, campaign_id)
    return render_file_name(settings.template, exporter_id, as_of, company_id)


def sha256_of(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def side_by_side(here: Callable[[], T], beside: Callable[[], U]) -> tuple[T, U]:
    """`here()` in this thread while `beside()` runs in another, for writers that release the GIL;
    both results. Whichever raises, the other has finished before the error comes out, so a caller
    that then drops what they wrote does not race a writer still at work."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(beside)
        return here(), other.result()


def atomic_write(target: Path, write: Callable[[Path], None], *, mode: int = 0o644) -> None:
    """Call `write(tmp)` on a temp path beside `target`, fsync it, then rename it over `target`.

    A crash at any point leaves either the old file or the new one under `target`, never a partial
    one. The temp name is dot-prefixed (readers of a folder skip it) and does not exist beforehand.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):  # .wal: a DuckDB file's log
            leftover.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _writer(frame: pl.DataFrame, settings: FileSettings) -> Callable[[Path], None]:
    guarded = spreadsheet_safe(frame, settings)

    def write_csv(tmp: Path) -> None:
        guarded.write_csv(
            tmp,
            separator=settings.delimiter,
            include_header=settings.header,
            line_terminator="\n",
            null_value="",
            quote_style="necessary",
        )

    return write_csv


def spreadsheet_safe(frame: pl.DataFrame, settings: FileSettings) -> pl.DataFrame:
    """The cells a CSV file gets: formulas neutralised unless the exporter turned the guard off."""
    return neutralise_formulas(frame) if settings.csvInjectionGuard else frame


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix with `'` every text cell a spreadsheet would run as a formula (OWASP CSV injection).

    Cells starting with `=`, `@`, tab or carriage return, and cells starting with `+` or `-` that are
    not a plain number (`+14155550123` and `-12.5` stay as they are). One vectorized expression per
    text column; other columns cannot start with those characters.
    """
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text or frame.height == 0:
        return frame
    # Cheap passes first (one anchored character class, then the full test on the columns it
    # flags); only columns that hold such a cell are rewritten.
    starts = frame.select(pl.col(name).str.contains(ANY_START).any() for name in text).row(0)
    text = [name for name, hit in zip(text, starts, strict=True) if hit]
    if not text:
        return frame
    hits = frame.select(_formula_like(pl.col(name)).any() for name in text).row(0)
    exprs = [
        pl.when(_formula_like(pl.col(name)))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name, hit in zip(text, hits, strict=True)
        if hit
    ]
    return frame.with_columns(exprs) if exprs else frame


ANY_START = "^[=@\t\r+-]"


def _formula_like(cell: pl.Expr) -> pl.Expr:
    # Starts with one of = @ tab CR + - and is not a plain number (which never starts with = @ tab CR).
    return cell.str.contains(ANY_START) & ~cell.str.contains(PLAIN_NUMBER)


def write_export(
    frame: pl.DataFrame,
    target: Path,
    settings: FileSettings,
    *,
    run_id: str,
    exporter_id: str,
    as_of: date,
    as_of_instant: datetime,
) -> WrittenFile:
    """Write the export file, then its manifest `<file>.manifest.json`, each atomically."""
    if settings.format == "parquet":
        # In row groups as a merge of parts writes them, so a file's bytes never depend on N.
        write_batches(frame.iter_slices(ROW_GROUP_ROWS), frame.clear(), target, settings)
    else:
        atomic_write(target, _writer(frame, settings))
    return write_manifest(
        target,
        frame.height,
        frame.columns,
        run_id=run_id,
        exporter_id=exporter_id,
        as_of=as_of,
        as_of_instant=as_of_instant,
    )


def write_batches(
    batches: Iterable[pl.DataFrame], empty: pl.DataFrame, target: Path, settings: FileSettings
) -> int:
    """Write the export file from batches in order (each batch held in memory alone), atomically.

    CSV: the batches' text one after the other (the header once), byte for byte what one frame
    gives, formulas neutralised the same way (the guard is cell by cell). Parquet: one row group per
    batch, so the same batches give the same bytes. `empty` (the frame's schema, no rows) is what is
    written when there are no batches. Returns the rows.
    """
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        if settings.format == "parquet":
            rows = _write_parquet_batches(batches, empty, tmp)
        else:
            rows = _write_csv_batches(batches, empty, tmp, settings)

    atomic_write(target, write)
    return rows


def _write_parquet_batches(batches: Iterable[pl.DataFrame], empty: pl.DataFrame, tmp: Path) -> int:
    """One row group per batch; `empty` when there are none. Returns the rows."""
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            table = batch.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd", write_statistics=False)
            writer.write_table(table, row_group_size=max(batch.height, 1))
            rows += batch.height
        if writer is None:
            empty.write_parquet(tmp, compression="zstd", statistics=False)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_csv_batches(
    batches: Iterable[pl.DataFrame], empty: pl.DataFrame, tmp: Path, settings: FileSettings
) -> int:
    """The batches' text one after the other, the header once; `empty` when there are none."""
    rows = 0
    with tmp.open("wb") as fh:
        first = True
        for batch in batches:
            spreadsheet_safe(batch, settings).write_csv(
                fh,
                separator=settings.delimiter,
                include_header=settings.header and first,
                line_terminator="\n",
                null_value="",
                quote_style="necessary",
            )
            first = False
            rows += batch.height
        if first:
            _writer(empty, settings)(tmp)
    return rows


def write_manifest(
    target: Path,
    rows: int,
    columns: list[str],
    *,
    run_id: str,
    exporter_id: str,
    as_of: date,
    as_of_instant: datetime,
) -> WrittenFile:
    """Write `<file>.manifest.json` beside a written export file, atomically."""
    sha, size = sha256_of(target)
    manifest = {
        "runId": run_id,
        "exporterId": exporter_id,
        "asOfDate": as_of.isoformat(),
        "asOfInstant": iso_utc(as_of_instant),
        "rows": rows,
        "columns": columns,
        "sha256": sha,
        "bytes": size,
    }
    manifest_path = target.with_name(target.name + ".manifest.json")
    text = json.dumps(manifest, indent=2) + "\n"

    def write_text(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(manifest_path, write_text)
    return WrittenFile(target, manifest_path, sha, size, rows, columns)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
