"""bench.checks runs end to end at a tiny size (a smoke test, not a timing assertion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import checks


def test_checks_bench_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    checks.main(
        [
            "--borrowers", "400",
            "--small", "5",
            "--large", "1",
            "--file-repeat", "1",
            "--cache", str(tmp_path / "cache"),
            "--results", str(results),
        ]
    )  # fmt: skip
    (report_file,) = results.glob("checks-*.json")
    report = json.loads(report_file.read_text())
    assert report["borrowers"] == 400
    assert report["contacts10"]["requests"] == 5
    assert report["contacts1000"]["requests"] == 1
    assert 0 < report["contacts10"]["p50Ms"] <= report["contacts10"]["p99Ms"]
    assert report["fromFile"]["pushedDownRead10Ms"] > 0
    assert "10 contacts" in capsys.readouterr().out


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert checks.percentile(values, 50) == 50.0
    assert checks.percentile(values, 99) == 99.0
    assert checks.percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert checks.percentile([1.0] * 29 + [9.0], 99) == 9.0
