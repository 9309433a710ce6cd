"""Prefect settings for local and ephemeral use, applied before Prefect is imported.

First start of Prefect's ephemeral server migrates a SQLite database and can take ~20 s, over
Prefect's default limit, so the timeout is raised; telemetry is off (no network here). Run logs go to
the API (Prefect's default): the flows also send the library's `pipelines.*` log lines there. Values already
set in the environment win. Without PREFECT_API_URL, the home's local server (flows/localserver.py) is
used while it runs; `connect` starts a temporary one for the command otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply(home_root: Path) -> None:
    os.environ.setdefault("PREFECT_HOME", str(home_root / ".prefect"))
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not os.environ.get("PREFECT_API_URL"):
        # The home's own server (`contact-exporter server start`), when it runs, instead of a
        # temporary server per command.
        from flows import localserver

        url = localserver.running_url(home_root)
        if url:
            os.environ["PREFECT_API_URL"] = url


def connect(home_root: Path, say: Callable[[str], None]) -> None:
    """`apply`, then make sure there is a Prefect API: PREFECT_API_URL, the home's local server, or a
    temporary server for this command alone (ended with it, even when it is killed)."""
    apply(home_root)
    if os.environ.get("PREFECT_API_URL") or _imported_with_an_api():
        return
    from flows import localserver

    say(
        "no Prefect server: starting a temporary one for this command (about 20 s); "
        "`contact-exporter server start` keeps one running for this home"
    )
    localserver.start_temporary(home_root)


def _imported_with_an_api() -> bool:
    """Prefect already imported and pointed at an API (a process embedding the flows, a test
    harness): that API is used, and no server is started."""
    if "prefect" not in sys.modules:
        return False
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())
