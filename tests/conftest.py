"""Session-wide test settings. Prefect reads these at import, so they are set before any test imports it."""

from __future__ import annotations

import os
from pathlib import Path

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
