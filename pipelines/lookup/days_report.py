"""An exporter's report across days as one HTML page: for each of its last N company days, what its
daily run exported and blocked (SVG bars, each linking to that run's page), the reasons that blocked
the most over those days (largest first), and a table of the days.

A company day is an as-of date (the run judged contacts at noon of that date in the company's time
zone). The window ends at the exporter's latest as-of date in the warehouse, so a backfill of last
year reads the same as today's. Each day shows its daily run (campaign runs are left out, so no
contact is counted twice): the latest successful one, as `blocked_contacts` counts it, or else the
latest failed one. Like the run page (pipelines/lookup/report.py) the page is plain HTML and SVG with
no script, and holds counts, codes, ids and paths only.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipelines.io import duck
from pipelines.lookup.report import STYLE, bars, largest_first, reasons_sql, report_path, write_report
from pipelines.model.errors import ErrorItem, InvalidInputError

DAYS_NAME = "days.html"
DAY_WIDTH = 26  # pixels per day column
CHART_HEIGHT = 200
EXPORTED, BLOCKED = "#15803d", "#c2410c"


@dataclass(frozen=True)
class Day:
    """One company day of the window; `runId` None when the exporter did not run that day."""

    asOfDate: date
    runId: str | None = None
    status: str | None = None
    exported: int = 0
    blocked: int = 0
    link: str | None = None  # the run page, relative to the days page


@dataclass(frozen=True)
class DaysReport:
    exporterId: str
    companyId: str | None
    days: list[Day]  # oldest first, every date of the window
    reasons: list[tuple[str, int, str]]  # (code, contacts, meaning) over the window, largest first


def window(last: date, count: int) -> list[date]:
    """The `count` dates ending at `last`, oldest first."""
    return [last - timedelta(days=count - 1 - i) for i in range(count)]


def _day_chart(days: list[Day]) -> str:
    """One stacked column per day (exported below, blocked above), scaled to the busiest day."""
    top = max((d.exported + d.blocked for d in days), default=0) or 1
    width, height = DAY_WIDTH * len(days) + 60, CHART_HEIGHT + 46
    parts = [
        f'<svg class="days" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="12">{top:,}</text><line x1="40" y1="{CHART_HEIGHT + 16}" x2="{width}" '
        f'y2="{CHART_HEIGHT + 16}" stroke="#a8a29e"/>',
    ]
    for i, day in enumerate(days):
        x = 44 + i * DAY_WIDTH
        ok = round(CHART_HEIGHT * day.exported / top)
        no = round(CHART_HEIGHT * day.blocked / top)
        tip = f"{day.asOfDate}: " + (
            f"{day.exported:,} exported, {day.blocked:,} blocked ({day.status})" if day.runId else "no run"
        )
        column = (
            f"<title>{html.escape(tip)}</title>"
            f'<rect class="exported" x="{x}" y="{CHART_HEIGHT + 16 - ok}" width="{DAY_WIDTH - 6}" '
            f'height="{ok}" fill="{EXPORTED}"/>'
            f'<rect class="blocked" x="{x}" y="{CHART_HEIGHT + 16 - ok - no}" width="{DAY_WIDTH - 6}" '
            f'height="{no}" fill="{BLOCKED}"/>'
        )
        if day.link:
            column = f'<a href="{html.escape(day.link)}">{column}</a>'
        parts.append(f"<g>{column}</g>")
        if i % 5 == 0 or i == len(days) - 1:
            parts.append(f'<text x="{x}" y="{CHART_HEIGHT + 34}">{day.asOfDate:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _day_rows(days: list[Day]) -> str:
    rows = []
    for day in reversed(days):  # newest first, as people read a log
        run = (
            f'<a href="{html.escape(day.link)}">{html.escape(day.runId or "")}</a>'
            if day.link
            else html.escape(day.runId or "–")
        )
        counts = f"<td>{day.exported:,}</td><td>{day.blocked:,}</td>" if day.runId else "<td>–</td><td>–</td>"
        rows.append(
            f"<tr><td>{day.asOfDate}</td><td>{run}</td><td>{html.escape(day.status or 'no run')}</td>{counts}</tr>"
        )
    head = "<tr><th>company day</th><th>run</th><th>status</th><th>exported</th><th>blocked</th></tr>"
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def render_days(report: DaysReport) -> str:
    """The page across days of one exporter."""
    days = report.days
    title = f"{report.exporterId}: {days[0].asOfDate} to {days[-1].asOfDate}" if days else report.exporterId
    ran = [d for d in days if d.runId]
    exported, blocked = sum(d.exported for d in ran), sum(d.blocked for d in ran)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)} · across days</title><style>{STYLE}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; }}
svg.days text {{ font: 12px system-ui, sans-serif; fill: #57534e; }}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">company {html.escape(report.companyId or "–")} · {len(days)} company days ·
daily runs only (campaign runs are left out)</p>
<div class="tiles"><div class="tile"><b>{len(ran)}</b><span>days with a run</span></div>
<div class="tile"><b>{exported:,}</b><span>exported rows</span></div>
<div class="tile"><b>{blocked:,}</b><span>blocked contacts</span></div></div>
<h2>Exported and blocked per day</h2>
<p class="legend sub"><span style="background:{EXPORTED}"></span>exported
<span style="background:{BLOCKED}"></span>blocked · a column opens that day's run report</p>
{_day_chart(days)}
<h2>Blocked contacts by reason, all days</h2>
<p class="sub">A contact blocked for two reasons counts under both; a contact blocked on two days counts twice.</p>
{bars(report.reasons)}
<h2>Days</h2>
{_day_rows(days)}
</body></html>
"""


