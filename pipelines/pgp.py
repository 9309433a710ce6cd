"""OpenPGP encryption of a delivered file to the partner's public key (GnuPG through python-gnupg).

Each call works in its own temporary GnuPG home holding only the partner's key, so the service
account's keyring is never read or changed. A key that is not a single public key able to encrypt
today (expired, revoked, a secret key, not OpenPGP at all) is refused before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gnupg

from pipelines.errors import ErrorItem, InvalidInputError, TerminalError

_SOURCE = "SFTP setting encryption"
_POINTER = "/encryption/pgpPublicKeyFile"


def _refuse(path: Path, why: str) -> InvalidInputError:
    return InvalidInputError(_SOURCE, [ErrorItem(_POINTER, f"{path}: {why}")])


@contextmanager
def _keyring(path: Path) -> Iterator[tuple[gnupg.GPG, str]]:
    """A throwaway GnuPG home with the one key of `path` imported; yields (gpg, fingerprint)."""
    try:
        armored = path.read_bytes()
    except FileNotFoundError:
        raise _refuse(path, "does not exist; ask the partner for their OpenPGP public key") from None
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.__class__.__name__})") from None
    if b"PRIVATE KEY BLOCK" in armored:
        raise _refuse(path, "holds a private key; configure only the partner's public key")
    with tempfile.TemporaryDirectory(prefix="ce-gpg-") as home:
        gpg = gnupg.GPG(gnupghome=home)
        imported = gpg.import_keys(armored)
        keys: list[dict[str, Any]] = list(gpg.list_keys())
        if not imported.count or not keys:
            raise _refuse(path, "is not an OpenPGP public key")
        if len(keys) != 1:
            raise _refuse(path, f"holds {len(keys)} keys; keep exactly the partner's one key in the file")
        key = keys[0]
        fpr = str(key["fingerprint"])
        expires = str(key.get("expires") or "")
        if key.get("trust") == "r":
            raise _refuse(path, f"key {fpr} is revoked; ask the partner for their current key")
        if key.get("trust") == "e" or (expires and int(expires) <= time.time()):
            raise _refuse(path, f"key {fpr} has expired; ask the partner for a renewed key")
        if "E" not in str(key.get("cap", "")):
            raise _refuse(path, f"key {fpr} has no valid encryption subkey (expired or sign-only)")
        yield gpg, fpr


def check_key(path: Path) -> str:
    """The fingerprint of the partner's key in `path`, or InvalidInputError when it cannot encrypt."""
    with _keyring(path) as (_, fpr):
        return fpr


def encrypt_file(key: Path, src: Path, dst: Path) -> tuple[str, int]:
    """Encrypt `src` to `key` (binary OpenPGP) into `dst`; returns the sha256 and size of `dst`."""
    with _keyring(key) as (gpg, fpr), src.open("rb") as fh:
        result = gpg.encrypt_file(fh, [fpr], output=str(dst), armor=False, always_trust=True)
    if not result.ok:
        dst.unlink(missing_ok=True)
        raise TerminalError(f"OpenPGP encryption of {src.name} to key {fpr} failed: {result.status}")
    digest = hashlib.sha256()
    size = 0
    with dst.open("rb") as out:
        while block := out.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
