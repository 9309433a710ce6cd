"""A whole run without an orchestrator: file, manifest, warehouse rows, failures and determinism."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.ipc
import pytest

from pipelines.io import files, sources, warehouse
from pipelines.io.store import ExporterStore
from pipelines.model import tables as tables_module
from pipelines.model.config import Home
from pipelines.model.errors import ConflictError, SourceDataError
from pipelines.rules import schemas
from pipelines.run import building, deciding, job
from tests.worlds import REPO, make_home, without_sftp

AS_OF = date(2026, 12, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path)
    without_sftp(h, "CE-VOICECOL")
    without_sftp(h, "CE-EMAILSVC")
    return h


def query(path: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def run(home: Home, exporter_id: str, as_of: date = AS_OF) -> dict[str, object]:
    return job.run_export(job.plan_run(home, exporter_id, as_of))


def test_screened_run_exports_only_allowed_contacts(home: Home) -> None:
    summary = run(home, "CE-VOICECOL")
    counts = summary["counts"]
    assert isinstance(counts, dict)
    assert summary["asOfInstant"] == "2026-12-01T17:00:00Z"  # noon in New York, winter
    assert counts["matched"] == counts["exported"] + counts["screenedOut"]
    assert counts["screenedOut"] > 0, "the sample world must block someone, or this test proves nothing"
    assert counts["exported"] > 0

    wh = home.warehouse
    allowed = {r[0] for r in query(wh, "SELECT contactId FROM screening_results WHERE canInteract")}
    blocked = {r[0] for r in query(wh, "SELECT contactId FROM screening_results WHERE NOT canInteract")}
    with Path(str(summary["file"])).open(newline="") as fh:
        exported = {row["contactId"] for row in csv.DictReader(fh)}
    assert exported == allowed
    assert not exported & blocked
    assert len(allowed) + len(blocked) == counts["matched"]
    # every blocked contact carries its reasons, and the summary counts them per reason
    by_reason = dict(
        query(wh, "SELECT r, count(*) FROM screening_results, unnest(reasons) AS t(r) GROUP BY r")  # type: ignore[arg-type]
    )
    assert by_reason == counts["byReason"]
    assert query(wh, "SELECT count(*) FROM screening_results WHERE NOT canInteract AND len(reasons) = 0") == [
        (0,)
    ]


def test_blocks_by_reason_are_listed_largest_first(home: Home) -> None:
    """The summary (and with it the CLI's JSON and the Prefect artifact) lists reasons by count."""
    by_reason = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF), partitions=3)["counts"]["byReason"]  # type: ignore[index]
    assert len(by_reason) >= 3
    order = list(by_reason.items())
    assert order == sorted(order, key=lambda kv: (-kv[1], kv[0]))


def test_file_columns_follow_column_settings(home: Home) -> None:
    summary = run(home, "CE-VOICECOL")
    header = Path(str(summary["file"])).read_text().split("\n")[0]
    assert header == "contactId,borrowerId,phone,label,firstName,lastName,borrowerTimezone"
    manifest = json.loads(Path(str(summary["file"]) + ".manifest.json").read_text())
    assert manifest["rows"] == summary["counts"]["exported"]  # type: ignore[index]
    assert manifest["asOfDate"] == "2026-12-01"


def test_unscreened_exporter_records_every_match_as_allowed(home: Home) -> None:
    summary = run(home, "CE-EMAILSVC")
    counts = summary["counts"]
    assert isinstance(counts, dict)
    assert counts["screenedOut"] == 0
    assert counts["exported"] == counts["matched"] > 0
    rows = query(
        home.warehouse, "SELECT count(*), bool_and(canInteract), max(len(reasons)) FROM screening_results"
    )
    assert rows == [(counts["matched"], True, 0)]
    assert Path(str(summary["file"])).name == "servicing_20261201.csv"


def test_rerun_is_byte_identical_and_replaces_rows(home: Home) -> None:
    first = run(home, "CE-VOICECOL")
    first_bytes = Path(str(first["file"])).read_bytes()
    first_rows = pl.DataFrame(
        query(
            home.warehouse, "SELECT contactId, canInteract, reasons FROM screening_results ORDER BY contactId"
        ),
        orient="row",
    )
    second = run(home, "CE-VOICECOL")
    assert first["runId"] != second["runId"]
    assert Path(str(second["file"])).read_bytes() == first_bytes
    second_rows = pl.DataFrame(
        query(
            home.warehouse, "SELECT contactId, canInteract, reasons FROM screening_results ORDER BY contactId"
        ),
        orient="row",
    )
    assert first_rows.equals(second_rows)
    assert query(home.warehouse, "SELECT count(*), any_value(runId) FROM export_runs") == [
        (1, second["runId"])
    ]