# ---------------------------------------------------------------- IO: read the views, write the pages

# The run each (exporter, as-of date) shows: daily runs only, the latest successful one (as
# blocked_contacts picks it), else the latest failed one.
_DAY_RUNS = """SELECT asOfDate, runId, status, coalesce(exported, 0), coalesce(screenedOut, 0), filePath, companyId
FROM run_summary WHERE exporterId = ? AND campaignId IS NULL AND asOfDate BETWEEN ? AND ?
QUALIFY row_number() OVER (PARTITION BY asOfDate
    ORDER BY status = 'succeeded' DESC, finishedAt DESC NULLS LAST, runId DESC) = 1"""
_REASONS = reasons_sql("b.exporterId = ? AND b.campaignId IS NULL AND b.asOfDate BETWEEN ? AND ?")


def _last_day(con: Any, warehouse: Path, exporter_id: str) -> date:
    views = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'run_summary'").fetchone()
    last = (
        con.execute(
            "SELECT max(asOfDate) FROM run_summary WHERE exporterId = ? AND campaignId IS NULL", [exporter_id]
        ).fetchone()
        if views != (0,)
        else None
    )
    if last is None or last[0] is None:
        raise InvalidInputError(
            "arguments",
            [ErrorItem("--exporter", f"no daily run of {exporter_id} in {warehouse} (see run_summary)")],
        )
    found: date = last[0]
    return found


def read_days(warehouse: Path, exporter_id: str, count: int = 30) -> tuple[DaysReport, dict[date, str]]:
    """The page's rows: the window's days and reasons, and the export file of each day's run."""
    if count < 1:
        raise InvalidInputError("arguments", [ErrorItem("--days", "give 1 or more days")])
    if not warehouse.exists():
        raise InvalidInputError("arguments", [ErrorItem("--warehouse", f"{warehouse} does not exist")])
    with duck.connect(warehouse, read_only=True) as con:
        dates = window(_last_day(con, warehouse, exporter_id), count)
        bounds = [exporter_id, dates[0], dates[-1]]
        runs = con.execute(_DAY_RUNS, bounds).fetchall()
        reasons = con.execute(_REASONS, bounds).fetchall()
    by_date = {row[0]: row for row in runs}
    days = [
        Day(d, str(r[1]), str(r[2]), int(r[3]), int(r[4])) if (r := by_date.get(d)) else Day(d) for d in dates
    ]
    files = {row[0]: str(row[5]) for row in runs if row[5]}
    company = next((str(row[6]) for row in runs if row[6]), None)
    ordered = largest_first([(str(code), int(n), str(meaning)) for code, n, meaning in reasons])
    return DaysReport(exporter_id, company, days, ordered), files


def default_days_target(files: dict[date, str]) -> Path | None:
    """Beside the exporter's date folders: the parent of the latest run's folder."""
    latest = files[max(files)] if files else None
    return Path(latest).parent.parent / DAYS_NAME if latest else None


def write_days_report(warehouse: Path, exporter_id: str, count: int = 30, out: Path | None = None) -> Path:
    """Write the page across days (and the page of each day's run, so its link opens); return where."""
    report, files = read_days(warehouse, exporter_id, count)
    target = out or default_days_target(files)
    if target is None:
        raise InvalidInputError(
            "arguments",
            [ErrorItem("--out", f"no run of {exporter_id} wrote a file: give where to write the page")],
        )
    linked = []
    for day in report.days:
        page = report_path(files.get(day.asOfDate)) if day.runId else None
        if page is not None and day.runId is not None:
            write_report(warehouse, day.runId, page)
            day = Day(**{**day.__dict__, "link": os.path.relpath(page, target.parent)})
        linked.append(day)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(
        render_days(DaysReport(report.exporterId, report.companyId, linked, report.reasons)), "utf-8"
    )
    tmp.replace(target)
    return target


__all__ = ["Day", "DaysReport", "read_days", "render_days", "window", "write_days_report"]
