"""A real uvicorn server over a home, in a subprocess: started, waited for, stopped (the HTTP suites)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-5f1c"  # a test value, not a secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(api_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONTACT_EXPORTER_API_KEY"}
    env["PYTHONPATH"] = str(REPO)
    if api_key is not None:
        env["CONTACT_EXPORTER_API_KEY"] = api_key
    return env


def serve_command(home: Path, port: int) -> list[str]:
    code = (
        "import sys; from pathlib import Path; from pipelines.model.config import Home; "
        "from flows.api import serve; serve(Home(Path(sys.argv[1])), '127.0.0.1', int(sys.argv[2]))"
    )
    return [sys.executable, "-c", code, str(home), str(port)]


@contextmanager
def serving(home: Path, log_path: Path, ready: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """(base URL, process) of a server over `home` (logging to `log_path`), once GET `ready`
    answers 200; the server is stopped on exit (terminated, killed after 10 s)."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            serve_command(home, port),
            env=server_env(API_KEY),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(url + ready, headers={"X-API-KEY": API_KEY}, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become ready:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def deployments_serving(home_root: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """`contact-exporter deployments serve` in its own process until the block ends, then stopped by
    Ctrl-C as a person stops it; yields its output lines (they keep coming) once it is polling."""
    serving = subprocess.Popen(
        [sys.executable, "-m", "flows", "--home", str(home_root), "deployments", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    polling = threading.Event()

    def read() -> None:
        assert serving.stdout is not None
        for line in serving.stdout:
            lines.append(line)
            if "being served and polling" in line:
                polling.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert polling.wait(timeout=180), "".join(lines)
        yield lines
    finally:
        serving.send_signal(signal.SIGINT)
        serving.wait(timeout=120)
        reader.join(timeout=10)
