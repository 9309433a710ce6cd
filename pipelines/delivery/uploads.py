"""SFTP delivery (CONTRACT.md §6–§7) and the delivery ledger.

A partner never sees a half-written file: each file goes to a hidden temporary name in `remoteDir`,
its remote size is checked against the bytes sent, and only then is it renamed into place with
`posix-rename` (atomic, and unlike plain SFTP rename it replaces an existing file on OpenSSH). A
remote manifest that describes other bytes is removed before new data is renamed into place, and
the manifest comes last, so a manifest always describes the data file beside it.

Each remote step is recorded before and after it is taken (pipelines/delivery/delivery_journal.py): a run
killed at any point is completed by the next call for the same bytes, which reads the record and
the remote state and takes only the missing steps, without uploading the data file again.

The server must present a host key pinned in `knownHostsFile`; an unknown or changed key is refused
before any credential is sent. Secrets come from the environment (`passwordEnv`, read at call time)
or from the caller (a Prefect Secret block resolved by the flow); they never reach a log or a message.

The ledger (`deliveries` table in the warehouse) makes delivery idempotent per (exporterId,
asOfDate, sha256); it is written after the manifest is in place (the last recorded step).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey
from paramiko.pkey import UnknownKeyType
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY
from pydantic import SecretStr

from pipelines.delivery.delivery_journal import Journal, journal_path
from pipelines.io import duck
from pipelines.io.files import atomic_write
from pipelines.io.warehouse import DELIVERIES_DDL
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import (
    ContactExporterError,
    ErrorItem,
    InvalidInputError,
    TerminalError,
    TransientError,
)
from pipelines.model.progress import ByteProgress as Progress

if TYPE_CHECKING:  # GnuPG is imported only by deliveries that encrypt
    from pipelines.delivery.pgp import RecipientKey

logger = logging.getLogger(__name__)
# Progress is called as progress(bytes_sent, total_bytes) while the data file uploads.

# Local reads of this size keep memory flat for multi-GB files; paramiko splits each read into
# pipelined SFTP write requests, and the channel window bounds what is in flight.
READ_CHUNK = 1024 * 1024
# Every SFTP server takes 32 KiB writes. Servers that state a larger limit (limits@openssh.com; OpenSSH
# 8.7+ allows 255 KiB) get up to 128 KiB per request: measured 49 → 81 MiB/s against OpenSSH on loopback.
MIN_WRITE_REQUEST = 32 * 1024
WRITE_REQUEST = 128 * 1024
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 32 * 1024

_TEMP_SUFFIX = r"[0-9a-f]{12}"
# What a network or SFTP failure can raise; anything else (a bug, a callback's error) propagates as is.
_IO_ERRORS = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)
_CHECK_PREFIX = ".contact-exporter-check"


@dataclass(frozen=True)
class DeliveryResult:
    """What one `deliver` call did. `delivered_at` is UTC; for a skipped delivery it is the earlier one's."""

    delivered: bool
    skipped_reason: str | None
    remote_path: str
    remote_manifest_path: str
    delivered_at: datetime | None
    bytes: int
    seconds: float


# ---------------------------------------------------------------- ledger


