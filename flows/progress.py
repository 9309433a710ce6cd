"""Progress bars on stderr for long CLI work (`generate`, `run` per partition, `backfill` per date).

A bar is drawn only when stderr is a terminal: in CI logs, pipes and Prefect workers there is
nothing but the ordinary log lines. While a bar is shown, log lines are written above it (the
log handlers' stream goes through `BarAwareStream`), so the two never garble each other.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")

WIDTH = 24
_lock = threading.RLock()
_active: list[Bar] = []


def enabled(stream: TextIO | None = None) -> bool:
    """Bars only on a terminal, and never when CONTACT_EXPORTER_PROGRESS=0."""
    stream = stream or sys.stderr
    if os.environ.get("CONTACT_EXPORTER_PROGRESS", "").lower() in {"0", "false", "no", "off"}:
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar:
    """`CE-VOICECOL 2026-12-07  [##########--------------]  3/7 partitions  12.4 s`."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def text(self) -> str:
        filled = WIDTH if self.total == 0 else int(WIDTH * min(self.done, self.total) / self.total)
        seconds = time.monotonic() - self.started
        return (
            f"{self.label}  [{'#' * filled}{'-' * (WIDTH - filled)}]  "
            f"{self.done}/{self.total} {self.unit}  {seconds:.1f} s"
        )

    def draw(self) -> None:
        with _lock:
            self.stream.write("\r\x1b[K" + self.text())
            self.stream.flush()

    def clear(self) -> None:
        with _lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def advance(self, steps: int = 1) -> None:
        with _lock:
            self.done += steps
            self.draw()


class _NoBar(Bar):
    def draw(self) -> None:
        return None

    def clear(self) -> None:
        return None


@contextmanager
def bar(label: str, total: int, unit: str) -> Iterator[Bar]:
    """A bar for the duration of the block (a do-nothing one when stderr is not a terminal, or when
    another bar is already shown: the outer one, e.g. a backfill's dates, keeps the line)."""
    if not enabled() or _active:
        yield _NoBar(label, total, unit)
        return
    shown = Bar(label, total, unit)
    with _lock:
        _active.append(shown)
    shown.draw()
    try:
        yield shown
    finally:
        with _lock:
            _active.remove(shown)
            shown.clear()


def write_line(text: str, stream: TextIO | None = None) -> None:
    """A line for a person on stderr, above the bar when one is shown."""
    BarAwareStream(stream or sys.stderr).write(text + "\n")
    (stream or sys.stderr).flush()


def counted(items: Iterator[T], bar: Bar, size: Callable[[T], int]) -> Iterator[T]:
    """The items as they come, the bar advanced by each one's size."""
    for item in items:
        yield item
        bar.advance(size(item))


class BarAwareStream:
    """A log handler's stream: clears the bar's line before a log line and draws it again after."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        with _lock:
            if _active:
                self.stream.write("\r\x1b[K")
            written = self.stream.write(text)
            if _active and text.endswith("\n"):
                self.stream.write(_active[0].text())
            return written

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())
