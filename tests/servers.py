"""Real servers on loopback for source tests: PostgreSQL from Debian's package (initdb in a temp folder,
password authentication) and an S3-compatible store (moto in server mode, a subprocess).

Nothing is skipped: a missing binary fails with what to install (CI installs them, see .ci/run)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PG_USER = "exporter"
PG_PASSWORD = "s3cret-Pg-passw0rd"
PG_DATABASE = "book"
S3_KEY_ID = "testing-key-id"
S3_SECRET = "s3cret-S3-key-value"
S3_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "apt-get install postgresql (.ci/run does)"
        )
    return Path(found[-1]).parent


def _as_postgres_user() -> list[str]:
    """Postgres refuses to run as root: as root, run its binaries as the `postgres` system user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: cannot start PostgreSQL as user postgres")
    return [runuser, "-u", "postgres", "--"]


class PostgresServer:
    """A PostgreSQL cluster in its own temp folder on a free loopback port, scram password auth."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.data = self.folder / "data"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        pwfile = self.folder / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", PG_USER, "--pwfile", str(pwfile),
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        pwfile.unlink()
        self.start()
        self.sql(f"CREATE DATABASE {PG_DATABASE}")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*_as_postgres_user(), str(self.bin / tool), *args], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )
        _wait_for_port(self.port, 30, "PostgreSQL")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def uri(self, database: str = PG_DATABASE, *, with_password: bool = False) -> str:
        who = f"{PG_USER}:{PG_PASSWORD}" if with_password else PG_USER
        return f"postgresql://{who}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str) -> None:
        import adbc_driver_postgresql.dbapi as pg

        with (
            pg.connect(self.uri("postgres", with_password=True), autocommit=True) as con,
            con.cursor() as cur,
        ):
            cur.execute(statement)

    def close(self) -> None:
        with suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class S3Server:
    """moto's S3 in server mode, a subprocess on a free loopback port (its buckets live in memory:
    a restart empties them)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"moto[s3] is not installed ({exc}): uv sync --extra dev") from None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 60, "moto S3 server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_REGION": S3_REGION,
        }

    def make_bucket(self, name: str) -> None:
        import pyarrow.fs as pafs

        pafs.S3FileSystem(
            access_key=S3_KEY_ID,
            secret_key=S3_SECRET,
            region=S3_REGION,
            endpoint_override=self.endpoint,
            scheme="http",
            allow_bucket_creation=True,
        ).create_dir(name)


@contextmanager
def aws_environment(server: S3Server) -> Iterator[None]:
    """The AWS variables of `server` for the duration (restored after)."""
    saved = {k: os.environ.get(k) for k in server.environment()}
    os.environ.update(server.environment())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
