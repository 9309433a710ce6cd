"""Session-wide test settings. Prefect reads these at import, so they are set before any test imports it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, S3Server

_ROOT = Path(__file__).resolve().parent.parent
for key, value in {
    "PREFECT_HOME": str(_ROOT / ".prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    # Lookup tables (ZIP and phone zones) built for the tests stay inside the checkout.
    "CONTACT_EXPORTER_CACHE": str(_ROOT / ".cache" / "lookups"),
}.items():
    os.environ.setdefault(key, value)


# ---------------------------------------------------------------- source servers (tests/servers.py)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's package; fails, never skips, without it)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server for the session, a subprocess on loopback."""
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()
