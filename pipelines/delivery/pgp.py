"""OpenPGP encryption of a delivered file to the partner's public key (GnuPG through python-gnupg).

Each call works in its own temporary GnuPG home holding only the partner's key, so the service
account's keyring is never read or changed. The key is inspected by GnuPG itself, never by looking
at its text: the packets of the file must be exactly one public key (a secret key is refused, armored
or binary), not revoked or expired, with a subkey able to encrypt today, and, when the setting pins
`pgpFingerprint`, that very key. Anything else is refused before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

from pipelines.model.errors import ErrorItem, InvalidInputError, TerminalError

_SOURCE = "SFTP setting encryption"
_KEY_FILE = "/encryption/pgpPublicKeyFile"
_PIN = "/encryption/pgpFingerprint"
# How the payload is written: binary OpenPGP (not armored). Part of what a delivery record keeps.
FORMAT = "OpenPGP"
ARMOR = False


@dataclass(frozen=True)
class RecipientKey:
    """The partner's key as GnuPG reads it: its fingerprint and the subkeys that encrypt today."""

    fingerprint: str
    subkeys: tuple[str, ...]

    def journal_entry(self) -> dict[str, Any]:
        """What shapes the encrypted bytes, as a delivery record keeps it (JSON)."""
        return {
            "format": FORMAT,
            "armor": ARMOR,
            "fingerprint": self.fingerprint,
            "subkeys": list(self.subkeys),
        }


def _refuse(path: Path, why: str, pointer: str = _KEY_FILE) -> InvalidInputError:
    return InvalidInputError(_SOURCE, [ErrorItem(pointer, f"{path}: {why}")])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _refuse(path, "does not exist; ask the partner for their OpenPGP public key") from None
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.__class__.__name__})") from None


def _check_packets(gpg: gnupg.GPG, data: bytes, path: Path) -> None:
    """What the file holds, read by GnuPG without importing it: exactly one public key."""
    scanned: list[dict[str, Any]] = list(gpg.scan_keys_mem(data))
    if not scanned:
        raise _refuse(path, "is not an OpenPGP public key")
    if any(key.get("type") != "pub" for key in scanned):
        raise _refuse(path, "holds a private key; configure only the partner's public key")
    if len(scanned) != 1:
        raise _refuse(path, f"holds {len(scanned)} keys; keep exactly the partner's one key in the file")


def _expired(info: dict[str, Any]) -> bool:
    expires = str(info.get("expires") or "")
    return info.get("trust") == "e" or bool(expires and int(expires) <= time.time())


def _encryption_subkeys(key: dict[str, Any]) -> tuple[str, ...]:
    """Fingerprints of the subkeys that may encrypt now (capability e, not revoked or expired)."""
    usable = []
    for info in (key.get("subkey_info") or {}).values():
        if "e" in str(info.get("cap", "")) and info.get("trust") != "r" and not _expired(info):
            usable.append(str(info["fingerprint"]))
    return tuple(sorted(usable))


def _usable(key: dict[str, Any], path: Path) -> RecipientKey:
    fpr = str(key["fingerprint"]).upper()
    if key.get("trust") == "r":
        raise _refuse(path, f"key {fpr} is revoked; ask the partner for their current key")
    if _expired(key):
        raise _refuse(path, f"key {fpr} has expired; ask the partner for a renewed key")
    subkeys = _encryption_subkeys(key)
    # GnuPG's own verdict ("E": the key as a whole can encrypt) and the subkey that would be used.
    if "E" not in str(key.get("cap", "")) or not subkeys:
        raise _refuse(path, f"key {fpr} has no valid encryption subkey (expired or sign-only)")
    return RecipientKey(fpr, subkeys)


def _check_pin(key: RecipientKey, pin: str | None, path: Path) -> None:
    if pin is not None and pin.upper() != key.fingerprint:
        raise _refuse(
            path,
            f"holds key {key.fingerprint}, but pgpFingerprint pins {pin.upper()}; confirm the key's "
            "fingerprint with the partner, then replace the key file or the pin",
            _PIN,
        )


@contextmanager
def _keyring(path: Path, pin: str | None) -> Iterator[tuple[gnupg.GPG, RecipientKey]]:
    """A throwaway GnuPG home with the one key of `path` imported; yields (gpg, the key)."""
    data = _read(path)
    with tempfile.TemporaryDirectory(prefix="ce-gpg-") as home:
        gpg = gnupg.GPG(gnupghome=home)
        _check_packets(gpg, data, path)
        imported = gpg.import_keys(data)
        keys: list[dict[str, Any]] = list(gpg.list_keys())
        if not imported.count or len(keys) != 1:
            raise _refuse(path, "is not an OpenPGP public key")
        if list(gpg.list_keys(secret=True)):  # the packet scan already said so; never encrypt then
            raise _refuse(path, "holds a private key; configure only the partner's public key")
        key = _usable(keys[0], path)
        _check_pin(key, pin, path)
        yield gpg, key


def inspect(path: Path, pin: str | None = None) -> RecipientKey:
    """The partner's key in `path`, or InvalidInputError when it cannot be used to encrypt."""
    with _keyring(path, pin) as (_, key):
        return key


def encrypt_file(key_file: Path, src: Path, dst: Path, expected: RecipientKey) -> tuple[str, int]:
    """Encrypt `src` to the key in `key_file` (binary OpenPGP) into `dst`; returns its sha256 and size.

    `expected` is the key inspected before: a file that changed in between is refused rather than
    encrypted to, so a delivery record always names the key its bytes were made for."""
    with _keyring(key_file, None) as (gpg, key), src.open("rb") as fh:
        if key != expected:
            raise TerminalError(
                f"{key_file} changed while the delivery was being prepared (key {expected.fingerprint} "
                f"became {key.fingerprint}); run again"
            )
        result = gpg.encrypt_file(fh, [key.fingerprint], output=str(dst), armor=ARMOR, always_trust=True)
    if not result.ok:
        dst.unlink(missing_ok=True)
        raise TerminalError(
            f"OpenPGP encryption of {src.name} to key {key.fingerprint} failed: {result.status}"
        )
    digest = hashlib.sha256()
    size = 0
    with dst.open("rb") as out:
        while block := out.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
