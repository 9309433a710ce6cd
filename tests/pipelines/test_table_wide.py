"""Rules that span the whole source, through the front door: the same world written as CSV, Parquet
and DuckDB, run in 1, 2, 3, 7 and `auto` partitions, gives the same file bytes, screening rows and
rejected rows every time, and the row-at-a-time reference's decisions. The worlds hold what a
partition cannot see alone: an id used by rows of two borrowers (in every table with ids), rows
without a borrower, rejected rows in every table, odd and non-ASCII ids, fullwidth digits."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.io import sources
from pipelines.model.config import Home
from pipelines.model.errors import SourceDataError
from pipelines.rules import schemas, table_wide
from pipelines.run import deciding, job
from tests.frontdoor import COMPANY, HEADERS, add_exporter, make_home, write_csv_source, write_source
from tests.reference.source import reference_run

pytestmark = pytest.mark.slow

IDS = ["A1", "z3", "b 4", "ü-5", "Ж6", "９7", "m8", "Q9", "e-10", "ß11"]
PARTITIONS: list[int | str] = [1, 2, 3, 7, "auto"]
FORMATS = ["csv", "parquet", "duckdb"]
Row = dict[str, Any]


def world(rnd: random.Random, as_of: date) -> dict[str, list[Row]]:
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    people = rnd.sample(IDS, rnd.randint(3, len(IDS)))
    for pid in people:
        raw["borrowers"].append({"id": pid, "companyId": COMPANY, "timezone": rnd.choice(
            ["America/New_York", "Pacific/Honolulu", None, "Nowhere/Land"] if rnd.random() < 0.1
            else ["America/New_York", "Pacific/Honolulu", None])})  # fmt: skip
        for k in range(rnd.randint(1, 3)):
            kind = rnd.choice(["phone", "phone", "address"])
            row: Row = {"id": f"{pid}-C{k}", "personId": pid, "contactType": kind, "label": "personal",
                        "affiliation": "self", "status": "primary"}  # fmt: skip
            if kind == "phone":
                row["value"] = rnd.choice(["+12125550123", "+18085550123", "+1８０８５５５０１２３"])
            else:
                row["postalCode"], row["state"] = rnd.choice(
                    [("96813", None), ("９６８１３", None), ("02108", "MA"), (None, "NY")]
                )
            raw["contacts"].append(row)
        for k in range(rnd.randint(0, 3)):
            day = as_of - timedelta(days=rnd.randint(0, 8))
            raw["interactions"].append(
                {"id": f"{pid}-I{k}", "personId": pid, "channel": "voice", "direction": "outbound",
                 "status": "attempted", "statusDetails": rnd.choice(["voiceNoAnswer", "voiceSpokeWithFirstParty", ""]),
                 "startedAt": f"{day.isoformat()}T14:00:00Z"}
            )  # fmt: skip
        if rnd.random() < 0.3:
            raw["do_not_interact"].append(
                {"id": f"{pid}-N", "personId": pid, "channels": json.dumps(["voice"]), "themes": json.dumps(["all"]),
                 "startDate": (as_of - timedelta(days=2)).isoformat(), "endDate": (as_of + timedelta(days=3)).isoformat()}
            )  # fmt: skip
        if rnd.random() < 0.3:
            raw["consents"].append({"personId": pid, "name": "autodialedColl", "status": "consented",
                                    "updatedAt": "2026-01-01T00:00:00Z"})  # fmt: skip
    # An id reused by another borrower's row, in each table that has ids: the rows can fall into
    # different partitions, where neither would see the other.
    for table in ("contacts", "interactions", "do_not_interact", "borrowers"):
        rows = raw[table]
        if len(rows) >= 2 and rnd.random() < 0.5:
            a, b = rnd.sample(range(len(rows)), 2)
            rows[b] = rows[b] | {"id": rows[a]["id"]}
    # Rows without a borrower (they could be anyone's), and rows no check lets through, now and then.
    if rnd.random() < 0.15:
        table = rnd.choice(["interactions", "do_not_interact", "consents", "contacts"])
        if raw[table]:
            at = rnd.randrange(len(raw[table]))
            raw[table][at] = raw[table][at] | {"personId": ""}
    if rnd.random() < 0.3 and raw["interactions"]:
        at = rnd.randrange(len(raw["interactions"]))
        raw["interactions"][at] = raw["interactions"][at] | {"statusDetails": "voicePigeon"}
    if rnd.random() < 0.4 and raw["interactions"]:
        at = rnd.randrange(len(raw["interactions"]))
        raw["interactions"][at] = raw["interactions"][at] | {"id": ""}
    return raw


def write(folder: Path, raw: dict[str, list[Row]], fmt: str) -> Path:
    """The world as CSV files, Parquet files or a DuckDB file (the latter two typed from the CSV)."""
    if fmt == "csv":
        return write_csv_source(folder / "csv", **raw)
    return write_source(folder / ("source.duckdb" if fmt == "duckdb" else "parquet"), fmt, **raw)


def outcome(home: Home, exporter: str, as_of: date, source: Path, partitions: int | str) -> Any:
    """What a run leaves: the file's bytes and the warehouse rows, or the error it failed with."""
    warehouse = home.root / "data" / f"w-{source.name}-{partitions}.duckdb"
    plan = job.plan_run(home, exporter, as_of, source=source, warehouse_path=warehouse)
    try:
        data: Any = Path(
            job.run_export(plan, deliver_enabled=False, partitions=partitions)["file"]
        ).read_bytes()
    except SourceDataError as exc:
        data = ("failed", "maxRejectedShare" in str(exc))
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        screening = con.execute(
            "SELECT contactId, personId, channel, canInteract, reasons, nextEligibleDate "
            "FROM screening_results ORDER BY contactId, personId"
        ).fetchall()
        rejected = con.execute("SELECT tableName, rowKey, checks FROM rejected_rows ORDER BY ALL").fetchall()
    finally:
        con.close()
    return (data, screening, rejected)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32))
