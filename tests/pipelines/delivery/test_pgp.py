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
from pipelines.config import Encryption, Home, SftpSetting
from pipelines.delivery_journal import Journal
from pipelines.errors import InvalidInputError
from tests.sftp_exports import EXPORTER, send, write_export


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[gnupg.GPG]:
    """The partner's own keyring (a temporary GNUPGHOME) holding their key pair."""
    home = tmp_path / "partner-gnupg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    yield gpg
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def new_key(gpg: gnupg.GPG, *, expire: str = "0") -> str:
    spec = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        subkey_type="ECDH",
        subkey_curve="cv25519",
        name_email="files@partner.example",
        no_protection=True,
        expire_date=expire,
    )
    fingerprint = str(gpg.gen_key(spec).fingerprint)
    assert fingerprint
    return fingerprint


def encrypted_setting(server: LocalSftp, home: Home, key_text: str) -> SftpSetting:
    server.write_setting(home, "partner")
    key_file = home.configs / "sftp" / "partner.asc"
    key_file.write_text(key_text, encoding="utf-8")
    setting = home.sftp("partner")
    return setting.model_copy(update={"encryption": Encryption(pgpPublicKeyFile="configs/sftp/partner.asc")})


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


@pytest.mark.parametrize("problem", ["expired", "not a key", "private key", "missing"])
def test_an_unusable_key_is_refused_before_anything_is_uploaded(
    home: Home, server: LocalSftp, partner: gnupg.GPG, tmp_path: Path, problem: str
) -> None:
    if problem == "expired":
        old = gnupg.GPG(gnupghome=partner.gnupghome, options=["--faked-system-time", "20200101T000000"])
        key_text = partner.export_keys(new_key(old, expire="1d"))
    elif problem == "private key":
        fingerprint = new_key(partner)
        key_text = partner.export_keys(fingerprint, secret=True, expect_passphrase=False)
    else:
        key_text = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n"
    setting = encrypted_setting(server, home, key_text)
    if problem == "missing":
        (home.configs / "sftp" / "partner.asc").unlink()
    export = write_export(home, [b"id\nC-1\n"])

    with pytest.raises(InvalidInputError) as info:
        send(setting, home, export)

    message = str(info.value)
    expected = {
        "expired": "has expired",
        "not a key": "is not an OpenPGP public key",
        "private key": "holds a private key",
        "missing": "does not exist",
    }[problem]
    assert expected in message
    assert "/encryption/pgpPublicKeyFile" in message
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
