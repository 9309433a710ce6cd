"""A bound on partitions sent to a Dask cluster: a run fails instead of waiting forever.

Dask keeps a task whose workers all died waiting for a worker that may never come, and a partition
stuck on a worker (a hung file system) never finishes; either way the run would hold its run lock,
and every other run of that exporter and date would be refused, until someone killed it. So while
the partitions run, the cluster is watched: when it has had no worker for
$CONTACT_EXPORTER_DASK_NO_WORKERS_SECONDS (default 30), or no partition has finished for
$CONTACT_EXPORTER_DASK_STALL_SECONDS (default 300), the run fails with one line naming the cluster
and the partitions still out (TransientError, exit 1). The caller's context managers then drop the
run's staging and release its lock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipelines.model.errors import ErrorItem, InvalidInputError, TransientError

log = logging.getLogger(__name__)

STALL_ENV = "CONTACT_EXPORTER_DASK_STALL_SECONDS"
STALL_SECONDS = 300.0
NO_WORKERS_ENV = "CONTACT_EXPORTER_DASK_NO_WORKERS_SECONDS"
NO_WORKERS_SECONDS = 30.0
# How often the futures and the scheduler are looked at; also the wait for the scheduler's answer.
POLL_SECONDS = 1.0
_SCHEDULER_TIMEOUT = 10.0


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidInputError(
            "environment", [ErrorItem(name, f"{raw!r} is not a number of seconds above 0")]
        )
    return value


@dataclass(frozen=True)
class Bounds:
    """How long a run waits for a cluster without workers, and for the next partition to finish."""

    no_workers: float = NO_WORKERS_SECONDS
    stall: float = STALL_SECONDS

    @classmethod
    def from_env(cls) -> Bounds:
        """The bounds from the environment, read when a run starts (never at import)."""
        return cls(_seconds(NO_WORKERS_ENV, NO_WORKERS_SECONDS), _seconds(STALL_ENV, STALL_SECONDS))


@contextmanager
def worker_counter(address: str) -> Iterator[Any]:
    """A function counting the cluster's workers (None when the scheduler does not answer)."""
    from distributed import Client

    connect: Any = Client  # distributed is not typed
    # A client of its own, not made the default: the task runner's client stays the one in use.
    client = connect(address, timeout=_SCHEDULER_TIMEOUT, set_as_default=False)

    def count() -> int | None:
        try:
            return len(client.nthreads(callback_timeout=_SCHEDULER_TIMEOUT))
        except Exception:  # a timeout, a closed comm, a client that gave up: no answer, all alike
            return None

    try:
        yield count
    finally:
        client.close(timeout=_SCHEDULER_TIMEOUT)


def _done(future: Any) -> bool:
    return bool(future.wrapped_future.done())


class _Watch:
    """The clocks of one wait: since the last partition finished, and since a worker was last seen."""

    def __init__(self, address: str, bounds: Bounds, labels: Sequence[str], run: str):
        self.address, self.bounds, self.labels, self.run = address, bounds, labels, run
        self.progress = self.seen = time.monotonic()

    def _out(self, pending: set[int]) -> str:
        return f"{', '.join(self.labels[i] for i in sorted(pending))} of {self.run}"

    def check_cancelled(self, cancelled: set[int]) -> None:
        """Dask cancels every task of a client that lost its scheduler: say so, not "cancelled"."""
        if cancelled:
            raise TransientError(
                f"Dask cluster {self.address} cancelled partitions {self._out(cancelled)} (its scheduler "
                "was lost?): check the cluster and run again"
            )

    def check(self, finished: bool, workers: int | None, pending: set[int]) -> None:
        """Raise TransientError when a bound is passed (one line: the cluster, the partitions out)."""
        now = time.monotonic()
        if finished:
            self.progress = now
        if workers:
            self.seen = now
        elif now - self.seen > self.bounds.no_workers:
            state = "no worker" if workers == 0 else "no answer from its scheduler"
            raise TransientError(
                f"Dask cluster {self.address} has had {state} for {now - self.seen:.0f}s; partitions "
                f"{self._out(pending)} were not finished: start workers and run again "
                f"(the wait is ${NO_WORKERS_ENV}, default {NO_WORKERS_SECONDS:.0f}s)"
            )
        if now - self.progress > self.bounds.stall:
            raise TransientError(
                f"no partition finished on Dask cluster {self.address} for {now - self.progress:.0f}s; "
                f"partitions {self._out(pending)} made no progress: check the cluster's workers, "
                f"or raise ${STALL_ENV} (default {STALL_SECONDS:.0f}s) for partitions that take longer"
            )


def wait_for(
    futures: Sequence[Any],
    labels: Sequence[str],
    run: str,
    address: str,
    bounds: Bounds,
    on_done: Callable[[int], None] = lambda _n: None,
) -> list[Any]:
    """The results of the partition futures (a DaskTaskRunner's; `labels` name them, `run` names the
    run), in order, once all are done; a bound passed cancels those still out and raises TransientError."""
    pending = set(range(len(futures)))
    watch = _Watch(address, bounds, labels, run)
    with worker_counter(address) as workers:
        try:
            while pending:
                futures[min(pending)].wait(timeout=POLL_SECONDS)
                finished = {i for i in pending if _done(futures[i])}
                pending -= finished
                on_done(len(finished))
                if pending:
                    watch.check(bool(finished), workers(), pending)
        except BaseException:
            for i in pending:
                futures[i].wrapped_future.cancel()
            raise
    watch.check_cancelled({i for i, future in enumerate(futures) if future.wrapped_future.cancelled()})
    return [future.result() for future in futures]
