"""`settings.connect` in a process where Prefect is already pointed at an API (here the session's test
harness): that API is used, no temporary server is started and the environment is left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows import settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_an_imported_prefect_with_an_api_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    said: list[str] = []

    settings.connect(tmp_path, say=said.append)

    assert said == []
    assert "PREFECT_API_URL" not in os.environ
    assert "PREFECT_UI_URL" not in os.environ
    assert not (tmp_path / ".prefect" / "temporary-server.log").exists()
