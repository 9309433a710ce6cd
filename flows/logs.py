"""The CLI's log lines on stderr: each with its time, level and the run (or task run) it belongs to,
as text for people or as one JSON object per line for machines (`--log-format json`).

Prefect configures logging when it is imported; `apply` is called again after that so Prefect's own
lines (flow and task runs) and the library's (`pipelines.*`) read the same. Tracebacks are shown with
`--debug` only, and Prefect's own report of a failed run is dropped: the CLI reports it, once.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")


@dataclass
class _Options:
    verbose: bool = False
    debug: bool = False
    fmt: LogFormat = "text"


OPTIONS = _Options()


def run_names(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """(flow run name, task run name) of a log record: Prefect's run loggers carry them; for any other
    logger (the library's) they are read from the Prefect run the line was written in, if any."""
    flow = getattr(record, "flow_run_name", None)
    task = getattr(record, "task_run_name", None)
    if flow or task or "prefect.context" not in sys.modules:
        return flow, task
    from prefect.context import FlowRunContext, TaskRunContext

    task_context = TaskRunContext.get()
    flow_context = FlowRunContext.get()
    flow_run = flow_context.flow_run if flow_context is not None else None
    return (
        flow_run.name if flow_run is not None else None,
        task_context.task_run.name if task_context is not None else None,
    )


class _Noise(logging.Filter):
    """Without -v: no "Finished in state Completed()" per task (the run's own lines say what was done),
    and none of Prefect's error reports of a failed run (the CLI reports the failure itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.levelno >= logging.ERROR:
            return False
        return not (
            record.name == "prefect.task_runs" and record.getMessage() == "Finished in state Completed()"
        )


class TextFormatter(logging.Formatter):
    """`06:01:02 INFO    CE-VOICECOL 2026-12-07 p1/4 | population 300 borrowers, 42 matching contacts`."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        flow, task = run_names(record)
        where = task or flow or record.name
        line = (
            f"{self.formatTime(record, self.datefmt)} {record.levelname:<7} {where} | {record.getMessage()}"
        )
        if OPTIONS.debug and record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, flowRun, taskRun, message."""

    def format(self, record: logging.LogRecord) -> str:
        flow, task = run_names(record)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "flowRun": flow,
            "taskRun": task,
            "message": record.getMessage(),
        }
        if OPTIONS.debug and record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(*, verbose: bool, debug: bool, fmt: LogFormat = "text") -> None:
    """stderr logging for one CLI command: library progress with -v, debug lines with --debug."""
    OPTIONS.verbose, OPTIONS.debug, OPTIONS.fmt = verbose, debug, fmt
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING, stream=sys.stderr
    )
    apply()


def apply() -> None:
    """Our formatter and filter on the root handlers (again after Prefect has configured logging), and
    their stream drawn around a progress bar when one is shown."""
    from flows import progress

    formatter: logging.Formatter = JsonFormatter() if OPTIONS.fmt == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
        noise = [f for f in handler.filters if isinstance(f, _Noise)]
        if not noise and not (OPTIONS.verbose or OPTIONS.debug):
            handler.addFilter(_Noise())
        if progress.enabled():
            _around_bars(handler, progress.BarAwareStream)


def _around_bars(handler: logging.Handler, wrap: Any) -> None:
    console = getattr(handler, "console", None)  # Prefect's console handler writes through rich
    if console is not None and not isinstance(console.file, wrap):
        console.file = wrap(console.file)
    elif isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, wrap):
        handler.setStream(wrap(handler.stream))
