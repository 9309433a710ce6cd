"""Prefect flows: they only wire library steps together, add retries where the network is involved,
and publish a run summary artifact. Tasks pass plans, paths and counts, never frames or connections.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task
from pydantic import SecretStr

from flows import dask_watch
from flows.crashed import mark_crashed_runs
from pipelines.io import population, sources
from pipelines.io.store import ExporterStore
from pipelines.model.config import Home
from pipelines.model.errors import ContactExporterError, TransientError
from pipelines.model.request import DEFAULT_MEMORY_BUDGET, RunRequest
from pipelines.run import job, partitions

# A partition that fails for a reason other than the product's own terminal errors (a worker lost,
# memory or disk trouble, a transient error) is run again, alone; the others are not redone.
PARTITION_RETRIES = 2

DELIVERY_RETRY_DELAYS: list[float] = [10.0, 30.0, 90.0]

P = ParamSpec("P")
R = TypeVar("R")

# Dates of a backfill that run at once (each its own export-contacts subflow, in a thread).
BACKFILL_CONCURRENCY = 2


class _RunLogHandler(logging.Handler):
    """Sends the library's log lines (`pipelines.*`) to the Prefect API as logs of the flow or task run
    they were written in; lines written outside a run (tests, the HTTP API) are left to other handlers."""

    def __init__(self) -> None:
        from prefect.logging.handlers import APILogHandler

        super().__init__(logging.INFO)
        self._api = APILogHandler()

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        self._api.emit(record)


def send_library_logs_to_runs() -> None:
    """Attach `_RunLogHandler` to the `pipelines` logger once, at INFO unless a lower level is set."""
    logger = logging.getLogger("pipelines")
    if not any(isinstance(h, _RunLogHandler) for h in logger.handlers):
        logger.addHandler(_RunLogHandler())
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


send_library_logs_to_runs()


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


def run_tags(exporter_id: str, company_id: str, campaign_id: str | None = None) -> list[str]:
    """`exporter:<id>`, `company:<id>` (and `campaign:<id>`): how runs are found in the Prefect UI."""
    found = [f"exporter:{exporter_id}", f"company:{company_id}"]
    return [*found, f"campaign:{campaign_id}"] if campaign_id else found


def label_flow_run(name: str, run_tags: list[str]) -> None:
    """Name the current flow run and add tags to it (bookkeeping: never fails the run)."""
    from prefect import get_client
    from prefect.runtime import flow_run

    try:
        if not flow_run.id:
            return
        with get_client(sync_client=True) as client:
            known = set(flow_run.tags or [])
            client.update_flow_run(flow_run.id, name=name, tags=sorted(known | set(run_tags)))
    except Exception:
        logging.getLogger(__name__).warning("could not name flow run %s", name, exc_info=True)


def named(stage_task: Task[P, R], plan: job.RunPlan, stage: str) -> Task[P, R]:
    """The task with its run named `<exporterId> <asOfDate> <stage>` (+ campaign)."""
    return stage_task.with_options(task_run_name=f"{plan.label} {stage}")


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
    """`CE-X 2026-06-15 p3/8`: the exporter, the as-of date (campaign) and the partition (1-based) of N."""
    return f"{plan.label} {part.label}"


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
    bounds = dask_watch.Bounds.from_env() if request.dask_address else None
    with job.staging_dropped_on_failure(plan, run_id):
        parts = named(split_task, plan, "split")(request, plan, run_id)
        with partition_runner(request) as runner:
            futures = [
                runner.submit(
                    partition_task.with_options(task_run_name=partition_task_name(plan, part)),
                    parameters={"request": request, "plan": plan, "run_id": run_id, "part": part},
                )
                for part in parts
            ]
            if request.dask_address and bounds is not None:
                # A cluster that loses every worker would leave these waiting for ever (flows/dask_watch.py).
                labels = [part.label for part in parts]
                results = dask_watch.wait_for(futures, labels, plan.label, request.dask_address, bounds)
            else:
                results = [future.result() for future in futures]
        return named(merge_task, plan, "merge")(plan, run_id, results, started_at)


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


def artifact_key(plan: job.RunPlan) -> str:
    """`contact-export-ce-x-2026-06-15` (+ `-campaign-<id>`): Prefect's "latest" is per exporter and
    date. Keys are lowercase letters, digits and dashes."""
    key = f"contact-export-{plan.exporter_id}-{plan.as_of.isoformat()}"
    if plan.campaign_id:
        key += f"-campaign-{plan.campaign_id}"
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", key.lower()))


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
    # The tags go on the flow run only (label_flow_run). A task run with tags first takes a lease
    # on each tag's concurrency limit from the API: at 1M borrowers that cost 4.5 s a run here.
    plan = plan_task.with_options(task_run_name=f"{request.exporter_id} {request.as_of or 'today'} plan")(
        request
    )
    labels = run_tags(plan.exporter_id, plan.company.id, plan.campaign_id)
    label_flow_run(plan.label, labels)
    run_id = job.new_run_id()
    with job.run_lock(plan):
        mark_crashed_runs(plan.exporter_id, plan.as_of, request.home, request.campaign_id)
        with job.failure_recorded(plan, run_id):
            built = build_partitions(request, plan, run_id)
            named(record_task, plan, "record")(built)
        sent = named(deliver_task, plan, "deliver")(built, request.deliver, request.redeliver)
    result = job.summary(built, sent)
    key = artifact_key(plan)
    create_markdown_artifact(
        key=key,
        markdown=artifact_markdown(result, built.file.sha256),
        description=f"{plan.label}",
    )
    create_table_artifact(
        key=f"{key}-reasons",
        table=[{"reason": code, "contacts": n} for code, n in result["counts"]["byReason"].items()]
        or [{"reason": "(none)", "contacts": 0}],
        description=f"{plan.label}: contacts blocked, by reason",
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
def campaign_population_task(
    home: str | None, campaign_id: str, source: str | None = None
) -> tuple[str, str, str | None]:
    """Run the campaign query; returns (exporter id, path of the id file, source)."""
    h = _home(home)
    campaign = h.campaign(campaign_id)
    ExporterStore(h).get(campaign.exporterId)  # an unknown exporter fails before the query runs
    chosen = source or campaign.source
    src = sources.SourceRef.parse(chosen or h.warehouse, h.root)
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
    return campaign.exporterId, str(path), src.uri if chosen else None


@flow(name="run-campaign")
def run_campaign(
    campaign_id: str,
    as_of: date | None = None,
    home: str | None = None,
    deliver: bool = True,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dask_address: str | None = None,
    source: str | None = None,
    warehouse: str | None = None,
) -> dict[str, Any]:
    """A campaign's query picks the borrowers once; its exporter's run splits them by partition.

    The run is the campaign's own: its file, lock, ledger entry and warehouse rows are keyed by
    (exporter, as-of date, campaign), so the exporter's daily run of the same date is never touched."""
    exporter_id, ids_path, chosen = campaign_population_task.with_options(
        task_run_name=f"campaign {campaign_id} population"
    )(home, campaign_id, source)
    request = RunRequest(
        exporter_id=exporter_id,
        as_of=as_of,
        home=home,
        source=chosen,
        warehouse=warehouse,
        population_file=ids_path,
        deliver=deliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask_address=dask_address,
        campaign_id=campaign_id,
    )
    plan = job.plan_request(request)
    labels = run_tags(plan.exporter_id, plan.company.id, campaign_id)
    label_flow_run(f"campaign {campaign_id} {plan.exporter_id} {plan.as_of.isoformat()}", labels)
    result = export_contacts(request.model_copy(update={"as_of": plan.as_of}))  # it tags its own run
    result["campaignId"] = campaign_id
    return result


