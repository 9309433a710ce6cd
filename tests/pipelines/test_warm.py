"""The warm source (pipelines/lookup/warm.py) gives exactly the rows the pushed-down read gives, and follows
changes to the files."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.io import sources
from pipelines.lookup import checks, warm
from pipelines.model.config import Home
from pipelines.model.tables import TABLES, SourceTables
from pipelines.rules import compliance
from pipelines.run import job
from tests.frontdoor import add_exporter, address, borrower, make_home, phone, query, write_csv_source
from tests.worlds import REPO, without_sftp
from tests.worlds import make_home as make_sample_home


def rows(tables: SourceTables) -> dict[str, list[str]]:
    """Every table's rows, as sorted text (row order is not part of the answer)."""
    return {spec.name: sorted(repr(r) for r in tables.get(spec.name).collect().to_dicts()) for spec in TABLES}


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    """Duplicate ids within and across borrowers, rows without a borrower or without an id, a borrower
    id twice."""
    call = {
        "channel": "voice",
        "direction": "outbound",
        "status": "attempted",
        "startedAt": "2026-04-06T14:00:00Z",
    }
    return write_csv_source(
        tmp_path / "csv",
        borrowers=[borrower("B1"), borrower("B2"), borrower("B3"), borrower("B3"), borrower("B4"), borrower("B5")],
        contacts=[
            phone("C1"), phone("C2", number="+16175550100"), address("A1", "02108", "MA"), phone("C3", "B2"),
            phone("C4", "B3"), phone("C4", "B4"), phone("C5", ""), phone("C6", "B5"), phone("C7", "B9"),
        ],
        interactions=[
            {"id": "I1", "personId": "B1", **call}, {"id": "I2", "personId": "B2", **call},
            {"id": "I2", "personId": "B5", **call}, {"id": "I3", "personId": "", **call},
            {"id": "I4", "personId": "B4", **call}, {"id": "", "personId": "B1", **call},
        ],
        do_not_interact=[
            {"id": "N1", "personId": "B2", "channels": ["voice"], "themes": ["all"], "startDate": "2026-04-01"},
            {"id": "N2", "personId": "B4", "channels": ["all"], "themes": ["all"], "startDate": "2026-04-01"},
            {"id": "N2", "personId": "B1", "channels": ["all"], "themes": ["all"], "startDate": "2026-05-01"},
        ],
        consents=[
            {"personId": "B1", "name": "autodialedColl", "status": "consented", "updatedAt": "2026-01-01T00:00:00Z"},
            {"personId": "B3", "name": "electronicComms", "status": "revoked", "updatedAt": "2026-01-01T00:00:00Z"},
        ],
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "parquet", "duckdb"])
def test_warm_rows_are_the_pushed_down_rows(tricky: Path, tmp_path: Path, fmt: str) -> None:
    source = tricky
    if fmt != "csv":
        source = tmp_path / ("pq" if fmt == "parquet" else "s.duckdb")
        sources.write_source(sources.open_source(tricky), source, fmt)  # type: ignore[arg-type]
    kept = warm.WarmSource(source)
    ids = ["C1", "C2", "A1", "C3", "C4", "C5", "C6", "C7", "C9"]
    for size in (1, 2, 3):
        for chosen in itertools.combinations(ids, size):
            cold = checks.read_for_contacts(source, list(chosen))
            hot = checks.conform_rows(kept.rows_for_contacts(list(chosen)), source)
            assert rows(hot) == rows(cold), chosen
    # the twins are there: C4 brings both borrowers' C4, C1 brings B4's N2 (it shares B1's DNI id)
    picked = checks.conform_rows(kept.rows_for_contacts(["C1"]), source)
    assert sorted(picked.do_not_interact.collect().get_column("personId").to_list()) == ["B1", "B4"]
    assert checks.conform_rows(kept.rows_for_contacts(["C4"]), source).borrowers.collect().height == 3


