"""Exactly-once delivery under kill -9, against a real OpenSSH sshd.

A run is killed (SIGKILL, from inside, at a named step boundary of the delivery record) and the next
run of the same exporter and date completes it. What the partner sees is checked after the crash
and after the rerun: a manifest always describes the data file beside it, the data file is uploaded
once (its inode and mtime are those of the one upload), and no temporary file remains anywhere.
With encryption, the partner's key is replaced between the crash and the rerun: what the partner
ends with opens with the new key only (or, when the crash came after the ledger row, the delivery
was complete and is not sent again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import gnupg
import pytest
import yaml

from pipelines.delivery.delivery_journal import CRASH_ENV, STEPS
from pipelines.model.config import Home
from tests.worlds import make_home

from .sshd import Sshd

pytestmark = pytest.mark.integration

EXPORTER = "CE-EMAILSVC"
AS_OF = "2026-12-01"
DATA = "servicing_20261201.csv"
MANIFEST = DATA + ".manifest.json"

# Every boundary: right after a step's effect (before it is recorded) and right after its record.
CRASH_POINTS = [p for step in STEPS for p in (step, f"{step}.recorded")]
# From these on, a complete copy of the data file exists on the server after the crash.
UPLOADED_FROM = CRASH_POINTS.index("dataUploaded")

RUN = """
import json, sys
from datetime import date
from pipelines.run import job
from pipelines.model.config import Home
plan = job.plan_run(Home.resolve(sys.argv[1]), sys.argv[2], date.fromisoformat(sys.argv[3]))
print(json.dumps(job.run_export(plan), default=str))
"""


@pytest.fixture
def home(tmp_path: Path, sshd: Sshd) -> Home:
    home = make_home(tmp_path / "home", borrowers=60)
    known_hosts = home.configs / "sftp" / "partner.known_hosts"
    known_hosts.write_text(sshd.keyscan(), encoding="utf-8")
    setting = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.user,
        "knownHostsFile": "configs/sftp/partner.known_hosts",
        "privateKeyFile": str(sshd.client_key),
        "remoteDir": "/upload",
        "timeouts": {"connect": 5, "auth": 5, "channel": 15},
    }
    (home.configs / "sftp" / "partner.yaml").write_text(yaml.safe_dump(setting), encoding="utf-8")
    return home


def run(home: Home, crash_at: str | None = None, *cli: str) -> subprocess.CompletedProcess[str]:
    """The library's run (or, with `cli`, the CLI) in a new process group, optionally killed at a step."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV and not k.startswith("PREFECT_API")}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    args = (
        ["-m", "flows", "--home", str(home.root), *cli]
        if cli
        else ["-c", RUN, str(home.root), EXPORTER, AS_OF]
    )
    out, err = home.root / "run.stdout", home.root / "run.stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        try:
            code = process.wait(timeout=300)
            left = group_left_after(process.pid, seconds=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    # Nothing the run started outlives it, killed or not: the CLI's temporary Prefect server ends
    # with it (a parent-death signal), as do the library run's children.
    assert left == [], f"still running after the run ended: {left}"
    return subprocess.CompletedProcess(args, code, out.read_text(), err.read_text())


def group_left_after(group: int, seconds: float) -> list[str]:
    """The command lines of the processes still in process group `group` after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == group and fields[0] != "Z":
                    left.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def assert_consistent(upload: Path) -> None:
    """What a partner may rely on at any moment: a manifest describes the data file beside it."""
    manifest = upload / MANIFEST
    if manifest.exists():
        described = json.loads(manifest.read_text(encoding="utf-8"))
        assert (upload / DATA).exists(), "a manifest without its data file"
        assert described["sha256"] == sha256(upload / DATA), "the manifest describes other bytes"
        assert described["bytes"] == (upload / DATA).stat().st_size


def complete_copies(upload: Path, local: Path) -> list[tuple[int, int]]:
    """Identities of the server's files holding exactly the local export's bytes (final or temporary)."""
    want = local.read_bytes()
    return [
        identity(p)
        for p in upload.iterdir()
        if p.name.startswith((DATA, f".{DATA}.")) and p.read_bytes() == want
    ]


def change_the_export(home: Home) -> None:
    """Same exporter, date and file name, other bytes: the file loses its header row."""
    path = home.exporters_dir / f"{EXPORTER}.json"
    path.write_text(path.read_text().replace('"header": true', '"header": false'), encoding="utf-8")


def ledger(home: Home) -> list[tuple[str, int]]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(
            "SELECT sha256, count(*) FROM deliveries GROUP BY sha256 ORDER BY min(deliveredAt)"
        ).fetchall()


def run_row(home: Home) -> tuple[object, ...] | None:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(
            "SELECT deliveryStatus, deliveryError, deliveredAt IS NOT NULL FROM export_runs "
            "WHERE exporterId = ? AND asOfDate = ?",
            [EXPORTER, AS_OF],
        ).fetchone()


def assert_clean(home: Home, sshd: Sshd, *, report: bool = False) -> None:
    """Only the lock, the file, its manifest (and the run's report page, when a flow ran it) remain."""
    folder = home.exports / EXPORTER / AS_OF
    expected = [".run.lock", DATA, MANIFEST, *(["report.html"] if report else [])]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    runs = home.root / "data" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert sorted(p.name for p in sshd.upload.iterdir()) == sorted([DATA, MANIFEST])


@pytest.mark.parametrize("changed", [False, True], ids=["first-delivery", "changed-rerun"])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_kill_at_every_step_then_rerun_delivers_exactly_once(
    home: Home, sshd: Sshd, crash_at: str, changed: bool
) -> None:
    local = home.exports / EXPORTER / AS_OF / DATA
    if changed:
        first = run(home)
        assert first.returncode == 0, first.stderr[-3000:]
        old_sha = sha256(local)
        change_the_export(home)

    crashed = run(home, crash_at)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert_consistent(sshd.upload)
    if changed:
        assert sha256(local) != old_sha
    copies = complete_copies(sshd.upload, local)
    if CRASH_POINTS.index(crash_at) >= UPLOADED_FROM:
        assert len(copies) == 1, f"expected the one upload after {crash_at}: {copies}"
    else:
        assert copies == []

    rerun = run(home)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(rerun.stdout)["deliveryStatus"] == "delivered"
    assert_consistent(sshd.upload)
    assert (sshd.upload / DATA).read_bytes() == local.read_bytes()
    if copies:
        assert identity(sshd.upload / DATA) == copies[0], "the data file was uploaded again"
    assert_clean(home, sshd)
    expected = [(sha256(local), 1)]
    assert ledger(home) == ([(old_sha, 1), *expected] if changed else expected)
    assert run_row(home) == ("delivered", None, True)

    again = run(home)  # and once complete, never again
    assert json.loads(again.stdout)["deliveryStatus"] == "already_delivered"
    assert ledger(home) == ([(old_sha, 1), *expected] if changed else expected)


def test_cli_killed_after_the_data_rename_is_completed_by_the_next_cli_run(home: Home, sshd: Sshd) -> None:
    cli = ("run", EXPORTER, "--as-of", AS_OF)
    crashed = run(home, "dataPublished", *cli)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert (sshd.upload / DATA).exists()
    assert not (sshd.upload / MANIFEST).exists()
    published = identity(sshd.upload / DATA)

    rerun = run(home, None, *cli)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(rerun.stdout)["deliveryStatus"] == "delivered"
    assert identity(sshd.upload / DATA) == published
    # on a temporary server, which serves no UI: no links to run pages
    assert "no Prefect server: starting a temporary one" in rerun.stderr
    assert "View at" not in rerun.stderr
    assert_consistent(sshd.upload)
    assert_clean(home, sshd, report=True)
    assert run_row(home) == ("delivered", None, True)


def test_a_run_killed_before_recording_leaves_staging_that_the_next_run_removes(
    home: Home, sshd: Sshd
) -> None:
    crashed = run(home, "staged")
    assert crashed.returncode == -signal.SIGKILL
    staged = list((home.root / "data" / "runs").iterdir())
    assert len(staged) == 1
    folder = home.exports / EXPORTER / AS_OF
    leftover = folder / f".{DATA}.0123456789ab.tmp"  # what a kill inside an atomic write leaves
    leftover.write_bytes(b"partial")

    assert run(home).returncode == 0

    assert not staged[0].exists()
    assert_clean(home, sshd)


def test_cli_exits_1_with_one_clear_line_when_delivery_fails(home: Home, sshd: Sshd) -> None:
    setting = home.configs / "sftp" / "partner.yaml"
    setting.write_text(setting.read_text().replace("remoteDir: /upload", "remoteDir: /missing"))

    failed = run(home, None, "run", EXPORTER, "--as-of", AS_OF)

    assert failed.returncode == 1, failed.stderr[-3000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: remote directory /missing does not exist on {sshd.user}@127.0.0.1:{sshd.port}; create it on "
        "the server or fix remoteDir in the SFTP setting"
    ]
    status, error, delivered = run_row(home) or (None, None, None)
    assert (status, delivered) == ("failed", False)
    assert "/missing does not exist" in str(error)


# ---------------------------------------------------------------- encrypted, key replaced after the crash

SEALED = DATA + ".pgp"
# From this point on the ledger row is written: the delivery was complete before the key changed.
LEDGER_FROM = CRASH_POINTS.index("recorded")


@pytest.fixture(scope="module")
def partner_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, gnupg.GPG]]:
    """Two keyrings of the partner: key A (the one replaced) and key B (its replacement), each alone."""
    rings = {}
    for name in ("A", "B"):
        folder = tmp_path_factory.mktemp(f"partner-{name}")
        folder.chmod(0o700)
        gpg = gnupg.GPG(gnupghome=str(folder))
        spec = gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            subkey_type="ECDH",
            subkey_curve="cv25519",
            name_email=f"{name.lower()}@partner.example",
            no_protection=True,
        )
        assert gpg.gen_key(spec).fingerprint
        rings[name] = gpg
    yield rings
    for gpg in rings.values():
        subprocess.run(
            ["gpgconf", "--homedir", gpg.gnupghome, "--kill", "all"], check=False, capture_output=True
        )


