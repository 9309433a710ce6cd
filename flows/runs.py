"""What the CLI calls: each command checks what it can (pipelines/run/preflight.py), then runs the matching
Prefect flow: on PREFECT_API_URL, else the home's local server (flows/localserver.py), else a temporary one."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from flows import settings
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import TerminalError
from pipelines.model.request import RunRequest


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


def _source(value: str | None, home: Home) -> str | None:
    """A --source as the flows take it: a local path made absolute, a URI as given."""
    from pipelines.io.source_ref import SourceRef

    return SourceRef.parse(value, home.root).uri if value else None


def dry_run(home: Home, request: RunRequest, campaign_id: str | None = None) -> dict[str, Any]:
    """The plan of a run, checked as a run would check it, without starting Prefect or writing."""
    from pipelines.run import job, preflight

    request = request.model_copy(update={"home": str(home.root), "campaign_id": campaign_id})
    if campaign_id is not None and request.source is None:
        request = request.model_copy(update={"source": home.campaign(campaign_id).source})
    plan = job.plan_request(request)
    preflight.check_plan(plan, deliver=request.deliver)
    out = job.dry_run(plan, request.partitions, request.memory_budget, request.deliver)
    if campaign_id is not None:
        out["population"] = f"the borrowers campaign {campaign_id}'s query picks when it runs"
    return out


def run_exporter(home: Home, request: RunRequest) -> dict[str, Any]:
    # Validate configuration before Prefect starts: a typo costs milliseconds, not a server start.
    from pipelines.run import job, preflight

    request = request.model_copy(update={"home": str(home.root)})
    preflight.check_plan(job.plan_request(request), deliver=request.deliver)
    result: dict[str, Any] = _flows(home).export_contacts(request)
    return result


def run_backfill(home: Home, request: RunRequest, start: date, end: date) -> dict[str, Any]:
    from pipelines.run import job, preflight

    preflight.check_dates(start, end)
    plan = job.plan_request(request.model_copy(update={"home": str(home.root), "as_of": start}))
    preflight.check_plan(plan, deliver=request.deliver)
    state = _flows(home).backfill(
        request.exporter_id,
        start,
        end,
        home=str(home.root),
        source=_source(request.source, home),
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
    from pipelines.io.store import ExporterStore
    from pipelines.run import job, preflight

    request = request.model_copy(update={"home": str(home.root)})  # relative paths: against the home
    campaign = home.campaign(campaign_id)
    # Before Prefect starts and before the query runs: an unknown exporter is a config error.
    ExporterStore(home).get(campaign.exporterId)
    given = _source(request.source, home)
    source = given or (home.path(campaign.source) if campaign.source else None)
    plan = job.plan_run(
        home,
        campaign.exporterId,
        request.as_of,
        source=source,
        warehouse_path=request.path(request.warehouse),
        campaign_id=campaign_id,
    )
    preflight.check_plan(plan, deliver=request.deliver)
    result: dict[str, Any] = _flows(home).run_campaign(
        campaign_id,
        request.as_of,
        home=str(home.root),
        deliver=request.deliver,
        partitions=request.partitions,
        memory_budget=request.memory_budget,
        dask_address=request.dask_address,
        source=given,
        warehouse=_opt(request.path(request.warehouse), home),
    )
    return result


def secret_password(home: Home, setting: SftpSetting) -> SecretStr | None:
    """The password of a `passwordSecretBlock` SFTP setting, read from its Prefect Secret block."""
    if not setting.passwordSecretBlock:
        return None
    _flows(home)  # Prefect's settings (server, home) before Prefect is imported
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(setting.passwordSecretBlock)
    except ValueError as exc:  # no such block on this Prefect server
        raise TerminalError(
            f"Prefect Secret block {setting.passwordSecretBlock!r} (sftp passwordSecretBlock) cannot be "
            f"loaded ({exc}); create it (prefect block create secret) on the server this home uses"
        ) from None
    return SecretStr(str(block.get()))  # masked from the moment it is resolved
