"""How the CLI reports what went wrong: one to three lines on stderr that name the file (in the
message), the home that was used and what to do; a traceback only with `--debug`.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

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
