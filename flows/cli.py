"""`contact-exporter`: one thin command per verb over the library (CONTRACT.md §4).

Machine output is JSON on stdout; progress and human messages go to stderr.
Exit codes: 0 success, 2 invalid input (config, arguments, source data), 1 any other failure.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import TyperException
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from flows.runs_cli import runs_app
from pipelines.model.errors import ContactExporterError, ErrorItem, InvalidInputError

if TYPE_CHECKING:  # configs (pydantic models) are imported when a command reads them, not for --help
    from pipelines.model.config import Home
    from pipelines.model.request import RunRequest

app = typer.Typer(
    rich_markup_mode=None,
    name="contact-exporter",
    help="Select borrowers' contact records, screen them at company noon, write files and deliver them by SFTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
exporters_app = typer.Typer(
    rich_markup_mode=None,
    help="Create, list, get and update contact exporters (configs/exporters/).",
    no_args_is_help=True,
)
campaigns_app = typer.Typer(
    rich_markup_mode=None, help="Run campaigns (configs/campaigns/).", no_args_is_help=True
)
sftp_app = typer.Typer(rich_markup_mode=None, help="SFTP destinations (configs/sftp/).", no_args_is_help=True)
deployments_app = typer.Typer(
    rich_markup_mode=None,
    help="Scheduled Prefect deployments (configs/schedules.yaml, campaigns).",
    no_args_is_help=True,
)
app.add_typer(exporters_app, name="exporters")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(sftp_app, name="sftp")
server_app = typer.Typer(
    rich_markup_mode=None,
    help="A local Prefect server for this home, reused by every run (instead of a temporary one per run).",
    no_args_is_help=True,
)
app.add_typer(deployments_app, name="deployments")
app.add_typer(server_app, name="server")
app.add_typer(runs_app, name="runs")


def emit(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    from flows import progress

    progress.write_line(message)


def home_of(ctx: typer.Context) -> Home:
    home: Home = ctx.obj
    return home


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            "arguments", [ErrorItem(option, f"{value!r} is not a date as YYYY-MM-DD")]
        ) from None


def date_arg(value: str, option: str) -> date:
    parsed = parse_date(value, option)
    if parsed is None:  # unreachable for a required option; keeps the type exact
        raise InvalidInputError("arguments", [ErrorItem(option, "a date is required")])
    return parsed


def read_body(file: str) -> Any:
    """A JSON body from a file or stdin: UTF-8, at most 1 MiB, not too deep (exit 2 otherwise)."""
    from pipelines.model import safeload

    source = "stdin" if file == "-" else file
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise InvalidInputError(source, [ErrorItem("", f"cannot read: {exc.strerror}")]) from None
    return safeload.load_json(raw, source)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"contact-exporter {version('contact-exporters')}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Home directory (configs/, data/). Default: $CONTACT_EXPORTER_HOME, else the current directory.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library progress to stderr.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of a failure (and debug logs).")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="text|json",
            envvar="CONTACT_EXPORTER_LOG_FORMAT",
            help="Log lines on stderr as text (time, level, run, message) or one JSON object per line.",
        ),
    ] = "text",
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    from flows import logs
    from flows.failures import CURRENT
    from pipelines.model.config import Home

    CURRENT.debug = debug
    if log_format not in logs.FORMATS:
        raise InvalidInputError(
            "arguments", [ErrorItem("--log-format", f"{log_format!r}: give text or json")]
        )
    logs.configure(verbose=verbose, debug=debug, fmt="json" if log_format == "json" else "text")
    ctx.obj = Home.resolve(home)
    CURRENT.home = ctx.obj.root
    CURRENT.home_origin = (
        "from --home"
        if home is not None
        else "from $CONTACT_EXPORTER_HOME"
        if os.environ.get("CONTACT_EXPORTER_HOME")
        else "the current directory; use --home"
    )


# ---------------------------------------------------------------- exporters


@exporters_app.command("create")
def exporters_create(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="JSON body (CONTRACT.md §3); '-' reads stdin.")],
) -> None:
    """Create an exporter from a JSON body; prints {"status":200,"message":"success","data":{...}}."""
    from flows.envelopes import ok_envelope
    from pipelines.io.store import ExporterStore

    body = read_body(file)
    emit(ok_envelope(ExporterStore(home_of(ctx)).create(body, "stdin" if file == "-" else file)))


@exporters_app.command("list")
def exporters_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Page size, 1-100.")] = 25,
    starting_after: Annotated[
        str | None, typer.Option("--starting-after", help="Cursor: the page after this exporter id.")
    ] = None,
    ending_before: Annotated[
        str | None, typer.Option("--ending-before", help="Cursor: the page before this exporter id.")
    ] = None,
) -> None:
    """List exporters, newest first, one page at a time."""
    from flows.envelopes import list_envelope
    from pipelines.io.store import ExporterStore

    page = ExporterStore(home_of(ctx)).list(
        limit=limit, starting_after=starting_after, ending_before=ending_before
    )
    for skipped in page.skipped:
        say(f"warning: exporter {skipped} cannot be read and is left out; `exporters get {skipped}` says why")
    emit(list_envelope(page, limit))


@exporters_app.command("get")
def exporters_get(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="ID", help="CE-7ABCDEFG or ext-EXTERNALID")],
) -> None:
    """Show one exporter."""
    from flows.envelopes import ok_envelope
    from pipelines.io.store import ExporterStore

    emit(ok_envelope(ExporterStore(home_of(ctx)).get(exporter_id)))


@exporters_app.command("update")
def exporters_update(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="ID", help="CE-7ABCDEFG or ext-EXTERNALID")],
    file: Annotated[
        str, typer.Option("--file", "-f", help="JSON body: a full replacement (PUT); '-' reads stdin.")
    ],
) -> None:
    """Replace an exporter's settings (id and createdAt are kept)."""
    from flows.envelopes import ok_envelope
    from pipelines.io.store import ExporterStore

    body = read_body(file)
    emit(ok_envelope(ExporterStore(home_of(ctx)).update(exporter_id, body, "stdin" if file == "-" else file)))


