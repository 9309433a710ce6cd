"""bench.checks runs end to end at a tiny size (a smoke test, not a timing assertion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import checks
from bench.harness import ROOT


def test_checks_bench_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    checks.main(
        [
            "400",
            "--requests", "3",
            "--server-root", str(ROOT.parent),  # the same checkout beside itself: the comparison runs
            "--cache", str(tmp_path / "cache"),
            "--results", str(results),
        ]
    )  # fmt: skip
    (report_file,) = results.glob("checks-*.json")
    report = json.loads(report_file.read_text())
    assert report["borrowers"] == 400
    assert set(report["servers"]) == {"this", "other"}
    for server in report["servers"].values():
        assert {size: c["requests"] for size, c in server["contacts"].items()} == {"1": 3, "10": 3, "100": 3}
        assert 0 < server["contacts"]["10"]["p50Ms"] <= server["contacts"]["10"]["p95Ms"]
        assert server["firstCheckAfterWriteMs"] > 0
        assert 0 < server["rssMb"] <= server["peakRssMb"]
    out = capsys.readouterr().out
    assert "this / other, p50" in out
    assert "targets (this server)" in out


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert checks.percentile(values, 50) == 50.0
    assert checks.percentile(values, 99) == 99.0
    assert checks.percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert checks.percentile([1.0] * 29 + [9.0], 99) == 9.0
