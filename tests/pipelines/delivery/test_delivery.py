"""SFTP delivery against the in-process asyncssh server (flows/sftp_server.py)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from datetime import UTC
from pathlib import Path

import asyncssh
import duckdb
import pytest
from paramiko.hostkeys import HostKeys
from pydantic import SecretStr

from flows.sftp_server import LocalSftp, local_sftp_server
from pipelines.delivery.credentials import credentials
from pipelines.delivery.hostkeys import load_pinned_keys
from pipelines.delivery.ledger import already_delivered
from pipelines.delivery.sftp import check_destination
from pipelines.model.config import Home, SftpSetting, Timeouts
from pipelines.model.errors import InvalidInputError, TerminalError, TransientError
from tests.sftp_exports import AS_OF, EXPORTER, Export, send, write_export


@pytest.fixture
def upload(server: LocalSftp, setting: SftpSetting) -> Path:
    return server.root / setting.remoteDir.strip("/")


def make_export(home: Home, content: bytes = b"", name: str = f"{EXPORTER}_20260102.csv") -> Export:
    data = content or b"".join(b"C-%06d,+1415555%04d\n" % (i, i % 10_000) for i in range(50_000))
    return write_export(home, [data], name)


def ledger(home: Home) -> list[tuple[object, ...]]:
    with duckdb.connect(str(home.warehouse)) as con:
        return con.execute(
            "SELECT exporterId, asOfDate, sha256, fileName, remotePath, host, bytes, runId "
            "FROM deliveries ORDER BY deliveredAt"
        ).fetchall()


def new_key_line(name: str) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    kind, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"{name} {kind} {blob}\n"


def server_key(server: LocalSftp) -> str:
    """`ssh-ed25519 AAAA...` of the running server, from the known_hosts file it wrote."""
    _, kind, blob = server.known_hosts_file.read_text(encoding="utf-8").split()
    return f"{kind} {blob}"


def pin(home: Home, setting: SftpSetting, text: str) -> SftpSetting:
    path = home.path(setting.knownHostsFile)
    path.write_text(text, encoding="utf-8")
    return setting


# ---------------------------------------------------------------- happy path and the ledger


def test_delivers_file_then_manifest_under_final_names(
    home: Home, setting: SftpSetting, upload: Path, server: LocalSftp
) -> None:
    export = make_export(home)

    result = send(setting, home, export)

    assert result.delivered
    assert result.skipped_reason is None
    assert result.remote_path == f"/upload/{export.file.name}"
    assert result.remote_manifest_path == f"/upload/{export.manifest.name}"
    assert result.bytes == export.file.stat().st_size
    assert result.delivered_at is not None
    assert result.delivered_at.tzinfo is UTC
    assert sorted(p.name for p in upload.iterdir()) == sorted([export.file.name, export.manifest.name])
    assert (upload / export.file.name).read_bytes() == export.file.read_bytes()
    assert (upload / export.manifest.name).read_bytes() == export.manifest.read_bytes()
    assert ledger(home) == [
        (
            EXPORTER,
            AS_OF,
            export.sha256,
            export.file.name,
            result.remote_path,
            server.host,
            export.file.stat().st_size,
            "R-1",
        )
    ]


def test_ledger_prevents_a_second_delivery(home: Home, setting: SftpSetting, upload: Path) -> None:
    export = make_export(home)
    first = send(setting, home, export)
    for p in upload.iterdir():
        p.unlink()

    again = send(setting, home, export)

    assert not again.delivered
    assert again.skipped_reason is not None
    assert "already delivered" in again.skipped_reason
    assert again.delivered_at == first.delivered_at
    assert list(upload.iterdir()) == []  # nothing was sent
    assert already_delivered(home.warehouse, EXPORTER, AS_OF, export.sha256)
    assert len(ledger(home)) == 1


def test_new_bytes_for_the_same_day_are_delivered(home: Home, setting: SftpSetting, upload: Path) -> None:
    send(setting, home, make_export(home, b"id\nC-1\n"))
    changed = make_export(home, b"id\nC-1\nC-2\n")

    result = send(setting, home, changed)

    assert result.delivered
    assert (upload / changed.file.name).read_bytes() == b"id\nC-1\nC-2\n"


def test_redeliver_replaces_the_remote_file_by_rename(home: Home, setting: SftpSetting, upload: Path) -> None:
    export = make_export(home)
    send(setting, home, export)
    remote = upload / export.file.name
    remote.write_bytes(b"damaged by the partner")
    inode = remote.stat().st_ino

    result = send(setting, home, export, redeliver=True)

    assert result.delivered
    assert remote.read_bytes() == export.file.read_bytes()
    assert remote.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert len(ledger(home)) == 2
    assert sorted(p.name for p in upload.iterdir()) == sorted([export.file.name, export.manifest.name])


def test_stale_temp_files_of_this_delivery_are_removed_and_others_kept(
    home: Home, setting: SftpSetting, upload: Path
) -> None:
    export = make_export(home)
    ours = [f".{export.file.name}.0123456789ab.part", f".{export.manifest.name}.a1b2c3d4e5f6.part"]
    theirs = [f".{export.file.name}.not-ours.part", "notes.part", ".other.csv.0123456789ab.part"]
    for name in ours + theirs:
        (upload / name).write_bytes(b"partial")

    send(setting, home, export)

    assert sorted(p.name for p in upload.iterdir()) == sorted(
        [export.file.name, export.manifest.name, *theirs]
    )


def test_a_failure_mid_upload_leaves_no_file_and_no_temp(
    home: Home, setting: SftpSetting, upload: Path
) -> None:
    export = make_export(home, b"x" * (3 * 1024 * 1024))

    class CallbackError(Exception):
        pass

    def stop_after_first_chunk(sent: int, total: int) -> None:
        raise CallbackError(f"{sent}/{total}")

    with pytest.raises(CallbackError):
        send(setting, home, export, progress=stop_after_first_chunk)

    assert list(upload.iterdir()) == []
    assert not already_delivered(home.warehouse, EXPORTER, AS_OF, export.sha256)


def test_a_local_file_that_no_longer_matches_its_sha256_is_not_renamed_into_place(
    home: Home, setting: SftpSetting, upload: Path
) -> None:
    export = make_export(home)
    export.file.write_bytes(export.file.read_bytes() + b"C-999999,+14155550000\n")

    with pytest.raises(TerminalError, match="changed since its manifest"):
        send(setting, home, export)

    assert list(upload.iterdir()) == []


def test_an_unavailable_ledger_stops_before_anything_is_sent(
    home: Home, setting: SftpSetting, upload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.io.duck import BUSY_WAIT_ENV
    from pipelines.model.errors import WarehouseBusyError

    monkeypatch.setenv(BUSY_WAIT_ENV, "1")  # the writer waits this long for the holder, then gives up
    home.warehouse.parent.mkdir(parents=True)
    holder = subprocess.Popen(  # another process holding the warehouse open for writing
        [sys.executable, "-c", HOLD_DUCKDB, str(home.warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        with pytest.raises(WarehouseBusyError, match="stayed open in process"):
            send(setting, home, make_export(home))
    finally:
        holder.communicate(b"", timeout=30)

    assert list(upload.iterdir()) == []


HOLD_DUCKDB = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
con.close()
"""


