"""`check`: the guard at any instant for a few contacts, from source files, read-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from pipelines.io import sources
from pipelines.lookup import checks
from pipelines.model.config import Home
from pipelines.rules import compliance
from pipelines.run import job
from tests.frontdoor import add_exporter, address, borrower, make_home, phone, query, write_csv_source
from tests.worlds import REPO, without_sftp
from tests.worlds import make_home as make_sample_home

NY = ZoneInfo("America/New_York")


def local(y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NY).astimezone(UTC)


def decide(home: Home, exporter: str, source: Path, ids: list[str], at: datetime) -> dict[str, Any]:
    plan = job.plan_run(home, exporter, at.date(), source=source)
    out = checks.check_contacts(plan.exporter, plan.company, plan.source, ids, at)
    return {r["contactId"]: r["reasons"] for r in out["results"]}


@pytest.fixture
def world(tmp_path: Path) -> tuple[Home, str, Path]:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    calls = [
        {"id": "I1", "personId": "B1", "channel": "voice", "direction": "outbound", "status": "attempted",
         "statusDetails": "voiceNoAnswer", "startedAt": "2026-04-06T14:00:00Z"},
        {"id": "I2", "personId": "B1", "channel": "voice", "direction": "outbound", "status": "attempted",
         "statusDetails": "voiceNoAnswer", "startedAt": "2026-04-07T18:00:00Z"},  # 14:00 New York, after noon
    ]  # fmt: skip
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower("B1"), borrower("B2"), borrower("B3")],
        contacts=[phone("C1"), address("A1", "02108", "MA"), phone("C2", "B2"), phone("C3", "B3")],
        interactions=calls,
        do_not_interact=[
            {"id": "N1", "personId": "B2", "channels": ["voice"], "themes": ["all"], "startDate": "2026-04-01",
             "createdAt": "2026-04-07T17:00:00Z"}  # created at 13:00 New York
        ],
    )  # fmt: skip
    return home, exporter, source


@pytest.mark.parametrize(
    ("hh", "mm", "outside"), [(7, 59, True), (8, 0, False), (21, 0, False), (21, 1, True)]
)
def test_contact_hours_at_the_instant(world: tuple[Home, str, Path], hh: int, mm: int, outside: bool) -> None:
    home, exporter, source = world
    got = decide(home, exporter, source, ["C3"], local(2026, 4, 8, hh, mm))
    assert got == {"C3": ["OUTSIDE_CONTACT_HOURS"] if outside else []}


def test_a_call_after_noon_and_a_dni_created_after_noon_count_later(world: tuple[Home, str, Path]) -> None:
    home, exporter, source = world
    noon = local(2026, 4, 7, 12, 0)
    assert decide(home, exporter, source, ["C1", "C2"], noon) == {"C1": [], "C2": []}
    # 15:00: the 14:00 call is the second in 7 days for a Massachusetts borrower; the DNI exists
    later = local(2026, 4, 7, 15, 0)
    assert decide(home, exporter, source, ["C1", "C2"], later) == {
        "C1": ["FREQUENCY_LIMIT"],
        "C2": ["DO_NOT_INTERACT"],
    }


def test_unknown_ids_are_listed_and_nothing_is_written(world: tuple[Home, str, Path]) -> None:
    home, exporter, source = world
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    out = checks.check_contacts(
        plan.exporter, plan.company, source, ["C9", "C1", "C1"], local(2026, 4, 7, 12, 0)
    )
    assert [r["contactId"] for r in out["results"]] == ["C1"]
    assert out["errors"] == [{"path": "/contactIds/0", "message": "no such contact in the source"}]
    assert not home.warehouse.exists()
    assert not home.exports.exists()


def test_check_reads_only_the_borrowers_concerned(world: tuple[Home, str, Path], tmp_path: Path) -> None:
    _, _, source = world
    full = sources.open_source(source)
    for fmt, path in (("duckdb", tmp_path / "s.duckdb"), ("parquet", tmp_path / "pq"), ("csv", source)):
        if fmt != "csv":
            sources.write_source(full, path, fmt)  # type: ignore[arg-type]
        few = checks.read_for_contacts(path, ["C2"])
        assert few.borrowers.collect().get_column("id").to_list() == ["B2"]
        assert few.contacts.collect().get_column("id").to_list() == ["C2"]
        assert few.interactions.collect().height == 0
        assert few.do_not_interact.collect().get_column("id").to_list() == ["N1"]


def cli(home: Path, *args: str) -> tuple[int, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    out = subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    return out.returncode, json.loads(out.stdout)


def test_cli_check(world: tuple[Home, str, Path]) -> None:
    home, exporter, source = world
    code, out = cli(
        home.root, "check", exporter, "C1", "C2", "--at", "2026-04-08T01:30:00Z", "--source", str(source)
    )
    assert code == 0
    assert out["at"] == "2026-04-08T01:30:00Z"
    assert out["date"] == "2026-04-07"  # 21:30 in New York
    assert {r["contactId"]: r["reasons"] for r in out["results"]} == {
        "C1": ["FREQUENCY_LIMIT", "OUTSIDE_CONTACT_HOURS"],
        "C2": ["DO_NOT_INTERACT", "OUTSIDE_CONTACT_HOURS"],
    }
    assert out["results"][0]["nextEligibleDate"] == "2026-04-13"  # the Apr 6 call leaves the window
    code, bad = cli(home.root, "check", exporter, "C1", "--at", "yesterday")
    assert code == 2
    assert bad["status"] == 422


@pytest.mark.parametrize("fmt", ["duckdb", "parquet"])
def test_at_the_batch_instant_check_gives_the_batch_row(tmp_path: Path, fmt: str) -> None:
    home = make_sample_home(tmp_path / "home")
    without_sftp(home, "CE-VOICECOL")
    as_of = date(2026, 12, 1)
    source = home.warehouse
    if fmt == "parquet":
        source = tmp_path / "pq"
        sources.write_source(sources.open_source(home.warehouse), source, "parquet")
    job.run_export(job.plan_run(home, "CE-VOICECOL", as_of, source=source), deliver_enabled=False)
    batch = {
        c: (ok, list(r), n)
        for c, ok, r, n in query(
            home, "SELECT contactId, canInteract, reasons, nextEligibleDate FROM screening_results"
        )
    }
    assert any(n is not None for _, _, n in batch.values()), "the sample must have a contact time clears"
    plan = job.plan_run(home, "CE-VOICECOL", as_of, source=source)
    noon = compliance.as_of_instant(plan.company, as_of)
    ids = sorted(batch)
    for start in range(0, len(ids), 97):
        part = ids[start : start + 97]
        out = checks.check_contacts(plan.exporter, plan.company, source, part, noon)
        assert out["errors"] == []
        got = {
            r["contactId"]: (
                r["canInteract"],
                r["reasons"],
                date.fromisoformat(r["nextEligibleDate"]) if r["nextEligibleDate"] else None,
            )
            for r in out["results"]
        }
        assert got == {c: batch[c] for c in part}
        assert all(r["matched"] for r in out["results"])


def test_at_the_batch_instant_check_gives_the_batch_row_on_the_demo_data(tmp_path: Path) -> None:
    """data/sample, the committed demo data (CSV), for both example exporters' matches."""
    home = make_sample_home(tmp_path / "home")
    without_sftp(home, "CE-VOICECOL")
    source = REPO / "data" / "sample"
    as_of = date(2026, 11, 3)
    job.run_export(job.plan_run(home, "CE-VOICECOL", as_of, source=source), deliver_enabled=False)
    batch = query(home, "SELECT contactId, canInteract, reasons FROM screening_results ORDER BY contactId")
    plan = job.plan_run(home, "CE-VOICECOL", as_of, source=source)
    ids = [str(r[0]) for r in batch]
    out = checks.check_contacts(
        plan.exporter, plan.company, source, ids, compliance.as_of_instant(plan.company, as_of)
    )
    assert [(r["contactId"], r["canInteract"], r["reasons"]) for r in out["results"]] == [
        (c, ok, list(r)) for c, ok, r in batch
    ]
    assert pl.Series([r["canInteract"] for r in out["results"]]).n_unique() == 2


def test_explain_at_an_instant(world: tuple[Home, str, Path]) -> None:
    home, exporter, source = world
    code, out = cli(
        home.root, "explain", exporter, "C1", "--at", "2026-04-07T19:00:00Z", "--source", str(source)
    )
    assert code == 0
    assert out["asOfInstant"] == "2026-04-07T19:00:00Z"
    assert out["reasons"] == ["FREQUENCY_LIMIT"]
    (limit,) = out["evidence"]["FREQUENCY_LIMIT"]["limits"]
    assert [a["id"] for a in limit["attempts"]] == ["I1", "I2"]  # I2 at 14:00, before this instant
    code, both = cli(
        home.root, "explain", exporter, "C1", "--at", "2026-04-07T19:00:00Z", "--as-of", "2026-04-07"
    )
    assert code == 2
