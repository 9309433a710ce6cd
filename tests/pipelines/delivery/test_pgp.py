"""PGP-encrypted delivery: the partner decrypts `<name>.pgp` with their private key and gets the export."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import gnupg
import pytest

from flows.sftp_server import LocalSftp
from pipelines.delivery.delivery_journal import Journal
from pipelines.model.config import Encryption, Home, SftpSetting
from pipelines.model.errors import InvalidInputError
from tests.sftp_exports import EXPORTER, send, write_export


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[gnupg.GPG]:
    """The partner's own keyring (a temporary GNUPGHOME) holding their key pair."""
    home = tmp_path / "partner-gnupg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    yield gpg
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def new_key(gpg: gnupg.GPG, *, expire: str = "0", encrypts: bool = True) -> str:
    """A new key pair in `gpg`; without `encrypts`, a sign-only key (no encryption subkey)."""
    subkey = {"subkey_type": "ECDH", "subkey_curve": "cv25519"} if encrypts else {}
    spec = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        name_email="files@partner.example",
        no_protection=True,
        expire_date=expire,
        **subkey,
    )
    fingerprint = str(gpg.gen_key(spec).fingerprint)
    assert fingerprint
    return fingerprint


def encrypted_setting(server: LocalSftp, home: Home, key: str | bytes, pin: str | None = None) -> SftpSetting:
    server.write_setting(home, "partner")
    key_file = home.configs / "sftp" / "partner.asc"
    key_file.write_bytes(key.encode("utf-8") if isinstance(key, str) else key)
    setting = home.sftp("partner")
    encryption = Encryption(pgpPublicKeyFile="configs/sftp/partner.asc", pgpFingerprint=pin)
    return setting.model_copy(update={"encryption": encryption})