# ---------------------------------------------------------------- runs

AsOf = Annotated[
    str | None, typer.Option("--as-of", help="YYYY-MM-DD; default today in the company time zone.")
]
Source = Annotated[
    str | None,
    typer.Option(
        help="DuckDB file, folder of Parquet/CSV tables, s3://bucket/prefix/ or "
        "postgresql://user@host:port/db[?schema=S] (docs/sources.md). Default data/warehouse.duckdb."
    ),
]
NoDeliver = Annotated[bool, typer.Option("--no-deliver", help="Write the file(s) but do not send them.")]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the plan (population, partitions, file, delivery); write nothing."),
]
PartitionsOpt = Annotated[
    str,
    typer.Option(
        "--partitions",
        help="Borrower partitions: a number, or auto (from the source size and the memory budget).",
    ),
]
MemoryBudget = Annotated[
    str,
    typer.Option("--memory-budget", help="Memory a partition may use, e.g. 2GiB, 1500MiB (auto picks N)."),
]
DaskAddress = Annotated[
    str | None,
    typer.Option(
        "--dask",
        help="Run partitions on this Dask scheduler (tcp://host:8786). Default $CONTACT_EXPORTER_DASK_ADDRESS.",
    ),
]


Warehouse = Annotated[
    Path | None, typer.Option(help="DuckDB file for output tables. Default data/warehouse.duckdb.")
]
Population = Annotated[
    Path | None, typer.Option(help="CSV/Parquet file with column id: only these borrowers.")
]
Redeliver = Annotated[
    bool, typer.Option("--redeliver", help="Send again even if this file was already delivered.")
]


def run_request(
    exporter_id: str,
    *,
    as_of: str | None = None,
    source: str | None = None,
    warehouse: Path | None = None,
    population: Path | None = None,
    no_deliver: bool = False,
    redeliver: bool = False,
    partitions: str = "auto",
    memory_budget: str = "2GiB",
    dask: str | None = None,
    campaign_id: str | None = None,
) -> RunRequest:
    """The run options of `run`, `backfill` and `campaigns run` as one validated request."""
    from pipelines.model.request import RunRequest

    return RunRequest.from_options(
        exporter_id=exporter_id,
        as_of=parse_date(as_of, "--as-of"),
        source=source or None,  # a path or a URI, as given (a Path would mangle s3://)
        warehouse=str(warehouse) if warehouse else None,
        population_file=str(population) if population else None,
        deliver=not no_deliver,
        redeliver=redeliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask_address=dask,
        campaign_id=campaign_id,
    )


