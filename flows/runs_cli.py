"""`contact-exporter runs list | show | diff`: recorded runs for people (a table) or machines (--json)."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines.model.errors import ErrorItem, InvalidInputError

if TYPE_CHECKING:
    from pipelines.model.config import Home

runs_app = typer.Typer(
    rich_markup_mode=None,
    help="Recorded runs in the warehouse: list them, show one, and diff two.",
    no_args_is_help=True,
)
Warehouse = Annotated[
    Path | None,
    typer.Option("--warehouse", help="Warehouse to read (default: the home's data/warehouse.duckdb)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table.")]


def _warehouse(ctx: typer.Context, given: Path | None) -> Path:
    home: Home = ctx.obj
    return home.path(given) if given else home.warehouse


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table: a header, a rule, a line a row; empty cells for nulls."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _out(payload: Any, as_json: bool, text: str) -> None:
    sys.stdout.write((json.dumps(payload, indent=2, default=str) if as_json else text) + "\n")


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    exporter: Annotated[str | None, typer.Option("--exporter", help="Only this exporter's runs.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only as-of dates from YYYY-MM-DD on.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many runs.")] = 50,
    warehouse: Warehouse = None,
    as_json: AsJson = False,
) -> None:
    """Recorded runs, newest first: status, counts, delivery and the seconds each took."""
    from pipelines.lookup.run_history import list_runs

    try:
        start = date.fromisoformat(since) if since else None
    except ValueError:
        raise InvalidInputError(
            "arguments", [ErrorItem("--since", f"{since!r} is not a date as YYYY-MM-DD")]
        ) from None
    runs = list_runs(_warehouse(ctx, warehouse), exporter, start, limit)
    columns = ["runId", "exporterId", "campaignId", "asOfDate", "status", "matched", "exported",
               "screenedOut", "deliveryStatus", "seconds"]  # fmt: skip
    _out(runs, as_json, _table(runs, columns) if runs else "no runs recorded")


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    warehouse: Warehouse = None,
    as_json: AsJson = False,
) -> None:
    """One run: its record, contacts blocked by reason (largest first), rejected rows, deliveries."""
    from pipelines.lookup.run_history import show_run

    run = show_run(_warehouse(ctx, warehouse), run_id)
    plain = {k: v for k, v in run.items() if not isinstance(v, list)}
    text = "\n".join(f"{k}: {'' if v is None else v}" for k, v in plain.items())
    for title, key, columns in (
        ("blocked by reason", "blockedByReason", ["reason", "contacts"]),
        ("rejected rows", "rejectedByTable", ["tableName", "rows"]),
        ("deliveries", "deliveries", ["host", "remotePath", "rows", "bytes", "deliveredAt"]),
    ):
        text += f"\n\n{title}:\n" + (_table(run[key], columns) if run[key] else "(none)")
    _out(run, as_json, text)


@runs_app.command("diff")
def runs_diff(
    ctx: typer.Context,
    run_a: Annotated[str, typer.Argument(metavar="RUN_A")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B")],
    warehouse: Warehouse = None,
    as_json: AsJson = False,
) -> None:
    """Which contacts became blocked or eligible from RUN_A to RUN_B, and why ("why did the file shrink?")."""
    from pipelines.lookup.run_history import diff_runs

    diff = diff_runs(_warehouse(ctx, warehouse), run_a, run_b)
    lines = [f"from {run_a} to {run_b}:"]
    for kind, found in diff["changes"].items():
        why = ", ".join(f"{r} {n}" for r, n in found["reasons"].items()) or "-"
        lines.append(f"  {kind}: {found['contacts']} contacts (reasons: {why})")
    if not diff["changes"]:
        lines.append("  no contact changed")
    _out(diff, as_json, "\n".join(lines))
