"""A throwaway SFTP server on 127.0.0.1 for the demo and the fast tests (asyncssh, in-process).

It behaves like a locked-down partner drop box: its own host key (pinned in a known_hosts file it
writes), one user, ed25519 key authentication only, every path confined to `root`. It is not a
production server: it runs in a background thread of the calling process and lives only inside
the `local_sftp_server` context.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():
    # asyncssh 2.24 names cryptography's DSA key classes at import; cryptography 51 deprecates DSA
    # and warns on that name lookup. Only that import's DSA notice is silenced, nothing later.
    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.")
    import asyncssh

from pipelines.model.config import Home
from pipelines.model.vocab import SAFE_ID

HOST = "127.0.0.1"
USERNAME = "partner"
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class LocalSftp:
    """Where the running server listens and the files a client needs to reach it."""

    host: str
    port: int
    username: str
    root: Path
    known_hosts_file: Path
    private_key_file: Path
    host_key_fingerprint: str

    def write_setting(self, home: Home, setting_id: str, remote_dir: str = "/upload") -> Path:
        """Write `configs/sftp/<setting_id>.yaml` (plus its known_hosts) for this server; create remote_dir.

        The known_hosts file is copied next to the setting and named relative to the home, as a
        committed setting would do; the private key stays in the server's temporary folder.
        """
        if not SAFE_ID.fullmatch(setting_id):
            raise ValueError(f"{setting_id!r} is not a valid SFTP setting id")
        folder = home.configs / "sftp"
        folder.mkdir(parents=True, exist_ok=True)
        known_hosts = folder / f"{setting_id}.known_hosts"
        shutil.copyfile(self.known_hosts_file, known_hosts)
        (self.root / remote_dir.strip("/")).mkdir(parents=True, exist_ok=True)
        setting: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "knownHostsFile": known_hosts.relative_to(home.root).as_posix(),
            "privateKeyFile": str(self.private_key_file),
            "remoteDir": remote_dir,
            "timeouts": {"connect": 5, "auth": 5, "channel": 30},
        }
        path = folder / f"{setting_id}.yaml"
        path.write_text(
            "# Local test SFTP server (flows/sftp_server.py); valid only while it runs.\n"
            + yaml.safe_dump(setting, sort_keys=False),
            encoding="utf-8",
        )
        return path


class _Server(asyncssh.SSHServer):
    """One user, one authorized key; no passwords, no keyboard-interactive."""

    def __init__(self, username: str, client_key: bytes, connections: set[Any]) -> None:
        self._username = username
        self._client_key = client_key
        self._connections = connections
        self._conn: Any = None

    def connection_made(self, conn: Any) -> None:
        self._conn = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: Any) -> bool:
        return username == self._username and bytes(key.public_data) == self._client_key


class _ServerThread(threading.Thread):
    def __init__(self, root: Path, port: int, host_key: Any, username: str, client_key: bytes) -> None:
        super().__init__(name="local-sftp-server", daemon=True)
        self._root = root
        self._requested_port = port
        self._host_key = host_key
        self._username = username
        self._client_key = client_key
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self.port = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        connections: set[Any] = set()
        chroot = os.fsencode(self._root)
        acceptor = await asyncssh.listen(
            HOST,
            self._requested_port,
            server_host_keys=[self._host_key],
            server_factory=lambda: _Server(self._username, self._client_key, connections),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=chroot),
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
        )
        self.port = acceptor.get_port()
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            acceptor.close()
            await acceptor.wait_closed()
            for conn in list(connections):
                conn.close()
            for conn in list(connections):
                await conn.wait_closed()

    def start_and_wait(self) -> None:
        self.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"local SFTP server did not start within {START_TIMEOUT}s")
        if self.error is not None:
            raise RuntimeError(f"local SFTP server failed to start: {self.error}") from self.error

    def shutdown(self) -> None:
        loop, stop = self._loop, self._stop_event
        if loop is not None and stop is not None and self.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self.join(START_TIMEOUT)


@contextmanager
def local_sftp_server(root: Path, *, port: int = 0, keys_dir: Path | None = None) -> Iterator[LocalSftp]:
    """Run an SFTP server for `root` on 127.0.0.1 (`port` 0 picks a free one) until the block ends.

    Its client key and known_hosts go to a temporary folder removed afterwards, or to `keys_dir`,
    kept (the demo's home keeps them, so its SFTP setting still passes the checks a dry run makes)."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    keep = keys_dir is not None
    if keys_dir is not None:
        shutil.rmtree(keys_dir, ignore_errors=True)  # a new server: new keys
        keys_dir.mkdir(parents=True, mode=0o700)
    else:
        keys_dir = Path(tempfile.mkdtemp(prefix="contact-exporter-sftp-"))
    try:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="contact-exporter-local")
        private_key_file = keys_dir / "client_ed25519"
        fd = os.open(private_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(client_key.export_private_key("openssh"))
        server = _ServerThread(root, port, host_key, USERNAME, bytes(client_key.public_data))
        server.start_and_wait()
        try:
            public = host_key.export_public_key("openssh").decode("ascii").split()
            known_hosts_file = keys_dir / "known_hosts"
            known_hosts_file.write_text(f"[{HOST}]:{server.port} {public[0]} {public[1]}\n", encoding="utf-8")
            yield LocalSftp(
                host=HOST,
                port=server.port,
                username=USERNAME,
                root=root,
                known_hosts_file=known_hosts_file,
                private_key_file=private_key_file,
                host_key_fingerprint=host_key.get_fingerprint("sha256"),
            )
        finally:
            server.shutdown()
        if server.is_alive():
            raise RuntimeError(f"local SFTP server did not stop within {START_TIMEOUT}s")
        if server.error is not None:
            raise RuntimeError(f"local SFTP server failed: {server.error!r}") from server.error
    finally:
        if not keep:
            shutil.rmtree(keys_dir, ignore_errors=True)
