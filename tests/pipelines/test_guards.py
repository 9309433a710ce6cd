"""The run's guards: a step that returns a broken frame stops the run before anything is written.

Each test breaks one step on purpose (the real step runs, then its result is damaged) and runs the
whole export through `job.run_export` on a small generated source.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.model.config import ColumnSetting, ContactMatchingCriteria, Home
from pipelines.model.errors import GuardError
from pipelines.rules import columns, compliance, eligibility, guards, matching
from pipelines.run import building, job, recording
from tests.worlds import make_home, without_sftp

AS_OF = date(2026, 12, 1)
Frame = Callable[..., Any]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path)  # CE-VOICECOL keeps its SFTP destination: nothing may be delivered
    without_sftp(h, "CE-EMAILSVC")
    return h


@pytest.fixture
def no_delivery(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []

    def deliver(*args: object, **_: object) -> recording.Delivery:
        calls.append(args)
        return recording.Delivery(False, "not delivered in tests")

    monkeypatch.setattr(job, "deliver_run", deliver)
    return calls


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def damaged(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, damage: Frame) -> None:
    """Make `module.name` return its real result passed through `damage`."""
    real = getattr(module, name)

    def step(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if isinstance(result, pl.LazyFrame):
            return damage(result.collect()).lazy()
        return damage(result)

    monkeypatch.setattr(module, name, step)


def stopped_run(home: Home, exporter_id: str, frame: str, no_delivery: list[object]) -> GuardError:
    """Run, expect the guard of `frame` to stop it, and check that nothing was written or sent."""
    with pytest.raises(GuardError) as info:
        job.run_export(job.plan_run(home, exporter_id, AS_OF))
    error = info.value
    assert error.exit_code == 1
    assert error.frame == frame
    assert no_delivery == []
    folder = home.exports / exporter_id
    assert not folder.exists()  # no file, and no empty folder left by the run either
    assert not (home.root / "data" / "runs").exists() or not any((home.root / "data" / "runs").iterdir())
    runs = query(home.warehouse, "SELECT status, filePath, error FROM export_runs")
    assert len(runs) == 1
    status, file_path, message = runs[0]
    assert (status, file_path) == ("failed", None)
    assert f"guard:{frame}" in message
    assert query(home.warehouse, "SELECT count(*) FROM screening_results") == [(0,)]
    return error


def rejected(home: Home) -> list[tuple[str, str | None, list[str]]]:
    return query(
        home.warehouse, "SELECT tableName, rowKey, checks FROM rejected_rows ORDER BY rowKey NULLS FIRST"
    )


def blocked_ids(home: Home, exporter_id: str = "CE-VOICECOL") -> tuple[pl.Series, pl.Series]:
    """The contacts a clean run blocks and allows (from a run in another home's warehouse)."""
    plan = job.plan_run(home, exporter_id, AS_OF, warehouse_path=home.root / "clean.duckdb")
    built = building.build_partitioned(plan, "RUN-CLEAN", partitions=1)
    screening = pl.read_ipc(next(built.staging.glob("screening-*.arrow")))
    built.file.path.unlink()
    built.file.manifest_path.unlink()
    for p in built.staging.iterdir():
        p.unlink()
    built.staging.rmdir()
    blocked = screening.filter(~pl.col("canInteract")).get_column("contactId")
    allowed = screening.filter(pl.col("canInteract")).get_column("contactId")
    assert blocked.len() > 0, "the world must block someone"
    assert allowed.len() > 0, "the world must allow someone"
    return blocked, allowed


# ---------------------------------------------------------------- the export frame


def test_a_blocked_contact_in_the_export_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    blocked, _ = blocked_ids(home)
    victim = blocked[0]

    def add_blocked(out: pl.DataFrame) -> pl.DataFrame:
        row = out.head(1).with_columns(pl.lit(victim).alias("contactId"))
        return pl.concat([out, row]).sort("contactId")

    damaged(monkeypatch, columns, "project", add_blocked)
    stopped_run(home, "CE-VOICECOL", "export", no_delivery)
    rows = rejected(home)
    assert ("guard:export", None, ["one_row_per_allowed_contact"]) in rows
    assert ("guard:export", victim, ["contact_can_interact"]) in rows


def test_a_duplicate_row_in_the_export_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    twice: list[str] = []

    def duplicate(out: pl.DataFrame) -> pl.DataFrame:
        twice.append(out.get_column("contactId")[3])
        return pl.concat([out, out.slice(3, 1)]).sort("contactId")

    damaged(monkeypatch, columns, "project", duplicate)
    stopped_run(home, "CE-VOICECOL", "export", no_delivery)
    assert rejected(home) == [
        ("guard:export", None, ["one_row_per_allowed_contact"]),
        ("guard:export", twice[0], ["contact_unique"]),
        ("guard:export", twice[0], ["contact_unique"]),
    ]


def test_unsorted_export_rows_stop_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    damaged(monkeypatch, columns, "project", lambda out: out.reverse())
    stopped_run(home, "CE-VOICECOL", "export", no_delivery)
    checks = {c for _, _, cs in rejected(home) for c in cs}
    assert checks == {"contact_sorted"}


def test_a_missing_column_a_wrong_type_and_a_wrong_order_are_all_reported_at_once(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    def break_columns(out: pl.DataFrame) -> pl.DataFrame:
        return (
            out.drop("lastName")
            .with_columns(pl.col("label").cast(pl.Categorical))
            .select("borrowerId", pl.exclude("borrowerId"))
        )

    damaged(monkeypatch, columns, "project", break_columns)
    error = stopped_run(home, "CE-VOICECOL", "export", no_delivery)
    rows = rejected(home)
    assert all(key is None for _, key, _ in rows), "column faults are about the frame, not a row"
    checks = [c for _, _, cs in rows for c in cs]
    assert "column_in_dataframe: lastName" in checks
    assert any(c.startswith("dtype('String')") and "Categorical" in c for c in checks), checks
    assert any(c.startswith("column_ordered") for c in checks), checks
    assert "column_in_dataframe" in str(error)
    assert "dtype" in str(error)


def test_an_export_without_the_id_column_is_checked_by_the_ids_it_was_projected_from(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    """columnSettings without the id: the guard still knows each row's contact."""
    path = home.exporters_dir / "CE-VOICECOL.json"
    path.write_text(path.read_text().replace('{"field": "id", "outputName": "contactId"},', ""))
    assert job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF), deliver_enabled=False)["counts"]

    damaged(monkeypatch, columns, "project", lambda out: out.head(out.height - 1))
    with pytest.raises(GuardError):
        job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF + timedelta(days=1)))
    assert ("guard:export", None, ["one_row_per_allowed_contact"]) in rejected(home)


