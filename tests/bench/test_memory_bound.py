"""Partitions bound a run's memory: measured in worker processes at a size a test can afford."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import bench_home, ensure_data, worker
from pipelines.run import partitions

BORROWERS = 150_000


def modelled_peak_mb(source: Path, count: int) -> float:
    """What `--partitions auto` assumes a run with `count` partitions peaks at, in MiB."""
    rows = partitions.source_rows(source)
    assert rows is not None
    return (partitions.BASELINE_BYTES + rows * partitions.PEAK_PER_ROW / count) / (1 << 20)


@pytest.mark.slow
def test_more_partitions_hold_less_memory_and_write_the_same_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    home = bench_home(cache)
    source = ensure_data(home, cache, BORROWERS, seed=7)
    whole = worker("partitioned", str(home), str(source), "1", "2GiB", cache=cache)
    split = worker("partitioned", str(home), str(source), "6", "2GiB", cache=cache)
    assert split["partitions"] == 6
    assert split["sha256"] == whole["sha256"]
    assert split["matched"] == whole["matched"] > 100_000
    # A process that imports the engine holds a few hundred MB before reading anything; what the
    # data adds must shrink with the partitions (measured: 736 MiB with one, 421 MiB with six).
    assert split["peakRssMb"] < 0.8 * whole["peakRssMb"], (split["peakRssMb"], whole["peakRssMb"])
    # The budget holds only if `auto`'s model over-estimates: its peak for N parts is at least the
    # peak measured with N parts (fitted at 1M and 4M borrowers; this is a smaller book).
    assert whole["peakRssMb"] < modelled_peak_mb(source, 1), whole["peakRssMb"]
    assert split["peakRssMb"] < modelled_peak_mb(source, 6), split["peakRssMb"]
