"""Building: the run's file from its partitions — the lock, the staging folder, the split into
borrower ranges, one decided part per range, and the k-way merge into the export file.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from pipelines.delivery.delivery_journal import crash_point
from pipelines.io import files, sources
from pipelines.model.errors import ConflictError
from pipelines.model.progress import Progress, silent
from pipelines.model.request import DEFAULT_MEMORY_BUDGET
from pipelines.rules.table_wide import TableWide
from pipelines.run import partitions as parts
from pipelines.run.deciding import Decided, check_rejected_share, decide, reason_counts, timed, unread_columns
from pipelines.run.planning import RunPlan, export_target, manifest_fields

log = logging.getLogger(__name__)
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Built:
    """What `build` leaves on disk for the next steps: the file, its manifest and staged results."""

    run_id: str
    plan: RunPlan
    file: files.WrittenFile
    staging: Path
    population: int
    matched: int
    exported: int
    by_reason: dict[str, int]
    rejected: int
    started_at: datetime
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def screened_out(self) -> int:
        return self.matched - self.exported


@contextmanager
def run_lock(plan: RunPlan, wait_seconds: float = 0.0) -> Iterator[None]:
    """One run of an (exporter, as-of date[, campaign]) at a time; a second one fails clearly instead of racing."""
    folder = plan.folder
    made = [d for d in (folder, *folder.parents) if not d.exists() and d.is_relative_to(plan.exports)]
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / ".run.lock"), timeout=wait_seconds)
    try:
        lock.acquire()
    except Timeout:
        raise ConflictError(
            f"a run of {plan.label} is already in progress (lock {folder / '.run.lock'})"
        ) from None
    try:
        yield
    finally:
        _remove_if_unused(folder, made, lock)


def _remove_if_unused(folder: Path, made: list[Path], lock: FileLock) -> None:
    """Release the run lock; a failed first run of a date leaves no empty export folders behind."""
    try:
        if not made or any(p.name != ".run.lock" for p in folder.iterdir()):
            return
        Path(lock.lock_file).unlink(missing_ok=True)  # still held: no other run can be inside
        for d in made:  # deepest first
            d.rmdir()
    except OSError:
        return  # another run's files appeared meanwhile: keep the folders
    finally:
        lock.release()


STAGING_OWNER = "owner.json"


# Temporary names files.atomic_write gives (and DuckDB's log beside one): `.<name>.<12 hex>.tmp[.wal]`.
_LOCAL_TEMP = re.compile(r"\..+\.[0-9a-f]{12}\.tmp(\.wal)?")


def clean_leftovers(plan: RunPlan, run_id: str) -> list[Path]:
    """Remove what a crashed earlier run of this (exporter, as-of date) left: temp files, staging.

    Runs under `run_lock`, so no other run of the same (exporter, as-of date) is writing them. The
    delivery record and the files it staged stay: the delivery step completes or drops them.
    """
    removed: list[Path] = []
    folder = plan.folder
    if folder.is_dir():
        for path in folder.iterdir():
            if _LOCAL_TEMP.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    runs = plan.home.root / "data" / "runs"
    if runs.is_dir():
        owner = _staging_owner(plan)
        for staging in runs.iterdir():
            if staging.name == run_id or not (staging / STAGING_OWNER).is_file():
                continue
            try:
                found = json.loads((staging / STAGING_OWNER).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if found == owner:
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
    for path in removed:
        log.info("removed %s left by an interrupted run", path)
    return removed


def staging_dir(plan: RunPlan, run_id: str) -> Path:
    """Where a run keeps what its steps hand on (parts, screening rows) until `record` drops it."""
    return plan.home.root / "data" / "runs" / run_id


def dry_run(plan: RunPlan, partitions: int | str, memory_budget: int, deliver: bool) -> dict[str, Any]:
    """What a run of `plan` would do, read from the configs and the source's size only (nothing is
    written, no borrower row is read): its population, partitions, target file and delivery."""
    sftp = plan.sftp
    if sftp is None or not deliver:
        target = "none: " + ("no sftpSettingId, the file stays local" if sftp is None else "--no-deliver")
    else:
        target = f"sftp://{sftp.username}@{sftp.host}:{sftp.port}{sftp.remoteDir.rstrip('/')}/"
    return {
        "dryRun": True,
        "exporterId": plan.exporter_id,
        "companyId": plan.company.id,
        "campaignId": plan.campaign_id,
        "asOfDate": plan.as_of.isoformat(),
        "asOfInstant": files.iso_utc(plan.as_of_instant),
        "source": str(plan.source),
        "population": str(plan.population_file)
        if plan.population_file
        else f"every borrower of {plan.company.id}",
        "partitions": partition_count(plan, partitions, memory_budget),
        "file": str(export_target(plan)),
        "warehouse": str(plan.warehouse),
        "delivery": target,
    }


def partition_count(plan: RunPlan, partitions: int | str, memory_budget: int) -> int:
    """N for a run: the number asked for, or `auto` from the source's size and the memory budget."""
    if isinstance(partitions, int):
        return partitions
    return parts.auto_partitions(plan.source, memory_budget)