# ---------------------------------------------------------------- matched contacts


def test_a_duplicate_matched_contact_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    twice: list[str] = []

    def duplicate(matched: pl.DataFrame) -> pl.DataFrame:
        twice.append(matched.get_column("id")[0])
        return pl.concat([matched, matched.head(1)])

    damaged(monkeypatch, matching, "match_contacts", duplicate)
    error = stopped_run(home, "CE-VOICECOL", "matched", no_delivery)
    assert rejected(home) == [("guard:matched", twice[0], ["id_unique"])] * 2
    assert "id_unique" in str(error)


def test_a_contact_outside_the_criteria_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    """CE-VOICECOL matches phones labelled personal, home or work; an email and a military phone
    slipped in fail one criterion each (AND across attributes, OR within)."""
    strays: dict[str, str] = {}
    real = matching.match_contacts

    def too_many(contacts: pl.LazyFrame, population: Any, criteria: ContactMatchingCriteria) -> pl.LazyFrame:
        matched = real(contacts, population, criteria).collect()
        everyone = contacts.collect()
        email = everyone.filter(pl.col("contactType") == "email").head(1)
        military = everyone.filter(pl.col("label") == "military").head(1)
        strays[email.get_column("id")[0]] = "contactType_meets_criteria"
        strays[military.get_column("id")[0]] = "label_meets_criteria"
        return pl.concat([matched, email, military]).unique("id").sort("id").lazy()

    monkeypatch.setattr(matching, "match_contacts", too_many)
    stopped_run(home, "CE-VOICECOL", "matched", no_delivery)
    found = {key: checks for _, key, checks in rejected(home)}
    for contact, check in strays.items():
        assert check in found[contact]
    assert set(found) == set(strays)


