"""Prefect flows: they only wire library steps together, add retries where the network is involved,
and publish a run summary artifact. Tasks pass plans, paths and counts, never frames or connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
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
from pipelines import job, partitions, population, sources
from pipelines.config import Home
from pipelines.errors import ContactExporterError, TransientError
from pipelines.request import DEFAULT_MEMORY_BUDGET, RunRequest
from pipelines.store import ExporterStore

# A partition that fails for a reason other than the product's own terminal errors (a worker lost,
# memory or disk trouble, a transient error) is run again, alone; the others are not redone.
PARTITION_RETRIES = 2

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


def retry_partition(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry a partition unless it failed with a terminal product error (bad data, bad config)."""
    try:
        state.result()
    except TransientError:
        return True
    except ContactExporterError:
        return False
    except Exception:
        return True
    return False


@task(name="plan run", cache_policy=NO_CACHE)
def plan_task(request: RunRequest) -> job.RunPlan:
    return job.plan_request(request)


@task(name="split into partitions", cache_policy=NO_CACHE)
def split_task(request: RunRequest, plan: job.RunPlan, run_id: str) -> list[partitions.Part]:
    count = job.partition_count(plan, request.partitions, request.memory_budget)
    get_run_logger().info("%s %s: %d partition(s)", plan.exporter_id, plan.as_of, count)
    return job.split(plan, run_id, count)


@task(
    name="build partition",
    cache_policy=NO_CACHE,
    retries=PARTITION_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=retry_partition,
)
def partition_task(
    request: RunRequest, plan: job.RunPlan, run_id: str, part: partitions.Part
) -> partitions.PartResult:
    """One partition of a run: its borrowers' rows read, screened and written as a sorted part."""
    logger = get_run_logger()
    return job.build_part(plan, run_id, part, progress=logger.info)


@task(name="merge partitions", cache_policy=NO_CACHE)
def merge_task(
    plan: job.RunPlan, run_id: str, results: list[partitions.PartResult], started_at: datetime
) -> job.Built:
    return job.merge(plan, run_id, results, started_at, progress=get_run_logger().info)


def partition_task_name(plan: job.RunPlan, part: partitions.Part) -> str:
    """`CE-X 2026-06-15 p3/8`: the exporter, the as-of date and the partition (1-based) of N."""
    return f"{plan.exporter_id} {plan.as_of.isoformat()} {part.label}"


@contextmanager
def partition_runner(request: RunRequest) -> Iterator[Any]:
    """Where partition tasks run: on the Dask cluster at `request.dask_address`, else here, one at a
    time (each partition is sized to the memory budget, so two at once would need twice that)."""
    if request.dask_address:
        from prefect_dask.task_runners import DaskTaskRunner

        runner: Any = DaskTaskRunner(address=request.dask_address)
    else:
        runner = ThreadPoolTaskRunner(max_workers=1)
    with runner:
        yield runner


def build_partitions(request: RunRequest, plan: job.RunPlan, run_id: str) -> job.Built:
    """split → one task per partition (retried alone) → merge."""
    started_at = datetime.now(UTC)
    with job.staging_dropped_on_failure(plan, run_id):
        parts = split_task(request, plan, run_id)
        with partition_runner(request) as runner:
            futures = [
                runner.submit(
                    partition_task.with_options(task_run_name=partition_task_name(plan, part)),
                    parameters={"request": request, "plan": plan, "run_id": run_id, "part": part},
                )
                for part in parts
            ]
            results = [future.result() for future in futures]
        return merge_task(plan, run_id, results, started_at)


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
def export_contacts(request: RunRequest) -> dict[str, Any]:
    """Run one exporter for one as-of date: plan → split → partitions → merge → record → deliver,
    plus a summary artifact."""
    logger = get_run_logger()
    plan = plan_task(request)
    run_id = job.new_run_id()
    with job.run_lock(plan):
        mark_crashed_runs(plan.exporter_id, plan.as_of, request.home, request.campaign_id)
        with job.failure_recorded(plan, run_id):
            built = build_partitions(request, plan, run_id)
            record_task(built)
        sent = deliver_task(built, request.deliver, request.redeliver)
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
    campaign_id: str,
    as_of: date | None = None,
    home: str | None = None,
    deliver: bool = True,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """A campaign's query picks the borrowers once; its exporter's run splits them by partition."""
    exporter_id, ids_path, source = campaign_population_task(home, campaign_id)
    request = RunRequest(
        exporter_id=exporter_id,
        as_of=as_of,
        home=home,
        source=source,
        population_file=ids_path,
        deliver=deliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask_address=dask_address,
        campaign_id=campaign_id,
    )
    result = export_contacts(request)
    result["campaignId"] = campaign_id
    return result


@task(name="export one date", cache_policy=NO_CACHE)
def export_date_task(request: RunRequest) -> dict[str, Any]:
    # Two dates run at a time: each gets half the memory budget when choosing its partitions.
    return job.run_export(
        job.plan_request(request),
        deliver_enabled=request.deliver,
        redeliver=request.redeliver,
        partitions=request.partitions,
        memory_budget=request.memory_budget // 2,
    )


@flow(name="backfill", task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def backfill(
    exporter_id: str,
    start: date,
    end: date,
    home: str | None = None,
    source: str | None = None,
    deliver: bool = True,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> State[Any]:
    """Run every date from start to end (inclusive), two at a time; a failed date does not stop the others.

    Each date runs in borrower partitions in this process (half the memory budget each)."""
    logger = get_run_logger()
    if end < start:
        from pipelines.errors import ErrorItem, InvalidInputError

        raise InvalidInputError("arguments", [ErrorItem("--end", f"end {end} is before start {start}")])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    futures = {
        d: export_date_task.submit(
            RunRequest(
                exporter_id=exporter_id,
                as_of=d,
                home=home,
                source=source,
                deliver=deliver,
                partitions=partitions,
                memory_budget=memory_budget,
            )
        )
        for d in days
    }
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
            results.append(
                export_contacts(RunRequest(exporter_id=exporter_id, as_of=today, home=home, deliver=deliver))
            )
        except Exception:
            failed.append(exporter_id)
    if failed:
        raise RuntimeError(f"exporters failed for {company_id} on {today}: {', '.join(failed)}")
    return {"companyId": company_id, "asOfDate": today.isoformat(), "runs": results}