def test_a_row_without_an_id_blocks_its_borrower_in_a_check_as_in_a_run(tmp_path: Path) -> None:
    call = {
        "channel": "voice",
        "direction": "outbound",
        "status": "attempted",
        "startedAt": "2026-04-06T14:00:00Z",
    }
    source = write_csv_source(
        tmp_path / "csv",
        borrowers=[borrower("B1"), borrower("B2")],
        contacts=[phone("C1"), phone("C3", "B2")],
        interactions=[{"id": "", "personId": "B1", **call}, {"id": "I2", "personId": "B2", **call}],
    )
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter = add_exporter(home)
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    job.run_export(plan, deliver_enabled=False)
    ran = {str(c): list(r) for c, r in query(home, "SELECT contactId, reasons FROM screening_results")}
    assert ran == {"C1": ["SOURCE_ROW_REJECTED"], "C3": []}  # the interaction of B1 without an id
    noon = compliance.as_of_instant(plan.company, plan.as_of)
    for fmt, path in (("csv", source), ("duckdb", tmp_path / "s.duckdb"), ("parquet", tmp_path / "pq")):
        if fmt != "csv":
            sources.write_source(sources.open_source(source), path, fmt)  # type: ignore[arg-type]
        for kept in (None, warm.WarmSource(path)):
            out = checks.check_contacts(plan.exporter, plan.company, path, ["C1", "C3"], noon, warm=kept)
            assert {r["contactId"]: r["reasons"] for r in out["results"]} == ran, (fmt, kept)


def test_a_changed_file_is_read_again(tricky: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    sources.write_source(sources.open_source(tricky), path, "duckdb")
    kept = warm.warm_source(path)
    assert warm.warm_source(tmp_path / "." / "s.duckdb") is kept
    assert kept.rows_for_contacts(["C8"])["contacts"].height == 0
    first = kept.tables()
    assert kept.tables() is first  # unchanged files: the same snapshot
    # the server does not hold the file: a writer opens it at once
    con = duckdb.connect(str(path))
    try:
        con.execute("INSERT INTO contacts (id, personId, contactType, label, affiliation, status) "
                    "VALUES ('C8', 'B2', 'email', 'work', 'self', 'primary')")  # fmt: skip
    finally:
        con.close()
    got = kept.rows_for_contacts(["C8"])["contacts"]
    assert got.get_column("id").to_list() == ["C3", "C8"]  # the whole borrower, read again
    assert kept.tables() is not first


def test_a_table_without_its_borrower_key_is_a_source_error(tmp_path: Path) -> None:
    folder = write_csv_source(tmp_path / "csv", borrowers=[borrower("B1")], contacts=[phone("C1")])
    (folder / "consents.csv").write_text("name,status,updatedAt\n")
    with pytest.raises(sources.SourceDataError, match="consents has no column personId"):
        warm.WarmSource(folder).rows_for_contacts(["C1"])


def decisions(out: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["contactId"], r["canInteract"], r["reasons"], r["nextEligibleDate"]) for r in out["results"]]


def test_warm_checks_equal_file_checks_on_the_demo_data(tmp_path: Path) -> None:
    home = make_sample_home(tmp_path / "home")
    without_sftp(home, "CE-VOICECOL")
    source = REPO / "data" / "sample"
    plan = job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3), source=source)
    ids = sorted(sources.open_source(source).contacts.collect().get_column("id").to_list())
    kept = warm.WarmSource(source)
    noon = compliance.as_of_instant(plan.company, plan.as_of)
    instants = [noon, datetime(2026, 11, 3, 12, 30, tzinfo=UTC), datetime(2026, 11, 4, 1, 59, tzinfo=UTC)]
    for at in instants:
        cold = checks.check_contacts(plan.exporter, plan.company, source, ids, at)
        hot = checks.check_contacts(plan.exporter, plan.company, source, ids, at, warm=kept)
        assert hot == cold
        assert len({ok for _, ok, _, _ in decisions(hot)}) == 2


def test_warm_checks_read_only_the_borrowers_concerned(tmp_path: Path) -> None:
    home: Home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower("B1"), borrower("B2")],
        contacts=[phone("C1"), phone("C2", "B2")],
    )
    picked = warm.WarmSource(source).rows_for_contacts(["C2"])
    assert {name: frame.height for name, frame in picked.items()} == {
        "borrowers": 1, "contacts": 1, "interactions": 0, "do_not_interact": 0, "consents": 0
    }  # fmt: skip
    assert picked["borrowers"].get_column("id").to_list() == ["B2"]
    assert isinstance(picked["contacts"], pl.DataFrame)
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    at = datetime(2026, 4, 7, 16, 0, tzinfo=UTC)
    out = checks.check_contacts(
        plan.exporter, plan.company, source, ["C2", "C1"], at, warm=warm.WarmSource(source)
    )
    assert [(r["contactId"], r["canInteract"]) for r in out["results"]] == [("C2", True), ("C1", True)]