# ---------------------------------------------------------------- screening results


def _first(screening: pl.DataFrame, where: pl.Expr) -> int:
    index = screening.with_row_index("i").filter(where).get_column("i")
    assert index.len() > 0, "the world must have such a row, or this test proves nothing"
    return int(index[0])


def _set_row(screening: pl.DataFrame, i: int, **values: Any) -> pl.DataFrame:
    row = pl.int_range(pl.len()) == i
    return screening.with_columns(
        pl.when(row).then(pl.lit(v, dtype=screening.schema[k])).otherwise(pl.col(k)).alias(k)
        for k, v in values.items()
    )


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("reversed_reasons", "reasons_sorted_in_vocabulary"),
        ("unknown_reason", "reasons_sorted_in_vocabulary"),
        ("allowed_with_reasons", "canInteract_iff_no_reasons"),
        ("blocked_without_reasons", "canInteract_iff_no_reasons"),
    ],
)
def test_a_broken_screening_row_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object], fault: str, check: str
) -> None:
    broken: list[str] = []

    def damage(screening: pl.DataFrame) -> pl.DataFrame:
        reasons = pl.col("reasons")
        if fault == "reversed_reasons":
            i = _first(screening, reasons.list.len() >= 2)
            out = _set_row(screening, i, reasons=list(reversed(screening.get_column("reasons")[i])))
        elif fault == "unknown_reason":
            i = _first(screening, reasons.list.len() == 1)
            out = _set_row(screening, i, reasons=["NOT_A_REASON"])
        elif fault == "allowed_with_reasons":
            i = _first(screening, ~pl.col("canInteract"))
            out = _set_row(screening, i, canInteract=True)
        else:
            i = _first(screening, ~pl.col("canInteract"))
            out = _set_row(screening, i, reasons=[])
        broken.append(screening.get_column("contactId")[i])
        return out

    damaged(monkeypatch, compliance, "screen", damage)
    stopped_run(home, "CE-VOICECOL", "screening", no_delivery)
    assert rejected(home) == [("guard:screening", broken[0], [check])]


def test_a_duplicate_or_missing_screening_row_stops_the_run(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    damaged(monkeypatch, compliance, "screen", lambda s: pl.concat([s.head(1), s.slice(2)]).sort("contactId"))
    stopped_run(home, "CE-VOICECOL", "screening", no_delivery)
    rows = rejected(home)
    assert ("guard:screening", None, ["one_row_per_matched_contact"]) in rows
    assert {c for _, _, cs in rows for c in cs} == {
        "one_row_per_matched_contact",
        "contactId_lines_up_with_matched",
    }


def test_next_eligible_date_only_on_blocked_rows(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    """The screening carries nextEligibleDate: fine on blocked rows, a fault on an allowed one."""
    real_next_eligible = eligibility.next_eligible
    later = AS_OF + timedelta(days=7)
    when_blocked = pl.when(~pl.col("canInteract")).then(pl.lit(later))
    damaged(
        monkeypatch,
        eligibility,
        "next_eligible",
        lambda s: s.with_columns(when_blocked.alias("nextEligibleDate")),
    )
    assert job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF))["counts"]
    assert (
        query(home.warehouse, "SELECT count(*) FROM screening_results WHERE nextEligibleDate IS NOT NULL")[0][
            0
        ]
        > 0
    )
    monkeypatch.setattr(eligibility, "next_eligible", real_next_eligible)
    no_delivery.clear()

    allowed: list[str] = []

    def on_allowed(s: pl.DataFrame) -> pl.DataFrame:
        i = _first(s, pl.col("canInteract"))
        allowed.append(s.get_column("contactId")[i])
        return _set_row(s.with_columns(when_blocked.alias("nextEligibleDate")), i, nextEligibleDate=later)

    damaged(monkeypatch, eligibility, "next_eligible", on_allowed)
    with pytest.raises(GuardError):
        job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF + timedelta(days=1)))
    assert no_delivery == []
    assert ("guard:screening", allowed[0], ["nextEligibleDate_only_when_blocked"]) in rejected(home)


