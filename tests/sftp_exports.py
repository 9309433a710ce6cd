"""An export file and manifest on disk, and one call to deliver it: shared by the SFTP test suites."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines.delivery.sftp import DeliveryResult, upload
from pipelines.model.config import Home, SftpSetting

AS_OF = date(2026, 1, 2)
EXPORTER = "CE-TEST0001"


@dataclass(frozen=True)
class Export:
    file: Path
    manifest: Path
    sha256: str


def write_export(home: Home, chunks: Iterable[bytes], name: str = f"{EXPORTER}_20260102.csv") -> Export:
    """Stream `chunks` into the export folder, then write the manifest with their sha256."""
    folder = home.exports / EXPORTER / AS_OF.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / name
    digest = hashlib.sha256()
    size = 0
    with file.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    manifest = folder / f"{name}.manifest.json"
    manifest.write_text(
        json.dumps({"runId": "R-1", "sha256": digest.hexdigest(), "bytes": size}), encoding="utf-8"
    )
    return Export(file, manifest, digest.hexdigest())


def send(setting: SftpSetting, home: Home, export: Export, **kwargs: object) -> DeliveryResult:
    return upload(
        setting,
        home,
        export.file,
        export.manifest,
        exporter_id=EXPORTER,
        as_of=AS_OF,
        sha256=export.sha256,
        warehouse=home.warehouse,
        **kwargs,  # type: ignore[arg-type]
    )
