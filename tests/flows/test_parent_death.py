"""flows/parent_death.py: a command started through it ends when the process that started it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A parent that starts `sleep` through the wrapper, prints the sleeper's pid, then waits to be killed.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "flows.parent_death", str(os.getpid()), "--", "/bin/sleep", "300"])
print(child.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_the_command_ends_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert parent.stdout is not None
    sleeper = int(parent.stdout.readline())
    try:
        time.sleep(0.5)  # the wrapper has exec'd: the sleeper runs
        assert not _gone(sleeper, 0.2)
        assert Path(f"/proc/{sleeper}/cmdline").read_bytes().startswith(b"/bin/sleep")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _gone(sleeper, 5), "the command outlived its killed parent"
    finally:
        parent.kill()
        if not _gone(sleeper, 0):
            os.kill(sleeper, signal.SIGKILL)


def test_a_parent_already_gone_starts_nothing() -> None:
    # pid 1 is never this test's process: the wrapper sees another parent and exits without exec
    done = subprocess.run(
        [sys.executable, "-m", "flows.parent_death", "1", "--", "/bin/sleep", "300"],
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0


@pytest.mark.parametrize("argv", [[], ["x", "--", "/bin/true"], ["1", "/bin/true"], ["1", "--"]])
def test_usage_errors_exit_nonzero(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.parent_death", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "usage" in done.stderr
