"""Prefect flows: they only wire library steps together, add retries where the network is involved,
and publish a run summary artifact. Tasks pass plans, paths and counts, never frames or connections.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task
from pydantic import WithJsonSchema

from flows import dask_watch, progress, secret_blocks
from flows.crashed import mark_crashed_runs
from pipelines.io import population
from pipelines.io.store import ExporterStore
from pipelines.model.config import Home
from pipelines.model.errors import ContactExporterError, TransientError
from pipelines.model.request import DEFAULT_MEMORY_BUDGET, RunRequest
from pipelines.run import building, partitions, planning, preflight, recording
from pipelines.run.planning import RunPlan

# A partition that fails for a reason other than the product's own terminal errors (a worker lost,
# memory or disk trouble, a transient error) is run again, alone; the others are not redone.
PARTITION_RETRIES = 2

DELIVERY_RETRY_DELAYS: list[float] = [10.0, 30.0, 90.0]

P = ParamSpec("P")
R = TypeVar("R")

# A run's plan as the CLI made and checked it, handed to the flow so that it is not made again; a
# deployment run leaves it empty and the flow plans (and checks) the run itself. Not a form field.
HandedPlan = Annotated[
    RunPlan | None,
    WithJsonSchema({"type": "null", "description": "set by the CLI (planned and checked); leave empty"}),
]
HandedPlans = Annotated[
    list[RunPlan] | None,
    WithJsonSchema({"type": "null", "description": "set by the CLI (one plan per date); leave empty"}),
]

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
def plan_task(request: RunRequest) -> RunPlan:
    """Plan and check a run the CLI did not plan (a deployment, the daily company run)."""
    return preflight.planned(request)


def export_run_name() -> str:
    """The flow run's name when it is created: `<exporterId> <asOfDate>` (+ ` campaign <id>`), from
    the plan the CLI handed down, else from the parameters (a deployment's run without a date: today
    in the company's time zone)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    plan = params.get("plan")
    if isinstance(plan, RunPlan):
        return plan.label
    label = f"{params.get('exporter_id')} {params.get('as_of') or _today(params)}"
    return f"{label} campaign {params['campaign_id']}" if params.get("campaign_id") else label


def campaign_run_name() -> str:
    """`campaign <id> <asOfDate>` when the run is created."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    plan = params.get("plan")
    day = plan.as_of if isinstance(plan, RunPlan) else params.get("as_of") or _today(params)
    return f"campaign {params.get('campaign_id')} {day}"


def _today(params: dict[str, Any]) -> str:
    """Today in the company's time zone, for a name only (a config that cannot be read leaves it to
    the plan step, which reports it)."""
    try:
        home = _home(params.get("home"))
        exporter_id = params.get("exporter_id") or home.campaign(str(params.get("campaign_id"))).exporterId
        company = home.company(ExporterStore(home).get(str(exporter_id)).companyId)
        return planning.today_in(company).isoformat()
    except Exception:
        return "today"


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


def named(stage_task: Task[P, R], plan: RunPlan, stage: str) -> Task[P, R]:
    """The task with its run named `<exporterId> <asOfDate> <stage>` (+ campaign)."""
    return stage_task.with_options(task_run_name=f"{plan.label} {stage}")


@task(name="split into partitions", cache_policy=NO_CACHE)
def split_task(request: RunRequest, plan: RunPlan, run_id: str) -> list[partitions.Part]:
    count = building.partition_count(plan, request.partitions, request.memory_budget)
    get_run_logger().info("%s %s: %d partition(s)", plan.exporter_id, plan.as_of, count)
    return building.split(plan, run_id, count)


@task(
    name="build partition",
    cache_policy=NO_CACHE,
    retries=PARTITION_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=retry_partition,
)
def partition_task(
    request: RunRequest, plan: RunPlan, run_id: str, part: partitions.Part
) -> partitions.PartResult:
    """One partition of a run: its borrowers' rows read, screened and written as a sorted part."""
    logger = get_run_logger()
    return building.build_part(plan, run_id, part, progress=logger.info)


