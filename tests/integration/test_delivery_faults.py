"""Remote faults a retry cannot fix are terminal, one clear line, no retries: against a real sshd."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.delivery.delivery_journal import journal_path
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import TerminalError
from tests.sftp_exports import send, write_export

from .sshd import Sshd

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def small_disk(sshd: Sshd) -> Iterator[Path]:
    """/upload on a 4 MiB file system of its own (tmpfs), writable by the SFTP user."""
    account = pwd.getpwnam(sshd.user)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=4m,mode=0755,uid={account.pw_uid},gid={account.pw_gid}",
         "tmpfs", str(sshd.upload)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield sshd.upload
    finally:
        subprocess.run(["umount", "-l", str(sshd.upload)], check=False)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    (tmp_path / "home" / "configs" / "sftp").mkdir(parents=True)
    return Home(tmp_path / "home")


@pytest.fixture
def setting(sshd: Sshd, home: Home) -> SftpSetting:
    known_hosts = home.configs / "sftp" / "partner.known_hosts"
    known_hosts.write_text(sshd.keyscan(), encoding="utf-8")
    return sshd.setting(known_hosts)


def test_a_file_larger_than_the_free_space_is_refused_before_uploading(
    small_disk: Path, home: Home, setting: SftpSetting
) -> None:
    export = write_export(home, [os.urandom(MiB) for _ in range(6)])
    started = time.monotonic()

    with pytest.raises(TerminalError, match="remote disk full") as info:
        send(setting, home, export)

    assert time.monotonic() - started < 10
    assert "\n" not in str(info.value)
    assert "bytes free" in str(info.value)
    assert list(small_disk.iterdir()) == []


def test_a_disk_that_fills_up_during_the_upload_is_terminal_and_leaves_no_temp(
    small_disk: Path, home: Home, setting: SftpSetting
) -> None:
    export = write_export(home, [os.urandom(MiB) for _ in range(3)])
    filler = small_disk / "other-upload.bin"

    def fill_the_disk(sent: int, total: int) -> None:  # another client's upload takes the space
        if not filler.exists():
            with filler.open("wb") as out, suppress_enospc():
                out.write(b"\0" * (4 * MiB))

    with pytest.raises(TerminalError, match="remote disk full") as info:
        send(setting, home, export, progress=fill_the_disk)

    assert "\n" not in str(info.value)
    assert sorted(p.name for p in small_disk.iterdir()) == ["other-upload.bin"]

    filler.unlink()  # space again: the next run completes the delivery it recorded
    assert journal_path(export.file).exists()
    assert send(setting, home, export).delivered
    assert (small_disk / export.file.name).read_bytes() == export.file.read_bytes()
    assert not journal_path(export.file).exists()


class suppress_enospc:  # noqa: N801 - used as a context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        return isinstance(exc, OSError) and exc.errno == 28
