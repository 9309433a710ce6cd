"""bench.compare: the code at a revision and this checkout, compared row for row."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from bench.compare import differences, main
from pipelines.io import warehouse


def test_the_same_code_makes_the_same_rows_on_a_dirty_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--against", "HEAD", "--borrowers", "3000", "--dirty", "--cache", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sameFile"] is True
    assert report["rejectedRows"] > 0, "the dirty source must reject rows, or they are not compared"
    assert set(report["differences"].values()) == {0}
    assert (tmp_path / "source-3000-42-dirty.duckdb").exists()


def test_a_changed_decision_is_found(tmp_path: Path) -> None:
    paths = []
    for name, reasons in (("old", ["DO_NOT_INTERACT"]), ("new", [])):
        path = tmp_path / f"{name}.duckdb"
        con = duckdb.connect(str(path))
        warehouse.create_tables(con)
        con.execute(
            "INSERT INTO screening_results VALUES ('RUN-1', 'CE-X', ?, 'CT-1', 'BR-1', 'voice', ?, ?, NULL)",
            [date(2026, 12, 1), not reasons, reasons],
        )
        con.close()
        paths.append(path)
    found = differences(*paths)
    assert found["screening_results only in old"] == 1
    assert found["screening_results only in new"] == 1
    assert found["rejected_rows only in old"] == 0
