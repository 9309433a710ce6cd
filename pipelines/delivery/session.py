"""One SFTP session: the socket, the SSH transport with the pinned host key checked, authentication,
and the SFTP channel, with the server's write limit asked once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY
from pydantic import SecretStr

from pipelines.delivery.credentials import auth_method, authenticate, credentials
from pipelines.delivery.failures import IO_ERRORS, classify, sftp_address
from pipelines.delivery.hostkeys import PinnedKeys, load_pinned_keys, prefer_pinned_types, verify_host_key
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import TransientError

# Every SFTP server takes 32 KiB writes. Servers that state a larger limit (limits@openssh.com; OpenSSH
# 8.7+ allows 255 KiB) get up to 128 KiB per request, which moves a large file markedly faster.
MIN_WRITE_REQUEST = 32 * 1024
WRITE_REQUEST = 128 * 1024
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 32 * 1024


@dataclass(frozen=True)
class Session:
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


@contextmanager
def open_session(setting: SftpSetting, home: Home, password: SecretStr | None) -> Iterator[Session]:
    """An authenticated SFTP session to `setting`'s server, its host key checked against the pinned ones."""
    pinned = load_pinned_keys(home.path(setting.knownHostsFile), setting.host, setting.port)
    pkey, secret = credentials(setting, home, password)
    opening = _Opening(f"connecting (timeout {setting.timeouts.connect}s)")
    try:
        session = _connect(opening, setting, pinned, pkey, secret)
    except BaseException as exc:
        alive = opening.transport is not None and opening.transport.is_active()
        if opening.transport is not None:
            opening.transport.close()
        elif opening.sock is not None:
            opening.sock.close()
        if isinstance(exc, IO_ERRORS):
            raise classify(exc, setting, opening.stage, alive) from exc
        raise
    try:
        yield session
    finally:
        with suppress(Exception):
            session.sftp.close()
        session.transport.close()


@dataclass
class _Opening:
    """How far opening a session got: the stage a failure is reported in, and what to close."""

    stage: str
    sock: socket.socket | None = None
    transport: paramiko.Transport | None = None


def _connect(
    opening: _Opening,
    setting: SftpSetting,
    pinned: PinnedKeys,
    pkey: paramiko.PKey | None,
    secret: SecretStr | None,
) -> Session:
    timeouts = setting.timeouts
    opening.sock = socket.create_connection((setting.host, setting.port), timeout=timeouts.connect)
    transport = opening.transport = _transport(opening.sock, setting)
    prefer_pinned_types(transport, pinned)
    opening.stage = f"waiting for the SSH banner and key exchange (timeout {timeouts.connect}s each)"
    # The transport thread enforces banner and handshake timeouts and reports their error; this
    # outer bound only guards against a thread that never reports.
    transport.start_client(timeout=2 * timeouts.connect + 5)
    server_key = transport.get_remote_server_key()
    # Refuse an unknown or changed key before any credential is sent.
    verify_host_key(server_key, pinned, setting)
    opening.stage = f"authenticating with {auth_method(setting, pkey, secret)}"
    authenticate(transport, setting.username, pkey, secret)
    opening.stage = "opening the SFTP channel"
    sftp = _open_sftp(transport, setting)
    opening.stage = "asking the server's SFTP limits"
    return Session(sftp, transport, server_key, sftp_address(setting), _write_request_size(sftp))


def _transport(sock: socket.socket, setting: SftpSetting) -> paramiko.Transport:
    timeouts = setting.timeouts
    transport = paramiko.Transport(
        sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
    )
    transport.banner_timeout = timeouts.connect
    transport.handshake_timeout = timeouts.connect
    transport.auth_timeout = timeouts.auth
    transport.channel_timeout = timeouts.channel
    return transport


def _open_sftp(transport: paramiko.Transport, setting: SftpSetting) -> paramiko.SFTPClient:
    sftp = paramiko.SFTPClient.from_transport(
        transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE
    )
    channel = sftp.get_channel() if sftp is not None else None
    if sftp is None or channel is None:
        raise TransientError(f"{sftp_address(setting)} did not open an SFTP channel; retry")
    channel.settimeout(setting.timeouts.channel)
    return sftp


def free_bytes(session: Session, path: str) -> int | None:
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
