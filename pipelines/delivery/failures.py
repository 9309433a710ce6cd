"""Which SFTP failures are worth a retry: socket, paramiko and SFTP status errors mapped to a
transient or terminal error that names the server and the step it failed in."""

from __future__ import annotations

import errno
import socket

import paramiko

from pipelines.model.config import SftpSetting
from pipelines.model.errors import ContactExporterError, TerminalError, TransientError

# What a network or SFTP failure can raise; anything else (a bug, a callback's error) propagates as is.
IO_ERRORS = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)


def sftp_address(setting: SftpSetting) -> str:
    return f"{setting.username}@{setting.host}:{setting.port}"


def classify(
    exc: BaseException, setting: SftpSetting, stage: str, transport_alive: bool
) -> ContactExporterError:
    """Map an exception from socket, paramiko or an SFTP status to a transient or terminal error."""
    where = sftp_address(setting)
    early = _connecting_failure(exc, setting, stage)
    if early is not None:
        return early
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


def _connecting_failure(exc: BaseException, setting: SftpSetting, stage: str) -> ContactExporterError | None:
    """The error for a failure to resolve, reach or log in to the server, or None for any other."""
    where = sftp_address(setting)
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
    return None