def test_every_partition_count_and_source_kind_gives_the_same_outputs(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    rnd = random.Random(seed)
    root = tmp_path_factory.mktemp("world")
    as_of = date(2026, 4, 7)
    policy = {"maxRejectedShare": rnd.choice([0.5, 1.0, 1.0])}
    home = make_home(root / "home", **policy)
    body = {
        "contactMatchingCriteria": {"contactType": ["phone", "address"]},
        "columnSettings": [{"field": "id"}, {"field": "personId"}],
        "checkCanInteractData": {"theme": "opsCollDebt"},
    }
    exporter = add_exporter(home, body)
    raw = world(rnd, as_of)
    company = {"id": COMPANY, "timezone": "America/New_York", "policy": policy}
    expected, rejected_keys = reference_run(raw, {}, company, body, as_of)

    seen = {}
    for fmt in FORMATS:
        source = write(root / fmt, raw, fmt)
        for n in PARTITIONS:
            seen[(fmt, n)] = outcome(home, exporter, as_of, source, n)
    first = seen[("csv", 1)]
    for where, got in seen.items():
        assert got == first, f"{where} differs from csv in one partition"
    data, screening, rejected = first
    assert {(t, k) for t, k, _ in rejected} == rejected_keys
    if expected is None:
        assert data == ("failed", True)
        return
    assert {c: list(r) for c, _, _, _, r, _ in screening} == expected
    assert len({c for c, *_ in screening}) == len(screening), "one screening row per matched contact"


def test_an_id_shared_by_borrowers_in_different_partitions_blocks_both(tmp_path: Path) -> None:
    """The smallest world of the report: contact id DUP-P is a phone of A1 and of z3."""
    home = make_home(tmp_path / "home", maxRejectedShare=0.5)
    exporter = add_exporter(home)
    people = ["A1", "b2", "c3", "d4", "e5", "f6", "g7", "h8", "z3"]
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    for pid in people:
        raw["borrowers"].append({"id": pid, "companyId": COMPANY, "timezone": "America/New_York"})
        cid = "DUP-P" if pid in ("A1", "z3") else f"{pid}-P"
        raw["contacts"].append({"id": cid, "personId": pid, "contactType": "phone", "label": "personal",
                                "affiliation": "self", "status": "primary", "value": "+12125550123"})  # fmt: skip
        raw["contacts"].append({"id": f"{pid}-Q", "personId": pid, "contactType": "phone", "label": "work",
                                "affiliation": "self", "status": "primary", "value": "+12125550124"})  # fmt: skip
    source = write(tmp_path / "src", raw, "parquet")
    as_of = date(2026, 4, 7)
    outcomes = [outcome(home, exporter, as_of, source, n) for n in (1, 3)]
    assert outcomes[0] == outcomes[1]
    data, screening, rejected = outcomes[0]
    assert b"DUP-P" not in data
    assert [(t, k) for t, k, _ in rejected] == [("contacts", "DUP-P"), ("contacts", "DUP-P")]
    blocked = {c: r for c, _, _, ok, r, _ in screening if not ok}
    assert blocked == {"A1-Q": ["SOURCE_ROW_REJECTED"], "z3-Q": ["SOURCE_ROW_REJECTED"]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_table_wide_scan_finds_ids_repeated_anywhere(tmp_path: Path, fmt: str) -> None:
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    raw["borrowers"] = [{"id": "A", "companyId": COMPANY}, {"id": "B", "companyId": COMPANY}]
    raw["interactions"] = [
        {"id": i, "personId": p, "channel": "voice", "direction": "outbound", "status": "attempted",
         "startedAt": "2026-04-01T14:00:00Z"}
        for i, p in (("I-1", "A"), ("I-2", "B"), ("I-1", "B"), ("Ж", "A"), ("Ж", None), (None, "A"), (None, "B"))
    ]  # fmt: skip
    found = table_wide.scan(write(tmp_path, raw, fmt))
    assert found.repeated_ids("interactions").to_list() == ["I-1", "Ж"]
    assert found.repeated_ids("contacts").to_list() == []
    again = table_wide.TableWide.load(found.save(tmp_path / "staged").parent)
    assert again.repeated_ids("interactions").to_list() == ["I-1", "Ж"]


def test_a_partition_cannot_validate_without_the_table_wide_answers(tmp_path: Path) -> None:
    from pipelines.io.sources import RowFilter

    home = make_home(tmp_path / "home")
    exporter = add_exporter(home)
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    raw["borrowers"] = [{"id": "A", "companyId": COMPANY}]
    source = write(tmp_path / "src", raw, "parquet")
    plan = job.plan_run(home, exporter, date(2026, 4, 7), source=source)
    with pytest.raises(ValueError, match="table-wide"):
        deciding.decide(plan, rows=RowFilter("A", "B"))


def keyless_world() -> dict[str, list[Row]]:
    """Borrowers A, M and Z with a phone and an autodial consent each, then a consent of Z without
    its `updatedAt`: rejected, and without a key of its own it is named `row 4` of consents."""
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    for pid in ("A", "M", "Z"):
        raw["borrowers"].append({"id": pid, "companyId": COMPANY, "timezone": "America/New_York"})
        raw["contacts"].append({"id": f"{pid}-P", "personId": pid, "contactType": "phone", "label": "personal",
                                "affiliation": "self", "status": "primary", "value": "+12125550123"})  # fmt: skip
        raw["consents"].append({"personId": pid, "name": "autodialedColl", "status": "consented",
                                "updatedAt": "2026-01-01T00:00:00Z"})  # fmt: skip
    raw["consents"].append({"personId": "Z", "name": "autodialedColl", "status": "consented"})
    return raw


def test_a_rejected_row_without_a_key_is_named_by_its_place_in_the_source(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter = add_exporter(home)
    raw = keyless_world()
    for fmt in FORMATS:
        source = write(tmp_path / fmt, raw, fmt)
        for n in (1, 3):
            _, _, rejected = outcome(home, exporter, date(2026, 4, 7), source, n)
            assert [(t, k) for t, k, _ in rejected] == [("consents", "row 4")], (fmt, n)


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32))
def test_check_explain_and_the_batch_agree_on_such_worlds(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    from pipelines.lookup import checks, explain
    from pipelines.rules import compliance

    rnd = random.Random(seed)
    root = tmp_path_factory.mktemp("agree")
    as_of = date(2026, 4, 7)
    home = make_home(root / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home)
    source = write(root / "src", world(rnd, as_of), rnd.choice(FORMATS))
    _, screening, _ = outcome(home, exporter_id, as_of, source, 3)
    exporter = job.plan_run(home, exporter_id, as_of, source=source).exporter
    company = home.company(exporter.companyId)
    noon = compliance.as_of_instant(company, as_of)
    ids = [c for c, *_ in screening]
    checked = {
        r["contactId"]: r for r in checks.check_contacts(exporter, company, source, ids, noon)["results"]
    }
    whole = schemas.validate_sources(sources.open_source(source))  # the whole source, read as it is
    for contact, _, channel, ok, reasons, next_date in screening:
        got = checked[contact]
        assert (got["canInteract"], got["reasons"], got["channel"]) == (ok, list(reasons), channel), contact
        assert got["nextEligibleDate"] == (next_date.isoformat() if next_date else None), contact
        told = explain.explain(exporter, company, source, contact, as_of)
        assert (told["canInteract"], told["reasons"]) == (ok, list(reasons)), contact
        # explain reads only what concerns the borrower, and says all that the whole source says
        everything = explain.explain_tables(exporter, company, whole.tables, whole.owned, contact, as_of)
        assert told == everything, contact


def test_explain_reads_a_borrower_and_says_what_the_whole_source_says(tmp_path: Path) -> None:
    """A rejected consent naming no borrower blocks every contact: `explain` reads only the
    borrower's rows and the rows without one, and shows that row as the whole source does."""
    from pipelines.lookup import explain

    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home)
    raw = keyless_world()
    raw["consents"].append({"personId": "", "name": "autodialedColl", "status": "consented"})
    as_of = date(2026, 4, 7)
    for fmt in FORMATS:
        source = write(tmp_path / fmt, raw, fmt)
        exporter = job.plan_run(home, exporter_id, as_of, source=source).exporter
        company = home.company(exporter.companyId)
        whole = schemas.validate_sources(sources.open_source(source))
        for contact in ("A-P", "M-P", "Z-P"):
            told = explain.explain(exporter, company, source, contact, as_of)
            assert told == explain.explain_tables(
                exporter, company, whole.tables, whole.owned, contact, as_of
            )
            assert "SOURCE_ROW_REJECTED" in told["reasons"], (fmt, contact)


@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "Ж", "a ", "", "９", "ß"])), max_size=30),
    st.booleans(),
)
def test_repeated_ids_are_those_held_twice_sorted_or_not(ids: list[str | None], sort: bool) -> None:
    from collections import Counter

    if sort:
        ids = sorted((i for i in ids if i is not None), key=lambda i: i.encode())
    got = table_wide.repeated(pl.Series("id", ids, pl.String)).to_list()
    counts = Counter(i for i in ids if i is not None)
    assert got == sorted((i for i, n in counts.items() if n > 1), key=lambda i: i.encode())


