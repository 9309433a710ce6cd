"""Moving bytes: a file goes to a hidden temporary name beside its final one, is checked (the sha256
of the bytes sent, the size the server holds) and only then renamed into place by the caller."""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import secrets
import stat
from pathlib import Path
from typing import IO

import paramiko

from pipelines.delivery.session import Session, free_bytes
from pipelines.model.errors import ContactExporterError, TerminalError
from pipelines.model.progress import ByteProgress as Progress

logger = logging.getLogger(__name__)
# Progress is called as progress(bytes_sent, total_bytes) while the data file uploads.

# Local reads of this size keep memory flat for multi-GB files; paramiko splits each read into
# pipelined SFTP write requests, and the channel window bounds what is in flight.
READ_CHUNK = 1024 * 1024
TEMP_SUFFIX = r"[0-9a-f]{12}"


def temp_name(final_name: str) -> str:
    return f".{final_name}.{secrets.token_hex(6)}.part"


def _is_our_temp(name: str, final_name: str) -> bool:
    return re.fullmatch(rf"\.{re.escape(final_name)}\.{TEMP_SUFFIX}\.part", name) is not None


def check_remote_dir(session: Session, remote_dir: str) -> None:
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


def remove_stale(session: Session, remote_dir: str, final_names: list[str], keep: set[str]) -> None:
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


def try_remove(session: Session, path: str) -> None:
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


def remote_size(session: Session, path: str) -> int | None:
    """The size of remote `path`, or None when it does not exist."""
    try:
        size = session.sftp.stat(path).st_size
    except FileNotFoundError:
        return None
    return size if size is not None else -1


def _remote_sha256(session: Session, path: str) -> str:
    digest = hashlib.sha256()
    with session.sftp.open(path, "rb") as fh:
        fh.prefetch()
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def holds(session: Session, path: str, size: int, sha256: str) -> bool:
    """True when remote `path` holds exactly these bytes: same size, then a read-back sha256."""
    return remote_size(session, path) == size and _remote_sha256(session, path) == sha256


def _no_space(session: Session, remote_dir: str, name: str, needed: int, stored: int | None) -> TerminalError:
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


def upload_file(
    session: Session,
    local: Path,
    temp: str,
    remote_dir: str,
    *,
    size: int,
    sha256: str,
    progress: Progress | None,
) -> None:
    """Write `local` to remote `temp`; check the bytes sent against `sha256` and the size the server holds."""
    free = free_bytes(session, remote_dir)
    if free is not None and free < size:
        raise TerminalError(
            f"remote disk full on {session.where}: {remote_dir} has {free} bytes free, {local.name} needs "
            f"{size}; free space on the server (or raise the quota), then rerun"
        )
    try:
        _write_checked(session, local, temp, remote_dir, size=size, sha256=sha256, progress=progress)
    except ContactExporterError:
        try_remove(session, temp)
        raise
    except (PermissionError, FileNotFoundError):
        try_remove(session, temp)
        raise
    except OSError as exc:
        # SFTP v3 reports a full disk or an exceeded quota as a bare "Failure" status.
        if not session.transport.is_active() or isinstance(exc, ConnectionError | TimeoutError):
            raise
        error = _no_space(session, remote_dir, posixpath.basename(temp), size, remote_size(session, temp))
        try_remove(session, temp)
        raise error from exc
    except BaseException:
        try_remove(session, temp)
        raise


def _write_checked(
    session: Session,
    local: Path,
    temp: str,
    remote_dir: str,
    *,
    size: int,
    sha256: str,
    progress: Progress | None,
) -> None:
    with local.open("rb") as src, session.sftp.open(temp, "wb", bufsize=0) as dst:
        dst.MAX_REQUEST_SIZE = session.write_request
        dst.set_pipelined(True)
        sent, digest = _stream(src, dst, size, progress)
    if digest != sha256 or sent != size:
        raise TerminalError(
            f"{local} changed since its manifest was written (sha256 {digest[:12]}… differs from "
            f"{sha256[:12]}…); rerun the export before delivering"
        )
    stored = remote_size(session, temp)
    if stored != sent:
        raise _no_space(session, remote_dir, posixpath.basename(temp), sent, stored)


def read_small(session: Session, path: str, limit: int = 1 << 20) -> bytes | None:
    try:
        with session.sftp.open(path, "rb") as fh:
            return bytes(fh.read(limit))
    except FileNotFoundError:
        return None
