"""What the CLI calls: each command plans and checks its run once (pipelines/run/preflight.py
`planned`), before any orchestrator starts, then hands the plan to the matching Prefect flow: on
PREFECT_API_URL, else the home's local server (flows/localserver.py), else a temporary one."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import SecretStr

from flows import settings
from pipelines.model.config import Home, SftpSetting
from pipelines.model.request import RunRequest


def _flows(home: Home) -> Any:
    import sys

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    settings.connect(home.root, say=say)
    from flows import logs, prefect_flows

    logs.apply()  # Prefect configures logging on import: our format and filters again
    return prefect_flows


def _planned(home: Home, request: RunRequest) -> tuple[RunRequest, Any]:
    """The request with its home, and its plan, made and checked once (before Prefect starts)."""
    from pipelines.run import preflight

    request = request.model_copy(update={"home": str(home.root)})  # relative paths: against the home
    return request, preflight.planned(request)


def dry_run(home: Home, request: RunRequest) -> dict[str, Any]:
    """The plan of a run, checked as a run would check it, without starting Prefect or writing."""
    from pipelines.run import building

    request, plan = _planned(home, request)
    out = building.dry_run(plan, request.partitions, request.memory_budget, request.deliver)
    if plan.campaign_id is not None:
        from pipelines.io import population

        out["population"] = f"the borrowers campaign {plan.campaign_id}'s query picks when it runs"
        named = population.query_columns(home.campaign(plan.campaign_id).query)
        out["campaignReads"] = (
            "every column of the five tables (the query may read a column it does not name)"
            if named is None
            else {table: sorted(columns) for table, columns in named.items()}
        )
    return out


def backfill_days(start: date, end: date) -> list[date]:
    from pipelines.run import preflight

    return preflight.backfill_dates(start, end)


def dry_run_backfill(home: Home, request: RunRequest, start: date, end: date) -> dict[str, Any]:
    days = backfill_days(start, end)
    return {"dryRun": True, "dates": [dry_run(home, request.model_copy(update={"as_of": d})) for d in days]}


def run_exporter(home: Home, request: RunRequest) -> dict[str, Any]:
    request, plan = _planned(home, request)
    result: dict[str, Any] = _flows(home).export_contacts(**request.flow_parameters(), plan=plan)
    return result


def run_backfill(home: Home, request: RunRequest, start: date, end: date) -> dict[str, Any]:
    """Every date planned and checked before Prefect starts; the flow runs them from those plans."""
    days = backfill_days(start, end)
    plans = [_planned(home, request.model_copy(update={"as_of": d}))[1] for d in days]
    options = request.flow_parameters()
    for name in ("as_of", "campaign_id", "exporter_id"):
        options.pop(name)
    options["home"] = str(home.root)
    state = _flows(home).backfill(request.exporter_id, start, end, **options, plans=plans, return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    result: dict[str, Any] = data
    return result


def run_campaign(home: Home, request: RunRequest) -> dict[str, Any]:
    """`request` names the campaign (`campaign_id`) and its exporter, the as-of date and the options."""
    request, plan = _planned(home, request)
    options = request.flow_parameters()
    for name in ("exporter_id", "campaign_id", "redeliver", "population_file"):
        options.pop(name)
    result: dict[str, Any] = _flows(home).run_campaign(request.campaign_id, **options, plan=plan)
    return result


def secret_password(home: Home, setting: SftpSetting) -> SecretStr | None:
    """The password of a `passwordSecretBlock` SFTP setting, from this home's Prefect server."""
    if not setting.passwordSecretBlock:
        return None
    _flows(home)  # Prefect's settings (server, home) before Prefect is imported
    from flows import secret_blocks

    return secret_blocks.sftp_password(setting)
