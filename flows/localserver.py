"""A local Prefect server kept running for one home (`contact-exporter server start|stop|status`).

Without PREFECT_API_URL, every Prefect client process starts a temporary server of its own (about
20 s a call on a small machine, 30 s the first time). A server started once per home and reused costs
that once: `run`, `backfill`, `campaigns run` and `deployments serve` use it by themselves while it
runs (flows/settings.py). Its URL and process id are kept in `<home>/.prefect/local-server.json`, its
output in `<home>/.prefect/local-server.log`; it listens on 127.0.0.1 only. PREFECT_API_URL, when set,
always wins.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.model.errors import ContactExporterError, ErrorItem, InvalidInputError

STATE_FILE = "local-server.json"
LOG_FILE = "local-server.log"
TEMPORARY_LOG_FILE = "temporary-server.log"
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 30.0


def state_path(home_root: Path) -> Path:
    return home_root / ".prefect" / STATE_FILE


def _read_state(home_root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(home_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("pid"), int)
        or not isinstance(data.get("url"), str)
    ):
        return None
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as response:  # noqa: S310 (our own http URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def running_url(home_root: Path) -> str | None:
    """The API URL of this home's local server when it is up (a dead one's state is ignored)."""
    state = _read_state(home_root)
    if state is None or not _alive(state["pid"]):
        return None
    url: str = state["url"]
    return url if healthy(url, timeout=1.0) else None


def status(home_root: Path) -> dict[str, Any]:
    state = _read_state(home_root)
    if state is None:
        return {"running": False, "stateFile": str(state_path(home_root))}
    up = _alive(state["pid"]) and healthy(state["url"])
    ui_url = state.get("uiUrl") or state["url"].removesuffix("/api")
    return {**state, "uiUrl": ui_url, "running": up, "stateFile": str(state_path(home_root))}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prefect_executable() -> str:
    beside = Path(sys.executable).with_name("prefect")
    found = str(beside) if beside.is_file() else shutil.which("prefect")
    if not found:
        raise ContactExporterError("the `prefect` command is not installed beside this Python")
    return found


# Settings that point the UI and the links runs print at this server. Prefect's `--port` flag only
# moves the listener: the UI's /ui-settings is built from these, and without them it answers port
# 4200 whatever the port, which leaves the UI a dead page.
_ADDRESS_SETTINGS = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_UI_URL",
    "PREFECT_UI_API_URL",
    "PREFECT_SERVER_UI_API_URL",
    "PREFECT_SERVER_API_HOST",
    "PREFECT_SERVER_API_PORT",
)


def server_env(base: dict[str, str], prefect_home: Path, port: int) -> dict[str, str]:
    """The server process' environment: `base` without any address of another server, plus this one's."""
    env = {k: v for k, v in base.items() if k not in _ADDRESS_SETTINGS}
    env.setdefault("PREFECT_HOME", str(prefect_home))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env["PREFECT_SERVER_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    env["PREFECT_UI_URL"] = f"http://127.0.0.1:{port}"
    return env


def start(
    home_root: Path,
    *,
    port: int | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Start the home's server in the background (or report the one already running)."""
    current = status(home_root)
    if current["running"]:
        return {**current, "started": False}
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInputError("arguments", [ErrorItem("--port", f"{port} is not a TCP port")])
    folder = home_root / ".prefect"
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(dict(os.environ), folder, port)
    log_path = folder / LOG_FILE
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [_prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home_root,
            start_new_session=True,  # outlives this command; stopped by `server stop`
        )
    say(f"starting a Prefect server for {home_root} on {url} (log {log_path})")
    _wait_until_healthy(process, url, log_path, started, timeout)
    state = {
        "pid": process.pid,
        "url": url,
        "uiUrl": env["PREFECT_UI_URL"],
        "port": port,
        "prefectHome": env["PREFECT_HOME"],
        "log": str(log_path),
        "startedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "startSeconds": round(time.monotonic() - started, 2),
    }
    tmp = state_path(home_root).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(state_path(home_root))
    return {**state, "running": True, "started": True, "stateFile": str(state_path(home_root))}


def _wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, started: float, timeout: float
) -> None:
    while not healthy(url, timeout=1.0):
        if process.poll() is not None:
            raise ContactExporterError(
                f"the Prefect server exited with code {process.returncode} before it was ready; see {log_path}"
            )
        if time.monotonic() - started > timeout:
            _terminate(process.pid)
            raise ContactExporterError(
                f"the Prefect server was not ready after {timeout:.0f}s; see {log_path}"
            )
        time.sleep(0.25)


def _terminate(pid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the server's process group (the server and its workers), SIGKILL after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def start_temporary(home_root: Path, *, timeout: float = START_TIMEOUT_SECONDS) -> str:
    """A Prefect server for this command alone, ended with it: on exit, and by a parent-death signal
    when the command is killed (flows/parent_death.py), where Prefect's own temporary server would
    be left running. Started as Prefect starts that one (uvicorn, UI off, ephemeral settings) on a
    free loopback port, its output in `<home>/.prefect/temporary-server.log`. PREFECT_API_URL is
    set to it for the rest of the command. Linux sends the parent-death signal when the thread that
    started the server ends, so only the main thread starts one."""
    if threading.current_thread() is not threading.main_thread():
        raise ContactExporterError("a temporary Prefect server is started from the main thread only")
    folder = home_root / ".prefect"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", _site_of("prefect")]
    uvicorn += [
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    uvicorn += ["--log-level", "error", "--lifespan", "on"]
    log_path = folder / TEMPORARY_LOG_FILE
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.parent_death", str(os.getpid()), "--", *uvicorn],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home_root,
        )
    atexit.register(_end, process)
    _wait_until_healthy(process, url, log_path, started, timeout)
    os.environ["PREFECT_API_URL"] = url
    # No UI on a server that ends with the command: no `View at …` links to pages never served.
    os.environ.setdefault("PREFECT_UI_URL", "")
    return url


def _site_of(package: str) -> str:
    """The folder `package` is installed in, found without importing it (Prefect reads its settings
    from the environment when first imported, and PREFECT_API_URL is not set yet)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ContactExporterError(f"{package} is not installed beside this Python")
    return str(Path(spec.origin).parent.parent)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop(home_root: Path) -> dict[str, Any]:
    state = _read_state(home_root)
    if state is None:
        return {"running": False, "stopped": False, "stateFile": str(state_path(home_root))}
    if _alive(state["pid"]):
        _terminate(state["pid"])
    state_path(home_root).unlink(missing_ok=True)
    return {**state, "running": False, "stopped": True, "stateFile": str(state_path(home_root))}