def date_outcome(day: date, future: Future[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A date's summary (None when it failed) and its row of the backfill table."""
    try:
        summary = future.result()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return None, {"asOfDate": day.isoformat(), "status": "failed", "exported": None, "error": error}
    row = {
        "asOfDate": day.isoformat(),
        "status": "succeeded",
        "exported": summary["counts"]["exported"],
        "runId": summary["runId"],
        "deliveryStatus": summary.get("deliveryStatus"),
    }
    return summary, row


@flow(name="backfill", flow_run_name="{exporter_id} {start}..{end}")
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
    """Run every date from start to end (inclusive) as its own `export-contacts` subflow (retries,
    delivery, artifacts, Secret blocks, a flow run named `<exporterId> <asOfDate>`), at most
    BACKFILL_CONCURRENCY at a time; a failed date does not stop the others.

    Subflows run in threads of this process, each date with its share of the memory budget."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    logger = get_run_logger()
    if end < start:
        from pipelines.model.errors import ErrorItem, InvalidInputError

        raise InvalidInputError("arguments", [ErrorItem("--end", f"end {end} is before start {start}")])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    workers = min(BACKFILL_CONCURRENCY, len(days))
    first = job.plan_request(RunRequest(exporter_id=exporter_id, as_of=start, home=home, source=source))
    labels = run_tags(exporter_id, first.company.id)
    label_flow_run(f"{exporter_id} {start.isoformat()}..{end.isoformat()}", labels)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
        futures = {
            d: pool.submit(
                contextvars.copy_context().run,  # each thread sees this flow run: dates are subflows
                export_contacts,
                RunRequest(
                    exporter_id=exporter_id,
                    as_of=d,
                    home=home,
                    source=source,
                    deliver=deliver,
                    partitions=partitions,
                    memory_budget=max(memory_budget // workers, 64 << 20),
                ),
            )
            for d in days
        }
    runs: list[dict[str, Any]] = []
    table: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for day, future in futures.items():
        summary, row = date_outcome(day, future)
        table.append(row)
        if summary is None:
            failed[day.isoformat()] = row["error"]
            logger.error("backfill %s %s failed: %s", exporter_id, day, row["error"].split(":")[0])
        else:
            runs.append(summary)
    result = {
        "exporterId": exporter_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "dates": table,
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
    from pipelines.io.store import ExporterStore

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