@task(name="merge partitions", cache_policy=NO_CACHE)
def merge_task(
    plan: RunPlan, run_id: str, results: list[partitions.PartResult], started_at: datetime
) -> building.Built:
    return building.merge(plan, run_id, results, started_at, progress=get_run_logger().info)


def partition_task_name(plan: RunPlan, part: partitions.Part) -> str:
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


def build_partitions(request: RunRequest, plan: RunPlan, run_id: str) -> building.Built:
    """split → one task per partition (retried alone) → merge."""
    started_at = datetime.now(UTC)
    bounds = dask_watch.Bounds.from_env() if request.dask_address else None
    with building.staging_dropped_on_failure(plan, run_id):
        parts = named(split_task, plan, "split")(request, plan, run_id)
        with partition_runner(request) as runner, progress.bar(plan.label, len(parts), "partitions") as bar:
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
                results = dask_watch.wait_for(
                    futures, labels, plan.label, request.dask_address, bounds, on_done=bar.advance
                )
            else:
                results = []
                for future in futures:
                    results.append(future.result())
                    bar.advance()
        return named(merge_task, plan, "merge")(plan, run_id, results, started_at)


@task(
    name="record in warehouse",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=5,
    retry_condition_fn=retry_only_transient,
)
def record_task(built: building.Built) -> None:
    recording.record_run(built)


@task(
    name="deliver",
    cache_policy=NO_CACHE,
    retries=len(DELIVERY_RETRY_DELAYS),
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=retry_only_transient,
)
def deliver_task(built: building.Built, enabled: bool, redeliver: bool) -> recording.Delivery:
    sftp = built.plan.sftp
    password = secret_blocks.sftp_password(sftp) if enabled and sftp is not None else None
    return recording.deliver_run(built, enabled=enabled, redeliver=redeliver, password=password)


def artifact_key(plan: RunPlan) -> str:
    """`contact-export-ce-x-2026-06-15` (+ `-campaign-<id>`): Prefect's "latest" is per exporter and
    date. Keys are lowercase letters, digits and dashes."""
    key = f"contact-export-{plan.exporter_id}-{plan.as_of.isoformat()}"
    if plan.campaign_id:
        key += f"-campaign-{plan.campaign_id}"
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", key.lower()))


def run_report(plan: RunPlan, run_id: str) -> str | None:
    """Write the run's HTML report beside its file; its file:// URL, or None when it could not be
    written (bookkeeping: it never fails a run that exported and recorded)."""
    from pipelines.lookup import report

    try:
        return report.write_report(plan.warehouse, run_id).resolve().as_uri()
    except Exception:
        logging.getLogger(__name__).warning("could not write the report of run %s", run_id, exc_info=True)
        return None


def artifact_markdown(result: dict[str, Any], sha256: str, report_url: str | None = None) -> str:
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
    if report_url:
        lines += ["", f"Report (counts, reasons, rejected rows, delivery): [{report_url}]({report_url})"]
    return "\n".join(lines)