def test_the_unscreened_path_is_guarded_too(
    home: Home, monkeypatch: pytest.MonkeyPatch, no_delivery: list[object]
) -> None:
    damaged(monkeypatch, compliance, "unscreened", lambda s: _set_row(s, 0, canInteract=False))
    with pytest.raises(GuardError):
        job.run_export(job.plan_run(home, "CE-EMAILSVC", AS_OF))
    assert list((home.exports / "CE-EMAILSVC").rglob("*.csv")) == []
    assert [r[2] for r in rejected(home)] == [["canInteract_iff_no_reasons"]]


# ---------------------------------------------------------------- the guards on their own


def test_failure_cases_carry_ids_and_check_names_never_values() -> None:
    """The export frame holds phone numbers and names: none of them may reach the warehouse."""
    settings = [ColumnSetting(field="value", outputName="phone")]
    out = pl.DataFrame({"phone": ["+12125550100", "+12125550101"]})
    ids = pl.Series("id", ["C-2", "C-1"])
    screening = pl.DataFrame(
        {"contactId": ["C-1", "C-2"], "canInteract": [True, False]},
    )
    with pytest.raises(GuardError) as info:
        guards.check_export(out, ids, screening, settings)
    frame = info.value.rejected
    assert isinstance(frame, pl.DataFrame)
    text = str(frame.rows()) + str(info.value)
    assert "+1212" not in text
    assert ("guard:export", "C-2", ["contact_can_interact"]) in frame.rows()
    assert ("guard:export", "C-1", ["contact_sorted"]) in frame.rows()


def test_valid_frames_pass() -> None:
    criteria = ContactMatchingCriteria(contactType=["phone"])
    matched = pl.DataFrame(
        {"id": ["C-1", "C-2"], "personId": ["B-1", "B-1"], "contactType": ["phone", "phone"]}
    )
    guards.check_matched(matched, criteria)
    screening = pl.DataFrame(
        {
            "contactId": ["C-1", "C-2"],
            "personId": ["B-1", "B-1"],
            "channel": ["voice", "voice"],
            "canInteract": [True, False],
            "reasons": [[], ["DO_NOT_INTERACT", "FREQUENCY_LIMIT"]],
        }
    )
    guards.check_screening(screening, matched)
    settings = [ColumnSetting(field="id"), ColumnSetting(field="borrower.firstName", outputName="first")]
    out = pl.DataFrame({"id": ["C-1"], "first": [None]}, schema={"id": pl.String, "first": pl.String})
    guards.check_export(out, pl.Series(["C-1"]), screening, settings)


def test_empty_frames_pass() -> None:
    """A run that matches no one writes an empty file: its frames are valid."""
    matched = pl.DataFrame(schema={"id": pl.String, "personId": pl.String, "contactType": pl.String})
    guards.check_matched(matched, ContactMatchingCriteria(contactType=["phone"]))
    screening = pl.DataFrame(schema=compliance.SCREENING_SCHEMA)
    guards.check_screening(screening, matched)
    out = pl.DataFrame(schema={"contactId": pl.String})
    settings = [ColumnSetting(field="id", outputName="contactId")]
    guards.check_export(out, pl.Series("id", [], pl.String), screening, settings)


def test_a_criteria_column_missing_from_the_matched_frame_is_reported() -> None:
    matched = pl.DataFrame({"id": ["C-1"], "personId": ["B-1"], "contactType": ["phone"]})
    with pytest.raises(GuardError) as info:
        guards.check_matched(matched, ContactMatchingCriteria(contactType=["phone"], label=["home"]))
    assert info.value.rejected.rows() == [("guard:matched", None, ["column_in_dataframe: label"])]
