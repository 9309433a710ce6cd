"""A run on a Dask cluster that loses every worker, or whose partitions stop, fails within its bound.

A real scheduler and two workers (each under its nanny) run as processes of their own; a preload
makes each partition mark that it started, then wait, so the test acts while partitions are out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.model.config import Home
from pipelines.model.errors import TransientError
from pipelines.model.request import RunRequest
from tests.worlds import make_home, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AS_OF = date(2026, 12, 1)
REPO = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
NO_WORKERS_SECONDS = 3
# Kill to failure: the no-worker wait, a poll, the scheduler's own notice of the lost workers, and
# the teardown of the run (flow and task states, the failed run's row) on a busy machine.
BOUND_SECONDS = 60

PRELOAD = """
import os, time
from pathlib import Path

from pipelines.run import building, job

_build_part = building.build_part


def build_part(plan, run_id, part, progress=None):
    (Path(os.environ["CE_TEST_MARKS"]) / f"{part.index}-{os.getpid()}").touch()
    time.sleep(float(os.environ["CE_TEST_PARTITION_WAIT"]))
    return _build_part(plan, run_id, part)


building.build_part = build_part
"""


@dataclass
class Cluster:
    address: str
    marks: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """Both workers' nannies (the processes started here) and the worker processes under them."""
        nannies = self.processes[1:]
        return [p.pid for p in nannies] + [
            c.pid for p in nannies for c in psutil.Process(p.pid).children(True)
        ]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(what: str, ready: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {seconds:.0f}s")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler and two workers with a nanny each, every partition waiting 120 s once it starts."""
    marks = tmp_path / "marks"
    marks.mkdir()
    preload = tmp_path / "slow_partitions.py"
    preload.write_text(PRELOAD, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CE_TEST_MARKS": str(marks),
        "CE_TEST_PARTITION_WAIT": "120",
    }
    info = tmp_path / "scheduler.json"
    found = Cluster("", marks)
    scheduler = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    found.processes.append(
        _spawn([*scheduler, "--scheduler-file", str(info)], env, tmp_path / "scheduler.log")
    )
    try:
        _wait_for("the scheduler", lambda: info.is_file() and info.stat().st_size > 0)
        found.address = json.loads(info.read_text())["address"]
        for n in (1, 2):
            worker = [str(DASK), "worker", found.address, "--nworkers", "1", "--nthreads", "1"]
            worker += [
                "--name",
                f"w{n}",
                "--no-dashboard",
                "--memory-limit",
                "1GiB",
                "--preload",
                str(preload),
            ]
            found.processes.append(_spawn(worker, env, tmp_path / f"worker{n}.log"))
        _wait_for("two workers", lambda: _workers(found.address) == 2)
        yield found
    finally:
        for process in found.processes:
            for pid in [process.pid, *(c.pid for c in _children(process.pid))]:
                _kill(pid)
            process.wait(timeout=30)


def _children(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(True))
    except psutil.NoSuchProcess:
        return []


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        return len(client.nthreads())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("CONTACT_EXPORTER_DASK_NO_WORKERS_SECONDS", str(NO_WORKERS_SECONDS))
    h = make_home(tmp_path / "home", 120, with_sftp=False)
    without_sftp(h, "CE-VOICECOL")
    return h


def request(home: Home, **options: Any) -> RunRequest:
    return RunRequest(exporter_id="CE-VOICECOL", as_of=AS_OF, home=str(home.root), deliver=False, **options)


def run_in_background(req: RunRequest) -> tuple[threading.Thread, dict[str, Any]]:
    """The flow in a thread of its own: a run that never ends must fail this test, not hang it."""
    from flows.prefect_flows import export_contacts

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = export_contacts(**req.flow_parameters())
        except BaseException as exc:
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def assert_failed_cleanly(home: Home, outcome: dict[str, Any], cluster: Cluster) -> TransientError:
    """The run failed with exit 1 and one line naming the cluster and the partitions out; it left no
    staging and no export file; its lock is free: the same exporter and date runs again at once."""
    error = outcome.get("error")
    assert isinstance(error, TransientError), outcome
    assert error.exit_code == 1
    message = str(error)
    assert "\n" not in message
    assert cluster.address in message
    assert "of CE-VOICECOL 2026-12-01" in message
    assert any(f"p{k}/4" in message for k in range(1, 5)), message
    runs = home.root / "data" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    folder = home.exports / "CE-VOICECOL" / AS_OF.isoformat()
    assert not folder.exists() or [p.name for p in folder.iterdir()] in ([], [".run.lock"])
    from flows.prefect_flows import export_contacts

    again = export_contacts(
        **request(home, partitions=1).flow_parameters()
    )  # would be "already in progress" if still held
    assert again["counts"]["exported"] > 0
    return error


def test_a_run_whose_workers_all_die_fails_within_its_bound(home: Home, cluster: Cluster) -> None:
    thread, outcome = run_in_background(request(home, partitions=4, dask_address=cluster.address))
    _wait_for("a partition to start", lambda: any(cluster.marks.iterdir()), seconds=120)

    for pid in cluster.worker_pids():  # both workers and both nannies, by PID
        _kill(pid)
    killed = time.monotonic()
    thread.join(timeout=BOUND_SECONDS)

    assert not thread.is_alive(), f"the run still waits {BOUND_SECONDS}s after its workers died"
    assert outcome["ended"] - killed < BOUND_SECONDS
    error = assert_failed_cleanly(home, outcome, cluster)
    assert f"Dask cluster {cluster.address} has had no worker for" in str(error)


def test_a_run_whose_partitions_make_no_progress_fails_within_its_bound(
    home: Home, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACT_EXPORTER_DASK_STALL_SECONDS", "5")
    started = time.monotonic()
    thread, outcome = run_in_background(request(home, partitions=4, dask_address=cluster.address))
    thread.join(timeout=BOUND_SECONDS + 30)  # the partitions would wait 120 s each

    assert not thread.is_alive(), "the run still waits for partitions that make no progress"
    assert outcome["ended"] - started < BOUND_SECONDS
    error = assert_failed_cleanly(home, outcome, cluster)
    assert f"no partition finished on Dask cluster {cluster.address} for" in str(error)


def test_a_run_whose_whole_cluster_dies_fails_within_its_bound(home: Home, cluster: Cluster) -> None:
    thread, outcome = run_in_background(request(home, partitions=4, dask_address=cluster.address))
    _wait_for("a partition to start", lambda: any(cluster.marks.iterdir()), seconds=120)

    for pid in [cluster.processes[0].pid, *cluster.worker_pids()]:  # the scheduler too
        _kill(pid)
    killed = time.monotonic()
    thread.join(timeout=BOUND_SECONDS)

    assert not thread.is_alive(), f"the run still waits {BOUND_SECONDS}s after its cluster died"
    assert outcome["ended"] - killed < BOUND_SECONDS
    assert_failed_cleanly(home, outcome, cluster)
