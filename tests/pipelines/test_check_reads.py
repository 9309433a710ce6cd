"""What a check reads (`checks.read_for_contacts`): exactly the rows of the borrowers concerned and the
rows sharing an id with them, as a row-at-a-time selection over the whole source finds them, from every
local kind; each check reads the source again, so a write between two checks is seen by the second."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.io import sources
from pipelines.lookup import checks
from pipelines.model.config import Home
from pipelines.model.tables import SOURCE_ROW, TABLES, SourceTables
from pipelines.rules import compliance
from pipelines.run import job
from tests.frontdoor import add_exporter, address, borrower, make_home, phone, query, write_csv_source
from tests.worlds import REPO, without_sftp
from tests.worlds import make_home as make_sample_home


def rows(tables: SourceTables) -> dict[str, list[str]]:
    """Every table's rows, as sorted text (row order is not part of the answer, nor the place a
    filtered read numbers its rows by)."""
    return {
        spec.name: sorted(
            repr(r) for r in tables.get(spec.name).drop(SOURCE_ROW, strict=False).collect().to_dicts()
        )
        for spec in TABLES
    }


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


def reference_rows(whole: dict[str, pl.DataFrame], source: Path, contact_ids: Sequence[str]) -> SourceTables:
    """The rows a check must read, selected one row at a time from the whole source: the requested
    contacts' borrowers, every row of theirs and every row without a borrower key, and every row
    sharing an id (in the same table) with one of those rows or with a requested contact. `whole`: the source's raw tables."""
    contacts = whole["contacts"].to_dicts()
    persons = {r["personId"] for r in contacts if r["id"] in contact_ids and r["personId"] not in (None, "")}
    picked = {}
    for name, frame in whole.items():
        key = "id" if name == "borrowers" else "personId"
        mine = [r for r in frame.to_dicts() if r.get(key) in persons or r.get(key) is None]
        if name in checks.BY_ID:
            held = {r["id"] for r in mine if r["id"] is not None} | (
                set(contact_ids) if name == "contacts" else set()
            )
            mine += [r for r in frame.to_dicts() if r["id"] in held and r.get(key) not in persons | {None}]
        picked[name] = pl.DataFrame(mine, schema=frame.schema)
    return sources.typed(picked, sources.ref_of(source))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "duckdb"])
def test_a_check_reads_its_borrowers_rows_and_their_twins(tricky: Path, tmp_path: Path, fmt: str) -> None:
    source = tricky
    if fmt != "csv":
        source = tmp_path / ("pq" if fmt == "parquet" else "s.duckdb")
        sources.write_source(sources.open_source(tricky), source, fmt)  # type: ignore[arg-type]
    ids = ["C1", "C2", "A1", "C3", "C4", "C5", "C6", "C7", "C9"]
    whole = sources.read_raw(source)
    for size in (1, 2, 3):
        for chosen in itertools.combinations(ids, size):
            got = checks.read_for_contacts(source, list(chosen))
            assert rows(got) == rows(reference_rows(whole, source, chosen)), chosen
    # the twins are there: C4 brings both borrowers' C4, C1 brings B4's N2 (it shares B1's DNI id)
    picked = checks.read_for_contacts(source, ["C1"])
    assert sorted(picked.do_not_interact.collect().get_column("personId").to_list()) == ["B1", "B4"]
    assert checks.read_for_contacts(source, ["C4"]).borrowers.collect().height == 3


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
        out = checks.check_contacts(plan.exporter, plan.company, path, ["C1", "C3"], noon)
        assert {r["contactId"]: r["reasons"] for r in out["results"]} == ran, fmt


