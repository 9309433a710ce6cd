"""After `make demo` the sample data lives in the demo's home: a command run without it says where."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.worlds import REPO


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("CONTACT_EXPORTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_home_without_a_source_points_to_the_demo_home(tmp_path: Path) -> None:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    args = ("--home", ".", "run", "CE-EMAILSVC", "--as-of", "2026-11-03", "--no-deliver")

    before = cli(tmp_path, *args)
    assert before.returncode == 2, before.stderr
    assert "--home data/demo" not in before.stderr  # no demo yet: nothing to point to

    shutil.copytree(REPO / "configs", tmp_path / "data" / "demo" / "configs")
    after = cli(tmp_path, *args)
    assert after.returncode == 2, after.stderr
    assert "does not exist" in after.stderr
    assert "add --home data/demo" in after.stderr
    assert after.stderr.count("\n") <= 3  # still a short message
