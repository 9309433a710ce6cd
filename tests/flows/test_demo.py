"""The demo entry point at a small size: delivered file, manifest and warehouse rows agree."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.model.config import Home
from tests.worlds import REPO

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_demo_delivers_and_records(tmp_path: Path) -> None:
    from flows.demo import run_demo

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    messages: list[str] = []
    results = run_demo(Home(tmp_path), borrowers=400, redeliver=False, say=messages.append)

    assert [r["exporterId"] for r in results] == ["CE-VOICECOL", "CE-EMAILSVC"]
    assert all(r["delivered"] for r in results)
    upload = tmp_path / "data" / "demo" / "sftp-root" / "upload"
    wh = tmp_path / "data" / "demo" / "data" / "warehouse.duckdb"
    con = duckdb.connect(str(wh), read_only=True)
    try:
        for result in results:
            name = Path(result["file"]).name
            delivered = (upload / name).read_bytes()
            manifest = json.loads((upload / f"{name}.manifest.json").read_text())
            assert manifest["sha256"] == hashlib.sha256(delivered).hexdigest()
            assert manifest["rows"] == result["counts"]["exported"] == delivered.count(b"\n") - 1
            row = con.execute(
                "SELECT status, exported, sha256, deliveredAt IS NOT NULL FROM export_runs WHERE runId = ?",
                [result["runId"]],
            ).fetchone()
            assert row == ("succeeded", result["counts"]["exported"], manifest["sha256"], True)
            screened = con.execute(
                "SELECT count(*) FROM screening_results WHERE runId = ?", [result["runId"]]
            ).fetchone()
            assert screened == (result["counts"]["matched"],)
    finally:
        con.close()
    assert not [p for p in upload.iterdir() if p.name.endswith(".part")]
    assert any("Explore the results" in m for m in messages)
    # the follow-up commands it prints name the demo's home, and work as printed
    printed = "\n".join(messages)
    demo_home = (tmp_path / "data" / "demo").resolve()
    assert f"--home {demo_home} sql " in printed
    [listing] = [line.strip() for line in printed.splitlines() if line.strip().endswith(" exporters list")]
    assert listing == f".venv/bin/contact-exporter --home {demo_home} exporters list"
    listed = subprocess.run(
        [sys.executable, "-m", "flows", *shlex.split(listing)[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "CE-VOICECOL" in listed.stdout

    # a second demo delivers nothing again
    again = run_demo(Home(tmp_path), borrowers=400, redeliver=False, say=messages.append)
    assert not any(r["delivered"] for r in again)
    assert all("already delivered" in r["delivery"] for r in again)