@app.command("run")
def run(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="EXPORTER_ID")],
    as_of: AsOf = None,
    source: Source = None,
    warehouse: Warehouse = None,
    population: Population = None,
    no_deliver: NoDeliver = False,
    redeliver: Redeliver = False,
    partitions: PartitionsOpt = "auto",
    memory_budget: MemoryBudget = "2GiB",
    dask: DaskAddress = None,
    dry_run: DryRun = False,
) -> None:
    """Run one exporter for one as-of date (screened at noon, company time) through the Prefect flow."""
    from flows import runs

    request = run_request(
        exporter_id,
        as_of=as_of,
        source=source,
        warehouse=warehouse,
        population=population,
        no_deliver=no_deliver,
        redeliver=redeliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask=dask,
    )
    emit(runs.dry_run(home_of(ctx), request) if dry_run else runs.run_exporter(home_of(ctx), request))


@app.command("backfill")
def backfill(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="EXPORTER_ID")],
    start: Annotated[str, typer.Option("--start", help="First as-of date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last as-of date, YYYY-MM-DD (inclusive).")],
    source: Source = None,
    warehouse: Warehouse = None,
    population: Population = None,
    no_deliver: NoDeliver = False,
    redeliver: Redeliver = False,
    partitions: PartitionsOpt = "auto",
    memory_budget: MemoryBudget = "2GiB",
    dask: DaskAddress = None,
    dry_run: DryRun = False,
) -> None:
    """Run an exporter for every date from START to END; one failed date does not stop the others.

    Every date is planned and checked before the first one runs."""
    from flows import runs

    first, last = date_arg(start, "--start"), date_arg(end, "--end")
    request = run_request(
        exporter_id,
        source=source,
        warehouse=warehouse,
        population=population,
        no_deliver=no_deliver,
        redeliver=redeliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask=dask,
    )
    if dry_run:
        emit(runs.dry_run_backfill(home_of(ctx), request, first, last))
        return
    result = runs.run_backfill(home_of(ctx), request, first, last)
    for line in backfill_table(result.get("dates", [])):
        typer.echo(line, err=True)
    emit(result)
    if result.get("failedDates"):
        raise typer.Exit(1)


def backfill_table(dates: list[dict[str, Any]]) -> list[str]:
    """One line per date on stderr: date, status, rows exported or the error's first line."""
    lines = [f"{'asOfDate':<10}  {'status':<9}  {'exported':>9}  detail"]
    for row in dates:
        exported = "" if row.get("exported") is None else str(row["exported"])
        detail = row.get("error") or row.get("deliveryStatus") or ""
        lines.append(
            f"{row['asOfDate']:<10}  {row['status']:<9}  {exported:>9}  {str(detail).splitlines()[0][:100] if detail else ''}"
        )
    return lines


@app.command("explain")
def explain(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="EXPORTER_ID")],
    contact_id: Annotated[str, typer.Argument(metavar="CONTACT_ID")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As-of date, YYYY-MM-DD (judged at its noon).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Or an instant, e.g. 2026-06-15T14:05:00Z (evaluated now).")
    ] = None,
    source: Source = None,
    warehouse: Annotated[
        Path | None,
        typer.Option("--warehouse", help="Warehouse holding the run (default data/warehouse.duckdb)."),
    ] = None,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Evaluate the source now instead of reading the day's run.")
    ] = False,
) -> None:
    """Why a contact was or was not exported on a date: the decision the day's run recorded (runId,
    reasons, next eligible date) with the evidence for each reason, and whether the source has
    changed since; --recompute (or --at) evaluates the source now instead."""
    from pipelines.lookup import explain as explain_mod
    from pipelines.run import job

    if (as_of is None) == (at is None):
        raise InvalidInputError("arguments", [ErrorItem("--as-of", "give --as-of or --at (one of them)")])
    moment = parse_instant(at, "--at") if at is not None else None
    day = moment.date() if moment is not None else date_arg(str(as_of), "--as-of")
    plan = job.plan_run(home_of(ctx), exporter_id, day, source=source, warehouse_path=warehouse)
    if recompute or moment is not None:
        emit(explain_mod.explain(plan.exporter, plan.company, plan.source, contact_id, plan.as_of, moment))
        return
    emit(
        explain_mod.explain_recorded(
            plan.exporter, plan.company, plan.source, plan.warehouse, contact_id, day
        )
    )


