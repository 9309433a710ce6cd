"""A real OpenSSH sshd on 127.0.0.1 for the SFTP integration tests.

Each `Sshd` gets its own folder under /srv/contact-exporter-test/ (a chroot must be owned by root
all the way up, which rules out /tmp), its own host key, sshd_config, pid file and free port, and a
chrooted, SFTP-only, key-only login for the system user `cetest`. Running it needs root (to create
the user and the chroot) and /usr/sbin/sshd (`apt-get install openssh-server`). Teardown stops sshd
and its session processes and removes the folder; the `cetest` account stays for the next run.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.model.config import SftpSetting, Timeouts

SSHD = Path("/usr/sbin/sshd")
BASE = Path("/srv/contact-exporter-test")
USER = "cetest"
START_TIMEOUT = 10.0


def unavailable_reason() -> str | None:
    """Why a real sshd cannot be started here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (creates the test user and a root-owned chroot for sshd)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found; install openssh-server (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "ssh-keyscan", "useradd", "usermod", "pgrep"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


def _run(*args: str) -> str:
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """A system user with no shell login and an unlocked account (sshd refuses locked ones)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name)  # fmt: skip
    # useradd leaves the password field "!" (locked); with UsePAM no sshd then refuses every login.
    _run("usermod", "-p", "*", name)
    return pwd.getpwnam(name)


def generate_key(path: Path, kind: str = "ed25519") -> Path:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "contact-exporter-test", "-f", str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (sshd forks a monitor per connection, which forks more)."""
    done = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True)
    children = [int(p) for p in done.stdout.split()]
    out: list[int] = []
    for child in children:
        out += [child, *descendants(child)]
    return out


@dataclass
class Sshd:
    base: Path
    port: int
    user: str = USER
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def chroot(self) -> Path:
        return self.base / "root"

    @property
    def upload(self) -> Path:
        """`/upload` as the SFTP user sees it."""
        return self.chroot / "upload"

    @property
    def host_key(self) -> Path:
        return self.etc / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.base / "client" / "id_ed25519"

    @property
    def config(self) -> Path:
        return self.etc / "sshd_config"

    @property
    def log(self) -> Path:
        return self.etc / "sshd.log"

    @classmethod
    def create(cls) -> Sshd:
        account = ensure_user()
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation dir
        BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
        base = BASE / secrets.token_hex(4)
        server = cls(base=base, port=free_port())
        for d in (base, server.etc, server.etc / "authorized_keys", server.chroot, base / "client"):
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)  # umask-proof: sshd checks every level of the chroot
        (base / "client").chmod(0o700)
        server.upload.mkdir()
        os.chown(server.upload, account.pw_uid, account.pw_gid)
        generate_key(server.host_key)
        generate_key(server.client_key)
        authorized = server.etc / "authorized_keys" / server.user
        authorized.write_text(Path(f"{server.client_key}.pub").read_text(encoding="utf-8"), encoding="utf-8")
        authorized.chmod(0o644)
        server.config.write_text(server._config_text(), encoding="utf-8")
        _run(str(SSHD), "-t", "-f", str(server.config))
        return server

    def _config_text(self) -> str:
        return f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.etc / "sshd.pid"}
AuthorizedKeysFile {self.etc}/authorized_keys/%u
StrictModes yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers {self.user}
LogLevel VERBOSE
MaxStartups 50
PermitTTY no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
ChrootDirectory {self.chroot}
ForceCommand internal-sftp
"""

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("sshd already running")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"sshd exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not accept connections within {START_TIMEOUT}s:\n{self.log_tail()}")

    def session_pids(self) -> list[int]:
        """Processes serving the open connections (monitor and its unprivileged child)."""
        return descendants(self.process.pid) if self.process is not None else []

    def cut_connections(self) -> list[int]:
        """Kill every per-connection process: the client sees the TCP connection drop mid-session."""
        pids = self.session_pids()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        """Stop the listener and every session it spawned (sessions outlive a plain SIGTERM)."""
        if self.process is None:
            return
        children = self.session_pids()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def rotate_host_key(self) -> None:
        """A new host key, as after a server rebuild; restarts sshd to load it."""
        generate_key(self.host_key)
        self.restart()

    def keyscan(self, *, hashed: bool = False) -> str:
        """What `ssh-keyscan -p PORT 127.0.0.1` prints: the lines to pin in known_hosts."""
        args = ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(self.port)]
        return _run(*args, *(["-H"] if hashed else []), "127.0.0.1")

    def setting(
        self, known_hosts: Path, *, key: Path | None = None, remote_dir: str = "/upload"
    ) -> SftpSetting:
        return SftpSetting(
            host="127.0.0.1",
            port=self.port,
            username=self.user,
            knownHostsFile=str(known_hosts),
            privateKeyFile=str(key or self.client_key),
            remoteDir=remote_dir,
            timeouts=Timeouts(connect=5, auth=5, channel=15),
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no sshd log)"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
