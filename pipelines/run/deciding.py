"""Deciding: the body of a run and of each of its partitions — read, validate, select, screen and
project — with nothing written. The rules themselves live in pipelines/rules/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl

from pipelines.io import files, population, sources
from pipelines.model.config import Exporter
from pipelines.model.progress import Progress, silent
from pipelines.model.tables import TABLES, TABLES_BY_NAME, SourceTables
from pipelines.rules import columns, compliance, eligibility, guards, history, matching, rejection, schemas
from pipelines.rules.borrower_keys import BORROWER_KEY
from pipelines.rules.table_wide import TableWide
from pipelines.run.planning import RunPlan

log = logging.getLogger(__name__)


def timed(timings: dict[str, float], stage: str, started: float) -> float:
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
    progress: Progress = silent,
    *,
    rows: sources.RowFilter | None = None,
    population_ids: pl.DataFrame | None = None,
    report_unowned: bool = True,
    table_wide: TableWide | None = None,
) -> Decided:
    """Read, validate, select, screen and project: the body of a run, and of each of its partitions.

    `rows`: only some borrowers' rows; `population_ids`: the partition's share of the population file.
    Rejected rows naming no borrower block every matched contact; `report_unowned`: whether they are
    listed in `rejected` (the first partition reports them). `table_wide`: the answers of the rules
    spanning the whole source (`pipelines.rules.table_wide`), which a read of some rows needs."""
    if rows is not None and table_wide is None:
        raise ValueError("a partition's read needs the table-wide checks of the whole source")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress(f"reading and validating source {plan.source}")
    tables, rejected, owned = _validated(plan, rows, table_wide, report_unowned, timings)
    t = timed(timings, "validate", t)
    timings["validate"] = round(timings["validate"] - timings["read"], 4)  # the read is its own stage

    population_count, matched = _matched(plan, tables, population_ids)
    t = timed(timings, "match", t)
    progress(f"population {population_count} borrowers, {matched.height} matching contacts")

    # Fail closed per borrower; the share of borrowers blocked that way is checked over the whole
    # run (`check_rejected_share`), since a partition sees only its own borrowers.
    blocked = rejection.blocked_share(matched.get_column("personId"), owned, matched.get_column(BORROWER_KEY))
    screening = _screened(plan, matched, tables, owned, progress)
    t = timed(timings, "screen", t)
    guards.check_screening(screening, matched)  # screen keeps the matched order: rows line up 1:1
    exported = _allowed(plan, matched, screening)
    del matched  # the projection's peak: only the allowed rows' columns are left
    out = columns.project(exported.lazy(), tables.borrowers, plan.exporter.columnSettings).collect()
    guards.check_export(out, exported.get_column("id"), screening, plan.exporter.columnSettings)
    timed(timings, "project", t)
    return Decided(out, exported.get_column("id"), screening, rejected, population_count, timings, *blocked)


def _allowed(plan: RunPlan, matched: pl.DataFrame, screening: pl.DataFrame) -> pl.DataFrame:
    """The allowed contacts, with only the columns the projection reads (the others would be copied
    through the filter for nothing)."""
    settings = plan.exporter.columnSettings
    return matched.select(columns.contact_columns(settings, matched.columns)).filter(
        screening.get_column("canInteract")
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
    shapes = None if table_wide is None else table_wide.csv_shapes
    raw = sources.open_source(plan.source, rows, skip=unread_columns(plan.exporter), csv_shapes=shapes)
    timed(timings, "read", t)
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
