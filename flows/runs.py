"""What the CLI calls: each command runs the matching Prefect flow (ephemeral unless PREFECT_API_URL is set)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from flows import settings
from pipelines.config import Home
from pipelines.request import RunRequest


def _flows(home: Home) -> Any:
    settings.apply(home.root)
    from flows import prefect_flows

    return prefect_flows


def _opt(path: Path | None, home: Home) -> str | None:
    return str(home.path(path)) if path else None


def run_exporter(home: Home, request: RunRequest) -> dict[str, Any]:
    # Validate configuration before Prefect starts: a typo costs milliseconds, not a server start.
    from pipelines import job

    request = request.model_copy(update={"home": str(home.root)})
    job.plan_request(request)
    result: dict[str, Any] = _flows(home).export_contacts(request)
    return result


def run_backfill(home: Home, request: RunRequest, start: date, end: date) -> dict[str, Any]:
    from pipelines import job

    job.plan_request(request.model_copy(update={"home": str(home.root), "as_of": start}))
    state = _flows(home).backfill(
        request.exporter_id,
        start,
        end,
        home=str(home.root),
        source=_opt(request.path(request.source), home),
        deliver=request.deliver,
        partitions=request.partitions,
        memory_budget=request.memory_budget,
        return_state=True,
    )
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    result: dict[str, Any] = data
    return result


def run_campaign(home: Home, campaign_id: str, request: RunRequest) -> dict[str, Any]:
    """`request` carries the as-of date and the run options; its exporter is the campaign's."""
    from pipelines.store import ExporterStore

    campaign = home.campaign(campaign_id)
    # Before Prefect starts and before the query runs: an unknown exporter is a config error.
    ExporterStore(home).get(campaign.exporterId)
    result: dict[str, Any] = _flows(home).run_campaign(
        campaign_id,
        request.as_of,
        home=str(home.root),
        deliver=request.deliver,
        partitions=request.partitions,
        memory_budget=request.memory_budget,
        dask_address=request.dask_address,
    )
    return result