def parse_instant(value: str | None, option: str) -> datetime:
    """ISO-8601 (`Z` or an offset; none means UTC); None: now."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            "arguments", [ErrorItem(option, f"{value!r} is not an instant as 2026-06-15T14:05:00Z")]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("check")
def check(
    ctx: typer.Context,
    exporter_id: Annotated[str, typer.Argument(metavar="EXPORTER_ID")],
    contact_ids: Annotated[list[str], typer.Argument(metavar="CONTACT_ID...")],
    at: Annotated[
        str | None, typer.Option("--at", help="Instant to judge at, e.g. 2026-06-15T14:05:00Z. Default: now.")
    ] = None,
    source: Source = None,
) -> None:
    """The compliance guard at any instant for a few contacts, read-only: canInteract, reasons, nextEligibleDate."""
    from pipelines.lookup import checks
    from pipelines.run import job

    moment = parse_instant(at, "--at")
    plan = job.plan_run(home_of(ctx), exporter_id, moment.date(), source=source)
    checks.answering_checks()
    emit(checks.check_contacts(plan.exporter, plan.company, plan.source, contact_ids, moment))


@campaigns_app.command("run")
def campaigns_run(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(metavar="CAMPAIGN_ID")],
    as_of: AsOf = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="DuckDB file, folder of tables, s3:// or postgresql:// URI for the query and the run. "
            "Default the campaign's."
        ),
    ] = None,
    warehouse: Warehouse = None,
    no_deliver: NoDeliver = False,
    partitions: PartitionsOpt = "auto",
    memory_budget: MemoryBudget = "2GiB",
    dask: DaskAddress = None,
    dry_run: DryRun = False,
) -> None:
    """Run a campaign: its query picks the borrowers, its exporter does the rest."""
    from flows import runs

    home = home_of(ctx)
    request = run_request(
        home.campaign(campaign_id).exporterId,
        as_of=as_of,
        source=source,
        warehouse=warehouse,
        no_deliver=no_deliver,
        partitions=partitions,
        memory_budget=memory_budget,
        dask=dask,
        campaign_id=campaign_id,
    )
    emit(runs.dry_run(home, request) if dry_run else runs.run_campaign(home, request))


# ---------------------------------------------------------------- data, servers, demo


@app.command("generate")
def generate(
    ctx: typer.Context,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="DuckDB file (duckdb) or folder (parquet, csv) to write, or s3://bucket/prefix/ "
            "(Parquet) or postgresql://user@host:port/db (tables).",
        ),
    ],
    borrowers: Annotated[int, typer.Option("--borrowers", min=1, help="Number of borrowers.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="duckdb | parquet | csv")] = "duckdb",
) -> None:
    """Write synthetic source tables, spread over the companies configured in the home."""
    import time

    import polars as pl

    from flows import progress
    from pipelines.io import sources
    from pipelines.synth import book as synth

    if fmt not in ("duckdb", "parquet", "csv"):
        raise InvalidInputError("arguments", [ErrorItem("--format", f"{fmt!r}: use duckdb, parquet or csv")])
    home = home_of(ctx)
    companies = [home.company(c) for c in home.company_ids()] or synth.write_sample_companies(home)
    started = time.perf_counter()
    # Generated and written a chunk of borrowers at a time: memory does not grow with --borrowers.
    chunks = synth.generate_blocks(borrowers, seed, companies, progress=say)
    target = sources.SourceRef.parse(out, home.root)
    label = target.path.name if target.kind in ("duckdb", "folder") else target.kind
    with progress.bar(f"generate {label}", borrowers, "borrowers") as bar:
        written = progress.counted(
            chunks, bar, lambda chunk: chunk.borrowers.select(pl.len()).collect().item()
        )
        counts = sources.write_source_chunks(written, target, fmt)  # type: ignore[arg-type]
    emit(
        {
            "out": str(target),
            "format": fmt,
            "seed": seed,
            "companies": [c.id for c in companies],
            "rows": counts,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    source: Source = None,
) -> None:
    """Serve the exporter API and compliance checks (needs $CONTACT_EXPORTER_API_KEY)."""
    from flows.api import serve as serve_api

    serve_api(home_of(ctx), host, port, source or None)


@sftp_app.command("check")
def sftp_check(
    ctx: typer.Context, setting_id: Annotated[str, typer.Argument(metavar="SFTP_SETTING_ID")]
) -> None:
    """Connect, verify the pinned host key and check write permission in remoteDir (the password of a
    passwordSecretBlock setting is read from that Prefect Secret block)."""
    from flows import runs
    from pipelines.delivery.sftp import check_destination

    home = home_of(ctx)
    setting = home.sftp(setting_id)
    emit(check_destination(setting, home, runs.secret_password(home, setting)))


@deployments_app.command("list")
def deployments_list(ctx: typer.Context) -> None:
    """Show the scheduled deployments: name (prefect.yaml), servedName (`serve`), flow, cron, time zone, parameters."""
    from flows.deployments import deployment_specs

    emit([spec.as_dict() for spec in deployment_specs(home_of(ctx))])


@deployments_app.command("generate")
def deployments_generate(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="File to write. Default <home>/prefect.yaml.")] = None,
    work_pool: Annotated[
        str, typer.Option("--work-pool", help="Prefect work pool the deployments run on.")
    ] = "contact-exporters",
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the file is not up to date.")
    ] = False,
) -> None:
    """Write prefect.yaml from configs/schedules.yaml and the campaigns, for `prefect deploy --all`."""
    from flows import deployments

    home = home_of(ctx)
    target = home.path(out) if out else home.root / "prefect.yaml"
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        fresh = current == deployments.prefect_yaml(home, work_pool)
        emit({"file": str(target), "upToDate": fresh})
        if not fresh:
            say(f"{target} is not up to date: run `contact-exporter deployments generate`")
            raise typer.Exit(1)
        return
    written = deployments.write_prefect_yaml(home, target, work_pool)
    emit({"file": str(target), "written": written, "deployments": len(deployments.deployment_specs(home))})


@deployments_app.command("serve")
def deployments_serve(ctx: typer.Context) -> None:
    """Register the deployments as `<name>-served` with the Prefect API and run their schedules here."""
    from flows import deployments, settings

    home = home_of(ctx)
    settings.connect(home.root, say=say)
    deployments.serve(home, say=say)


@server_app.command("start")
def server_start(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="TCP port on 127.0.0.1. Default: a free one.")] = None,
) -> None:
    """Start the home's Prefect server in the background; runs use it while it is up (prints its UI's URL)."""
    from flows import localserver, settings

    home = home_of(ctx)
    if not home.configs.is_dir():
        raise InvalidInputError(
            "arguments",
            [ErrorItem("--home", f"{home.root} has no configs/ folder: give the home with --home")],
        )
    settings.apply(home.root)
    state = localserver.start(home.root, port=port, say=say)
    say(f"Prefect UI: {state['uiUrl']}")
    emit(state)


@server_app.command("status")
def server_status(ctx: typer.Context) -> None:
    """Say whether the home's Prefect server runs, and where (exit 1 if it does not)."""
    from flows import localserver

    state = localserver.status(home_of(ctx).root)
    emit(state)
    if not state["running"]:
        raise typer.Exit(1)


