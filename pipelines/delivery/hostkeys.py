"""Host-key pinning: the server must present a key pinned in `knownHostsFile` (OpenSSH format,
hashed names included); an unknown, changed or revoked key is refused before any credential is sent."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey

from pipelines.delivery.failures import sftp_address
from pipelines.model.config import SftpSetting
from pipelines.model.errors import ErrorItem, InvalidInputError, TerminalError

logger = logging.getLogger(__name__)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH writes in known_hosts: `host` on port 22, `[host]:port` otherwise (lowercase)."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):
        return HostKeys.hash_host(name, pattern) == pattern
    if "*" not in pattern and "?" not in pattern:
        # A literal, compared as such: `[127.0.0.1]:2222` is not a glob character class.
        return name.lower() == pattern.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, flags=re.IGNORECASE) is not None


def _host_matches(name: str, patterns: list[str]) -> bool:
    matched = False
    for raw in patterns:
        negated = raw.startswith("!")
        if _pattern_matches(name, raw[1:] if negated else raw):
            if negated:
                return False
            matched = True
    return matched


@dataclass(frozen=True)
class PinnedKeys:
    """Host keys from a known_hosts file that apply to one host name."""

    path: Path
    name: str
    keys: tuple[paramiko.PKey, ...]
    revoked: tuple[paramiko.PKey, ...]
    portless_entry: bool  # an entry for the bare host exists although the port is not 22


def load_pinned_keys(path: Path, host: str, port: int) -> PinnedKeys:
    """Read `path` (OpenSSH known_hosts format, hashed names included) for `host`:`port`."""
    name = known_hosts_name(host, port)
    keys: list[paramiko.PKey] = []
    revoked: list[paramiko.PKey] = []
    portless = False
    for lineno, raw in enumerate(_read_known_hosts(path, host, port).splitlines(), 1):
        parsed = _entry(path, lineno, raw)
        if parsed is None:
            continue
        marker, entry = parsed
        if _host_matches(name, entry.hostnames):
            (revoked if marker == "@revoked" else keys).append(entry.key)
        elif port != 22 and not marker and _host_matches(host.lower(), entry.hostnames):
            portless = True
    return PinnedKeys(path, name, tuple(keys), tuple(revoked), portless)


def _read_known_hosts(path: Path, host: str, port: int) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"SFTP setting for {host}:{port}",
            [
                ErrorItem(
                    "/knownHostsFile",
                    f"{path} does not exist; pin the server's key with "
                    f"`ssh-keyscan -p {port} {host} > {path}` and check its fingerprint with the partner",
                )
            ],
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"SFTP setting for {host}:{port}",
            [ErrorItem("/knownHostsFile", f"cannot read {path}: {exc.__class__.__name__}")],
        ) from None


def _entry(path: Path, lineno: int, raw: str) -> tuple[str, HostKeyEntry] | None:
    """One line's marker ("" or "@revoked") and entry; None for a blank, a comment or a line ignored."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    marker = ""
    if line.startswith("@"):
        marker, _, line = line.partition(" ")
        line = line.strip()
    try:
        entry = HostKeyEntry.from_line(line, lineno)
    except (InvalidHostKey, paramiko.SSHException, ValueError):
        entry = None
    if entry is None:
        logger.warning("%s line %d: not a host key this client understands; ignored", path, lineno)
        return None
    if marker == "@cert-authority":
        logger.warning("%s line %d: @cert-authority is not supported; ignored", path, lineno)
        return None
    if marker not in ("", "@revoked"):
        logger.warning("%s line %d: unknown marker %s; ignored", path, lineno, marker)
        return None
    return marker, entry


def prefer_pinned_types(transport: paramiko.Transport, pinned: PinnedKeys) -> None:
    # Ask for a host key of a type we hold, so a server with several keys presents the pinned one.
    available = list(transport.get_security_options().key_types)
    wanted: list[str] = []
    for key in pinned.keys:
        kind = key.get_name()
        names = ["rsa-sha2-512", "rsa-sha2-256"] if kind == "ssh-rsa" else [kind]
        wanted += [n for n in names if n in available and n not in wanted]
    if wanted:
        transport.get_security_options().key_types = wanted + [n for n in available if n not in wanted]


def verify_host_key(server_key: paramiko.PKey, pinned: PinnedKeys, setting: SftpSetting) -> None:
    host, port, where = setting.host, setting.port, sftp_address(setting)
    offered = f"{server_key.get_name()} key {fingerprint(server_key)}"
    blob = server_key.asbytes()
    if any(k.asbytes() == blob for k in pinned.revoked):
        raise TerminalError(
            f"host key refused: {where} presented {offered}, which {pinned.path} marks @revoked; "
            "ask the partner for the current key"
        )
    if any(k.asbytes() == blob for k in pinned.keys):
        return
    if pinned.keys:
        known = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in pinned.keys)
        raise TerminalError(
            f"host key CHANGED: {where} presented {offered}, but {pinned.path} pins {known} for "
            f"{pinned.name}. This may be an attack or a key rotation: confirm the new fingerprint with "
            f"the partner out of band, then replace the entry (`ssh-keyscan -p {port} {host}`)"
        )
    hint = (
        f" (the file has an entry for {host} without a port; for port {port} OpenSSH writes {pinned.name})"
        if pinned.portless_entry
        else ""
    )
    raise TerminalError(
        f"unknown host: {pinned.path} has no key for {pinned.name}{hint}; {where} presented {offered}. "
        f"Pin it with `ssh-keyscan -p {port} {host} >> {pinned.path}` after confirming the "
        "fingerprint with the partner"
    )