def test_a_rejected_row_naming_no_borrower_blocks_every_check_as_it_blocks_the_run(tmp_path: Path) -> None:
    source = write_csv_source(
        tmp_path / "csv",
        borrowers=[borrower("B1"), borrower("B2")],
        contacts=[phone("C1"), phone("C3", "B2")],
        consents=[
            {
                "personId": "",
                "name": "autodialedColl",
                "status": "consented",
                "updatedAt": "2026-01-01T00:00:00Z",
            }
        ],
    )
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter = add_exporter(home)
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    job.run_export(plan, deliver_enabled=False)
    ran = {str(c): list(r) for c, r in query(home, "SELECT contactId, reasons FROM screening_results")}
    assert ran == {"C1": ["SOURCE_ROW_REJECTED"], "C3": ["SOURCE_ROW_REJECTED"]}  # whose consent: unknown
    noon = compliance.as_of_instant(plan.company, plan.as_of)
    for fmt, path in (("csv", source), ("duckdb", tmp_path / "s.duckdb"), ("parquet", tmp_path / "pq")):
        if fmt != "csv":
            sources.write_source(sources.open_source(source), path, fmt)  # type: ignore[arg-type]
        for asked in (["C1"], ["C3"], ["C3", "C1"]):
            out = checks.check_contacts(plan.exporter, plan.company, path, asked, noon)
            assert {r["contactId"]: r["reasons"] for r in out["results"]} == {c: ran[c] for c in asked}, fmt


def test_each_check_reads_the_source_again(tricky: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    sources.write_source(sources.open_source(tricky), path, "duckdb")

    def contact_ids() -> list[str]:
        return sorted(checks.read_for_contacts(path, ["C8"]).contacts.collect().get_column("id").to_list())

    assert contact_ids() == ["C5"]  # no such contact: only the contact without a borrower
    # nothing holds the file between checks: a writer opens it at once
    con = duckdb.connect(str(path))
    try:
        con.execute("INSERT INTO contacts (id, personId, contactType, label, affiliation, status) "
                    "VALUES ('C8', 'B2', 'email', 'work', 'self', 'primary')")  # fmt: skip
    finally:
        con.close()
    assert contact_ids() == ["C3", "C5", "C8"]  # the whole borrower, as written now


def test_a_table_without_its_borrower_key_is_a_source_error(tmp_path: Path) -> None:
    folder = write_csv_source(tmp_path / "csv", borrowers=[borrower("B1")], contacts=[phone("C1")])
    (folder / "consents.csv").write_text("name,status,updatedAt\n")
    with pytest.raises(sources.SourceDataError, match="consents has no column personId"):
        checks.read_for_contacts(folder, ["C1"])


def decisions(out: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["contactId"], r["canInteract"], r["reasons"], r["nextEligibleDate"]) for r in out["results"]]


def test_checks_on_the_demo_data_take_both_answers_at_any_instant(tmp_path: Path) -> None:
    home = make_sample_home(tmp_path / "home")
    without_sftp(home, "CE-VOICECOL")
    source = REPO / "data" / "sample"
    plan = job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3), source=source)
    ids = sorted(sources.open_source(source).contacts.collect().get_column("id").to_list())
    noon = compliance.as_of_instant(plan.company, plan.as_of)
    instants = [noon, datetime(2026, 11, 3, 12, 30, tzinfo=UTC), datetime(2026, 11, 4, 1, 59, tzinfo=UTC)]
    for at in instants:
        out = checks.check_contacts(plan.exporter, plan.company, source, ids, at)
        assert len(out["results"]) == len(ids)
        assert len({ok for _, ok, _, _ in decisions(out)}) == 2


def test_checks_read_only_the_borrowers_concerned(tmp_path: Path) -> None:
    home: Home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower("B1"), borrower("B2")],
        contacts=[phone("C1"), phone("C2", "B2")],
    )
    read = checks.read_for_contacts(source, ["C2"])
    picked = {spec.name: read.get(spec.name).collect() for spec in TABLES}
    assert {name: frame.height for name, frame in picked.items()} == {
        "borrowers": 1, "contacts": 1, "interactions": 0, "do_not_interact": 0, "consents": 0
    }  # fmt: skip
    assert picked["borrowers"].get_column("id").to_list() == ["B2"]
    assert isinstance(picked["contacts"], pl.DataFrame)
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    at = datetime(2026, 4, 7, 16, 0, tzinfo=UTC)
    out = checks.check_contacts(plan.exporter, plan.company, source, ["C2", "C1"], at)
    assert [(r["contactId"], r["canInteract"]) for r in out["results"]] == [("C2", True), ("C1", True)]
