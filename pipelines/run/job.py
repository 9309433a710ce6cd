"""One export run as plain steps: plan → build → record → deliver (DESIGN.md data flow).

Each step takes and returns small records (ids, paths, counts), so an orchestrator can run them as
separate tasks; `run_export` chains them for callers without one (benchmarks, tests).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from filelock import FileLock, Timeout
from pydantic import SecretStr

from pipelines.delivery.delivery_journal import crash_point
from pipelines.io import files, population, sources, warehouse
from pipelines.io.store import ExporterStore
from pipelines.model.config import Company, Exporter, Home, SftpSetting
from pipelines.model.errors import ConflictError, ContactExporterError, WarehouseBusyError
from pipelines.model.progress import Progress
from pipelines.model.request import DEFAULT_MEMORY_BUDGET, RunRequest
from pipelines.model.tables import TABLES, TABLES_BY_NAME, SourceTables
from pipelines.rules import columns, compliance, eligibility, guards, history, matching, rejection, schemas
from pipelines.rules.borrower_keys import BORROWER_KEY
from pipelines.rules.table_wide import TableWide
from pipelines.run import partitions as parts

log = logging.getLogger(__name__)


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RunPlan:
    """Validated configuration of one run; made before any data is read."""

    home: Home
    exporter: Exporter
    company: Company
    sftp: SftpSetting | None
    as_of: date
    as_of_instant: datetime
    source: sources.SourceRef
    warehouse: Path
    population_file: Path | None = None
    campaign_id: str | None = None  # a campaign run: its own file, lock, ledger entry and warehouse rows

    @property
    def exporter_id(self) -> str:
        return self.exporter.id

    @property
    def folder(self) -> Path:
        """This run's export folder (a campaign run's is inside the date's, under campaigns/<id>)."""
        return files.export_dir(self.exports, self.exporter_id, self.as_of, self.campaign_id)

    @property
    def label(self) -> str:
        """`CE-X 2026-06-15` (+ ` campaign <id>`): how logs, locks and Prefect name this run."""
        base = f"{self.exporter_id} {self.as_of.isoformat()}"
        return f"{base} campaign {self.campaign_id}" if self.campaign_id else base

    @property
    def exports(self) -> Path:
        """Where this run's files go: they live with the warehouse that records them."""
        return exports_for(self.home, self.warehouse)


def exports_for(home: Home, warehouse_path: Path) -> Path:
    """`data/exports` for the home's warehouse; `<name>.exports/` beside any other warehouse file, so
    a run against another warehouse never replaces a file the home's warehouse records."""
    if warehouse_path == home.warehouse:
        return home.exports
    return warehouse_path.with_name(warehouse_path.name.removesuffix(".duckdb") + ".exports")


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


def new_run_id() -> str:
    return "RUN-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4).upper()


def today_in(company: Company) -> date:
    return datetime.now(ZoneInfo(company.timezone)).date()


def plan_request(request: RunRequest) -> RunPlan:
    """The plan of a run request (configuration read and checked; nothing read from the source)."""
    return plan_run(
        request.resolved_home(),
        request.exporter_id,
        request.as_of,
        source=request.source,
        warehouse_path=request.path(request.warehouse),
        population_file=request.path(request.population_file),
        campaign_id=request.campaign_id,
    )


def plan_run(
    home: Home,
    exporter_id: str,
    as_of: date | None = None,
    *,
    source: sources.Source | None = None,
    warehouse_path: Path | None = None,
    population_file: Path | None = None,
    campaign_id: str | None = None,
) -> RunPlan:
    exporter = ExporterStore(home).get(exporter_id)
    company = home.company(exporter.companyId)
    sftp = home.sftp(exporter.sftpSettingId) if exporter.sftpSettingId else None
    day = as_of or today_in(company)
    return RunPlan(
        home=home,
        exporter=exporter,
        company=company,
        sftp=sftp,
        as_of=day,
        as_of_instant=compliance.as_of_instant(company, day),
        source=sources.SourceRef.parse(source or home.warehouse, home.root),
        warehouse=home.path(warehouse_path) if warehouse_path else home.warehouse,
        population_file=home.path(population_file) if population_file else None,
        campaign_id=campaign_id,
    )


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


def _timed(timings: dict[str, float], stage: str, started: float) -> float:
    now = time.perf_counter()
    timings[stage] = round(now - started, 4)
    return now


