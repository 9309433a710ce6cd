"""Fixtures of the delivery suites: a local asyncssh SFTP server, an empty home, its setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.sftp_server import LocalSftp, local_sftp_server
from pipelines.model.config import Home, SftpSetting


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalSftp]:
    with local_sftp_server(tmp_path / "sftp-root") as srv:
        yield srv


@pytest.fixture
def home(tmp_path: Path) -> Home:
    (tmp_path / "home").mkdir()
    return Home(tmp_path / "home")


@pytest.fixture
def setting(server: LocalSftp, home: Home) -> SftpSetting:
    server.write_setting(home, "partner")
    return home.sftp("partner")
