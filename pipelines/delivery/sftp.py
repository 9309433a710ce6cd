"""SFTP delivery (CONTRACT.md §6–§7): the entry points `upload` and `check_destination`.

A partner never sees a half-written file: each file goes to a hidden temporary name in `remoteDir`,
its remote size is checked against the bytes sent, and only then is it renamed into place with
`posix-rename` (atomic, and unlike plain SFTP rename it replaces an existing file on OpenSSH). The
manifest comes last, so a manifest always describes the data file beside it (steps.py).

The server must present a host key pinned in `knownHostsFile` (hostkeys.py); secrets never reach a
log or a message (credentials.py). The ledger (ledger.py) makes delivery idempotent per (exporterId,
asOfDate, sha256).
"""

from __future__ import annotations

import logging
import posixpath
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from pipelines.delivery.delivery_journal import Journal, journal_path
from pipelines.delivery.failures import IO_ERRORS, classify
from pipelines.delivery.hostkeys import fingerprint
from pipelines.delivery.ledger import last_delivery, record_completed
from pipelines.delivery.session import open_session
from pipelines.delivery.steps import (
    ExportFiles,
    abandon,
    complete_remote_steps,
    forget,
    not_resumable,
    recipient,
    record_intent,
    remove_orphan_payloads,
    reopened_remote,
    run_id_from,
)
from pipelines.delivery.transfer import check_remote_dir, remove_stale, try_remove
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import ContactExporterError, TerminalError
from pipelines.model.progress import ByteProgress as Progress

if TYPE_CHECKING:  # GnuPG is imported only by deliveries that encrypt
    from pipelines.delivery.pgp import RecipientKey

logger = logging.getLogger(__name__)
_CHECK_PREFIX = ".contact-exporter-check"


@dataclass(frozen=True)
class DeliveryResult:
    """What one `upload` call did. `delivered_at` is UTC; for a skipped delivery it is the earlier one's."""

    delivered: bool
    skipped_reason: str | None
    remote_path: str
    remote_manifest_path: str
    delivered_at: datetime | None
    bytes: int
    seconds: float


def _skip(
    setting: SftpSetting, home: Home, password: SecretStr | None, stale: Journal | None, file: Path
) -> None:
    """Drop the leftovers of an abandoned record when the bytes were delivered already."""
    if stale is None:
        return
    try:
        with open_session(setting, home, password) as session:
            abandon(session, stale, file, setting, "these bytes were delivered already")
    except ContactExporterError as exc:  # cleaning up must not fail a finished delivery
        logger.warning("could not remove the leftovers of %s: %s", stale.path.name, exc)


def _send(
    setting: SftpSetting,
    home: Home,
    password: SecretStr | None,
    export: ExportFiles,
    found: _Found,
    key: RecipientKey | None,
    progress: Progress | None,
) -> Journal:
    """Drop the leftovers of a stale record, record the intent (or take up the record to resume) and
    take every remote step still missing; returns the record, all its remote steps done."""
    resume = found.resume
    data_name = resume.dataName if resume is not None else export.file.name + (".pgp" if key else "")
    with open_session(setting, home, password) as session:
        stage = f"uploading {data_name} to {setting.remoteDir}"
        try:
            check_remote_dir(session, setting.remoteDir)
            if found.stale is not None:
                abandon(session, found.stale, export.file, setting, found.why or "")
            journal = resume or record_intent(setting, home, export, key)
            if resume is not None:
                logger.info(
                    "completing the interrupted delivery of %s (steps done: %s)",
                    data_name,
                    ", ".join(journal.steps),
                )
            names = [journal.dataName, journal.manifestName]
            remove_stale(session, setting.remoteDir, names, {journal.dataTemp, journal.manifestTemp})
            complete_remote_steps(session, journal, export.file, progress)
        except ContactExporterError:
            raise
        except IO_ERRORS as exc:
            raise classify(exc, setting, stage, session.transport.is_active()) from exc
    return journal


