"""SFTP delivery against a real OpenSSH sshd (chrooted, SFTP-only, key-only), started per test."""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
from pathlib import Path

import duckdb
import pytest

from pipelines.delivery.ledger import already_delivered
from pipelines.delivery.sftp import check_destination
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import TerminalError, TransientError
from tests.sftp_exports import AS_OF, EXPORTER, Export, send, write_export

from .sshd import Sshd, generate_key

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def home(tmp_path: Path) -> Home:
    (tmp_path / "home" / "configs" / "sftp").mkdir(parents=True)
    return Home(tmp_path / "home")


@pytest.fixture
def known_hosts(home: Home, sshd: Sshd) -> Path:
    path = home.configs / "sftp" / "partner.known_hosts"
    path.write_text(sshd.keyscan(), encoding="utf-8")
    return path


@pytest.fixture
def setting(sshd: Sshd, known_hosts: Path) -> SftpSetting:
    return sshd.setting(known_hosts)


def make_export(home: Home, size: int = 2 * MiB) -> Export:
    block = os.urandom(MiB)
    return write_export(home, (block[: min(MiB, size - offset)] for offset in range(0, size, MiB)))


def names(sshd: Sshd) -> list[str]:
    return sorted(p.name for p in sshd.upload.iterdir())


def assert_delivered(sshd: Sshd, export: Export) -> None:
    assert names(sshd) == sorted([export.file.name, export.manifest.name])  # no .part left
    for local in (export.file, export.manifest):
        assert (sshd.upload / local.name).read_bytes() == local.read_bytes()


def test_delivers_through_openssh_with_a_keyscanned_pin(
    sshd: Sshd, home: Home, setting: SftpSetting, known_hosts: Path
) -> None:
    assert known_hosts.read_text(encoding="utf-8").startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    export = make_export(home)

    result = send(setting, home, export)

    assert result.delivered
    assert_delivered(sshd, export)
    owner = pwd.getpwnam(sshd.user).pw_uid
    assert (sshd.upload / export.file.name).stat().st_uid == owner  # written by the chrooted user
    assert f"Accepted publickey for {sshd.user}" in sshd.log_tail(200)


def test_hashed_pin_and_destination_check(sshd: Sshd, home: Home, known_hosts: Path) -> None:
    known_hosts.write_text(sshd.keyscan(hashed=True), encoding="utf-8")
    assert known_hosts.read_text(encoding="utf-8").startswith("|1|")
    expected = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{sshd.host_key}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]

    report = check_destination(sshd.setting(known_hosts), home)

    assert report["hostKeyFingerprint"] == expected
    assert report["writable"] is True
    assert names(sshd) == []


def test_unknown_host_is_refused_before_authenticating(sshd: Sshd, home: Home, known_hosts: Path) -> None:
    pinned = sshd.keyscan().replace(f"[127.0.0.1]:{sshd.port}", "[127.0.0.1]:2222")
    known_hosts.write_text(pinned, encoding="utf-8")

    with pytest.raises(TerminalError, match="unknown host") as err:
        send(sshd.setting(known_hosts), home, make_export(home))

    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in str(err.value)
    assert names(sshd) == []
    assert "Accepted publickey" not in sshd.log_tail(200)


def test_changed_host_key_is_refused_until_repinned(
    sshd: Sshd, home: Home, setting: SftpSetting, known_hosts: Path
) -> None:
    export = make_export(home)
    sshd.rotate_host_key()

    with pytest.raises(TerminalError, match="host key CHANGED"):
        send(setting, home, export)
    assert names(sshd) == []

    known_hosts.write_text(sshd.keyscan(), encoding="utf-8")
    assert send(setting, home, export).delivered


def test_wrong_client_key_is_refused(sshd: Sshd, home: Home, known_hosts: Path, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "not_authorized_ed25519")

    with pytest.raises(TerminalError, match="authentication refused"):
        send(sshd.setting(known_hosts, key=other), home, make_export(home))

    assert names(sshd) == []


def test_unwritable_and_missing_remote_dirs_are_terminal(sshd: Sshd, home: Home, known_hosts: Path) -> None:
    export = make_export(home)
    with pytest.raises(TerminalError, match="permission denied"):
        send(sshd.setting(known_hosts, remote_dir="/"), home, export)  # the chroot itself is root's
    with pytest.raises(TerminalError, match="remote directory /missing does not exist"):
        send(sshd.setting(known_hosts, remote_dir="/missing"), home, export)
    assert names(sshd) == []
    assert sorted(p.name for p in sshd.chroot.iterdir()) == ["upload"]


def test_stopped_server_is_transient_and_a_retry_succeeds(
    sshd: Sshd, home: Home, setting: SftpSetting
) -> None:
    export = make_export(home)
    sshd.stop()

    with pytest.raises(TransientError, match="connection refused"):
        send(setting, home, export)

    sshd.start()
    assert send(setting, home, export).delivered
    assert_delivered(sshd, export)


def test_connection_cut_mid_upload_leaves_no_final_file_and_the_retry_completes(
    sshd: Sshd, home: Home, setting: SftpSetting
) -> None:
    export = make_export(home, size=64 * MiB)
    killed: list[int] = []

    def cut_once(sent: int, total: int) -> None:
        if sent >= 8 * MiB and not killed:
            killed.extend(sshd.cut_connections())

    with pytest.raises(TransientError):
        send(setting, home, export, progress=cut_once)

    assert killed, "no sshd session process was found to kill"
    assert export.file.name not in names(sshd)
    assert export.manifest.name not in names(sshd)
    assert [n for n in names(sshd) if n.endswith(".part")], "the cut session could not clean up"
    assert not already_delivered(home.warehouse, EXPORTER, AS_OF, export.sha256)

    result = send(setting, home, export)

    assert result.delivered
    assert_delivered(sshd, export)  # the interrupted attempt's .part was removed too


def test_rerun_is_not_delivered_twice_and_redeliver_replaces_atomically(
    sshd: Sshd, home: Home, setting: SftpSetting
) -> None:
    export = make_export(home, size=32 * MiB)
    send(setting, home, export)
    final = sshd.upload / export.file.name
    before = final.stat()

    rerun = send(setting, home, export)

    assert not rerun.delivered
    assert rerun.skipped_reason is not None
    after = final.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    sizes: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # a partner polling the final name during the redelivery
        while not done.is_set():
            sizes.add(final.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        again = send(setting, home, export, redeliver=True)
    finally:
        done.set()
        watcher.join()

    assert again.delivered
    assert sizes == {export.file.stat().st_size}  # never a partial file under the final name
    assert final.stat().st_ino != before.st_ino
    assert_delivered(sshd, export)
    with duckdb.connect(str(home.warehouse)) as con:
        rows = con.execute("SELECT count(*) FROM deliveries WHERE exporterId = ?", [EXPORTER]).fetchone()
    assert rows == (2,)