@dataclass(frozen=True)
class Decided:
    """What the per-run steps decide, before anything is written: the rows of the file (sorted by
    contact id, `keys` their contact ids), one screening row per matched contact, the rejected rows."""

    out: pl.DataFrame
    keys: pl.Series
    screening: pl.DataFrame
    rejected: pl.DataFrame
    population: int
    timings: dict[str, float]
    blocked_borrowers: int = 0  # matched borrowers with a rejected source row (SOURCE_ROW_REJECTED)
    matched_borrowers: int = 0


def decide(
    plan: RunPlan,
    progress: Progress = _quiet,
    *,
    rows: sources.RowFilter | None = None,
    population_ids: pl.DataFrame | None = None,
    report_unowned: bool = True,
    table_wide: TableWide | None = None,
) -> Decided:
    """Read, validate, select, screen and project: the body of a run, and of each of its partitions.

    `rows` reads only some borrowers' rows of the source; `population_ids` replaces reading the
    plan's population file (a partition gets its share of it). Rejected rows that name no borrower
    block every matched contact here; `report_unowned` says whether they are listed in `rejected`
    (every partition reads them, the first one reports them). `table_wide` carries the answers of
    the rules that span the whole source (`pipelines.rules.table_wide`); a read of some rows needs it.
    """
    if rows is not None and table_wide is None:
        raise ValueError("a partition's read needs the table-wide checks of the whole source")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress(f"reading and validating source {plan.source}")
    tables, rejected, owned = _validated(plan, rows, table_wide, report_unowned, timings)
    t = _timed(timings, "validate", t)
    timings["validate"] = round(timings["validate"] - timings["read"], 4)  # the read is its own stage

    population_count, matched = _matched(plan, tables, population_ids)
    t = _timed(timings, "match", t)
    progress(f"population {population_count} borrowers, {matched.height} matching contacts")

    # Fail closed per borrower; the share of borrowers blocked that way is checked over the whole
    # run (`check_rejected_share`), since a partition sees only its own borrowers.
    blocked_borrowers, matched_borrowers = rejection.blocked_share(
        matched.get_column("personId"), owned, matched.get_column(BORROWER_KEY)
    )
    screening = _screened(plan, matched, tables, owned, progress)
    t = _timed(timings, "screen", t)

    # screen keeps the order of a matched frame sorted by id: the rows line up one for one.
    guards.check_screening(screening, matched)
    settings = plan.exporter.columnSettings
    # Only the columns the projection reads go through the filter: the others would be copied for
    # nothing.
    exported = matched.select(columns.contact_columns(settings, matched.columns)).filter(
        screening.get_column("canInteract")
    )
    del matched
    out = columns.project(exported.lazy(), tables.borrowers, settings).collect()
    guards.check_export(out, exported.get_column("id"), screening, settings)
    _timed(timings, "project", t)
    keys = exported.get_column("id")
    return Decided(
        out, keys, screening, rejected, population_count, timings, blocked_borrowers, matched_borrowers
    )


def _validated(
    plan: RunPlan,
    rows: sources.RowFilter | None,
    table_wide: TableWide | None,
    report_unowned: bool,
    timings: dict[str, float],
) -> tuple[SourceTables, pl.DataFrame, pl.DataFrame]:
    """The source read and validated, narrowed to what the run reads, as of the instant; the
    rejected rows to report, and every rejected row with its borrower (for the fail-closed rule)."""
    t = time.perf_counter()
    raw = sources.open_source(plan.source, rows, skip=unread_columns(plan.exporter))
    _timed(timings, "read", t)
    checked = schemas.validate_sources(raw, source=str(plan.source), table_wide=table_wide)
    rejected, owned = checked.rejected, checked.owned
    if not report_unowned:
        rejected = owned.filter(pl.col("personId").is_not_null()).select(rejected.columns)
    # Contacts as they were at the instant (created later: absent; archived later: active).
    contacts_then = history.contacts_at(checked.tables.contacts, plan.as_of_instant)
    # Keep only the columns and interactions this run reads; the rest (and the unvalidated frames,
    # freed when this returns) is what keeps the peak within the budget with per-column reading.
    tables = narrowed(replace(checked.tables, contacts=contacts_then), columns_needed(plan.exporter))
    if plan.exporter.checkCanInteractData is not None:
        # No name may keep the unfiltered plan (and with it every interaction) alive.
        window = compliance.interactions_in_window(tables.interactions, plan.company, plan.as_of)
        tables = replace(tables, interactions=window.collect().lazy())
    return tables, rejected, owned