def split(plan: RunPlan, run_id: str, count: int) -> list[parts.Part]:
    """Cut the borrower ids into `count` ranges once (see `pipelines.run.partitions`); the parts to run."""
    clean_leftovers(plan, run_id)
    own_staging(plan, run_id)
    population_ids = sources.read_ids(plan.population_file) if plan.population_file is not None else None
    skip = unread_columns(plan.exporter)
    return parts.split(plan.source, population_ids, count, staging_dir(plan, run_id) / "split", skip)


def own_staging(plan: RunPlan, run_id: str) -> Path:
    """The run's staging folder, marked with whose it is: the next run of the same (exporter, as-of
    date) removes it after a crash."""
    staging = staging_dir(plan, run_id)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / STAGING_OWNER).write_text(json.dumps(_staging_owner(plan)), encoding="utf-8")
    return staging


def _staging_owner(plan: RunPlan) -> dict[str, str]:
    owner = {"exporterId": plan.exporter_id, "asOfDate": plan.as_of.isoformat()}
    if plan.campaign_id:
        owner["campaignId"] = plan.campaign_id
    return owner


def build_part(plan: RunPlan, run_id: str, part: parts.Part, progress: Progress = silent) -> parts.PartResult:
    """One partition: read only its borrowers' rows, decide, and write its sorted part."""
    folder = staging_dir(plan, run_id)
    population_ids = parts.population_of(folder / "split", part) if plan.population_file is not None else None
    decided = decide(
        plan,
        progress,
        rows=part.rows,
        population_ids=population_ids,
        report_unowned=part.reports_unowned,
        table_wide=None if part.rows is None else TableWide.load(folder / "split"),
    )
    t = time.perf_counter()
    written = None
    if part.count == 1:
        written, (rows_file, screening_file, rejected_file) = _write_whole(plan, run_id, part, decided)
    else:
        rows_file, screening_file, rejected_file = parts.write_part(
            folder, part, decided.out, decided.keys, decided.screening, decided.rejected
        )
    # one part is the whole run: its file is written here ("write"); a part of several stages its rows
    timed(decided.timings, "write" if part.count == 1 else "stage", t)
    progress(f"partition {part.label}: {decided.out.height} rows")
    return parts.PartResult(
        part=part,
        rows_file=rows_file,
        screening_file=screening_file,
        rejected_file=rejected_file,
        population=decided.population,
        matched=decided.screening.height,
        exported=decided.out.height,
        by_reason=reason_counts(decided.screening),
        rejected=decided.rejected.height,
        blocked_borrowers=decided.blocked_borrowers,
        matched_borrowers=decided.matched_borrowers,
        timings=decided.timings,
        file=written,
    )


