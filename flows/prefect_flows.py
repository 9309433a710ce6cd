"""Prefect flows: they only wire library steps together, add retries where the network is involved,
and publish a run summary artifact. Tasks pass plans, paths and counts, never frames or connections.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task
from pydantic import SecretStr

from flows.crashed import mark_crashed_runs
from pipelines import job, population, sources
from pipelines.config import Home
from pipelines.errors import TransientError
from pipelines.store import ExporterStore

DELIVERY_RETRY_DELAYS: list[float] = [10.0, 30.0, 90.0]


def retry_only_transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry network and lock timeouts; a terminal error (bad config, host key, auth) fails at once."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


def _home(home: str | None) -> Home:
    return Home.resolve(home)


@task(name="plan run", cache_policy=NO_CACHE)
def plan_task(
    home: str | None,
    exporter_id: str,
    as_of: date | None,
    source: str | None,
    warehouse: str | None,
    population_file: str | None,
) -> job.RunPlan:
    return job.plan_run(
        _home(home),
        exporter_id,
        as_of,
        source=Path(source) if source else None,
        warehouse_path=Path(warehouse) if warehouse else None,
        population_file=Path(population_file) if population_file else None,
    )


@task(name="build export", cache_policy=NO_CACHE)
def build_task(plan: job.RunPlan, run_id: str) -> job.Built:
    logger = get_run_logger()
    return job.build(plan, run_id, progress=logger.info)


@task(
    name="record in warehouse",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=5,
    retry_condition_fn=retry_only_transient,
)
def record_task(built: job.Built) -> None:
    job.record(built)


@task(
    name="deliver",
    cache_policy=NO_CACHE,
    retries=len(DELIVERY_RETRY_DELAYS),
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=retry_only_transient,
)
def deliver_task(built: job.Built, enabled: bool, redeliver: bool) -> job.Delivery:
    password = None
    sftp = built.plan.sftp
    if enabled and sftp is not None and sftp.passwordSecretBlock:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(sftp.passwordSecretBlock)
        password = SecretStr(str(block.get()))  # masked from the moment it is resolved
    return job.deliver(built, enabled=enabled, redeliver=redeliver, password=password)


def artifact_markdown(result: dict[str, Any], sha256: str) -> str:
    counts = result["counts"]
    lines = [
        f"## Contact export {result['exporterId']} as of {result['asOfDate']}",
        "",
        f"Run `{result['runId']}` judged at `{result['asOfInstant']}` (noon, company {result['companyId']}).",
        "",
        "| population | matched | screened out | exported | rejected rows |",
        "|---:|---:|---:|---:|---:|",
        f"| {counts['population']} | {counts['matched']} | {counts['screenedOut']} | {counts['exported']} | {counts['rejected']} |",
        "",
        "| reason | contacts |",
        "|---|---:|",
        *[f"| {code} | {n} |" for code, n in counts["byReason"].items()],
        "",
        f"File: `{Path(result['file']).name}` sha256 `{sha256}`",
        f"Delivery: {'delivered' if result['delivered'] else 'not delivered'} ({result['delivery']})",
    ]
    return "\n".join(lines)


@flow(name="export-contacts", log_prints=False)
def export_contacts(
    exporter_id: str,
    as_of: date | None = None,
    home: str | None = None,
    source: str | None = None,
    warehouse: str | None = None,
    population_file: str | None = None,
    deliver: bool = True,
    redeliver: bool = False,
) -> dict[str, Any]:
    """Run one exporter for one as-of date: plan → build → record → deliver, plus a summary artifact."""
    logger = get_run_logger()
    plan = plan_task(home, exporter_id, as_of, source, warehouse, population_file)
    run_id = job.new_run_id()
    with job.run_lock(plan):
        mark_crashed_runs(plan.exporter_id, plan.as_of, home)
        with job.failure_recorded(plan, run_id):
            built = build_task(plan, run_id)
            record_task(built)
        sent = deliver_task(built, deliver, redeliver)
    result = job.summary(built, sent)
    create_markdown_artifact(
        key=f"contact-export-{plan.exporter_id.lower()}",
        markdown=artifact_markdown(result, built.file.sha256),
        description=f"{plan.exporter_id} as of {plan.as_of}",
    )
    logger.info(
        "run %s: %s matched, %s exported, %s screened out, delivered=%s",
        run_id,
        built.matched,
        built.exported,
        built.screened_out,
        sent.delivered,
    )
    return result


@task(name="campaign population", cache_policy=NO_CACHE)
def campaign_population_task(home: str | None, campaign_id: str) -> tuple[str, str, str | None]:
    """Run the campaign query; returns (exporter id, path of the id file, source)."""
    h = _home(home)
    campaign = h.campaign(campaign_id)
    ExporterStore(h).get(campaign.exporterId)  # an unknown exporter fails before the query runs
    src = h.path(campaign.source) if campaign.source else h.warehouse
    ids = population.campaign_ids(
        campaign.query,
        sources.open_source(src),
        f"{h.configs / 'campaigns' / campaign_id}.yaml",
        timeout_seconds=campaign.timeoutSeconds,
        memory_limit=campaign.memoryLimit,
    )
    folder = h.root / "data" / "campaigns" / campaign_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "population.parquet"
    ids.write_parquet(path)
    return campaign.exporterId, str(path), str(src) if campaign.source else None


@flow(name="run-campaign")
def run_campaign(
    campaign_id: str, as_of: date | None = None, home: str | None = None, deliver: bool = True
) -> dict[str, Any]:
    """A campaign's query picks the borrowers; its exporter screens, writes and delivers."""
    exporter_id, ids_path, source = campaign_population_task(home, campaign_id)
    result = export_contacts(
        exporter_id, as_of, home=home, source=source, population_file=ids_path, deliver=deliver
    )
    result["campaignId"] = campaign_id
    return result