@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "Ж", "a ", "", "９", "ß"])), max_size=30),
    st.booleans(),
    st.lists(st.integers(1, 5), min_size=1, max_size=10),
)
def test_streamed_repeats_are_the_whole_columns_or_decline_unsorted_ids(
    ids: list[str | None], sort: bool, sizes: list[int]
) -> None:
    """Batches of any size: a repeat across a batch boundary is found; unsorted ids are declined
    (the caller reads the column whole), never answered wrongly."""
    if sort:
        ids = sorted((i for i in ids if i is not None), key=lambda i: i.encode())
    batches, at = [], 0
    while at < len(ids):
        size = sizes[len(batches) % len(sizes)]
        batches.append(pl.Series("id", ids[at : at + size], pl.String))
        at += size
    got = table_wide.repeated_streamed(iter(batches))
    present = [i for i in ids if i is not None]
    if present != sorted(present, key=lambda i: i.encode()):
        assert got is None
    else:
        assert got is not None
        assert got.to_list() == table_wide.repeated(pl.Series("id", ids, pl.String)).to_list()


@pytest.mark.parametrize("fmt", ["parquet", "duckdb", "csv"])
def test_sorted_ids_are_scanned_in_batches_across_their_boundaries(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.io import sources

    monkeypatch.setattr(table_wide, "BATCH_IDS", 2)
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    raw["borrowers"] = [{"id": b, "companyId": COMPANY} for b in ("A", "B", "B", "C", "D", "E", "E")]
    source = write(tmp_path, raw, fmt)
    shapes = sources.csv_pass(source, tmp_path / "staging") if fmt == "csv" else None
    found = table_wide.scan(source, shapes)
    assert found.repeated_ids("borrowers").to_list() == ["B", "E"]  # "B" straddles two batches