def _epoch_to_utc(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


@contextmanager
def _ledger(warehouse: Path, action: str) -> Iterator[duckdb.DuckDBPyConnection]:
    # Opened per call and closed at once: other steps write other tables of the same file.
    try:
        with duck.connect(warehouse) as con:
            con.execute(DELIVERIES_DDL)
            yield con
    except duckdb.Error as exc:
        raise TransientError(
            f"cannot {action} the delivery ledger (table deliveries) in {warehouse}: {exc}; "
            "check that no other process holds the DuckDB file open for writing"
        ) from exc


def last_delivery(
    warehouse: Path, exporter_id: str, as_of: date, sha256: str, file_name: str | None = None
) -> datetime | None:
    """When these exact bytes (exporter, as-of date, sha256) were last delivered, in UTC, or None.

    With `file_name`, only deliveries under that name (or its `.pgp`) count: a campaign run's file,
    named after its campaign, is not "already delivered" by the daily file of the same bytes."""
    if not warehouse.exists():
        return None
    names = [file_name, f"{file_name}.pgp"] if file_name else [None, None]
    with _ledger(warehouse, "read") as con:
        row = con.execute(
            "SELECT epoch_us(max(deliveredAt)) FROM deliveries "
            "WHERE exporterId = ? AND asOfDate = ? AND sha256 = ? "
            "AND (CAST(? AS VARCHAR) IS NULL OR fileName IN (?, ?))",
            [exporter_id, as_of, sha256, names[0], *names],
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return _epoch_to_utc(int(row[0]))


def already_delivered(warehouse: Path, exporter_id: str, as_of: date, sha256: str) -> bool:
    """True when the ledger holds a delivery of these bytes for (exporter, as-of date)."""
    return last_delivery(warehouse, exporter_id, as_of, sha256) is not None


def record_delivery(
    warehouse: Path,
    *,
    exporter_id: str,
    as_of: date,
    sha256: str,
    file_name: str,
    remote_path: str,
    host: str,
    delivered_at: datetime,
    size: int,
    run_id: str | None,
) -> None:
    """Append one row to the ledger. A redelivery appends another row: the table is the history."""
    if delivered_at.tzinfo is None:
        raise ValueError("delivered_at must be timezone-aware (UTC)")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with _ledger(warehouse, "record a delivery in") as con:
        con.execute(
            "INSERT INTO deliveries (exporterId, asOfDate, sha256, fileName, remotePath, host, "
            "deliveredAt, bytes, runId) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                exporter_id,
                as_of,
                sha256,
                file_name,
                remote_path,
                host,
                delivered_at.astimezone(UTC),
                size,
                run_id,
            ],
        )


# ---------------------------------------------------------------- host keys


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
    try:
        text = path.read_text(encoding="utf-8")
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
    keys: list[paramiko.PKey] = []
    revoked: list[paramiko.PKey] = []
    portless = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
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
            continue
        if marker == "@cert-authority":
            logger.warning("%s line %d: @cert-authority is not supported; ignored", path, lineno)
            continue
        if marker not in ("", "@revoked"):
            logger.warning("%s line %d: unknown marker %s; ignored", path, lineno, marker)
            continue
        if _host_matches(name, entry.hostnames):
            (revoked if marker == "@revoked" else keys).append(entry.key)
        elif port != 22 and not marker and _host_matches(host.lower(), entry.hostnames):
            portless = True
    return PinnedKeys(path, name, tuple(keys), tuple(revoked), portless)


def _prefer_pinned_types(transport: paramiko.Transport, pinned: PinnedKeys) -> None:
    # Ask for a host key of a type we hold, so a server with several keys presents the pinned one.
    available = list(transport.get_security_options().key_types)
    wanted: list[str] = []
    for key in pinned.keys:
        kind = key.get_name()
        names = ["rsa-sha2-512", "rsa-sha2-256"] if kind == "ssh-rsa" else [kind]
        wanted += [n for n in names if n in available and n not in wanted]
    if wanted:
        transport.get_security_options().key_types = wanted + [n for n in available if n not in wanted]


def _verify_host_key(server_key: paramiko.PKey, pinned: PinnedKeys, setting: SftpSetting) -> None:
    host, port, where = setting.host, setting.port, _where(setting)
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


# ---------------------------------------------------------------- credentials and connection


def _credentials(
    setting: SftpSetting, home: Home, password: SecretStr | None
) -> tuple[paramiko.PKey | None, SecretStr | None]:
    source = f"SFTP setting for {setting.host}:{setting.port}"
    pkey: paramiko.PKey | None = None
    if setting.privateKeyFile:
        path = home.path(setting.privateKeyFile)
        try:
            pkey = paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise InvalidInputError(
                source, [ErrorItem("/privateKeyFile", f"{path} does not exist")]
            ) from None
        except TypeError:
            # cryptography: "Password was not given but private key is encrypted"
            raise InvalidInputError(
                source,
                [
                    ErrorItem(
                        "/privateKeyFile",
                        f"{path} is passphrase-protected; use a dedicated key without a passphrase "
                        "(readable only by the service account) or password authentication",
                    )
                ],
            ) from None
        except (OSError, ValueError, UnknownKeyType, paramiko.SSHException) as exc:
            raise InvalidInputError(
                source,
                [
                    ErrorItem(
                        "/privateKeyFile",
                        f"cannot load {path} as an ed25519, ECDSA or RSA private key "
                        f"({exc.__class__.__name__})",
                    )
                ],
            ) from None
    from_env = os.environ.get(setting.passwordEnv) if setting.passwordEnv else None
    # The password is a SecretStr from here on: its repr and str are masked wherever it travels.
    secret = password if password is not None and password.get_secret_value() else None
    if secret is None and from_env:
        secret = SecretStr(from_env)
    if pkey is None and secret is None:
        if setting.passwordEnv:
            item = ErrorItem(
                "/passwordEnv",
                f"environment variable {setting.passwordEnv} is not set; export it with the SFTP password",
            )
        else:
            item = ErrorItem(
                "/passwordSecretBlock",
                f"no password was resolved from Prefect Secret block {setting.passwordSecretBlock!r}; "
                "create the block or run through the flow that resolves it",
            )
        raise InvalidInputError(source, [item])
    return pkey, secret


@dataclass(frozen=True)
class _Session:
    sftp: paramiko.SFTPClient
    transport: paramiko.Transport
    host_key: paramiko.PKey
    where: str
    write_request: int


def _write_request_size(sftp: paramiko.SFTPClient) -> int:
    """Bytes per SFTP write: the server's stated limit capped at WRITE_REQUEST, else the 32 KiB minimum."""
    # paramiko has no public call for an extended request with a reply; OpenSSH's own client sends this.
    request = getattr(sftp, "_request", None)
    if request is None:
        return MIN_WRITE_REQUEST
    try:
        kind, msg = request(CMD_EXTENDED, "limits@openssh.com")
    except OSError:  # SSH_FX_OP_UNSUPPORTED: a server without the extension
        return MIN_WRITE_REQUEST
    if kind != CMD_EXTENDED_REPLY or msg is None:
        return MIN_WRITE_REQUEST
    msg.get_int64()  # max packet length
    msg.get_int64()  # max read length
    max_write = int(msg.get_int64())  # 0 = no limit
    return max(MIN_WRITE_REQUEST, min(WRITE_REQUEST, max_write or WRITE_REQUEST))


def _where(setting: SftpSetting) -> str:
    return f"{setting.username}@{setting.host}:{setting.port}"


def _auth_method(setting: SftpSetting, pkey: paramiko.PKey | None, secret: SecretStr | None) -> str:
    methods = []
    if pkey is not None:
        methods.append(f"key {setting.privateKeyFile}")
    if secret is not None:
        methods.append(f"password from {setting.passwordEnv or setting.passwordSecretBlock or 'the caller'}")
    return " then ".join(methods)


def _classify(
    exc: BaseException, setting: SftpSetting, stage: str, transport_alive: bool
) -> ContactExporterError:
    """Map an exception from socket, paramiko or an SFTP status to a transient or terminal error."""
    where = _where(setting)
    t = setting.timeouts
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return TransientError(f"cannot resolve {setting.host} (temporary DNS failure) for {where}")
        return TerminalError(
            f"cannot resolve host {setting.host!r} for {where}; check host in the SFTP setting"
        )
    if isinstance(exc, paramiko.AuthenticationException) and "timeout" not in str(exc).lower():
        allowed = (
            f" (the server accepts: {', '.join(exc.allowed_types)})"
            if isinstance(exc, paramiko.BadAuthenticationType)
            else ""
        )
        return TerminalError(
            f"authentication refused by {where}{allowed}: check the username and that the server accepts "
            "the configured credentials (the public key in its authorized_keys, or the password)"
        )
    if isinstance(exc, TimeoutError | paramiko.AuthenticationException):
        return TransientError(
            f"timed out while {stage} ({where}; timeouts: connect {t.connect}s, auth {t.auth}s, "
            f"channel {t.channel}s); check that the server is reachable or raise timeouts"
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return TransientError(
            f"connection refused by {setting.host}:{setting.port} while {stage}; "
            "check that the SFTP server is running and the port is right"
        )
    if isinstance(exc, ConnectionError | EOFError | paramiko.SSHException) or not transport_alive:
        detail = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        return TransientError(f"connection to {where} failed while {stage} ({detail}); retry")
    if isinstance(exc, PermissionError):
        return TerminalError(
            f"permission denied on {where} while {stage}; check that {setting.username} may write to "
            f"remoteDir {setting.remoteDir}"
        )
    if isinstance(exc, FileNotFoundError):
        return TerminalError(
            f"no such file or directory on {where} while {stage}; check remoteDir {setting.remoteDir}"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN):
        return TransientError(f"{setting.host}:{setting.port} unreachable while {stage}; check the network")
    if isinstance(exc, OSError):
        # An SFTP status other than "no such file" / "permission denied" (e.g. a full disk).
        return TransientError(
            f"{where} failed while {stage}: {exc.strerror or exc}; retry or check the server"
        )
    return TransientError(f"unexpected {exc.__class__.__name__} talking to {where} while {stage}")


@contextmanager
def _session(setting: SftpSetting, home: Home, password: SecretStr | None) -> Iterator[_Session]:
    known_hosts = home.path(setting.knownHostsFile)
    pinned = load_pinned_keys(known_hosts, setting.host, setting.port)
    pkey, secret = _credentials(setting, home, password)
    timeouts = setting.timeouts
    where = _where(setting)
    sock: socket.socket | None = None
    transport: paramiko.Transport | None = None
    stage = f"connecting (timeout {timeouts.connect}s)"
    try:
        sock = socket.create_connection((setting.host, setting.port), timeout=timeouts.connect)
        transport = paramiko.Transport(
            sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
        )
        transport.banner_timeout = timeouts.connect
        transport.handshake_timeout = timeouts.connect
        transport.auth_timeout = timeouts.auth
        transport.channel_timeout = timeouts.channel
        _prefer_pinned_types(transport, pinned)
        stage = f"waiting for the SSH banner and key exchange (timeout {timeouts.connect}s each)"
        # The transport thread enforces banner and handshake timeouts and reports their error; this
        # outer bound only guards against a thread that never reports.
        transport.start_client(timeout=2 * timeouts.connect + 5)
        server_key = transport.get_remote_server_key()
        # Refuse an unknown or changed key before any credential is sent.
        _verify_host_key(server_key, pinned, setting)
        stage = f"authenticating with {_auth_method(setting, pkey, secret)}"
        _authenticate(transport, setting.username, pkey, secret)
        stage = "opening the SFTP channel"
        sftp = paramiko.SFTPClient.from_transport(
            transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE
        )
        channel = sftp.get_channel() if sftp is not None else None
        if sftp is None or channel is None:
            raise TransientError(f"{where} did not open an SFTP channel; retry")
        channel.settimeout(timeouts.channel)
        stage = "asking the server's SFTP limits"
        write_request = _write_request_size(sftp)
    except BaseException as exc:
        alive = transport is not None and transport.is_active()
        if transport is not None:
            transport.close()
        elif sock is not None:
            sock.close()
        if isinstance(exc, _IO_ERRORS):
            raise _classify(exc, setting, stage, alive) from exc
        raise
    try:
        yield _Session(sftp, transport, server_key, where, write_request)
    finally:
        with suppress(Exception):
            sftp.close()
        transport.close()


def _authenticate(
    transport: paramiko.Transport, username: str, pkey: paramiko.PKey | None, secret: SecretStr | None
) -> None:
    if pkey is not None:
        try:
            transport.auth_publickey(username, pkey)
        except paramiko.AuthenticationException:
            if secret is None or not transport.is_active():
                raise
    if not transport.is_authenticated() and secret is not None:
        transport.auth_password(username, secret.get_secret_value())
    if not transport.is_authenticated():
        raise paramiko.AuthenticationException("further authentication required")


# ---------------------------------------------------------------- transfer


def _temp_name(final_name: str) -> str:
    return f".{final_name}.{secrets.token_hex(6)}.part"


def _is_our_temp(name: str, final_name: str) -> bool:
    return re.fullmatch(rf"\.{re.escape(final_name)}\.{_TEMP_SUFFIX}\.part", name) is not None


def _check_remote_dir(session: _Session, remote_dir: str) -> None:
    try:
        attrs = session.sftp.stat(remote_dir)
    except FileNotFoundError:
        raise TerminalError(
            f"remote directory {remote_dir} does not exist on {session.where}; create it on the server "
            "or fix remoteDir in the SFTP setting"
        ) from None
    except PermissionError:
        return  # some drop boxes hide their directories; the upload itself will tell
    if attrs.st_mode is not None and not stat.S_ISDIR(attrs.st_mode):
        raise TerminalError(f"remoteDir {remote_dir} on {session.where} is not a directory")


def _remove_stale(session: _Session, remote_dir: str, final_names: list[str], keep: set[str]) -> None:
    """Remove `.part` files an earlier, interrupted attempt left for these names (ours only)."""
    try:
        names = session.sftp.listdir(remote_dir)
    except PermissionError:
        logger.info("cannot list %s on %s; stale temporary files not cleaned", remote_dir, session.where)
        return
    for name in names:
        if name not in keep and any(_is_our_temp(name, final) for final in final_names):
            path = posixpath.join(remote_dir, name)
            logger.info("removing stale temporary file %s on %s", path, session.where)
            session.sftp.remove(path)


def _try_remove(session: _Session, path: str) -> None:
    if not session.transport.is_active():
        return  # the next attempt removes it
    try:
        session.sftp.remove(path)
    except FileNotFoundError:
        pass
    except Exception as exc:  # best effort: never mask the error that brought us here
        logger.warning("could not remove %s on %s (%s)", path, session.where, exc.__class__.__name__)


def _stream(src: IO[bytes], dst: paramiko.SFTPFile, total: int, progress: Progress | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    sent = 0
    while chunk := src.read(READ_CHUNK):
        dst.write(chunk)
        digest.update(chunk)
        sent += len(chunk)
        if progress is not None:
            progress(sent, total)
    return sent, digest.hexdigest()


def _remote_size(session: _Session, path: str) -> int | None:
    """The size of remote `path`, or None when it does not exist."""
    try:
        size = session.sftp.stat(path).st_size
    except FileNotFoundError:
        return None
    return size if size is not None else -1


def _remote_sha256(session: _Session, path: str) -> str:
    digest = hashlib.sha256()
    with session.sftp.open(path, "rb") as fh:
        fh.prefetch()
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _holds(session: _Session, path: str, size: int, sha256: str) -> bool:
    """True when remote `path` holds exactly these bytes: same size, then a read-back sha256."""
    return _remote_size(session, path) == size and _remote_sha256(session, path) == sha256


def free_bytes(session: _Session, path: str) -> int | None:
    """Bytes the user may still write on the remote file system (statvfs@openssh.com), or None."""
    request = getattr(session.sftp, "_request", None)
    if request is None:
        return None
    try:
        kind, msg = request(CMD_EXTENDED, "statvfs@openssh.com", path)
    except OSError:  # a server without the extension
        return None
    if kind != CMD_EXTENDED_REPLY or msg is None:
        return None
    msg.get_int64()  # f_bsize
    frsize = int(msg.get_int64())
    blocks = int(msg.get_int64())
    msg.get_int64()  # f_bfree
    bavail = int(msg.get_int64())
    return frsize * bavail if blocks > 0 else None


def _no_space(
    session: _Session, remote_dir: str, name: str, needed: int, stored: int | None
) -> TerminalError:
    """The terminal error for a write the server did not keep: disk full, quota, or a refusal."""
    free = free_bytes(session, remote_dir)
    if free is not None and free < needed:
        return TerminalError(
            f"remote disk full on {session.where}: {remote_dir} has {free} bytes free, {name} needs "
            f"{needed}; free space on the server (or raise the quota), then rerun"
        )
    held = "" if stored is None else f" (it holds {stored} of {needed} bytes)"
    return TerminalError(
        f"{session.where} did not store {name} in {remote_dir}{held}: the server refused the write "
        "(quota exceeded or disk full?); free space or raise the quota on the server, then rerun"
    )


def _upload(
    session: _Session,
    local: Path,
    temp: str,
    remote_dir: str,
    *,
    size: int,
    sha256: str,
    progress: Progress | None,
) -> None:
    """Write `local` to remote `temp`; check the bytes sent against `sha256` and the size the server holds."""
    name = posixpath.basename(temp)
    free = free_bytes(session, remote_dir)
    if free is not None and free < size:
        raise TerminalError(
            f"remote disk full on {session.where}: {remote_dir} has {free} bytes free, {local.name} needs "
            f"{size}; free space on the server (or raise the quota), then rerun"
        )
    try:
        with local.open("rb") as src, session.sftp.open(temp, "wb", bufsize=0) as dst:
            dst.MAX_REQUEST_SIZE = session.write_request
            dst.set_pipelined(True)
            sent, digest = _stream(src, dst, size, progress)
        if digest != sha256 or sent != size:
            raise TerminalError(
                f"{local} changed since its manifest was written (sha256 {digest[:12]}… differs from "
                f"{sha256[:12]}…); rerun the export before delivering"
            )
        stored = _remote_size(session, temp)
        if stored != sent:
            raise _no_space(session, remote_dir, name, sent, stored)
    except ContactExporterError:
        _try_remove(session, temp)
        raise
    except (PermissionError, FileNotFoundError):
        _try_remove(session, temp)
        raise
    except OSError as exc:
        # SFTP v3 reports a full disk or an exceeded quota as a bare "Failure" status.
        if not session.transport.is_active() or isinstance(exc, ConnectionError | TimeoutError):
            raise
        error = _no_space(session, remote_dir, name, size, _remote_size(session, temp))
        _try_remove(session, temp)
        raise error from exc
    except BaseException:
        _try_remove(session, temp)
        raise


def _run_id_from(manifest: Path) -> str | None:
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


def _read_small(session: _Session, path: str, limit: int = 1 << 20) -> bytes | None:
    try:
        with session.sftp.open(path, "rb") as fh:
            return bytes(fh.read(limit))
    except FileNotFoundError:
        return None


def _staged_manifest(file: Path) -> Path:
    return file.with_name(f".{file.name}.delivery-manifest.json")


@dataclass(frozen=True)
class _Export:
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


def _encrypted(setting: SftpSetting, home: Home, export: _Export, key: RecipientKey) -> _Payload:
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


def _intent(setting: SftpSetting, home: Home, export: _Export, key: RecipientKey | None) -> Journal:
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

    atomic_write(_staged_manifest(file), write)
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
        dataTemp=_temp_name(up.name),
        manifestName=export.manifest.name,
        manifestTemp=_temp_name(export.manifest.name),
        sha256=up.sha256,
        bytes=up.size,
        manifestSha256=hashlib.sha256(up.manifest).hexdigest(),
        manifestBytes=len(up.manifest),
        payload=str(up.path) if up.path is not None else None,
        encryption=key.record() if key is not None else None,
    )
    journal.mark("intent")
    return journal


def _forget(journal: Journal, file: Path) -> None:
    """Remove the record and the local files it staged (the delivery is complete or abandoned)."""
    if journal.payload:
        Path(journal.payload).unlink(missing_ok=True)
    _staged_manifest(file).unlink(missing_ok=True)
    journal.remove()


def _remove_orphan_payloads(file: Path, keep: str | None) -> None:
    """Encrypted copies a crashed run made but never recorded (`.<name>.<12 hex>.pgp`)."""
    pattern = re.compile(rf"\.{re.escape(file.name)}\.{_TEMP_SUFFIX}\.pgp")
    for path in file.parent.iterdir():
        if pattern.fullmatch(path.name) and str(path) != keep:
            path.unlink(missing_ok=True)


def _abandon(session: _Session | None, journal: Journal, file: Path, setting: SftpSetting, why: str) -> None:
    """An earlier delivery that cannot be resumed (`why`) never completed: drop its leftovers."""
    if session is not None and journal.same_destination(setting.host, setting.port, setting.remoteDir):
        for temp in (journal.dataTemp, journal.manifestTemp):
            _try_remove(session, posixpath.join(journal.remoteDir, temp))
    logger.info("dropping the unfinished delivery record %s (%s)", journal.path.name, why)
    _forget(journal, file)


def _complete(session: _Session, journal: Journal, file: Path, progress: Progress | None) -> None:
    """Take every step the record does not mark as done, in order; see pipelines/delivery/delivery_journal.py."""
    remote_dir = journal.remoteDir
    data_final = posixpath.join(remote_dir, journal.dataName)
    data_temp = posixpath.join(remote_dir, journal.dataTemp)
    manifest_final = posixpath.join(remote_dir, journal.manifestName)
    manifest_temp = posixpath.join(remote_dir, journal.manifestTemp)
    payload = Path(journal.payload) if journal.payload else file
    staged = _staged_manifest(file)

    if not journal.done("oldManifestRemoved"):
        # The partner must never see the new data beside a manifest of the old data.
        existing = _read_small(session, manifest_final)
        if existing is not None and not _describes(existing, journal.sha256):
            session.sftp.remove(manifest_final)
        journal.mark("oldManifestRemoved")

    _put(session, journal, payload, data_temp, data_final, "data", progress)
    _put(session, journal, staged, manifest_temp, manifest_final, "manifest", None)


def _put(
    session: _Session,
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
    temp_size = _remote_size(session, temp)
    if journal.done(uploaded) and temp_size is None:
        if _holds(session, final, size, sha):  # renamed just before the crash could record it
            journal.mark(published)
            return
        del journal.steps[uploaded]  # the temporary file is gone: upload again
        journal.save()
    if not journal.done(uploaded):
        # A crash after the upload and before its record leaves a complete temporary file: keep it.
        if temp_size is None or not _holds(session, temp, size, sha):
            if temp_size is not None:
                _try_remove(session, temp)
            _upload(session, local, temp, journal.remoteDir, size=size, sha256=sha, progress=progress)
        journal.mark(uploaded)
    session.sftp.posix_rename(temp, final)
    journal.mark(published)


def _record(journal: Journal, warehouse: Path, run_id: str | None) -> datetime:
    """Write the ledger row once (a crash after the insert finds it: `_recorded_at`), naming `run_id`:
    the run completing the delivery, which replaced the rows of the run that started it."""
    as_of = date.fromisoformat(journal.asOfDate)
    remote_path = posixpath.join(journal.remoteDir, journal.dataName)
    earlier = _recorded_at(warehouse, journal)
    delivered_at = earlier or datetime.now(UTC)
    if earlier is None:
        try:
            record_delivery(
                warehouse,
                exporter_id=journal.exporterId,
                as_of=as_of,
                sha256=journal.localSha256,
                file_name=journal.dataName,
                remote_path=remote_path,
                host=journal.host,
                delivered_at=delivered_at,
                size=journal.bytes,
                run_id=run_id,
            )
        except TransientError as exc:
            raise TransientError(
                f"{journal.dataName} was delivered to {journal.host}:{remote_path} but not recorded: {exc}. "
                "A retry records it without sending it again"
            ) from exc
    journal.mark("recorded")
    return delivered_at


def _recorded_at(warehouse: Path, journal: Journal) -> datetime | None:
    """When the ledger got this record's row (written after its intent), or None.

    Found by what was sent and where, not by runId: the next run's record step hands the rows of the
    run it replaces over to itself (pipelines.io.warehouse), so a row written just before a crash carries
    the rerun's runId by the time the rerun completes the record."""
    if not warehouse.exists():
        return None
    with _ledger(warehouse, "read") as con:
        row = con.execute(
            "SELECT epoch_us(max(deliveredAt)) FROM deliveries WHERE exporterId = ? AND asOfDate = ? "
            "AND sha256 = ? AND fileName = ? AND host = ? AND remotePath = ? AND deliveredAt >= ?",
            [
                journal.exporterId,
                date.fromisoformat(journal.asOfDate),
                journal.localSha256,
                journal.dataName,
                journal.host,
                posixpath.join(journal.remoteDir, journal.dataName),
                datetime.fromisoformat(journal.steps["intent"]),
            ],
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return _epoch_to_utc(int(row[0]))


def _recipient(setting: SftpSetting, home: Home) -> RecipientKey | None:
    """The partner's key as configured now (InvalidInputError when it cannot encrypt); None unencrypted."""
    if setting.encryption is None:
        return None
    from pipelines.delivery import pgp

    encryption = setting.encryption
    return pgp.inspect(home.path(encryption.pgpPublicKeyFile), encryption.pgpFingerprint)


def _not_resumable(
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
    if found.encryption != (key.record() if key is not None else None):
        was = (found.encryption or {}).get("fingerprint", "none")
        return f"encrypted for key {was}, configured now {key.fingerprint if key is not None else 'none'}"
    if not _staged_manifest(file).is_file() or (
        found.payload is not None and not Path(found.payload).is_file()
    ):
        return "its local files are gone"
    return None


def _reopened_remote(stale: Journal | None, warehouse: Path) -> bool:
    """True when an abandoned delivery removed the remote manifest and never reached the ledger: the
    partner lacks what the ledger may say they have, so the bytes are delivered again."""
    return stale is not None and stale.done("oldManifestRemoved") and _recorded_at(warehouse, stale) is None


def _skip(
    setting: SftpSetting, home: Home, password: SecretStr | None, stale: Journal | None, file: Path
) -> None:
    """Drop the leftovers of an abandoned record when the bytes were delivered already."""
    if stale is None:
        return
    try:
        with _session(setting, home, password) as session:
            _abandon(session, stale, file, setting, "these bytes were delivered already")
    except ContactExporterError as exc:  # cleaning up must not fail a finished delivery
        logger.warning("could not remove the leftovers of %s: %s", stale.path.name, exc)


def _send(
    setting: SftpSetting,
    home: Home,
    password: SecretStr | None,
    export: _Export,
    resume: Journal | None,
    dropped: tuple[Journal, str] | None,
    key: RecipientKey | None,
    progress: Progress | None,
) -> Journal:
    """Drop the `dropped` record's leftovers, record the intent (or take up `resume`) and take every
    remote step still missing; returns the record, all its remote steps done."""
    data_name = resume.dataName if resume is not None else export.file.name + (".pgp" if key else "")
    with _session(setting, home, password) as session:
        stage = f"uploading {data_name} to {setting.remoteDir}"
        try:
            _check_remote_dir(session, setting.remoteDir)
            if dropped is not None:
                _abandon(session, dropped[0], export.file, setting, dropped[1])
            journal = resume or _intent(setting, home, export, key)
            if resume is not None:
                logger.info(
                    "completing the interrupted delivery of %s (steps done: %s)",
                    data_name,
                    ", ".join(journal.steps),
                )
            names = [journal.dataName, journal.manifestName]
            _remove_stale(session, setting.remoteDir, names, {journal.dataTemp, journal.manifestTemp})
            _complete(session, journal, export.file, progress)
        except ContactExporterError:
            raise
        except _IO_ERRORS as exc:
            raise _classify(exc, setting, stage, session.transport.is_active()) from exc
    return journal


def deliver(
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
    """Deliver `file` then `manifest` to the SFTP destination, once per (exporter, as-of date, sha256).

    Each remote step is recorded before and after it is taken (pipelines/delivery/delivery_journal.py): a
    delivery interrupted at any point is completed by the next call for the same bytes and the same
    recipient key, without sending the data file again; a record made for other bytes, another
    place or another key is dropped and the delivery starts again from the export. `password` is a
    secret resolved by the caller (Prefect Secret block); `passwordEnv` is read here. `run_id`
    defaults to the manifest's `runId`. Raises TransientError (retry) or TerminalError /
    InvalidInputError (fix something first).
    """
    for local in (file, manifest):
        if not local.is_file():
            raise TerminalError(f"cannot deliver {local}: no such file; rerun the export to write it")
    data_name = file.name + (".pgp" if setting.encryption is not None else "")
    remote_path = posixpath.join(setting.remoteDir, data_name)
    remote_manifest = posixpath.join(setting.remoteDir, manifest.name)
    found = Journal.load(journal_path(file))
    # With a record to resume, the key is checked first: its fingerprint decides whether the record's
    # encrypted bytes may still be sent.
    key = _recipient(setting, home) if found is not None else None
    why = (
        _not_resumable(found, file, setting, key, (sha256, exporter_id, as_of.isoformat())) if found else None
    )
    resume = found if why is None else None
    stale = found if resume is None else None
    _remove_orphan_payloads(file, keep=resume.payload if resume is not None else None)
    if resume is None and not redeliver and not _reopened_remote(stale, warehouse):
        earlier = last_delivery(warehouse, exporter_id, as_of, sha256, file.name)
        if earlier is not None:
            _skip(setting, home, password, stale, file)
            reason = (
                f"already delivered to {setting.host}:{remote_path} at {earlier.isoformat()} "
                "(same exporter, as-of date and sha256); use --redeliver to send it again"
            )
            logger.info("%s %s: %s", exporter_id, as_of, reason)
            return DeliveryResult(False, reason, remote_path, remote_manifest, earlier, 0, 0.0)
    if key is None:
        key = _recipient(setting, home)  # refused before any upload
    started = time.monotonic()
    export = _Export(
        file, manifest, exporter_id, as_of, sha256, run_id if run_id is not None else _run_id_from(manifest)
    )
    dropped = (stale, why or "") if stale is not None else None
    journal = _send(setting, home, password, export, resume, dropped, key, progress)
    delivered_at = _record(journal, warehouse, export.run_id)
    _forget(journal, file)
    seconds = time.monotonic() - started
    logger.info(
        "delivered %s (%d bytes) and its manifest to %s:%s in %.1fs",
        data_name,
        journal.bytes,
        setting.host,
        setting.remoteDir,
        seconds,
    )
    return DeliveryResult(True, None, remote_path, remote_manifest, delivered_at, journal.bytes, seconds)


def check_destination(
    setting: SftpSetting, home: Home, password: SecretStr | None = None
) -> dict[str, object]:
    """Connect, verify the host key, and prove remoteDir is writable with a small temporary file."""
    started = time.monotonic()
    with _session(setting, home, password) as session:
        probe = posixpath.join(setting.remoteDir, f"{_CHECK_PREFIX}.{secrets.token_hex(6)}.part")
        stage = f"writing a probe file to {setting.remoteDir}"
        try:
            _check_remote_dir(session, setting.remoteDir)
            try:
                with session.sftp.open(probe, "wb") as f:
                    f.write(b"contact-exporter destination check\n")
            except BaseException:
                _try_remove(session, probe)
                raise
            stage = f"removing the probe file {probe}"
            session.sftp.remove(probe)
        except ContactExporterError:
            raise
        except _IO_ERRORS as exc:
            raise _classify(exc, setting, stage, session.transport.is_active()) from exc
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