@server_app.command("stop")
def server_stop(ctx: typer.Context) -> None:
    """Stop the home's Prefect server (runs then start a temporary one each)."""
    from flows import localserver

    emit(localserver.stop(home_of(ctx).root))


@app.command("sql")
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='A read-only query, e.g. "SELECT * FROM run_summary".')],
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB file. Default data/warehouse.duckdb.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    limit: Annotated[
        int | None,
        typer.Option(help="Rows to print at most. Default 50 for table, all rows for csv and json."),
    ] = None,
) -> None:
    """Query the warehouse read-only; the result goes to stdout, its true row count to stderr."""
    from flows import sqlcmd

    home = home_of(ctx)
    path = home.path(warehouse) if warehouse else home.warehouse
    if not path.exists():
        raise InvalidInputError(
            "arguments", [ErrorItem("--warehouse", f"{path} does not exist: run an export first")]
        )
    sqlcmd.main_sql(path, query, fmt, limit)


@app.command("report")
def report(
    ctx: typer.Context,
    run_id: Annotated[
        str | None, typer.Argument(help="The run (export_runs.runId; see run_summary). Or give --exporter.")
    ] = None,
    exporter: Annotated[
        str | None, typer.Option(help="A page across days of this exporter's daily runs instead of one run.")
    ] = None,
    days: Annotated[int, typer.Option(help="With --exporter: how many company days, up to its latest.")] = 30,
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB file. Default data/warehouse.duckdb.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the page. Default: report.html beside the run's file; with --exporter, "
            "days.html beside the exporter's date folders."
        ),
    ] = None,
) -> None:
    """Write a run's report as an HTML page (counts, blocked by reason, rejected rows, delivery), or with
    --exporter a page across its last --days company days (exported and blocked per day, top reasons,
    links to each day's run page)."""
    from pipelines.lookup import report as run_report

    if (run_id is None) == (exporter is None):
        raise InvalidInputError(
            "arguments",
            [ErrorItem("RUN_ID", "give a run id, or --exporter for a page across days (not both)")],
        )
    home = home_of(ctx)
    path = home.path(warehouse) if warehouse else home.warehouse
    target_out = home.path(out) if out else None
    if exporter is not None:
        from pipelines.lookup import days_report

        target = days_report.write_days_report(path, exporter, days, target_out)
        say(f"report of {exporter} across {days} days: {target}")
        emit({"exporterId": exporter, "days": days, "file": str(target)})
        return
    assert run_id is not None
    target = run_report.write_report(path, run_id, target_out)
    say(f"report of {run_id}: {target}")
    emit({"runId": run_id, "file": str(target)})


