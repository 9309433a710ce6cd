"""Typical mistakes at the command line, each answered in at most three lines on stderr with exit 2,
no traceback, and nothing created in the home (no warehouse, no export folder, no Prefect state)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worlds import make_home


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("CONTACT_EXPORTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_home(tmp_path_factory.mktemp("mistakes"), borrowers=40).root
    (root / "no_id.csv").write_text("borrowerId\nB-1\n")
    (root / "empty-source").mkdir()
    return root


# (arguments after --home, a phrase the answer must contain)
MISTAKES = [
    pytest.param(
        ["run", "CE-EMAILSVC", "--asof", "2026-11-03"], "No such option: --asof", id="unknown-option"
    ),
    pytest.param(["run"], "Missing argument 'EXPORTER_ID'", id="missing-argument"),
    pytest.param(["runn", "CE-EMAILSVC"], "No such command 'runn'", id="unknown-command"),
    pytest.param(["run", "CE-EMAILSVC", "--as-of", "2026-13-01"], "--as-of", id="bad-date"),
    pytest.param(["run", "CE-NOSUCH12", "--as-of", "2026-11-03"], "CE-NOSUCH12", id="unknown-exporter"),
    pytest.param(
        ["run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver", "--source", "missing.duckdb"],
        "missing.duckdb does not exist",
        id="missing-source",
    ),
    pytest.param(
        ["run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver", "--source", "empty-source"],
        "has no table borrowers",
        id="source-without-tables",
    ),
    pytest.param(
        ["backfill", "CE-EMAILSVC", "--start", "2026-11-07", "--end", "2026-11-01", "--no-deliver"],
        "before --start",
        id="end-before-start",
    ),
    pytest.param(
        ["run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver", "--population", "no_id.csv"],
        "has no column id",
        id="population-without-id",
    ),
    pytest.param(
        ["run", "CE-VOICECOL", "--as-of", "2026-11-03"],
        "partner.known_hosts does not exist",
        id="no-known-hosts",
    ),
    pytest.param(["campaigns", "run", "no-such-campaign"], "no-such-campaign", id="unknown-campaign"),
    pytest.param(["exporters", "create", "--file", "nope.json"], "nope.json", id="missing-body-file"),
]


@pytest.mark.parametrize(("args", "phrase"), MISTAKES)
def test_a_mistake_gets_a_short_answer_exit_2_and_changes_nothing(
    home: Path, args: list[str], phrase: str
) -> None:
    before = listing(home)
    out = cli("--home", str(home), *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) in (1, 2, 3), out.stderr
    assert phrase in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    if not args[0].startswith("runn") and "Usage:" not in out.stderr:
        assert f"home: {home} (from --home)" in out.stderr  # the home that was used is named
    assert listing(home) == before


def test_a_wrong_home_is_named_and_not_created(tmp_path: Path) -> None:
    ghost = tmp_path / "no-such-home"
    for args in (["run", "CE-EMAILSVC", "--as-of", "2026-11-03"], ["server", "start"]):
        out = cli("--home", str(ghost), *args)
        assert out.returncode == 2
        assert out.stderr.strip().splitlines()[-1] == f"home: {ghost} (from --home, which does not exist)"
        assert not ghost.exists()


def test_the_current_directory_as_home_is_said(tmp_path: Path) -> None:
    out = cli("exporters", "get", "CE-EMAILSVC", cwd=tmp_path)
    assert out.returncode == 2
    assert "the current directory; use --home" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_version_and_debug() -> None:
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("contact-exporter ")
    debug = cli("--debug", "run", "CE-EMAILSVC", "--asof", "2026-11-03")
    assert debug.returncode == 2
    assert "No such option: --asof" in debug.stderr


def test_debug_shows_the_traceback_of_an_expected_failure(home: Path) -> None:
    plain = cli("--home", str(home), "run", "CE-EMAILSVC", "--no-deliver", "--source", "missing.duckdb")
    debug = cli(
        "--home", str(home), "--debug", "run", "CE-EMAILSVC", "--no-deliver", "--source", "missing.duckdb"
    )
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-2:] == plain.stderr.strip().splitlines()
