"""The write-ahead record of one SFTP delivery (CONTRACT.md §7): a small JSON file beside the export.

Before a delivery touches the server it writes its intent: the destination, the remote names (final
and temporary), the sha256 and size of what it will upload. After each remote step completes it
records that step. Every write is atomic (temp file, fsync, rename), so a process killed at any point
leaves either the previous record or the new one. The next run of the exporter reads the record and
the remote state and completes only the steps that are missing.

Steps, in order (a partner never sees a manifest that does not describe the data file beside it):

1. `intent`               the record itself: names, sha256, sizes
2. `oldManifestRemoved`   a remote manifest that describes other bytes is removed
3. `dataUploaded`         the data file is on the server under its temporary name, size checked
4. `dataPublished`        the temporary data file is posix-renamed to its final name
5. `manifestUploaded`     the manifest is on the server under its temporary name, size checked
6. `manifestPublished`    the temporary manifest is posix-renamed to its final name
7. `recorded`             the delivery is in the warehouse ledger (table deliveries)

A completed delivery removes its record. Tests may set `CONTACT_EXPORTER_TEST_CRASH_AT` to a step
name (kill -9 right after the step's remote effect, before it is recorded) or to `<step>.recorded`
(kill -9 right after it is recorded); nothing else reads that variable.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.io.files import atomic_write

VERSION = 1
STEPS = (
    "intent",
    "oldManifestRemoved",
    "dataUploaded",
    "dataPublished",
    "manifestUploaded",
    "manifestPublished",
    "recorded",
)
CRASH_ENV = "CONTACT_EXPORTER_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when the test-only crash variable names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def journal_path(file: Path) -> Path:
    """`.<fileName>.delivery.json` beside the local export file (hidden from folder readers)."""
    return file.with_name(f".{file.name}.delivery.json")


@dataclass
class Journal:
    """What one delivery intends and which of its steps are done (step name → UTC ISO time)."""

    path: Path
    runId: str | None
    exporterId: str
    asOfDate: str
    host: str
    port: int
    remoteDir: str
    localSha256: str  # sha256 of the local export file (the plaintext)
    dataName: str  # remote final names and temporary names
    dataTemp: str
    manifestName: str
    manifestTemp: str
    sha256: str  # sha256 and size of the data file as uploaded (encrypted when PGP is on)
    bytes: int
    manifestSha256: str
    manifestBytes: int
    payload: str | None = None  # a local file uploaded instead of the export (the encrypted copy)
    # What shaped the encrypted payload (format, the recipient key's fingerprint and encryption
    # subkeys; pipelines.delivery.pgp.RecipientKey.record), None when unencrypted. A resume under another key
    # must not upload bytes only the old key opens, so it is compared with the current key.
    encryption: dict[str, Any] | None = None
    steps: dict[str, str] = field(default_factory=dict)

    def done(self, step: str) -> bool:
        return step in self.steps

    def mark(self, step: str) -> None:
        """Record that `step` completed (the crash points around it are for tests)."""
        crash_point(step)
        self.steps[step] = datetime.now(UTC).isoformat()
        self.save()
        crash_point(f"{step}.recorded")

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        text = json.dumps({"version": VERSION, **data}, indent=2) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")

        atomic_write(self.path, write, mode=0o600)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def same_destination(self, host: str, port: int, remote_dir: str) -> bool:
        return (self.host, self.port, self.remoteDir) == (host, port, remote_dir)

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        """The record at `path`, or None when there is none (or it is not one this version wrote)."""
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.pop("version", None) != VERSION:
            return None
        try:
            journal = cls(path=path, **raw)
        except TypeError:
            return None
        return journal
