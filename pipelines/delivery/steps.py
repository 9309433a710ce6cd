"""The steps of one delivery, each recorded before and after it is taken (delivery_journal.py): the
intent, the old manifest's removal, then each file's upload and posix-rename into place.

A partner never sees a half-written file or a manifest that describes other bytes: a remote manifest
that describes other bytes is removed before new data is renamed into place, and the manifest comes
last. A delivery killed at any point is completed from its record and the remote state, taking only
the missing steps; a record that cannot be completed is abandoned with its leftovers."""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.delivery.delivery_journal import Journal, journal_path
from pipelines.delivery.ledger import recorded_at
from pipelines.delivery.session import Session
from pipelines.delivery.transfer import (
    TEMP_SUFFIX,
    holds,
    read_small,
    remote_size,
    temp_name,
    try_remove,
    upload_file,
)
from pipelines.io.files import atomic_write
from pipelines.model.config import Home, SftpSetting
from pipelines.model.progress import ByteProgress as Progress

if TYPE_CHECKING:  # GnuPG is imported only by deliveries that encrypt
    from pipelines.delivery.pgp import RecipientKey

logger = logging.getLogger(__name__)


def run_id_from(manifest: Path) -> str | None:
    try:
        data: Any = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run_id = data.get("runId") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) else None


def _describes(manifest_bytes: bytes, data_sha256: str) -> bool:
    """True when a manifest names `data_sha256` as its data file's (encrypted, when encrypted) hash."""
    try:
        data: Any = json.loads(manifest_bytes)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    encrypted = data.get("encrypted")
    if isinstance(encrypted, dict):
        return bool(encrypted.get("sha256") == data_sha256)
    return bool(data.get("sha256") == data_sha256)


def staged_manifest(file: Path) -> Path:
    return file.with_name(f".{file.name}.delivery-manifest.json")


@dataclass(frozen=True)
class ExportFiles:
    """The export being delivered: its two local files and what identifies its bytes."""

    file: Path
    manifest: Path
    exporter_id: str
    as_of: date
    sha256: str
    run_id: str | None


@dataclass(frozen=True)
class _Payload:
    """What goes up as the data file (the export, or its encrypted copy) and the manifest beside it."""

    path: Path | None  # the encrypted copy; None: the export itself
    name: str
    sha256: str
    size: int
    manifest: bytes