def use_key(home: Home, gpg: gnupg.GPG) -> None:
    """The setting encrypts to the one key of `gpg` (the key file is replaced in place)."""
    (home.configs / "sftp" / "partner.asc").write_text(gpg.export_keys(gpg.list_keys()[0]["fingerprint"]))
    setting = home.configs / "sftp" / "partner.yaml"
    body = yaml.safe_load(setting.read_text(encoding="utf-8"))
    body["encryption"] = {"pgpPublicKeyFile": "configs/sftp/partner.asc"}
    setting.write_text(yaml.safe_dump(body), encoding="utf-8")


def opened_by(gpg: gnupg.GPG, sealed: Path, plaintext: bytes) -> bool:
    out = sealed.with_name(f"opened-{secrets.token_hex(4)}")
    try:
        return bool(gpg.decrypt_file(str(sealed), output=str(out)).ok) and out.read_bytes() == plaintext
    finally:
        out.unlink(missing_ok=True)


def assert_sealed_consistent(upload: Path) -> None:
    """A manifest on the server describes the encrypted data file beside it."""
    manifest = upload / MANIFEST
    if manifest.exists():
        described = json.loads(manifest.read_text(encoding="utf-8"))["encrypted"]
        assert described["sha256"] == sha256(upload / SEALED), "the manifest describes other bytes"


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_kill_then_replace_the_key_then_rerun_delivers_only_for_the_new_key(
    home: Home, sshd: Sshd, partner_keys: dict[str, gnupg.GPG], crash_at: str
) -> None:
    old, new = partner_keys["A"], partner_keys["B"]
    use_key(home, old)
    local = home.exports / EXPORTER / AS_OF / DATA

    crashed = run(home, crash_at)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert_sealed_consistent(sshd.upload)
    use_key(home, new)

    rerun = run(home)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    complete = CRASH_POINTS.index(crash_at) >= LEDGER_FROM
    # A delivery already in the ledger was complete before the key changed: nothing is sent again.
    status = json.loads(rerun.stdout)["deliveryStatus"]
    assert status == ("already_delivered" if complete else "delivered"), rerun.stderr[-3000:]
    assert sorted(p.name for p in sshd.upload.iterdir()) == sorted([SEALED, MANIFEST])
    assert_sealed_consistent(sshd.upload)
    plaintext = local.read_bytes()
    assert opened_by(old if complete else new, sshd.upload / SEALED, plaintext)
    assert not opened_by(new if complete else old, sshd.upload / SEALED, plaintext)
    folder = home.exports / EXPORTER / AS_OF
    assert sorted(p.name for p in folder.iterdir()) == sorted([".run.lock", DATA, MANIFEST])
    runs = home.root / "data" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert ledger(home) == [(sha256(local), 1)]
    assert json.loads(run(home).stdout)["deliveryStatus"] == "already_delivered"
    assert ledger(home) == [(sha256(local), 1)]
