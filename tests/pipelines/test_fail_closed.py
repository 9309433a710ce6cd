"""End to end, through source files, reading, validation and the run: every way a bad or changing
source row used to let a contact through (a rejected address taking the borrower's zone or state
with it, short CSV rows filled with defaults, a file cut short, contacts without history)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipelines.model.errors import SourceDataError
from tests.frontdoor import (
    VOICE,
    add_exporter,
    address,
    borrower,
    decisions,
    make_home,
    phone,
    query,
    run,
    write_csv_source,
    write_source,
)

D = date(2026, 4, 7)  # a Tuesday; Eastern noon is 06:00 in Honolulu
NY_CALLS = [
    {"id": f"I{d}", "personId": "B1", "channel": "voice", "direction": "outbound", "status": "attempted",
     "statusDetails": "voiceNoAnswer", "startedAt": f"2026-04-0{d}T13:00:00Z"}
    for d in (3, 5)
]  # fmt: skip

# Other borrowers, one phone each: with 120 of them one blocked borrower is under the default
# maxRejectedShare (1 %), so the run goes on and blocks only that borrower.
CROWD = [f"B{i:03d}" for i in range(2, 122)]
CROWD_BORROWERS = [borrower(pid) for pid in CROWD]
CROWD_PHONES = [phone(f"C{pid}", pid) for pid in CROWD]


def others_allowed(got: dict[str, list[str]]) -> dict[str, list[str]]:
    """The decisions outside the crowd, after checking that the crowd is allowed."""
    assert all(got.pop(f"C{pid}") == [] for pid in CROWD)
    return got


def exported_ids(summary: dict[str, object]) -> list[str]:
    return [line.split(",")[0] for line in Path(str(summary["file"])).read_text().splitlines()[1:]]


def test_lower_case_state_keeps_the_honolulu_zone(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower(tz=None)],
        contacts=[phone(), address("A1", "96813", "hi")],
    )
    run(home, exporter, D, source)
    assert decisions(home) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}
    assert query(home, "SELECT count(*) FROM rejected_rows") == [(0,)]


@pytest.mark.parametrize("state", ["ma", " MA", "Ma "])
def test_lower_case_state_keeps_the_massachusetts_rule(tmp_path: Path, state: str) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower()],
        contacts=[phone(), address("A1", None, state)],
        interactions=NY_CALLS,
    )
    run(home, exporter, D, source)
    assert decisions(home) == {"C1": ["FREQUENCY_LIMIT"]}


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"label": "mailing"}, "label_in_vocabulary"),
        ({"valid": "no"}, "valid_is_boolean"),
        ({"status": "Archived"}, "status_in_vocabulary"),
        ({"affiliation": "Self"}, "affiliation_in_vocabulary"),
        ({"postalCode": "96813", "state": "Hawaii"}, "state_is_two_letters"),
    ],
)
def test_a_rejected_address_blocks_the_borrower(tmp_path: Path, change: dict[str, str], check: str) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower(tz=None), *CROWD_BORROWERS],
        contacts=[phone(), address("A1", "96813", "HI") | change, *CROWD_PHONES],
    )
    summary = run(home, exporter, D, source)
    assert others_allowed(decisions(home)) == {"C1": ["SOURCE_ROW_REJECTED"]}
    assert query(home, "SELECT tableName, rowKey, checks FROM rejected_rows") == [("contacts", "A1", [check])]
    assert summary["counts"]["byReason"] == {"SOURCE_ROW_REJECTED": 1}  # type: ignore[index]
    assert exported_ids(summary) == [f"C{pid}" for pid in CROWD]


def test_too_many_blocked_borrowers_fail_the_run(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")  # default maxRejectedShare 0.01
    exporter = add_exporter(home)
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower(), borrower("B2")],
        contacts=[phone(), address("A1", "96813", "HI", label="mailing"), phone("C2", "B2")],
    )
    with pytest.raises(SourceDataError, match="maxRejectedShare") as caught:
        run(home, exporter, D, source)
    assert caught.value.exit_code == 2
    assert query(home, "SELECT status FROM export_runs") == [("failed",)]
    assert query(home, "SELECT tableName, rowKey, checks FROM rejected_rows") == [
        ("contacts", "A1", ["label_in_vocabulary"])
    ]
    assert list(home.exports.rglob("*.csv")) == []


@pytest.mark.parametrize(
    "table",
    ["borrowers", "interactions", "do_not_interact", "consents"],
)
def test_a_rejected_row_of_any_table_blocks_its_borrower(tmp_path: Path, table: str) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    bad = {
        "borrowers": {"id": "B1", "companyId": "CP-T", "timezone": "Eastern"},
        "interactions": {**NY_CALLS[0], "channel": "pigeon"},
        "do_not_interact": {"id": "N1", "personId": "B1", "channels": '["voice"]', "themes": '["all"]',
                            "startDate": "2026-13-01"},
        "consents": {"personId": "B1", "name": "autodialedColl", "status": "maybe",
                     "updatedAt": "2026-04-01T00:00:00Z"},
    }[table]  # fmt: skip
    rows: dict[str, list[dict[str, object]]] = {
        "borrowers": [borrower(), *CROWD_BORROWERS],
        "contacts": [phone(), *CROWD_PHONES],
    }
    if table == "borrowers":
        rows["borrowers"][0] = bad
    else:
        rows[table] = [bad]
    summary = run(home, exporter, D, write_csv_source(tmp_path / "src", **rows))
    got = others_allowed(decisions(home))
    if table == "borrowers":
        # a rejected borrower row: its company is unknown, so its contacts are not in the population
        assert got == {}
        assert summary["counts"]["rejected"] == 2  # type: ignore[index]
    else:
        assert got == {"C1": ["SOURCE_ROW_REJECTED"]}
    assert exported_ids(summary) == [f"C{pid}" for pid in CROWD]


def _voice() -> dict[str, object]:
    return dict(VOICE)


def test_short_csv_row_is_rejected_not_filled_with_defaults(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home, {**_voice(), "checkCanInteractData": None})
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower(), *CROWD_BORROWERS],
        # valid=false cut after the 7th field: its valid would have been defaulted to true
        contacts=["C1,B1,phone,personal,self,primary,+12125550123", *CROWD_PHONES],
    )
    summary = run(home, exporter, D, source)
    assert query(home, "SELECT tableName, rowKey, checks FROM rejected_rows") == [
        ("contacts", "C1", ["fields_match_header"])
    ]
    assert exported_ids(summary) == [f"C{pid}" for pid in CROWD]


def test_file_cut_short_fails_the_run(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home, {**_voice(), "columnSettings": [{"field": "id"}, {"field": "value"}]})
    source = write_csv_source(tmp_path / "src", borrowers=[borrower()], contacts=[phone()])
    email = "C2,B1,email,personal,self,primary,pat@examp"
    with (source / "contacts.csv").open("a") as fh:
        fh.write(email)  # no line end: the file was cut mid-line
    with pytest.raises(SourceDataError, match="cut short") as caught:
        run(home, exporter, D, source)
    assert caught.value.exit_code == 2
    assert list(home.exports.rglob("*.csv")) == []


def test_backfill_sees_contacts_as_they_were(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    later = datetime(2026, 5, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower(tz=None)],
        contacts=[
            phone(),
            phone("C2", createdAt=later),  # created after the as-of date
            address("A1", "96813", "HI", status="archived", archivedAt=later),  # archived after it
        ],
    )
    run(home, exporter, D, source)
    assert decisions(home) == {"C1": ["OUTSIDE_CONTACT_HOURS"]}
    run(home, exporter, date(2026, 5, 5), source)
    assert decisions(home) == {"C1": [], "C2": []}


@pytest.mark.parametrize("fmt", ["parquet", "duckdb"])
def test_other_source_formats_fail_closed_the_same_way(tmp_path: Path, fmt: str) -> None:
    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    path = tmp_path / ("src" if fmt == "parquet" else "src.duckdb")
    source = write_source(
        path,
        fmt,
        borrowers=[borrower(tz=None), borrower("B2"), *CROWD_BORROWERS],
        contacts=[
            phone(),
            address("A1", "96813", "hi"),
            phone("C2", "B2"),
            address("A2", None, "MA", "B2", label="x"),
            *CROWD_PHONES,
        ],
    )
    run(home, exporter, D, source)
    assert others_allowed(decisions(home)) == {"C1": ["OUTSIDE_CONTACT_HOURS"], "C2": ["SOURCE_ROW_REJECTED"]}
