"""`contact-exporter server start|status|stop`: one Prefect server per home, used by runs while it is up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import localserver
from tests import browser
from tests.worlds import make_home, without_sftp

pytestmark = pytest.mark.integration


def cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API") and k != "PREFECT_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    h = make_home(tmp_path, borrowers=40)
    without_sftp(h, "CE-EMAILSVC")
    try:
        yield h.root
    finally:
        localserver.stop(h.root)  # never leave a server behind, whatever the test did


def test_a_started_server_is_reused_by_runs_and_stopped(home: Path) -> None:
    assert cli(home, "server", "status").returncode == 1

    started = cli(home, "server", "start")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["running"]
    assert state["started"]
    assert state["url"].startswith("http://127.0.0.1:")
    assert localserver.state_path(home).is_file()
    again = json.loads(cli(home, "server", "start").stdout)
    assert (again["started"], again["pid"]) == (False, state["pid"])

    run = cli(home, "run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no Prefect server" not in run.stderr
    # the run's page is on this server: it used it instead of a temporary one
    assert "View at " + state["url"].removesuffix("/api") + "/runs/flow-run/" in run.stderr

    status = cli(home, "server", "status")
    assert status.returncode == 0
    assert json.loads(status.stdout)["pid"] == state["pid"]

    stopped = cli(home, "server", "stop")
    assert json.loads(stopped.stdout)["stopped"] is True
    assert not localserver.state_path(home).exists()
    assert not localserver.healthy(state["url"], timeout=1.0)
    assert cli(home, "server", "status").returncode == 1


def test_a_dead_servers_state_is_ignored(home: Path) -> None:
    path = localserver.state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a pid that cannot be alive and a port nothing listens on
    path.write_text(json.dumps({"pid": 2**22 + 7, "url": "http://127.0.0.1:9/api"}))
    assert localserver.running_url(home) is None
    assert localserver.status(home)["running"] is False


def _port_other_than_prefects_default() -> int:
    while (port := localserver._free_port()) == 4200:
        pass
    return port


def test_the_ui_of_a_server_on_any_port_reaches_its_own_api(home: Path, tmp_path: Path) -> None:
    port = _port_other_than_prefects_default()
    started = cli(home, "server", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    assert f"Prefect UI: {base}" in started.stderr
    assert json.loads(started.stdout)["uiUrl"] == base

    # The UI asks /ui-settings where its API is; Prefect's default answer is port 4200.
    with urllib.request.urlopen(base + "/ui-settings", timeout=10) as response:  # noqa: S310 (loopback)
        ui_settings = json.loads(response.read())
    assert ui_settings["api_url"] == f"{base}/api"

    run = cli(home, "run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver")
    assert run.returncode == 0, run.stderr[-2000:]
    link = re.search(r"View at (\S+/runs/flow-run/\S+)", run.stderr)
    assert link is not None, run.stderr[-2000:]
    assert link.group(1).startswith(base + "/")

    page = browser.rendered_text(link.group(1))
    assert "Unable to connect to Prefect server" not in page
    assert "CE-EMAILSVC 2026-11-03" in page  # the run's name, read from the API by the UI
    png = browser.screenshot(link.group(1), tmp_path / "prefect-ui.png")
    assert png.stat().st_size > 20_000  # a blank or error page is a few KB
    browser.keep(png, "prefect-ui.png")
