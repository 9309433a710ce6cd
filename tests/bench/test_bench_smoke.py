"""The benchmark harness runs end to end at a tiny size (a smoke test, not a timing assertion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import main


def test_harness_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    main(
        [
            "--sizes", "300",
            "--repeat", "1",
            "--reference-sample", "100",
            "--no-orchestrated",
            "--cache", str(tmp_path / "cache"),
            "--results", str(results),
        ]
    )  # fmt: skip
    (report_file,) = results.glob("*.json")
    report = json.loads(report_file.read_text())
    (size,) = report["sizes"]
    assert size["borrowers"] == 300
    assert size["matchedContacts"] > 0
    assert size["pipelineSeconds"] > 0
    assert size["floorSeconds"] > 0
    assert set(size["floorParts"]) == {
        "read",
        "write",
        "warehouse",
    }  # the floor writes the warehouse rows too
    assert size["defaultRun"]["sameFile"]
    assert size["defaultRun"]["partitions"] >= 1
    assert set(size["stages"]) >= {"read", "validate", "match", "screen", "project", "write", "warehouse"}
    assert report["reference"]["contacts"] == 100
    # the like-for-like figure is the screen stage's share of the same ratio
    assert size["referenceOverScreenPerContact"] == pytest.approx(
        size["referenceOverPipelinePerContact"] * size["pipelineSeconds"] / size["stages"]["screen"]
    )
    assert report["lookupCacheBuildSeconds"] > 0
    assert not list((tmp_path / "cache").glob("lookups-*")), "the lookup cache of the run is removed"
    out = capsys.readouterr().out
    assert "pipe/floor" in out
    assert "targets:" in out
    assert "the screen stage alone" in out


def test_a_workers_peak_memory_is_its_own() -> None:
    """A worker started by a parent holding 512 MiB reports its own high-water mark, not the parent's."""
    held = bytearray(512 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])  # touch every page so it is resident
    out = subprocess.run(
        [sys.executable, "-c", "from bench.worker import peak_rss_mb; print(peak_rss_mb())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert float(out.stdout) < 256
    del held


def test_guard_bench_reports_both_sides_and_the_guards_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import guards

    results = tmp_path / "results"
    guards.main(
        ["--borrowers", "300", "--repeat", "1", "--cache", str(tmp_path / "cache"), "--results", str(results)]
    )
    (report_file,) = results.glob("guards-*.json")
    report = json.loads(report_file.read_text())
    (on,) = report["runs"]["on"]
    (off,) = report["runs"]["off"]
    assert set(on["guards"]) == {"check_matched", "check_screening", "check_export"}
    assert off["guards"] == {}, "the runs without guards must not run them"
    assert on["exported"] == off["exported"] > 0
    assert 0 < report["guardShareOfRun"] < 1
    assert "of the run" in capsys.readouterr().out
