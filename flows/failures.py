"""How the CLI reports what went wrong: one to three lines on stderr that name the file (in the
message), the home that was used and what to do; a traceback only with `--debug`.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.model.errors import ContactExporterError, InvalidInputError, SourceDataError

MAX_MESSAGE = 600
DEMO_HOME = Path("data") / "demo"  # flows/demo.py builds its home there
NO_SOURCE = ("does not exist", "required table is missing")


@dataclass
class Invocation:
    """What the global options said: set by the CLI callback, read when a failure is reported."""

    debug: bool = False
    home: Path | None = None
    home_origin: str = ""


CURRENT = Invocation()


def home_line() -> str | None:
    if CURRENT.home is None:
        return None
    state = (
        ", which does not exist"
        if not CURRENT.home.is_dir()
        else ", which has no configs/ folder"
        if not (CURRENT.home / "configs").is_dir()
        else ""
    )
    return f"home: {CURRENT.home} ({CURRENT.home_origin}{state})"


def shown(path: Path) -> str:
    """A path as a person would type it here: relative to the working folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def demo_hint(exc: BaseException) -> str | None:
    """After `make demo` the sample source is in the demo's home: say so when a home has none."""
    if not isinstance(exc, SourceDataError) or not any(e.message in NO_SOURCE for e in exc.errors):
        return None
    home = CURRENT.home or Path.cwd()
    demo = home / DEMO_HOME
    if not (demo / "configs").is_dir():
        return None
    return f"the demo's sample data is in its own home: add --home {shown(demo)}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def failure_lines(exc: BaseException) -> list[str]:
    """The lines for a failure: `error: <what, naming the file>`, then the home and a hint."""
    hint = ""
    if isinstance(exc, InvalidInputError) and len(exc.errors) > 1:
        hint = "every problem is listed in the JSON on stdout"
    elif not isinstance(exc, ContactExporterError):
        hint = "run again with --debug for the traceback"
    what = str(exc) if isinstance(exc, ContactExporterError) else f"unexpected {type(exc).__name__}: {exc}"
    lines = ["error: " + _clip(what)]
    second = [part for part in (home_line(), hint, demo_hint(exc)) if part]
    if second:
        lines.append("; ".join(second))
    return lines


def report(exc: BaseException) -> None:
    if CURRENT.debug:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write("\n".join(failure_lines(exc)) + "\n")
    sys.stderr.flush()


class _NoTraceback(logging.Formatter):
    """Log records keep their message; their tracebacks are shown with --debug only."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return ""


class _EngineFailures(logging.Filter):
    """Drop Prefect's own error reports of a failed run: the CLI reports the failure itself, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("prefect") and record.levelno >= logging.ERROR)


def configure_logging(*, verbose: bool, debug: bool) -> None:
    """stderr logging for the CLI: library progress with -v, Prefect's run logs as they come,
    no tracebacks (and no duplicate engine error reports) unless --debug."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if debug:
        return
    quiet_handlers()


def quiet_handlers() -> None:
    """Apply the no-traceback formatter and the engine filter to the root handlers (again after
    Prefect has configured its logging)."""
    if CURRENT.debug:
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_NoTraceback("%(levelname)s %(name)s: %(message)s"))
        if not any(isinstance(f, _EngineFailures) for f in handler.filters):
            handler.addFilter(_EngineFailures())