def _write_whole(
    plan: RunPlan, run_id: str, part: parts.Part, decided: Decided
) -> tuple[files.WrittenFile, tuple[Path | None, Path, Path]]:
    """A part that is the whole run writes the export file straight from its rows, beside its
    screening rows: there is nothing to merge, and a rows part written to be read back would only
    cost time. The rejected share is checked first, as the merge would, so a broken feed writes no
    file."""
    check_rejected_share(plan, decided.blocked_borrowers, decided.matched_borrowers, lambda: decided.rejected)
    folder = staging_dir(plan, run_id)

    def write_file() -> files.WrittenFile:
        target = export_target(plan)
        return files.write_export(
            decided.out, target, plan.exporter.fileSettings, **manifest_fields(plan, run_id)
        )

    return files.side_by_side(
        write_file,
        lambda: parts.write_part(folder, part, None, decided.keys, decided.screening, decided.rejected),
    )


def merge(
    plan: RunPlan,
    run_id: str,
    results: list[parts.PartResult],
    started_at: datetime,
    progress: Progress = silent,
) -> Built:
    """Write the final file as a k-way merge of the sorted parts; add up the parts' counts."""
    results = sorted(results, key=lambda r: r.part.index)
    timings = _summed([r.timings for r in results], digits=4)
    check_rejected_share(
        plan,
        sum(r.blocked_borrowers for r in results),
        sum(r.matched_borrowers for r in results),
        lambda: parts.rejected_rows([r.rejected_file for r in results]),
    )
    t = time.perf_counter()
    whole = results[0].file if len(results) == 1 else None
    written = whole if whole is not None else _merged_file(plan, run_id, results)
    by_reason = _summed([r.by_reason for r in results])
    timed(timings, "merge", t)
    crash_point("staged")
    progress(f"wrote {written.rows} rows to {written.path} from {len(results)} partition(s)")
    return Built(
        run_id=run_id,
        plan=plan,
        file=written,
        staging=staging_dir(plan, run_id),
        population=sum(r.population for r in results),
        matched=sum(r.matched for r in results),
        exported=sum(r.exported for r in results),
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),  # largest first
        rejected=sum(r.rejected for r in results),
        started_at=started_at,
        timings=timings,
    )


def _summed(counts: list[dict[str, N]], digits: int | None = None) -> dict[str, N]:
    """Per key, the sum over the parts' counts (seconds rounded to `digits`)."""
    total: dict[str, Any] = {}
    for part in counts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return {k: round(v, digits) for k, v in total.items()} if digits is not None else total


def _merged_file(plan: RunPlan, run_id: str, results: list[parts.PartResult]) -> files.WrittenFile:
    """The export file as a k-way merge of the parts' sorted rows."""
    target = export_target(plan)
    row_files = [r.rows_file for r in results if r.rows_file is not None]
    empty = parts.empty_part(row_files[0])
    rows = files.write_batches(parts.merged_batches(row_files), empty, target, plan.exporter.fileSettings)
    return files.write_manifest(target, rows, empty.columns, **manifest_fields(plan, run_id))


def build_partitioned(
    plan: RunPlan,
    run_id: str,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: Progress = silent,
) -> Built:
    """split → every partition in turn → merge, in this process (an orchestrator runs them as tasks)."""
    started_at = datetime.now(UTC)
    count = partition_count(plan, partitions, memory_budget)
    with staging_dropped_on_failure(plan, run_id):
        results = [build_part(plan, run_id, part, progress) for part in split(plan, run_id, count)]
        return merge(plan, run_id, results, started_at, progress)


@contextmanager
def staging_dropped_on_failure(plan: RunPlan, run_id: str) -> Iterator[None]:
    """A build that fails leaves no parts behind (a successful one's staging goes after `record`)."""
    try:
        yield
    except BaseException:
        shutil.rmtree(staging_dir(plan, run_id), ignore_errors=True)
        raise