def _matched(
    plan: RunPlan, tables: SourceTables, population_ids: pl.DataFrame | None
) -> tuple[int, pl.DataFrame]:
    """(the population's size, the matching contacts sorted by id)."""
    company, exporter = plan.company, plan.exporter
    if plan.population_file is not None:
        given = population_ids if population_ids is not None else sources.read_ids(plan.population_file)
        pop = population.restrict_to_company(given.lazy(), tables.borrowers, company.id)
    else:
        pop = matching.company_population(tables.borrowers, company.id)
    pop_df = pop.collect()
    # Borrower ids are unique and every validated contact has its borrower: when the population is
    # the whole table (a source of one company), filtering contacts by it would change nothing.
    everyone = pop_df.height == tables.borrowers.select(pl.len()).collect().item()
    found = matching.match_contacts(
        tables.contacts, None if everyone else pop_df.lazy(), exporter.contactMatchingCriteria
    )
    matched = columns.sorted_by(found.collect(), "id")
    guards.check_matched(matched, exporter.contactMatchingCriteria)
    return pop_df.height, matched


def _screened(
    plan: RunPlan, matched: pl.DataFrame, tables: SourceTables, owned: pl.DataFrame, progress: Progress
) -> pl.DataFrame:
    """A screening row per matched contact (unscreened exporters: every one allowed)."""
    check, company = plan.exporter.checkCanInteractData, plan.company
    if check is None:
        return compliance.unscreened(matched.lazy()).collect()
    progress(f"screening at {files.iso_utc(plan.as_of_instant)} (noon {company.timezone})")
    screening = compliance.screen(
        matched.lazy(), tables, company, check, plan.as_of, rejected=owned
    ).collect()
    return eligibility.next_eligible(screening, matched.lazy(), tables, company, check, plan.as_of)


def check_rejected_share(
    plan: RunPlan, blocked: int, matched: int, rejected: Callable[[], pl.DataFrame]
) -> None:
    """Too many matched borrowers blocked for SOURCE_ROW_REJECTED is a broken feed: fail the run (exit 2)
    with its rejected rows, before any file is written."""
    share = plan.company.policy.maxRejectedShare
    if matched and blocked / matched > share:
        raise rejection.broken_feed_error(str(plan.source), rejected(), blocked, matched, share)


def export_target(plan: RunPlan) -> Path:
    """Where the run's file goes: its name from the template and the as-of date (never the clock)."""
    settings, company = plan.exporter.fileSettings, plan.company.id
    return plan.folder / files.file_name(settings, plan.exporter_id, plan.as_of, company, plan.campaign_id)


def manifest_fields(plan: RunPlan, run_id: str) -> dict[str, Any]:
    """What the manifest says about the run besides the file itself."""
    return {
        "run_id": run_id,
        "exporter_id": plan.exporter_id,
        "as_of": plan.as_of,
        "as_of_instant": plan.as_of_instant,
    }


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


# ---------------------------------------------------------------- partitioned runs


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
    return parts.split(plan.source, population_ids, count, staging_dir(plan, run_id) / "split")


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


def build_part(plan: RunPlan, run_id: str, part: parts.Part, progress: Progress = _quiet) -> parts.PartResult:
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
    _timed(decided.timings, "write" if part.count == 1 else "stage", t)
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
    progress: Progress = _quiet,
) -> Built:
    """Write the final file as a k-way merge of the sorted parts; add up the parts' counts."""
    results = sorted(results, key=lambda r: r.part.index)
    timings: dict[str, float] = {}
    for result in results:
        for stage, seconds in result.timings.items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 4)
    check_rejected_share(
        plan,
        sum(r.blocked_borrowers for r in results),
        sum(r.matched_borrowers for r in results),
        lambda: parts.rejected_rows([r.rejected_file for r in results]),
    )
    t = time.perf_counter()
    whole = results[0].file if len(results) == 1 else None
    written = whole if whole is not None else _merged_file(plan, run_id, results)
    by_reason: dict[str, int] = {}
    for result in results:
        for reason, n in result.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    _timed(timings, "merge", t)
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
        by_reason=dict(sorted(by_reason.items())),
        rejected=sum(r.rejected for r in results),
        started_at=started_at,
        timings=timings,
    )


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
    progress: Progress = _quiet,
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


