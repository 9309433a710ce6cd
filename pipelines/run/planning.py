"""Planning a run: the exporter, its company and SFTP setting, the as-of date and its noon, and where
the run reads and writes, read from the configs and checked once, before any borrower row is read.

The plan is a value: made once per run (by the CLI before Prefect starts, or by the flow when a
deployment starts it) and handed down to every step, partition and worker.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipelines.io import files, sources
from pipelines.io.store import ExporterStore
from pipelines.model.config import Company, Exporter, Home, SftpSetting
from pipelines.model.request import RunRequest
from pipelines.rules import compliance


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


def new_run_id() -> str:
    return "RUN-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4).upper()


def today_in(company: Company) -> date:
    return datetime.now(ZoneInfo(company.timezone)).date()


def plan_request(request: RunRequest) -> RunPlan:
    """The plan of a run request (configuration read and checked; nothing read from the source).

    A campaign's request reads the campaign's source unless it names one, and its population is
    what the campaign's query writes for that date (`campaign_population_file`)."""
    home = request.resolved_home()
    source = request.source
    if request.campaign_id is not None and source is None:
        source = home.campaign(request.campaign_id).source
    plan = plan_run(
        home,
        request.exporter_id,
        request.as_of,
        source=source,  # a path (against the home) or a URI: SourceRef.parse tells them apart
        warehouse_path=request.path(request.warehouse),
        population_file=request.path(request.population_file),
        campaign_id=request.campaign_id,
    )
    if plan.campaign_id is not None and plan.population_file is None:
        plan = replace(plan, population_file=campaign_population_file(home, plan.campaign_id, plan.as_of))
    return plan


def campaign_population_file(home: Home, campaign_id: str, as_of: date) -> Path:
    """Where a campaign's query writes the borrower ids of one date's run (one file per date, so two
    dates of a campaign running at once never share it)."""
    return home.root / "data" / "campaigns" / campaign_id / as_of.isoformat() / "population.parquet"


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