@task(name="export one date", cache_policy=NO_CACHE)
def export_date_task(
    home: str | None, exporter_id: str, as_of: date, source: str | None, deliver: bool
) -> dict[str, Any]:
    h = _home(home)
    plan = job.plan_run(h, exporter_id, as_of, source=Path(source) if source else None)
    return job.run_export(plan, deliver_enabled=deliver)


@flow(name="backfill", task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def backfill(
    exporter_id: str,
    start: date,
    end: date,
    home: str | None = None,
    source: str | None = None,
    deliver: bool = True,
) -> State[Any]:
    """Run every date from start to end (inclusive), two at a time; a failed date does not stop the others."""
    logger = get_run_logger()
    if end < start:
        from pipelines.errors import ErrorItem, InvalidInputError

        raise InvalidInputError("arguments", [ErrorItem("--end", f"end {end} is before start {start}")])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    futures = {d: export_date_task.submit(home, exporter_id, d, source, deliver) for d in days}
    runs: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for day, future in futures.items():
        try:
            runs.append(future.result())
        except Exception as exc:
            failed[day.isoformat()] = f"{type(exc).__name__}: {exc}"
            logger.error("backfill %s %s failed: %s", exporter_id, day, type(exc).__name__)
    result = {
        "exporterId": exporter_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "runs": runs,
        "failedDates": failed,
    }
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(days)} dates failed: {', '.join(sorted(failed))}", data=result
        )
    return Completed(message=f"{len(days)} dates exported", data=result)


@flow(name="run-company-exporters")
def run_company(company_id: str, home: str | None = None, deliver: bool = True) -> dict[str, Any]:
    """Run every exporter of a company for today (company time zone); used by the daily deployment."""
    from pipelines.store import ExporterStore

    h = _home(home)
    company = h.company(company_id)
    today = job.today_in(company)
    store = ExporterStore(h)
    exporter_ids = [e.id for e in store.all() if e.companyId == company_id]
    results = []
    failed = []
    for exporter_id in exporter_ids:
        try:
            results.append(export_contacts(exporter_id, today, home=home, deliver=deliver))
        except Exception:
            failed.append(exporter_id)
    if failed:
        raise RuntimeError(f"exporters failed for {company_id} on {today}: {', '.join(failed)}")
    return {"companyId": company_id, "asOfDate": today.isoformat(), "runs": results}