def columns_needed(exporter: Exporter) -> dict[str, set[str]]:
    """Per source table, the columns a run of `exporter` reads (matching, screening, projection), and
    the borrower keys validation adds to borrowers and contacts."""
    needed: dict[str, set[str]] = {
        "borrowers": {"id", "companyId", BORROWER_KEY},
        "contacts": {
            "id",
            "personId",
            BORROWER_KEY,
            "contactType",
            *exporter.contactMatchingCriteria.as_dict(),
        },
    }
    if exporter.checkCanInteractData is not None:
        for table, names in compliance.SOURCE_COLUMNS.items():
            needed.setdefault(table, set()).update(names)
    for setting in exporter.columnSettings:
        table, name = (
            ("borrowers", setting.field[len(columns.BORROWER_PREFIX) :])
            if setting.field.startswith(columns.BORROWER_PREFIX)
            else ("contacts", setting.field)
        )
        needed[table].add(name)
    return needed


def unread_columns(exporter: Exporter) -> dict[str, set[str]]:
    """Per source table, the columns a run of `exporter` neither uses nor checks: not read at all
    (at 1M borrowers, 7 of 42 columns and a fifth of the reading time)."""
    needed = columns_needed(exporter)
    return {
        spec.name: set(schemas.unchecked_columns(spec) - needed[spec.name])
        for spec in TABLES
        if spec.name in needed
    }


def narrowed(tables: SourceTables, keep: dict[str, set[str]]) -> SourceTables:
    """The tables with only the columns in `keep` (in their own order); tables not in `keep` whole."""

    def narrow(name: str) -> pl.LazyFrame:
        frame = tables.get(name)
        if name not in keep:
            return frame
        names = [c for c in frame.collect_schema().names() if c in keep[name]]
        return frame.select(names).collect().lazy()

    return SourceTables(**{name: narrow(name) for name in TABLES_BY_NAME})


def reason_counts(screening: pl.DataFrame) -> dict[str, int]:
    counts = screening.select(pl.col("reasons").explode().drop_nulls().value_counts(sort=False)).unnest(
        "reasons"
    )
    return {str(r): int(n) for r, n in sorted(counts.iter_rows())}


def record(built: Built) -> None:
    """Replace the warehouse rows of (exporter, as-of date) with this run's, then drop the staging."""
    t = time.perf_counter()
    plan = built.plan
    screening: pl.DataFrame | Any
    # the parts' rows, scanned by the insert rather than loaded
    screening = parts.screening_dataset(sorted(built.staging.glob("screening-*.arrow")))
    rejected = parts.rejected_rows(sorted(built.staging.glob("rejected-*.arrow")))
    warehouse.record_success(
        plan.warehouse,
        warehouse.RunRecord(
            runId=built.run_id,
            exporterId=plan.exporter_id,
            companyId=plan.company.id,
            asOfDate=plan.as_of,
            asOfInstant=plan.as_of_instant,
            status="succeeded",
            population=built.population,
            matched=built.matched,
            screenedOut=built.screened_out,
            exported=built.exported,
            filePath=str(built.file.path),
            sha256=built.file.sha256,
            startedAt=built.started_at,
            finishedAt=datetime.now(UTC),
            campaignId=plan.campaign_id,
        ),
        screening,
        rejected,
    )
    shutil.rmtree(built.staging, ignore_errors=True)
    built.timings["warehouse"] = round(time.perf_counter() - t, 4)
    log.info(
        "recorded run %s of %s in %s: %d screening rows, %d rejected rows",
        built.run_id,
        plan.label,
        plan.warehouse,
        built.matched,
        built.rejected,
    )


def record_failure(plan: RunPlan, run_id: str, started_at: datetime, error: BaseException) -> None:
    """Record a failed run without touching earlier successful rows; never raises over the original error."""
    if isinstance(error, WarehouseBusyError):
        return  # the warehouse is held by another process: nothing can be recorded in it now
    rejected = getattr(error, "rejected", None)  # the invalid source rows that failed the run, if any
    if not isinstance(rejected, pl.DataFrame):
        rejected = None
    try:
        warehouse.record_failure(
            plan.warehouse,
            warehouse.RunRecord(
                runId=run_id,
                exporterId=plan.exporter_id,
                companyId=plan.company.id,
                asOfDate=plan.as_of,
                asOfInstant=plan.as_of_instant,
                status="failed",
                population=None,
                matched=None,
                screenedOut=None,
                exported=None,
                filePath=None,
                sha256=None,
                startedAt=started_at,
                finishedAt=datetime.now(UTC),
                error=str(error)[:2000],
                campaignId=plan.campaign_id,
            ),
            rejected,
        )
    except Exception:  # the run already failed; its own error is what the user needs to see
        log.exception("could not record the failed run %s", run_id)


