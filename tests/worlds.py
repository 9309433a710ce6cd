"""Small, real homes for end-to-end tests: the repository's configs plus generated source data."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Any

from pipelines.io import sources
from pipelines.model.config import Home
from pipelines.model.tables import SourceTables
from pipelines.synth import book as synth

REPO = Path(__file__).resolve().parent.parent
SEED = 11

# The platform documentation's request example, its placeholder column filled in with `value`.
SEED_REQUEST: dict[str, Any] = {
    "contactMatchingCriteria": {
        "label": ["personal"],
        "contactType": ["phone"],
        "affiliation": ["self"],
        "status": ["primary"],
    },
    "columnSettings": [{"field": "value", "outputName": "phone"}],
    "checkCanInteractData": {"theme": "agentNotification", "isAutodialed": False},
}


@cache
def sample_tables(borrowers: int = 300, seed: int = SEED) -> SourceTables:
    home = Home(REPO)
    companies = [home.company(c) for c in home.company_ids()]
    return synth.generate(borrowers, seed, companies)


def make_home(root: Path, borrowers: int = 300, *, with_sftp: bool = True) -> Home:
    """A home with CP-ACME, the two example exporters, the campaign and a DuckDB source."""
    for part in ("companies", "exporters", "campaigns"):
        shutil.copytree(REPO / "configs" / part, root / "configs" / part)
    shutil.copy2(REPO / "configs" / "schedules.yaml", root / "configs" / "schedules.yaml")
    if with_sftp:
        shutil.copytree(REPO / "configs" / "sftp", root / "configs" / "sftp")
    home = Home(root)
    sources.write_source(sample_tables(borrowers), home.warehouse, "duckdb")
    return home


def without_sftp(home: Home, exporter_id: str) -> None:
    """Make an exporter keep its files local (tests that do not deliver)."""
    path = home.exporters_dir / f"{exporter_id}.json"
    text = path.read_text().replace('"sftpSettingId": "partner"', '"sftpSettingId": null')
    path.write_text(text)
