"""Fixtures shared by the integration tests against a real OpenSSH sshd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .sshd import Sshd, unavailable_reason


@pytest.fixture
def sshd() -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 for one test (skipped, with the reason, where one cannot start)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot start a real sshd here: {reason}")
    server = Sshd.create()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