# ---------------------------------------------------------------- host keys


def test_unknown_host_is_refused_and_nothing_is_uploaded(
    home: Home, setting: SftpSetting, upload: Path, server: LocalSftp
) -> None:
    pin(home, setting, new_key_line("[sftp.partner.example]:22022"))

    with pytest.raises(TerminalError, match="unknown host") as err:
        send(setting, home, make_export(home))

    message = str(err.value)
    assert f"[127.0.0.1]:{server.port}" in message
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in message
    assert str(home.path(setting.knownHostsFile)) in message
    assert server.host_key_fingerprint in message  # so the operator can compare it with the partner's
    assert list(upload.iterdir()) == []
    assert not home.warehouse.exists() or not ledger(home)


def test_changed_host_key_is_refused(
    home: Home, setting: SftpSetting, upload: Path, server: LocalSftp
) -> None:
    pin(home, setting, new_key_line(f"[127.0.0.1]:{server.port}"))

    with pytest.raises(TerminalError, match="host key CHANGED"):
        send(setting, home, make_export(home))

    assert list(upload.iterdir()) == []


def test_revoked_host_key_is_refused(home: Home, setting: SftpSetting, server: LocalSftp) -> None:
    key = server_key(server)
    pin(home, setting, f"[127.0.0.1]:{server.port} {key}\n@revoked * {key}\n")

    with pytest.raises(TerminalError, match="revoked"):
        send(setting, home, make_export(home))