def test_crash_before_warehouse_commit_leaves_complete_file_and_failed_run(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = run(home, "CE-VOICECOL")

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("killed between file and warehouse")

    monkeypatch.setattr(warehouse, "record_success", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run(home, "CE-VOICECOL")
    folder = Path(str(good["file"])).parent
    names = sorted(p.name for p in folder.iterdir())
    assert names == [".run.lock", "CE-VOICECOL_20261201.csv", "CE-VOICECOL_20261201.csv.manifest.json"]
    assert query(home.warehouse, "SELECT status FROM export_runs ORDER BY finishedAt") == [
        ("succeeded",),
        ("failed",),
    ]
    assert query(home.warehouse, "SELECT count(DISTINCT runId) FROM screening_results") == [(1,)]

    monkeypatch.undo()
    again = run(home, "CE-VOICECOL")
    assert Path(str(again["file"])).read_bytes() == Path(str(good["file"])).read_bytes()
    assert query(home.warehouse, "SELECT status FROM export_runs") == [("succeeded",)]


class Slow:
    """A writer still busy when the other side fails; says when it has finished its work."""

    def __init__(self, real: Callable[..., object], seconds: float = 0.3) -> None:
        self.real, self.seconds, self.finished = real, seconds, False

    def __call__(self, *args: object, **kwargs: object) -> object:
        time.sleep(self.seconds)
        try:
            return self.real(*args, **kwargs)
        finally:
            self.finished = True


def no_space(*_: object, **__: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    ("partitions", "slow", "failing"),
    [
        (1, (pl.DataFrame, "write_ipc"), (files, "write_export")),
        (1, (files, "write_export"), (pl.DataFrame, "write_ipc")),
        (2, (pl.DataFrame, "write_ipc"), (pyarrow.ipc, "new_file")),
        (2, (pyarrow.ipc, "new_file"), (pl.DataFrame, "write_ipc")),
    ],
    ids=["file fails", "staging fails", "part rows fail", "part screening fails"],
)
def test_a_failed_side_of_the_side_by_side_writes_leaves_no_staging(
    home: Home,
    monkeypatch: pytest.MonkeyPatch,
    partitions: int,
    slow: tuple[object, str],
    failing: tuple[object, str],
) -> None:
    """A run in one partition writes its file beside its screening rows, a partition of several its
    rows beside its screening rows: whichever side fails, the other is waited for before the error
    comes out, and then the staging is dropped."""
    plan = job.plan_run(home, "CE-VOICECOL", AS_OF)
    other = Slow(getattr(*slow))
    monkeypatch.setattr(*slow, other)
    monkeypatch.setattr(*failing, no_space)
    with pytest.raises(OSError, match="No space"):
        building.build_partitioned(plan, "RUN-SIDE", partitions)
    assert other.finished, "the error came out while the other side was still writing"
    assert not building.staging_dir(plan, "RUN-SIDE").exists()


def test_invalid_interaction_blocks_its_borrower(home: Home) -> None:
    con = duckdb.connect(str(home.warehouse))
    bad_id, person = con.execute(
        "SELECT i.id, i.personId FROM interactions i JOIN contacts c ON c.personId = i.personId "
        "WHERE c.contactType = 'phone' AND c.label = 'personal' ORDER BY i.id LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    con.execute("UPDATE interactions SET statusDetails = 'voiceMaybe' WHERE id = ?", [bad_id])
    con.close()
    summary = run(home, "CE-VOICECOL")
    counts = summary["counts"]
    assert isinstance(counts, dict)
    assert counts["byReason"]["SOURCE_ROW_REJECTED"] >= 1
    # the offending row is kept as data, named by table, key and check
    assert query(home.warehouse, "SELECT tableName, rowKey, checks FROM rejected_rows") == [
        ("interactions", bad_id, ["statusDetails_in_vocabulary"])
    ]
    rows = query(
        home.warehouse, "SELECT canInteract, reasons FROM screening_results WHERE personId = ?", [person]
    )
    assert rows
    assert all(not ok and "SOURCE_ROW_REJECTED" in reasons for ok, reasons in rows)  # type: ignore[operator]
    others = query(
        home.warehouse,
        "SELECT count(*) FROM screening_results WHERE personId <> ? AND list_contains(reasons, ?)",
        [person, "SOURCE_ROW_REJECTED"],
    )
    assert others == [(0,)]


def test_many_invalid_rows_fail_the_run_and_export_nothing(home: Home) -> None:
    con = duckdb.connect(str(home.warehouse))
    con.execute("UPDATE interactions SET statusDetails = 'voiceMaybe' WHERE channel = 'voice'")
    con.close()
    with pytest.raises(SourceDataError) as info:
        run(home, "CE-VOICECOL")
    assert "maxRejectedShare" in info.value.message
    assert info.value.exit_code == 2
    assert list((home.exports / "CE-VOICECOL").rglob("*.csv")) == []
    assert query(home.warehouse, "SELECT status FROM export_runs") == [("failed",)]
    assert query(home.warehouse, "SELECT count(*) FROM screening_results") == [(0,)]
    bad = query(home.warehouse, "SELECT count(*) FROM interactions WHERE statusDetails = 'voiceMaybe'")
    assert query(home.warehouse, "SELECT count(*) FROM rejected_rows") == bad


def test_second_concurrent_run_fails_clearly(home: Home) -> None:
    plan = job.plan_run(home, "CE-VOICECOL", AS_OF)
    with building.run_lock(plan), pytest.raises(ConflictError, match="already in progress"):
        job.run_export(plan)


def test_population_file_limits_the_run(home: Home, tmp_path: Path) -> None:
    ids = query(home.warehouse, "SELECT id FROM borrowers WHERE companyId = 'CP-ACME' ORDER BY id LIMIT 5")
    pop = tmp_path / "ids.csv"
    pop.write_text("id\n" + "\n".join(str(r[0]) for r in ids) + "\nB-NOT-THERE\n")
    summary = job.run_export(job.plan_run(home, "CE-EMAILSVC", AS_OF, population_file=pop))
    assert summary["counts"]["population"] == 5  # type: ignore[index]
    persons = {r[0] for r in query(home.warehouse, "SELECT personId FROM screening_results")}
    assert persons <= {r[0] for r in ids}


def test_source_row_order_does_not_change_the_file_or_the_warehouse(home: Home, tmp_path: Path) -> None:
    """Screening keeps the matched contacts' order and the run sorts them by id only when needed:
    a source with its contacts shuffled gives the same bytes and the same rows."""
    sorted_run = run(home, "CE-VOICECOL")
    sorted_bytes = Path(str(sorted_run["file"])).read_bytes()
    rows_sql = "SELECT contactId, personId, channel, canInteract, reasons FROM screening_results ORDER BY 1"
    sorted_rows = query(home.warehouse, rows_sql)

    tables = sources.open_source(home.warehouse)
    contacts = tables.contacts.collect()
    shuffled_contacts = contacts.sample(fraction=1.0, shuffle=True, seed=3)
    assert not shuffled_contacts.get_column("id").is_sorted()
    shuffled = tmp_path / "shuffled.duckdb"
    sources.write_source(replace(tables, contacts=shuffled_contacts.lazy()), shuffled, "duckdb")
    warehouse_path = tmp_path / "other-warehouse.duckdb"
    plan = job.plan_run(home, "CE-VOICECOL", AS_OF, source=shuffled, warehouse_path=warehouse_path)
    shuffled_run = job.run_export(plan)

    assert Path(str(shuffled_run["file"])).read_bytes() == sorted_bytes
    assert query(warehouse_path, rows_sql) == sorted_rows
    assert shuffled_run["counts"] == sorted_run["counts"]


def test_every_exportable_field_can_be_projected(home: Home) -> None:
    """A run reads only the columns it needs; asking for all of them must still find each one."""
    path = home.exporters_dir / "CE-VOICECOL.json"
    body = json.loads(path.read_text())
    body["columnSettings"] = [
        {"field": f, "outputName": f.replace(".", "_")} for f in tables_module.EXPORTABLE_FIELDS
    ]
    path.write_text(json.dumps(body))
    summary = run(home, "CE-VOICECOL")
    frame = pl.read_csv(str(summary["file"]), infer_schema=False)
    assert frame.columns == [f.replace(".", "_") for f in tables_module.EXPORTABLE_FIELDS]
    assert frame.height == summary["counts"]["exported"] > 0  # type: ignore[index]
    assert frame.get_column("id").is_sorted()


def test_projected_columns_carry_the_source_values(home: Home) -> None:
    """Columns a run skips when nothing uses them (`city`, `borrower.externalId`) are read as soon
    as the exporter projects them: the file holds the source's values, not nulls."""
    path = home.exporters_dir / "CE-EMAILSVC.json"
    body = json.loads(path.read_text())
    body["contactMatchingCriteria"] = {"contactType": ["address"]}
    body["columnSettings"] = [
        {"field": "id"},
        {"field": "city"},
        {"field": "addressLine1"},
        {"field": "borrower.externalId", "outputName": "externalId"},
    ]
    path.write_text(json.dumps(body))
    assert deciding.unread_columns(ExporterStore(home).get("CE-EMAILSVC"))["contacts"].isdisjoint(
        {"city", "addressLine1"}
    )
    summary = run(home, "CE-EMAILSVC")
    got = pl.read_csv(str(summary["file"]), infer_schema=False)
    tables = sources.open_source(home.warehouse)
    contacts = tables.contacts.collect().select("id", "personId", "city", "addressLine1")
    borrowers = tables.borrowers.collect().select(pl.col("id").alias("personId"), "externalId")
    want = (
        got.select("id")
        .join(contacts, on="id", how="left", maintain_order="left")
        .join(borrowers, on="personId", how="left", maintain_order="left")
        .select("id", "city", "addressLine1", "externalId")
        .with_columns(pl.all().fill_null(""))
    )
    assert got.with_columns(pl.all().fill_null("")).equals(want)
    for column in ("city", "addressLine1", "externalId"):  # or the comparison proves nothing
        assert (want.get_column(column) != "").sum() > 10, column


@pytest.mark.parametrize("fmt", ["duckdb", "parquet"])
def test_columns_no_check_reads_are_skipped_without_changing_the_run(
    home: Home, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run does not read the text columns that no check and no step of it reads; with every
    column read instead, the file, the screening rows and the rejected rows are the same. Junk
    in a skipped column is no reason to reject its row (no check reads it)."""
    exporter = ExporterStore(home).get("CE-VOICECOL")
    skipped = deciding.unread_columns(exporter)
    assert skipped["contacts"] >= {"addressLine1", "addressLine2", "city", "country"}
    assert skipped["interactions"] >= {"contactId", "loanId"}
    for spec in tables_module.TABLES:
        checked = {c.column for c in schemas.table_checks(spec)}
        assert not (skipped.get(spec.name, set()) & checked), spec.name
    tables = sources.open_source(home.warehouse)
    contacts = tables.contacts.collect()
    junk = contacts.with_columns(pl.format('{}\x00,"=junk', pl.col("id")).alias("city"))
    source = tmp_path / ("src.duckdb" if fmt == "duckdb" else "src")
    sources.write_source(replace(tables, contacts=junk.lazy()), source, fmt)  # type: ignore[arg-type]
    rows_sql = "SELECT contactId, personId, channel, canInteract, reasons, nextEligibleDate FROM screening_results ORDER BY 1"
    rejected_sql = "SELECT tableName, rowKey, checks FROM rejected_rows ORDER BY 1, 2"
    results = []
    for name, unread in (("skipping", deciding.unread_columns), ("reading all", lambda _: {})):
        monkeypatch.setattr(deciding, "unread_columns", unread)
        wh = tmp_path / f"{name}.duckdb"
        summary = job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF, source=source, warehouse_path=wh))
        results.append(
            (
                Path(str(summary["file"])).read_bytes(),
                query(wh, rows_sql),
                query(wh, rejected_sql),
                summary["counts"],
            )
        )
    assert results[0] == results[1]
    assert results[0][3]["exported"] > 0  # type: ignore[index]


def test_columns_needed_follow_the_exporter() -> None:
    exporter = ExporterStore(Home(REPO)).get("CE-EMAILSVC")
    needed = deciding.columns_needed(exporter)
    assert exporter.checkCanInteractData is None
    assert "interactions" not in needed  # an unscreened run reads no interactions columns at all
    assert needed["contacts"] >= {"id", "personId", "contactType"}
    assert {s.field for s in exporter.columnSettings if "." not in s.field} <= needed["contacts"]


def test_contacts_of_another_companys_borrowers_are_never_matched(home: Home, tmp_path: Path) -> None:
    """A source shared by two companies: a run sees only its own company's borrowers."""
    tables = sources.open_source(home.warehouse)
    borrowers = tables.borrowers.collect()
    theirs = borrowers.get_column("id").gather_every(3)
    mixed = replace(
        tables,
        borrowers=borrowers.with_columns(
            pl.when(pl.col("id").is_in(theirs.implode()))
            .then(pl.lit("CP-OTHER"))
            .otherwise(pl.col("companyId"))
            .alias("companyId")
        ).lazy(),
    )
    source = tmp_path / "two-companies.duckdb"
    sources.write_source(mixed, source, "duckdb")
    warehouse_path = tmp_path / "wh.duckdb"
    summary = job.run_export(
        job.plan_run(home, "CE-EMAILSVC", AS_OF, source=source, warehouse_path=warehouse_path)
    )
    persons = {r[0] for r in query(warehouse_path, "SELECT DISTINCT personId FROM screening_results")}
    assert persons, "the run must match someone, or this test proves nothing"
    assert not persons & set(theirs.to_list())
    whole = run(home, "CE-EMAILSVC")["counts"]["population"]  # type: ignore[index]
    assert whole - theirs.len() <= summary["counts"]["population"] < whole  # type: ignore[index]