def _encrypted(setting: SftpSetting, home: Home, export: ExportFiles, key: RecipientKey) -> _Payload:
    """The export encrypted to `key` beside it, and the manifest that also describes the copy."""
    from pipelines.delivery import pgp

    assert setting.encryption is not None
    file = export.file
    payload = file.with_name(f".{file.name}.{secrets.token_hex(6)}.pgp")
    sha, size = pgp.encrypt_file(home.path(setting.encryption.pgpPublicKeyFile), file, payload, key)
    name = file.name + ".pgp"
    manifest: Any = json.loads(export.manifest.read_bytes())
    manifest["encrypted"] = {"fileName": name, "format": pgp.FORMAT, "sha256": sha, "bytes": size}
    return _Payload(payload, name, sha, size, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


def record_intent(setting: SftpSetting, home: Home, export: ExportFiles, key: RecipientKey | None) -> Journal:
    """Prepare what will be uploaded (the staged manifest, the copy encrypted to `key`) and record the intent."""
    file = export.file
    # Unencrypted, the partner gets the local file and manifest byte for byte.
    up = (
        _encrypted(setting, home, export, key)
        if key is not None
        else _Payload(None, file.name, export.sha256, file.stat().st_size, export.manifest.read_bytes())
    )

    def write(tmp: Path) -> None:
        tmp.write_bytes(up.manifest)

    atomic_write(staged_manifest(file), write)
    journal = Journal(
        path=journal_path(file),
        runId=export.run_id,
        exporterId=export.exporter_id,
        asOfDate=export.as_of.isoformat(),
        host=setting.host,
        port=setting.port,
        remoteDir=setting.remoteDir,
        localSha256=export.sha256,
        dataName=up.name,
        dataTemp=temp_name(up.name),
        manifestName=export.manifest.name,
        manifestTemp=temp_name(export.manifest.name),
        sha256=up.sha256,
        bytes=up.size,
        manifestSha256=hashlib.sha256(up.manifest).hexdigest(),
        manifestBytes=len(up.manifest),
        payload=str(up.path) if up.path is not None else None,
        encryption=key.journal_entry() if key is not None else None,
    )
    journal.mark("intent")
    return journal


def forget(journal: Journal, file: Path) -> None:
    """Remove the record and the local files it staged (the delivery is complete or abandoned)."""
    if journal.payload:
        Path(journal.payload).unlink(missing_ok=True)
    staged_manifest(file).unlink(missing_ok=True)
    journal.remove()


def remove_orphan_payloads(file: Path, keep: str | None) -> None:
    """Encrypted copies a crashed run made but never recorded (`.<name>.<12 hex>.pgp`)."""
    pattern = re.compile(rf"\.{re.escape(file.name)}\.{TEMP_SUFFIX}\.pgp")
    for path in file.parent.iterdir():
        if pattern.fullmatch(path.name) and str(path) != keep:
            path.unlink(missing_ok=True)


def abandon(session: Session | None, journal: Journal, file: Path, setting: SftpSetting, why: str) -> None:
    """An earlier delivery that cannot be resumed (`why`) never completed: drop its leftovers."""
    if session is not None and journal.same_destination(setting.host, setting.port, setting.remoteDir):
        for temp in (journal.dataTemp, journal.manifestTemp):
            try_remove(session, posixpath.join(journal.remoteDir, temp))
    logger.info("dropping the unfinished delivery record %s (%s)", journal.path.name, why)
    forget(journal, file)


def complete_remote_steps(session: Session, journal: Journal, file: Path, progress: Progress | None) -> None:
    """Take every step the record does not mark as done, in order; see pipelines/delivery/delivery_journal.py."""
    remote_dir = journal.remoteDir
    data_final = posixpath.join(remote_dir, journal.dataName)
    data_temp = posixpath.join(remote_dir, journal.dataTemp)
    manifest_final = posixpath.join(remote_dir, journal.manifestName)
    manifest_temp = posixpath.join(remote_dir, journal.manifestTemp)
    payload = Path(journal.payload) if journal.payload else file
    staged = staged_manifest(file)

    if not journal.done("oldManifestRemoved"):
        # The partner must never see the new data beside a manifest of the old data.
        existing = read_small(session, manifest_final)
        if existing is not None and not _describes(existing, journal.sha256):
            session.sftp.remove(manifest_final)
        journal.mark("oldManifestRemoved")

    _put(session, journal, payload, data_temp, data_final, "data", progress)
    _put(session, journal, staged, manifest_temp, manifest_final, "manifest", None)


def _put(
    session: Session,
    journal: Journal,
    local: Path,
    temp: str,
    final: str,
    kind: str,
    progress: Progress | None,
) -> None:
    """Upload `local` to `temp` and posix-rename it to `final`, skipping what the record marks done."""
    uploaded, published = f"{kind}Uploaded", f"{kind}Published"
    size, sha = (
        (journal.bytes, journal.sha256) if kind == "data" else (journal.manifestBytes, journal.manifestSha256)
    )
    if journal.done(published):
        return
    temp_size = remote_size(session, temp)
    if journal.done(uploaded) and temp_size is None:
        if holds(session, final, size, sha):  # renamed just before the crash could record it
            journal.mark(published)
            return
        del journal.steps[uploaded]  # the temporary file is gone: upload again
        journal.save()
    if not journal.done(uploaded):
        # A crash after the upload and before its record leaves a complete temporary file: keep it.
        if temp_size is None or not holds(session, temp, size, sha):
            if temp_size is not None:
                try_remove(session, temp)
            upload_file(session, local, temp, journal.remoteDir, size=size, sha256=sha, progress=progress)
        journal.mark(uploaded)
    session.sftp.posix_rename(temp, final)
    journal.mark(published)


def recipient(setting: SftpSetting, home: Home) -> RecipientKey | None:
    """The partner's key as configured now (InvalidInputError when it cannot encrypt); None unencrypted."""
    if setting.encryption is None:
        return None
    from pipelines.delivery import pgp

    encryption = setting.encryption
    return pgp.inspect(home.path(encryption.pgpPublicKeyFile), encryption.pgpFingerprint)


def not_resumable(
    found: Journal, file: Path, setting: SftpSetting, key: RecipientKey | None, local: tuple[str, str, str]
) -> str | None:
    """Why the record `found` cannot be completed as it is, or None when it can.

    `local` is (sha256, exporterId, asOfDate) of the export being delivered now."""
    data_name = file.name + (".pgp" if setting.encryption is not None else "")
    if (found.localSha256, found.exporterId, found.asOfDate) != local:
        return "other bytes"
    if found.dataName != data_name or not found.same_destination(
        setting.host, setting.port, setting.remoteDir
    ):
        return "another destination"
    if found.encryption != (key.journal_entry() if key is not None else None):
        was = (found.encryption or {}).get("fingerprint", "none")
        return f"encrypted for key {was}, configured now {key.fingerprint if key is not None else 'none'}"
    if not staged_manifest(file).is_file() or (
        found.payload is not None and not Path(found.payload).is_file()
    ):
        return "its local files are gone"
    return None


def reopened_remote(stale: Journal | None, warehouse: Path) -> bool:
    """True when an abandoned delivery removed the remote manifest and never reached the ledger: the
    partner lacks what the ledger may say they have, so the bytes are delivered again."""
    return stale is not None and stale.done("oldManifestRemoved") and recorded_at(warehouse, stale) is None