def test_an_entry_without_the_port_does_not_pin_a_non_standard_port(
    home: Home, setting: SftpSetting, server: LocalSftp
) -> None:
    pin(home, setting, f"127.0.0.1 {server_key(server)}\n")

    with pytest.raises(TerminalError, match="without a port") as err:
        send(setting, home, make_export(home))

    assert f"[127.0.0.1]:{server.port}" in str(err.value)


def test_hashed_known_hosts_entry_for_a_non_standard_port(
    home: Home, setting: SftpSetting, server: LocalSftp, upload: Path
) -> None:
    hashed = HostKeys.hash_host(f"[127.0.0.1]:{server.port}")
    pin(home, setting, f"# pinned 2026-01-02\n{new_key_line('other.example')}{hashed} {server_key(server)}\n")

    assert send(setting, home, make_export(home)).delivered
    assert len(list(upload.iterdir())) == 2


def test_known_hosts_names_are_literals_unless_they_hold_wildcards(tmp_path: Path) -> None:
    line = new_key_line("PLACEHOLDER").split(maxsplit=1)[1]
    path = tmp_path / "known_hosts"
    path.write_text(
        f"[127.0.0.2]:2222 {line}"
        f"[127.0.0.1]:2222,sftp.partner.example {line}"
        f"!bad.example.net,*.example.net {line}",
        encoding="utf-8",
    )

    assert len(load_pinned_keys(path, "127.0.0.1", 2222).keys) == 1
    assert len(load_pinned_keys(path, "127.0.0.3", 2222).keys) == 0
    assert len(load_pinned_keys(path, "sftp.partner.example", 22).keys) == 1
    assert len(load_pinned_keys(path, "sftp.partner.example", 2222).keys) == 0
    assert len(load_pinned_keys(path, "files.example.net", 22).keys) == 1
    assert len(load_pinned_keys(path, "bad.example.net", 22).keys) == 0


def test_missing_known_hosts_file_is_invalid_input(home: Home, setting: SftpSetting) -> None:
    missing = setting.model_copy(update={"knownHostsFile": "configs/sftp/missing.known_hosts"})

    with pytest.raises(InvalidInputError, match="ssh-keyscan"):
        send(missing, home, make_export(home))


# ---------------------------------------------------------------- credentials


