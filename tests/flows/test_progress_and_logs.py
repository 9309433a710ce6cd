"""What a person sees on stderr: progress bars on a terminal (none in a pipe), log lines with their
time and run, and `--log-format json` for machines. The CLI runs as a separate process, in a real
pseudo-terminal where a terminal is meant."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.worlds import make_home, without_sftp

BAR = re.compile(r"\[[#-]{24}\]")


def _env(api: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("CONTACT_EXPORTER_PROGRESS", None)
    if api:
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


def in_terminal(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run `python -m flows ARGS` with a pseudo-terminal as its stdin, stdout and stderr."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, as typed in a terminal
        os.execve(sys.executable, [sys.executable, "-m", "flows", *args], env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def in_a_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_generate_draws_a_bar_on_a_terminal_and_none_in_a_pipe(tmp_path: Path) -> None:
    args = ["--home", str(tmp_path), "generate", "--borrowers", "2500"]
    code, screen = in_terminal([*args, "--out", "tty.duckdb"], _env(api=False))
    assert code == 0, screen[-2000:]
    assert BAR.search(screen), screen[-2000:]
    assert "2500/2500 borrowers" in screen
    piped = in_a_pipe([*args, "--out", "pipe.duckdb"], _env(api=False))
    assert piped.returncode == 0, piped.stderr
    assert not BAR.search(piped.stderr)
    assert "\x1b[K" not in piped.stderr
    assert json.loads(piped.stdout)["rows"]["borrowers"] == 2500


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_on_a_terminal_shows_its_partitions_and_timed_log_lines(tmp_path: Path) -> None:
    home = make_home(tmp_path, borrowers=200)
    without_sftp(home, "CE-VOICECOL")
    args = ["--home", str(home.root), "run", "CE-VOICECOL", "--as-of", "2026-11-03", "--partitions", "3"]
    code, screen = in_terminal(args, _env(api=True))
    assert code == 0, screen[-3000:]
    assert "3/3 partitions" in screen, screen[-3000:]
    # a log line: time, level, the task run it belongs to, the message
    assert re.search(r"\d\d:\d\d:\d\d INFO +CE-VOICECOL 2026-11-03 p2/3 \| population \d+ borrowers", screen)
    # one line for the flow run's end; the tasks' (one per stage and partition) only with -v
    assert screen.count("Finished in state Completed()") == 1


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_json_logs_carry_the_run_and_the_task(tmp_path: Path) -> None:
    home = make_home(tmp_path, borrowers=200)
    without_sftp(home, "CE-VOICECOL")
    args = ["--home", str(home.root), "--log-format", "json", "run", "CE-VOICECOL", "--as-of", "2026-11-03"]
    out = in_a_pipe([*args, "--partitions", "2"], _env(api=True))
    assert out.returncode == 0, out.stderr[-3000:]
    entries = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert entries, out.stderr
    assert {"time", "level", "logger", "flowRun", "taskRun", "message"} <= set(entries[0])
    tasks = {e["taskRun"] for e in entries if e["flowRun"] == "CE-VOICECOL 2026-11-03"}
    assert {"CE-VOICECOL 2026-11-03 p1/2", "CE-VOICECOL 2026-11-03 p2/2"} <= tasks
    assert json.loads(out.stdout)["counts"]["matched"] > 0


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    out = in_a_pipe(["--home", str(tmp_path), "--log-format", "xml", "exporters", "list"], _env(api=False))
    assert out.returncode == 2
    assert "--log-format" in out.stderr