def test_round_trip_the_partner_decrypts_the_export(
    home: Home, server: LocalSftp, partner: gnupg.GPG, tmp_path: Path
) -> None:
    fingerprint = new_key(partner)
    setting = encrypted_setting(server, home, partner.export_keys(fingerprint))
    plaintext = b"contactId,phone\nC-1,+14155550123\n" * 5000
    export = write_export(home, [plaintext])

    result = send(setting, home, export)

    upload = server.root / "upload"
    data = upload / f"{export.file.name}.pgp"
    assert result.delivered
    assert sorted(p.name for p in upload.iterdir()) == sorted([data.name, export.manifest.name])
    decrypted = partner.decrypt_file(str(data), output=str(tmp_path / "decrypted"))
    assert decrypted.ok, decrypted.status
    assert (tmp_path / "decrypted").read_bytes() == plaintext == export.file.read_bytes()  # local stays plain
    manifest = json.loads((upload / export.manifest.name).read_text(encoding="utf-8"))
    assert manifest["sha256"] == hashlib.sha256(plaintext).hexdigest()
    assert manifest["encrypted"] == {
        "fileName": data.name,
        "format": "OpenPGP",
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "bytes": data.stat().st_size,
    }
    leftovers = [p.name for p in export.file.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the encrypted copy and the delivery record are gone


def unusable_key(partner: gnupg.GPG, problem: str) -> tuple[str | bytes, str]:
    """A key file's content with `problem`, and what the refusal says."""
    if problem == "expired":
        old = gnupg.GPG(gnupghome=partner.gnupghome, options=["--faked-system-time", "20200101T000000"])
        return partner.export_keys(new_key(old, expire="1d")), "has expired"
    if problem in ("private key", "binary private key"):
        armored = problem == "private key"
        key = partner.export_keys(new_key(partner), secret=True, expect_passphrase=False, armor=armored)
        assert armored or b"PRIVATE KEY BLOCK" not in key  # only GnuPG's reading can tell
        return key, "holds a private key"
    if problem == "sign-only":
        return partner.export_keys(new_key(partner, encrypts=False)), "has no valid encryption subkey"
    if problem == "two keys":
        return partner.export_keys([new_key(partner), new_key(partner)]), "holds 2 keys"
    not_a_key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n"
    return not_a_key, {"not a key": "is not an OpenPGP public key", "missing": "does not exist"}[problem]


PROBLEMS = ["expired", "not a key", "private key", "binary private key", "sign-only", "two keys", "missing"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_an_unusable_key_is_refused_before_anything_is_uploaded(
    home: Home, server: LocalSftp, partner: gnupg.GPG, tmp_path: Path, problem: str
) -> None:
    key, expected = unusable_key(partner, problem)
    setting = encrypted_setting(server, home, key)
    if problem == "missing":
        (home.configs / "sftp" / "partner.asc").unlink()
    export = write_export(home, [b"id\nC-1\n"])

    with pytest.raises(InvalidInputError) as info:
        send(setting, home, export)

    message = str(info.value)
    assert info.value.exit_code == 2
    assert expected in message
    assert f"/encryption/pgpPublicKeyFile: {home.configs / 'sftp' / 'partner.asc'}: " in message
    assert list((server.root / "upload").iterdir()) == []
    assert EXPORTER in str(export.file)


def test_an_interrupted_encrypted_delivery_is_completed_with_the_same_encrypted_bytes(
    home: Home, server: LocalSftp, partner: gnupg.GPG, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = encrypted_setting(server, home, partner.export_keys(new_key(partner)))
    export = write_export(home, [b"contactId\nC-1\nC-2\n"])
    mark = Journal.mark

    def die_after_the_data_rename(journal: Journal, step: str) -> None:
        if step == "dataPublished":
            raise KeyboardInterrupt  # the process stops between the rename and its record
        mark(journal, step)

    monkeypatch.setattr(Journal, "mark", die_after_the_data_rename)
    with pytest.raises(KeyboardInterrupt):
        send(setting, home, export)
    monkeypatch.undo()
    data = server.root / "upload" / f"{export.file.name}.pgp"
    first = (data.stat().st_ino, data.stat().st_mtime_ns, data.read_bytes())
    assert not (server.root / "upload" / export.manifest.name).exists()

    assert send(setting, home, export).delivered

    assert (data.stat().st_ino, data.stat().st_mtime_ns, data.read_bytes()) == first  # not re-encrypted
    manifest = json.loads((server.root / "upload" / export.manifest.name).read_text(encoding="utf-8"))
    assert manifest["encrypted"]["sha256"] == hashlib.sha256(first[2]).hexdigest()
    assert [p.name for p in export.file.parent.iterdir() if p.name.startswith(".")] == []


def test_a_pinned_fingerprint_must_match_the_key_file(
    home: Home, server: LocalSftp, partner: gnupg.GPG
) -> None:
    pinned, other = new_key(partner), new_key(partner)
    export = write_export(home, [b"id\nC-1\n"])
    setting = encrypted_setting(server, home, partner.export_keys(other), pin=pinned.lower())

    with pytest.raises(InvalidInputError) as info:
        send(setting, home, export)

    assert info.value.errors[0].path == "/encryption/pgpFingerprint"
    assert f"holds key {other}, but pgpFingerprint pins {pinned}" in str(info.value)
    assert list((server.root / "upload").iterdir()) == []
    setting = encrypted_setting(server, home, partner.export_keys(pinned), pin=pinned.lower())
    assert send(setting, home, export).delivered  # the pin is read in any case


def interrupt_at(monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    """The process stops right after `crash_at`'s remote effect, before it is recorded."""
    mark = Journal.mark

    def die(journal: Journal, step: str) -> None:
        if step == crash_at:
            raise KeyboardInterrupt
        mark(journal, step)

    monkeypatch.setattr(Journal, "mark", die)


@pytest.fixture
def old_partner(tmp_path: Path) -> Iterator[gnupg.GPG]:
    """A second keyring: the partner's key before they replaced it."""
    home = tmp_path / "old-partner-gnupg"
    home.mkdir(mode=0o700)
    yield gnupg.GPG(gnupghome=str(home))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def opens(gpg: gnupg.GPG, data: Path, out: Path) -> bytes | None:
    result = gpg.decrypt_file(str(data), output=str(out))
    return out.read_bytes() if result.ok else None


@pytest.mark.parametrize("crash_at", ["dataUploaded", "dataPublished", "manifestPublished"])
def test_a_resume_after_the_key_was_replaced_starts_again_for_the_new_key(
    home: Home,
    server: LocalSftp,
    partner: gnupg.GPG,
    old_partner: gnupg.GPG,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    crash_at: str,
) -> None:
    plaintext = b"contactId\nC-1\nC-2\n"
    export = write_export(home, [plaintext])
    setting = encrypted_setting(server, home, old_partner.export_keys(new_key(old_partner)))
    interrupt_at(monkeypatch, crash_at)
    with pytest.raises(KeyboardInterrupt):
        send(setting, home, export)
    monkeypatch.undo()
    data = server.root / "upload" / f"{export.file.name}.pgp"
    uploaded = [p for p in (server.root / "upload").iterdir() if p.name.endswith((".pgp", ".part"))]
    assert [opens(old_partner, p, tmp_path / "before") for p in uploaded] == [plaintext]

    new = new_key(partner)
    setting = encrypted_setting(server, home, partner.export_keys(new))
    result = send(setting, home, export)

    assert result.delivered
    assert sorted(p.name for p in (server.root / "upload").iterdir()) == sorted(
        [data.name, export.manifest.name]
    )
    assert opens(partner, data, tmp_path / "new") == plaintext
    assert opens(old_partner, data, tmp_path / "old") is None, "bytes made for the replaced key"
    manifest = json.loads((server.root / "upload" / export.manifest.name).read_text(encoding="utf-8"))
    assert manifest["encrypted"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert [p.name for p in export.file.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("problem", ["private key", "binary private key", "sign-only"])
def test_a_resume_refuses_a_key_file_replaced_by_an_unusable_key(
    home: Home,
    server: LocalSftp,
    partner: gnupg.GPG,
    old_partner: gnupg.GPG,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
) -> None:
    export = write_export(home, [b"contactId\nC-1\n"])
    setting = encrypted_setting(server, home, old_partner.export_keys(new_key(old_partner)))
    interrupt_at(monkeypatch, "dataUploaded")
    with pytest.raises(KeyboardInterrupt):
        send(setting, home, export)
    monkeypatch.undo()
    before = {p.name: p.stat().st_mtime_ns for p in (server.root / "upload").iterdir()}
    key, expected = unusable_key(partner, problem)
    setting = encrypted_setting(server, home, key)

    with pytest.raises(InvalidInputError, match=expected):
        send(setting, home, export)

    assert {p.name: p.stat().st_mtime_ns for p in (server.root / "upload").iterdir()} == before