def test_wrong_client_key_is_refused(home: Home, setting: SftpSetting, upload: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_ed25519"
    other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    other.chmod(0o600)

    with pytest.raises(TerminalError, match="authentication refused"):
        send(setting.model_copy(update={"privateKeyFile": str(other)}), home, make_export(home))

    assert list(upload.iterdir()) == []


def test_a_refused_password_never_appears_in_errors_or_logs(
    home: Home, setting: SftpSetting, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-Sup3r-Secret"
    monkeypatch.setenv("CE_TEST_SFTP_PASSWORD", secret)
    by_env = setting.model_copy(update={"privateKeyFile": None, "passwordEnv": "CE_TEST_SFTP_PASSWORD"})
    by_block = setting.model_copy(update={"privateKeyFile": None, "passwordSecretBlock": "partner-sftp"})
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TerminalError, match=r"authentication refused .*accepts: publickey") as from_env:
        send(by_env, home, make_export(home))
    with pytest.raises(TerminalError, match="authentication refused") as from_block:
        send(by_block, home, make_export(home), password=SecretStr(secret))

    for err in (from_env.value, from_block.value):
        assert secret not in str(err)
        assert secret not in repr(err.__cause__)
    assert secret not in caplog.text


def test_a_password_is_a_secret_from_the_moment_it_is_resolved(
    home: Home, setting: SftpSetting, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hunter2-Sup3r-Secret"
    monkeypatch.setenv("CE_TEST_SFTP_PASSWORD", secret)
    by_env = setting.model_copy(update={"privateKeyFile": None, "passwordEnv": "CE_TEST_SFTP_PASSWORD"})
    _, resolved = credentials(by_env, home, None)
    assert isinstance(resolved, SecretStr)
    assert secret not in repr(resolved)
    assert secret not in str(resolved)
    assert f"{resolved}" == "**********"
    assert resolved.get_secret_value() == secret


def test_an_unset_password_variable_is_invalid_input(
    home: Home, setting: SftpSetting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CE_TEST_SFTP_PASSWORD", raising=False)
    by_env = setting.model_copy(update={"privateKeyFile": None, "passwordEnv": "CE_TEST_SFTP_PASSWORD"})

    with pytest.raises(InvalidInputError, match="CE_TEST_SFTP_PASSWORD is not set"):
        send(by_env, home, make_export(home))


# ---------------------------------------------------------------- remote side and network


def test_missing_remote_dir_is_terminal(home: Home, setting: SftpSetting, server: LocalSftp) -> None:
    with pytest.raises(TerminalError, match="remote directory /missing does not exist") as err:
        send(setting.model_copy(update={"remoteDir": "/missing"}), home, make_export(home))

    assert f"{server.username}@127.0.0.1:{server.port}" in str(err.value)
    assert not (server.root / "missing").exists()


def test_connection_refused_is_transient(home: Home, setting: SftpSetting) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        with pytest.raises(TransientError, match="connection refused"):
            send(setting.model_copy(update={"port": port}), home, make_export(home))


def test_a_server_that_never_answers_times_out_as_transient(home: Home, setting: SftpSetting) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; no SSH banner ever comes
        quick = setting.model_copy(
            update={"port": silent.getsockname()[1], "timeouts": Timeouts(connect=0.3, auth=0.3, channel=0.3)}
        )
        with pytest.raises(TransientError):
            send(quick, home, make_export(home))


# ---------------------------------------------------------------- check_destination


def test_check_destination_reports_the_pinned_key_and_leaves_nothing(
    home: Home, setting: SftpSetting, upload: Path, server: LocalSftp
) -> None:
    report = check_destination(setting, home)

    assert json.loads(json.dumps(report)) == report
    assert report["host"] == "127.0.0.1"
    assert report["port"] == server.port
    assert report["username"] == server.username
    assert report["remoteDir"] == "/upload"
    assert report["hostKeyFingerprint"] == server.host_key_fingerprint
    assert report["writable"] is True
    assert list(upload.iterdir()) == []


def test_check_destination_refuses_a_missing_dir_and_an_unknown_host(
    home: Home, setting: SftpSetting, server: LocalSftp
) -> None:
    with pytest.raises(TerminalError, match="does not exist"):
        check_destination(setting.model_copy(update={"remoteDir": "/nope"}), home)
    pin(home, setting, new_key_line(f"[127.0.0.1]:{server.port}"))
    with pytest.raises(TerminalError, match="CHANGED"):
        check_destination(setting, home)


# ---------------------------------------------------------------- the local server itself


def test_local_server_setting_round_trips_and_the_server_stops(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    with local_sftp_server(tmp_path / "root") as srv:
        path = srv.write_setting(home, "demo", remote_dir="/drop")
        loaded = home.sftp("demo")
        assert path == home.configs / "sftp" / "demo.yaml"
        assert loaded.port == srv.port
        assert (
            home.path(loaded.knownHostsFile)
            .read_text(encoding="utf-8")
            .startswith(f"[127.0.0.1]:{srv.port} ")
        )
        assert (tmp_path / "root" / "drop").is_dir()
        assert check_destination(loaded, home)["writable"] is True
        port = srv.port

    assert not any(t.name == "local-sftp-server" for t in threading.enumerate())
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
