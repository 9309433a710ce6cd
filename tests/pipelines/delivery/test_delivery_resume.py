"""Interrupted deliveries, in process (the kill -9 versions run against a real sshd in tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.sftp_server import LocalSftp
from pipelines.delivery.delivery_journal import Journal, journal_path
from pipelines.model.config import Home, SftpSetting
from tests.sftp_exports import Export, send, write_export


def interrupted(
    monkeypatch: pytest.MonkeyPatch, setting: SftpSetting, home: Home, export: Export, at: str
) -> None:
    """Deliver `export`, stopped right after step `at` takes effect (`<step>.recorded`: and is recorded)."""
    mark = Journal.mark

    def stop(journal: Journal, step: str) -> None:
        if step == at:
            raise KeyboardInterrupt
        mark(journal, step)
        if f"{step}.recorded" == at:
            raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "mark", stop)
    with pytest.raises(KeyboardInterrupt):
        send(setting, home, export)
    monkeypatch.undo()


def partner_view(upload: Path, name: str) -> tuple[bytes | None, str | None]:
    data = upload / name
    manifest = upload / f"{name}.manifest.json"
    described = json.loads(manifest.read_text())["sha256"] if manifest.exists() else None
    return (data.read_bytes() if data.exists() else None), described


def test_going_back_to_delivered_bytes_after_an_abandoned_change_delivers_them_again(
    home: Home, setting: SftpSetting, server: LocalSftp, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = server.root / "upload"
    a = write_export(home, [b"id\nC-1\n"])
    assert send(setting, home, a).delivered
    b = write_export(home, [b"id\nC-1\nC-2\n"])
    interrupted(monkeypatch, setting, home, b, "dataUploaded")  # A's manifest removed, B not yet in place
    assert partner_view(upload, a.file.name) == (b"id\nC-1\n", None)

    a_again = write_export(home, [b"id\nC-1\n"])
    result = send(setting, home, a_again)

    assert result.delivered  # the ledger has A, but the partner no longer has A's manifest
    assert partner_view(upload, a.file.name) == (b"id\nC-1\n", a.sha256)
    assert sorted(p.name for p in upload.iterdir()) == sorted([a.file.name, a.manifest.name])
    assert not journal_path(a.file).exists()


def test_an_abandoned_delivery_of_other_bytes_leaves_no_remote_temp_file(
    home: Home, setting: SftpSetting, server: LocalSftp, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = server.root / "upload"
    first = write_export(home, [b"id\nC-1\n"])
    interrupted(monkeypatch, setting, home, first, "dataUploaded.recorded")
    temps = [p.name for p in upload.iterdir() if p.name.endswith(".part")]
    assert len(temps) == 1
    assert temps[0] == Journal.load(journal_path(first.file)).dataTemp  # type: ignore[union-attr]

    changed = write_export(home, [b"id\nC-9\n"])
    assert send(setting, home, changed).delivered

    assert sorted(p.name for p in upload.iterdir()) == sorted([changed.file.name, changed.manifest.name])
    assert partner_view(upload, changed.file.name) == (b"id\nC-9\n", changed.sha256)