@app.command("demo")
def demo(
    ctx: typer.Context,
    borrowers: Annotated[int, typer.Option(help="Sample size.")] = 20_000,
    redeliver: Annotated[
        bool, typer.Option("--redeliver", help="Deliver again files already delivered.")
    ] = False,
) -> None:
    """The whole job end to end on sample data: generate, run the campaign and exporters, deliver by SFTP."""
    from flows import demo as demo_mod

    demo_mod.run_demo(home_of(ctx), borrowers=borrowers, redeliver=redeliver, say=say)


# ---------------------------------------------------------------- entry point


def _fail(exc: ContactExporterError) -> NoReturn:
    from flows.envelopes import error_envelope
    from flows.failures import report

    report(exc)
    emit(error_envelope(exc))
    raise SystemExit(exc.exit_code)


def _usage(exc: UsageError) -> NoReturn:
    """click's short usage message in at most three lines: usage, error, where help is."""
    if isinstance(exc, NoArgsIsHelpError):
        exc.show()
        raise SystemExit(exc.exit_code)
    lines = []
    if exc.ctx is not None:
        lines.append(" ".join(exc.ctx.get_usage().split()))
    lines.append(f"Error: {exc.format_message()}")
    if exc.ctx is not None:
        lines.append(f"Try '{exc.ctx.command_path} --help' for help.")
    say("\n".join(lines))
    raise SystemExit(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    from flows.failures import CURRENT, report

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = sys.argv[1:] if argv is None else argv
    # --debug is a global option; known before parsing, so a usage error can show its traceback too.
    CURRENT.debug = "--debug" in args[: args.index("--") if "--" in args else len(args)]
    try:
        code = app(args=args, prog_name="contact-exporter", standalone_mode=False)
    except ContactExporterError as exc:
        _fail(exc)
    except UsageError as exc:
        _usage(exc)
    except typer.Abort:
        say("aborted")
        raise SystemExit(1) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except TyperException as exc:  # click's other errors (a file that cannot be opened)
        say(f"error: {exc.format_message()}")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        say("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        report(exc)
        raise SystemExit(1) from None
    # Without standalone mode typer returns the code of a `typer.Exit` instead of raising it.
    if isinstance(code, int) and code:
        raise SystemExit(code)