@flow(name="export-contacts", flow_run_name=export_run_name, log_prints=False, validate_parameters=False)
def export_contacts(
    exporter_id: str,
    as_of: date | str | None = None,
    deliver: bool = True,
    redeliver: bool = False,
    partitions: int | str = "auto",
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    source: str | None = None,
    warehouse: str | None = None,
    population_file: str | None = None,
    dask_address: str | None = None,
    campaign_id: str | None = None,
    home: str | None = None,
    plan: HandedPlan = None,
) -> dict[str, Any]:
    """Run one exporter for one as-of date: plan → split → partitions → merge → record → deliver,
    plus a summary artifact."""
    logger = get_run_logger()
    # The parameters are checked by the one model of a run's options (a bad value: exit 2 / a
    # failed run naming the option), not by Prefect's signature validation.
    request = RunRequest.from_options(
        exporter_id=exporter_id,
        as_of=as_of,
        deliver=deliver,
        redeliver=redeliver,
        partitions=partitions,
        memory_budget=memory_budget,
        source=source,
        warehouse=warehouse,
        population_file=population_file,
        dask_address=dask_address,
        campaign_id=campaign_id,
        home=home,
    )
    if plan is None:
        plan = plan_task.with_options(task_run_name=f"{export_run_name()} plan")(request)
    # The tags go on the flow run only (label_flow_run). A task run with tags first takes a lease
    # on each tag's concurrency limit from the API, which costs seconds a run.
    labels = run_tags(plan.exporter_id, plan.company.id, plan.campaign_id)
    label_flow_run(plan.label, labels)
    run_id = planning.new_run_id()
    with building.run_lock(plan):
        mark_crashed_runs(plan.exporter_id, plan.as_of, request.home, request.campaign_id)
        with recording.failure_recorded(plan, run_id):
            built = build_partitions(request, plan, run_id)
            named(record_task, plan, "record")(built)
        sent = named(deliver_task, plan, "deliver")(built, request.deliver, request.redeliver)
    result = recording.summary(built, sent)
    key = artifact_key(plan)
    create_markdown_artifact(
        key=key,
        markdown=artifact_markdown(result, built.file.sha256, run_report(plan, run_id)),
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
def campaign_population_task(plan: RunPlan) -> int:
    """Run the campaign's query on the plan's source; write the borrower ids where the plan reads
    its population. Returns how many borrowers the query picked."""
    if plan.campaign_id is None or plan.population_file is None:
        raise ValueError(f"{plan.label} is not a campaign's run")
    campaign = plan.home.campaign(plan.campaign_id)
    config = str(plan.home.campaign_file(plan.campaign_id))
    ids = population.campaign_ids(
        campaign.query,
        population.campaign_tables(campaign.query, plan.source),
        config,
        timeout_seconds=campaign.timeoutSeconds,
        memory_limit=campaign.memoryLimit,
    )
    plan.population_file.parent.mkdir(parents=True, exist_ok=True)
    ids.write_parquet(plan.population_file)
    return ids.height


@flow(name="run-campaign", flow_run_name=campaign_run_name, validate_parameters=False)
def run_campaign(
    campaign_id: str,
    as_of: date | str | None = None,
    home: str | None = None,
    deliver: bool = True,
    partitions: int | str = "auto",
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    dask_address: str | None = None,
    source: str | None = None,
    warehouse: str | None = None,
    plan: HandedPlan = None,
) -> dict[str, Any]:
    """A campaign's query picks the borrowers once; its exporter's run splits them by partition.

    The run is the campaign's own: its file, lock, ledger entry and warehouse rows are keyed by
    (exporter, as-of date, campaign), so the exporter's daily run of the same date is never touched."""
    request = RunRequest.from_options(
        exporter_id=plan.exporter_id if plan else _home(home).campaign(campaign_id).exporterId,
        as_of=as_of,
        home=home,
        source=source,
        warehouse=warehouse,
        deliver=deliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask_address=dask_address,
        campaign_id=campaign_id,
    )
    if plan is None:
        plan = plan_task.with_options(task_run_name=f"campaign {campaign_id} plan")(request)
    labels = run_tags(plan.exporter_id, plan.company.id, campaign_id)
    label_flow_run(f"campaign {campaign_id} {plan.as_of.isoformat()}", labels)
    campaign_population_task.with_options(task_run_name=f"campaign {campaign_id} population")(plan)
    result: dict[str, Any] = export_contacts(**request.flow_parameters(), plan=plan)  # tags its own run
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


@task(name="plan dates", cache_policy=NO_CACHE)
def plan_dates_task(requests: list[RunRequest]) -> list[RunPlan]:
    return [preflight.planned(request) for request in requests]


@flow(name="backfill", flow_run_name="{exporter_id} {start}..{end}", validate_parameters=False)
def backfill(
    exporter_id: str,
    start: date | str,
    end: date | str,
    home: str | None = None,
    source: str | None = None,
    warehouse: str | None = None,
    population_file: str | None = None,
    deliver: bool = True,
    redeliver: bool = False,
    partitions: int | str = "auto",
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    dask_address: str | None = None,
    plans: HandedPlans = None,
) -> State[Any]:
    """Run every date from start to end (inclusive) as its own `export-contacts` subflow (retries,
    delivery, artifacts, Secret blocks, a flow run named `<exporterId> <asOfDate>`), at most
    BACKFILL_CONCURRENCY at a time; a failed date does not stop the others.

    `plans`: one per date, as the CLI made and checked them; without them each date is planned and
    checked here first. Subflows run in threads of this process, each date with its share of the
    memory budget."""
    import functools

    base = RunRequest.from_options(
        exporter_id=exporter_id,
        home=home,
        source=source,
        warehouse=warehouse,
        population_file=population_file,
        deliver=deliver,
        redeliver=redeliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask_address=dask_address,
    )
    days = preflight.backfill_dates(date.fromisoformat(str(start)), date.fromisoformat(str(end)))
    workers = min(BACKFILL_CONCURRENCY, len(days))
    share = base.model_copy(update={"memory_budget": max(base.memory_budget // workers, 64 << 20)})
    requests = [share.model_copy(update={"as_of": d}) for d in days]
    if plans is None:
        plans = plan_dates_task.with_options(task_run_name=f"{exporter_id} {days[0]}..{days[-1]} plan")(
            requests
        )
    label = f"{exporter_id} {days[0]}..{days[-1]}"
    label_flow_run(label, run_tags(exporter_id, plans[0].company.id))
    calls = [
        (d, functools.partial(export_contacts, **r.flow_parameters(), plan=p))
        for d, r, p in zip(days, requests, plans, strict=True)
    ]
    return backfill_state(exporter_id, run_dates(label, calls, workers))


def run_dates(
    label: str, calls: Sequence[tuple[date, Callable[[], dict[str, Any]]]], workers: int
) -> list[tuple[date, dict[str, Any] | None, dict[str, Any]]]:
    """Each date's subflow in a thread of this flow run, `workers` at a time; (date, summary or None,
    row of the backfill table) per date, in date order."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    outcomes = []
    with (
        progress.bar(label, len(calls), "dates") as bar,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool,
    ):
        # each thread sees this flow run: the dates are its subflows
        futures = [(d, pool.submit(contextvars.copy_context().run, call)) for d, call in calls]
        for day, future in futures:
            outcomes.append((day, *date_outcome(day, future)))
            bar.advance()
    return outcomes


def backfill_state(
    exporter_id: str, outcomes: list[tuple[date, dict[str, Any] | None, dict[str, Any]]]
) -> State[Any]:
    """The backfill's end: Completed, or Failed naming the failed dates; its data the table and runs."""
    logger = get_run_logger()
    failed = {day.isoformat(): row["error"] for day, summary, row in outcomes if summary is None}
    for day, error in failed.items():
        logger.error("backfill %s %s failed: %s", exporter_id, day, error.split(":")[0])
    result = {
        "exporterId": exporter_id,
        "start": outcomes[0][0].isoformat(),
        "end": outcomes[-1][0].isoformat(),
        "dates": [row for _, _, row in outcomes],
        "runs": [summary for _, summary, _ in outcomes if summary is not None],
        "failedDates": failed,
    }
    if failed:
        count = len(outcomes)
        return Failed(
            message=f"{len(failed)} of {count} dates failed: {', '.join(sorted(failed))}", data=result
        )
    return Completed(message=f"{len(outcomes)} dates exported", data=result)


@flow(name="run-company-exporters")
def run_company(company_id: str, home: str | None = None, deliver: bool = True) -> dict[str, Any]:
    """Run every exporter of a company for today (company time zone); used by the daily deployment."""

    h = _home(home)
    company = h.company(company_id)
    today = planning.today_in(company)
    store = ExporterStore(h)
    exporter_ids = [e.id for e in store.all() if e.companyId == company_id]
    results = []
    failed = []
    for exporter_id in exporter_ids:
        try:
            results.append(export_contacts(exporter_id, as_of=today, home=home, deliver=deliver))
        except Exception:
            failed.append(exporter_id)
    if failed:
        raise RuntimeError(f"exporters failed for {company_id} on {today}: {', '.join(failed)}")
    return {"companyId": company_id, "asOfDate": today.isoformat(), "runs": results}