def upload(
    setting: SftpSetting,
    home: Home,
    file: Path,
    manifest: Path,
    *,
    exporter_id: str,
    as_of: date,
    sha256: str,
    warehouse: Path,
    redeliver: bool = False,
    password: SecretStr | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> DeliveryResult:
    """Upload `file` then `manifest` to the SFTP destination, once per (exporter, as-of date, sha256).

    Each remote step is recorded before and after it is taken (pipelines/delivery/delivery_journal.py): a
    delivery interrupted at any point is completed by the next call for the same bytes and the same
    recipient key, without sending the data file again; a record made for other bytes, another
    place or another key is dropped and the delivery starts again from the export. `password` is a
    secret resolved by the caller (Prefect Secret block); `passwordEnv` is read here. `run_id`
    defaults to the manifest's `runId`. Raises TransientError (retry) or TerminalError /
    InvalidInputError (fix something first).
    """
    _require_files(file, manifest)
    found = _found_record(setting, home, file, (sha256, exporter_id, as_of.isoformat()))
    earlier = None if redeliver else _earlier_delivery(found, warehouse, exporter_id, as_of, sha256, file)
    if earlier is not None:
        _skip(setting, home, password, found.stale, file)
        return _skipped(setting, file, manifest, exporter_id, as_of, earlier)
    key = found.key if found.key is not None else recipient(setting, home)  # refused before any upload
    started = time.monotonic()
    export = ExportFiles(
        file, manifest, exporter_id, as_of, sha256, run_id if run_id is not None else run_id_from(manifest)
    )
    journal = _send(setting, home, password, export, found, key, progress)
    delivered_at = record_completed(journal, warehouse, export.run_id)
    forget(journal, file)
    return _delivered(setting, journal, manifest, delivered_at, time.monotonic() - started)


def _require_files(file: Path, manifest: Path) -> None:
    for local in (file, manifest):
        if not local.is_file():
            raise TerminalError(f"cannot deliver {local}: no such file; rerun the export to write it")


@dataclass(frozen=True)
class _Found:
    """The record of an earlier delivery of this file: taken up (`resume`) or dropped (`stale`, `why`)."""

    resume: Journal | None
    stale: Journal | None
    why: str | None
    key: RecipientKey | None  # the partner's key, read when there was a record to judge


def _found_record(setting: SftpSetting, home: Home, file: Path, local: tuple[str, str, str]) -> _Found:
    """Judge the record an earlier delivery of `file` left, and drop encrypted copies no record keeps."""
    found = Journal.load(journal_path(file))
    # With a record to resume, the key is checked first: its fingerprint decides whether the record's
    # encrypted bytes may still be sent.
    key = recipient(setting, home) if found is not None else None
    why = not_resumable(found, file, setting, key, local) if found else None
    resume = found if why is None else None
    remove_orphan_payloads(file, keep=resume.payload if resume is not None else None)
    return _Found(resume, found if resume is None else None, why, key)


def _earlier_delivery(
    found: _Found, warehouse: Path, exporter_id: str, as_of: date, sha256: str, file: Path
) -> datetime | None:
    """When these bytes were delivered already, unless a record is taken up or the partner lost them."""
    if found.resume is not None or reopened_remote(found.stale, warehouse):
        return None
    return last_delivery(warehouse, exporter_id, as_of, sha256, file.name)


def _skipped(
    setting: SftpSetting, file: Path, manifest: Path, exporter_id: str, as_of: date, earlier: datetime
) -> DeliveryResult:
    remote_path, remote_manifest = _remote_paths(setting, file, manifest)
    reason = (
        f"already delivered to {setting.host}:{remote_path} at {earlier.isoformat()} "
        "(same exporter, as-of date and sha256); use --redeliver to send it again"
    )
    logger.info("%s %s: %s", exporter_id, as_of, reason)
    return DeliveryResult(False, reason, remote_path, remote_manifest, earlier, 0, 0.0)


def _delivered(
    setting: SftpSetting, journal: Journal, manifest: Path, delivered_at: datetime, seconds: float
) -> DeliveryResult:
    logger.info(
        "delivered %s (%d bytes) and its manifest to %s:%s in %.1fs",
        journal.dataName,
        journal.bytes,
        setting.host,
        setting.remoteDir,
        seconds,
    )
    remote_path = posixpath.join(setting.remoteDir, journal.dataName)
    remote_manifest = posixpath.join(setting.remoteDir, manifest.name)
    return DeliveryResult(True, None, remote_path, remote_manifest, delivered_at, journal.bytes, seconds)


def _remote_paths(setting: SftpSetting, file: Path, manifest: Path) -> tuple[str, str]:
    data_name = file.name + (".pgp" if setting.encryption is not None else "")
    return posixpath.join(setting.remoteDir, data_name), posixpath.join(setting.remoteDir, manifest.name)


def check_destination(
    setting: SftpSetting, home: Home, password: SecretStr | None = None
) -> dict[str, object]:
    """Connect, verify the host key, and prove remoteDir is writable with a small temporary file."""
    started = time.monotonic()
    with open_session(setting, home, password) as session:
        probe = posixpath.join(setting.remoteDir, f"{_CHECK_PREFIX}.{secrets.token_hex(6)}.part")
        stage = f"writing a probe file to {setting.remoteDir}"
        try:
            check_remote_dir(session, setting.remoteDir)
            try:
                with session.sftp.open(probe, "wb") as f:
                    f.write(b"contact-exporter destination check\n")
            except BaseException:
                try_remove(session, probe)
                raise
            stage = f"removing the probe file {probe}"
            session.sftp.remove(probe)
        except ContactExporterError:
            raise
        except IO_ERRORS as exc:
            raise classify(exc, setting, stage, session.transport.is_active()) from exc
        key = session.host_key
    return {
        "host": setting.host,
        "port": setting.port,
        "username": setting.username,
        "remoteDir": setting.remoteDir,
        "hostKeyType": key.get_name(),
        "hostKeyFingerprint": fingerprint(key),
        "writable": True,
        "seconds": round(time.monotonic() - started, 3),
    }
