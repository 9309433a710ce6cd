"""What the CLI calls: each command checks what it can (pipelines/preflight.py), then runs the matching
Prefect flow: on PREFECT_API_URL, else the home's local server (flows/localserver.py), else a temporary one."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from flows import settings
from pipelines.config import Home


def _flows(home: Home) -> Any:
    import os
    import sys

    settings.apply(home.root)
    if not os.environ.get("PREFECT_API_URL"):
        sys.stderr.write(
            "no Prefect server: starting a temporary one for this command (about 20 s); "
            "`contact-exporter server start` keeps one running for this home\n"
        )
    from flows import failures, prefect_flows

    failures.quiet_handlers()  # Prefect configures logging on import: keep tracebacks for --debug
    return prefect_flows


def _opt(path: Path | None, home: Home) -> str | None:
    return str(home.path(path)) if path else None


def run_exporter(
    home: Home,
    exporter_id: str,
    as_of: date | None,
    *,
    source: Path | None = None,
    warehouse: Path | None = None,
    population: Path | None = None,
    deliver: bool = True,
    redeliver: bool = False,
) -> dict[str, Any]:
    # Validate configuration before Prefect starts: a typo costs milliseconds, not a server start.
    from pipelines import job, preflight

    plan = job.plan_run(
        home, exporter_id, as_of, source=source, warehouse_path=warehouse, population_file=population
    )
    preflight.check_plan(plan, deliver=deliver)
    result: dict[str, Any] = _flows(home).export_contacts(
        exporter_id,
        as_of,
        home=str(home.root),
        source=_opt(source, home),
        warehouse=_opt(warehouse, home),
        population_file=_opt(population, home),
        deliver=deliver,
        redeliver=redeliver,
    )
    return result


def run_backfill(
    home: Home, exporter_id: str, start: date, end: date, *, source: Path | None = None, deliver: bool = True
) -> dict[str, Any]:
    from pipelines import job, preflight

    preflight.check_dates(start, end)
    preflight.check_plan(job.plan_run(home, exporter_id, start, source=source), deliver=deliver)
    state = _flows(home).backfill(
        exporter_id,
        start,
        end,
        home=str(home.root),
        source=_opt(source, home),
        deliver=deliver,
        return_state=True,
    )
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    result: dict[str, Any] = data
    return result


def run_campaign(home: Home, campaign_id: str, as_of: date | None, *, deliver: bool = True) -> dict[str, Any]:
    from pipelines import job, preflight
    from pipelines.store import ExporterStore

    campaign = home.campaign(campaign_id)
    # Before Prefect starts and before the query runs: an unknown exporter is a config error.
    ExporterStore(home).get(campaign.exporterId)
    source = home.path(campaign.source) if campaign.source else None
    preflight.check_plan(job.plan_run(home, campaign.exporterId, as_of, source=source), deliver=deliver)
    result: dict[str, Any] = _flows(home).run_campaign(
        campaign_id, as_of, home=str(home.root), deliver=deliver
    )
    return result