@contextmanager
def failure_recorded(plan: RunPlan, run_id: str) -> Iterator[None]:
    """Around build and record: a failure is recorded as a failed run, then raised as it was."""
    started_at = datetime.now(UTC)
    try:
        yield
    except Exception as exc:
        record_failure(plan, run_id, started_at, exc)
        raise


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    detail: str
    delivered_at: datetime | None = None
    status: str = "skipped"  # delivered | already_delivered | skipped | failed


def deliver(
    built: Built, *, enabled: bool = True, redeliver: bool = False, password: SecretStr | None = None
) -> Delivery:
    """Send the file and its manifest to the exporter's SFTP destination (if any).

    The run's row gets deliveryStatus (and deliveryError when it failed); deliveredAt keeps the
    time these bytes were last delivered, so a skipped or repeated delivery never erases it.
    """
    from pipelines.delivery import uploads as delivery  # paramiko is only loaded when something is delivered

    plan = built.plan
    if plan.sftp is None:
        return _not_sent(built, "skipped", "no sftpSettingId: file kept local")
    if not enabled:
        return _not_sent(built, "skipped", "delivery disabled (--no-deliver)")
    try:
        result = delivery.deliver(
            plan.sftp,
            plan.home,
            built.file.path,
            built.file.manifest_path,
            exporter_id=plan.exporter_id,
            as_of=plan.as_of,
            sha256=built.file.sha256,
            warehouse=plan.warehouse,
            redeliver=redeliver,
            password=password,
            run_id=built.run_id,
        )
    except ContactExporterError as exc:
        _not_sent(built, "failed", str(exc), error=str(exc)[:2000])
        raise
    if result.delivered and result.delivered_at is not None:
        _record_status(built, "delivered", result.delivered_at)
        return Delivery(
            True, f"delivered to {plan.sftp.host}:{result.remote_path}", result.delivered_at, "delivered"
        )
    _record_status(built, "already_delivered", result.delivered_at)
    return Delivery(False, result.skipped_reason or "not delivered", result.delivered_at, "already_delivered")


def _record_status(
    built: Built, status: str, delivered_at: datetime | None, error: str | None = None
) -> None:
    """The run's deliveryStatus in the warehouse, and its SFTP setting on its delivery rows."""
    plan = built.plan
    warehouse.record_delivery_status(
        plan.warehouse,
        built.run_id,
        status,
        delivered_at=delivered_at,
        error=error,
        sftp_setting_id=plan.exporter.sftpSettingId,
    )


def _not_sent(built: Built, status: str, detail: str, error: str | None = None) -> Delivery:
    """Record a delivery that did not happen; deliveredAt keeps an earlier delivery of these bytes."""
    plan = built.plan
    earlier: datetime | None = None
    try:
        from pipelines.delivery import uploads as delivery

        earlier = delivery.last_delivery(
            plan.warehouse, plan.exporter_id, plan.as_of, built.file.sha256, built.file.path.name
        )
        _record_status(built, status, earlier, error)
    except Exception:  # never mask the delivery error (or a finished export) with a bookkeeping one
        log.exception("could not record delivery status %s for run %s", status, built.run_id)
    return Delivery(False, detail, earlier, status)


def summary(built: Built, sent: Delivery) -> dict[str, Any]:
    """The run summary of CONTRACT.md §4 (JSON on stdout)."""
    plan = built.plan
    return {
        "runId": built.run_id,
        "exporterId": plan.exporter_id,
        "companyId": plan.company.id,
        "asOfDate": plan.as_of.isoformat(),
        "asOfInstant": files.iso_utc(plan.as_of_instant),
        "counts": {
            "population": built.population,
            "matched": built.matched,
            "screenedOut": built.screened_out,
            "exported": built.exported,
            "byReason": built.by_reason,
            "rejected": built.rejected,
        },
        "file": str(built.file.path),
        "delivered": sent.delivered,
        "deliveryStatus": sent.status,
        "delivery": sent.detail,
    }


def run_export(
    plan: RunPlan,
    *,
    deliver_enabled: bool = True,
    redeliver: bool = False,
    password: SecretStr | None = None,
    progress: Progress = _quiet,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, Any]:
    """The whole run without an orchestrator."""
    run_id = new_run_id()
    with run_lock(plan):
        with failure_recorded(plan, run_id):
            built = build_partitioned(plan, run_id, partitions, memory_budget, progress)
            record(built)
        sent = deliver(built, enabled=deliver_enabled, redeliver=redeliver, password=password)
    return summary(built, sent)
