"""What a partner receives is safe: file names, spreadsheet-safe CSV, and run records that tell the truth."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.envelopes import error_envelope
from flows.sftp_server import LocalSftp, local_sftp_server
from pipelines.io import files
from pipelines.io.store import ExporterStore
from pipelines.model.config import ExporterBody, Home
from pipelines.model.errors import ConflictError, InvalidInputError, TerminalError
from pipelines.model.file_names import FileSettings, is_formula_like
from pipelines.model.strict import parse
from pipelines.run import job
from tests import frontdoor
from tests.worlds import SEED_REQUEST, make_home

AS_OF = date(2026, 12, 1)
EXPORTER = "CE-EMAILSVC"


def body(**file_settings: Any) -> dict[str, Any]:
    data = copy.deepcopy(SEED_REQUEST)
    data["fileSettings"] = file_settings
    return data


def template_error(template: str) -> str:
    with pytest.raises(InvalidInputError) as info:
        parse(ExporterBody, body(fileNameTemplate=template), "exporter.json")
    errors = {e.path: e.message for e in info.value.errors}
    assert list(errors) == ["/fileSettings/fileNameTemplate"]
    return errors["/fileSettings/fileNameTemplate"]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("contacts.csv", "does not use {asOfDate}"),
        ("{exporterId}.csv", "does not use {asOfDate}"),
        ("contacts_{asOfDate:%Y}.csv", "same name for different as-of dates"),
        ("contacts_{asOfDate:%m%d}.csv", "same name for different as-of dates"),
        ("x" * 200 + "_{asOfDate:%Y%m%d}.csv", "at most 200"),
        ("é" * 95 + "_{asOfDate:%Y%m%d}.csv", "at most 200"),  # 190 characters, 209 bytes
        ("contacts_{asOfDate}\u202egpj.exe", "bidirectional"),
        ("contacts_{asOfDate}\u2066.csv", "bidirectional"),
        ("contacts\t{asOfDate}.csv", "control"),
        ("contacts{asOfDate}\x85.csv", "control"),
        ("in/{asOfDate}.csv", "inside the export folder"),
        ("in\\{asOfDate}.csv", "inside the export folder"),
    ],
)
def test_unsafe_file_name_templates_are_refused(template: str, why: str) -> None:
    assert why in template_error(template)


def test_a_dated_template_is_accepted() -> None:
    parsed = parse(ExporterBody, body(fileNameTemplate="acme_{asOfDate:%Y-%m-%d}.csv"), "exporter.json")
    assert parsed.fileSettings.template == "acme_{asOfDate:%Y-%m-%d}.csv"


@pytest.fixture
def store(tmp_path: Path) -> ExporterStore:
    home = Home(tmp_path)
    (tmp_path / "configs" / "companies").mkdir(parents=True)
    (tmp_path / "configs" / "companies" / "CP-ACME.yaml").write_text("id: CP-ACME\ntimezone: UTC\n")
    (tmp_path / "configs" / "sftp").mkdir()
    for setting_id, remote_dir in (("partner", "/upload"), ("partner-again", "/upload/"), ("other", "/in")):
        (tmp_path / "configs" / "sftp" / f"{setting_id}.yaml").write_text(
            "host: SFTP.partner.example\nusername: acme\nknownHostsFile: kh\n"
            f"privateKeyFile: key\nremoteDir: {remote_dir}\n"
        )
    return ExporterStore(home)


def test_two_exporters_delivering_one_name_to_one_destination_are_refused(store: ExporterStore) -> None:
    shared = body(fileNameTemplate="acme_{asOfDate:%Y%m%d}.csv")
    first = store.create({**shared, "sftpSettingId": "partner"}, "request")

    with pytest.raises(ConflictError) as info:  # same host, port and remoteDir under another setting id
        store.create({**shared, "sftpSettingId": "partner-again"}, "request")
    envelope = error_envelope(info.value)
    assert envelope["status"] == 409
    assert envelope["errors"][0]["path"] == "/fileSettings/fileNameTemplate"
    assert first.id in envelope["errors"][0]["message"]

    other = store.create({**shared, "sftpSettingId": "other"}, "request")  # another remoteDir: fine
    with pytest.raises(ConflictError):  # and an update cannot move it onto the first one's names
        store.update(other.id, {**shared, "sftpSettingId": "partner"}, "request")
    store.update(first.id, {**shared, "sftpSettingId": "partner"}, "request")  # itself: fine
    distinct = store.create(
        {**body(fileNameTemplate="{exporterId}_{asOfDate:%Y%m%d}.csv"), "sftpSettingId": "partner"}, "request"
    )
    assert len(store.all()) == 3
    assert distinct.id != first.id


# ---------------------------------------------------------------- CSV injection


HOSTILE = [
    '=HYPERLINK("http://evil.example","x")',
    "@SUM(1+1)",
    "=cmd|' /C calc'!A0",
    "+1+cmd|x",
    "-2+3",
    "\tTAB",
    "\rCR",
]
SAFE = ["+14155550123", "-12.5", "42", "1e5", "plain", "a=b", ""]


def write_csv(tmp_path: Path, frame: pl.DataFrame, **settings: Any) -> str:
    written = files.write_export(
        frame,
        tmp_path / "out.csv",
        FileSettings(**settings),
        run_id="RUN-1",
        exporter_id="CE-X",
        as_of=AS_OF,
        as_of_instant=datetime(2026, 12, 1, 17, tzinfo=UTC),
    )
    return written.path.read_bytes().decode("utf-8")  # CR inside a cell kept as written


def read_cells(text: str) -> list[list[str]]:
    """The cells as a spreadsheet's CSV import sees them (quoted CR and LF kept)."""
    return list(csv.reader(io.StringIO(text, newline="")))


def test_formula_cells_are_neutralised_and_numbers_kept(tmp_path: Path) -> None:
    frame = pl.DataFrame({"value": HOSTILE + SAFE, "n": list(range(len(HOSTILE + SAFE)))})

    cells = [row[0] for row in read_cells(write_csv(tmp_path, frame))]

    assert cells == ["value", *("'" + v for v in HOSTILE), *SAFE]


def test_the_guard_can_be_turned_off_and_parquet_is_untouched(tmp_path: Path) -> None:
    frame = pl.DataFrame({"value": HOSTILE})
    off = [row[0] for row in read_cells(write_csv(tmp_path, frame, csvInjectionGuard=False))]
    assert off == ["value", *HOSTILE]
    parquet = files.write_export(
        frame,
        tmp_path / "out.parquet",
        FileSettings(format="parquet"),
        run_id="RUN-1",
        exporter_id="CE-X",
        as_of=AS_OF,
        as_of_instant=datetime(2026, 12, 1, 17, tzinfo=UTC),
    )
    assert pl.read_parquet(parquet.path)["value"].to_list() == HOSTILE


@pytest.mark.parametrize("guard", [True, False])
def test_batches_get_the_same_cells_as_one_frame(tmp_path: Path, guard: bool) -> None:
    """A partitioned run writes its file batch by batch: the guard applies to every batch."""
    cells = HOSTILE + SAFE
    frame = pl.DataFrame({"value": cells, "n": [str(i) for i in range(len(cells))]})
    whole = write_csv(tmp_path, frame, csvInjectionGuard=guard)
    target = tmp_path / "batches.csv"
    batches = [frame.slice(i, 3) for i in range(0, frame.height, 3)]
    rows = files.write_batches(batches, frame.clear(), target, FileSettings(csvInjectionGuard=guard))
    assert rows == frame.height
    assert target.read_bytes().decode("utf-8") == whole
    assert ("'@SUM(1+1)" in whole) is guard


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_run_neutralises_formula_cells_from_the_source(tmp_path: Path, partitions: int) -> None:
    """Front door: hostile address lines in a source file, through reading, validation, a
    partitioned run (as the CLI, the API and the flow run it) and a one-piece build."""
    home = frontdoor.make_home(tmp_path / "home")
    exporter = frontdoor.add_exporter(
        home,
        {
            "contactMatchingCriteria": {"contactType": ["address"]},
            "columnSettings": [{"field": "id"}, {"field": "value", "outputName": "line"}],
            "name": "mail",
        },
    )
    cells = HOSTILE + SAFE
    borrowers = [frontdoor.borrower(f"B{i}") for i in range(len(cells))]
    contacts = [
        frontdoor.address(f"C{i:02d}", "10001", "NY", pid=f"B{i}", value=v) for i, v in enumerate(cells)
    ]
    # Parquet: the CSV helper ends lines with "\n" and so leaves a cell's CR unquoted (an unreadable file).
    source = tmp_path / "source"
    source.mkdir()
    for name, header in frontdoor.HEADERS.items():
        rows = {"borrowers": borrowers, "contacts": contacts}.get(name, [])
        table = {c: [None if r.get(c) is None else str(r[c]) for r in rows] for c in header}
        pl.DataFrame(table, schema=dict.fromkeys(header, pl.String)).write_parquet(source / f"{name}.parquet")
    plan = job.plan_run(home, exporter, AS_OF, source=source)

    summary = job.run_export(plan, deliver_enabled=False, partitions=partitions)

    written = Path(summary["file"]).read_bytes().decode("utf-8")
    expected = ["'" + v for v in HOSTILE] + [v if v.strip() else "" for v in SAFE]
    assert [row[1] for row in read_cells(written)] == ["line", *expected]
    one_piece = job.run_export(plan, deliver_enabled=False, partitions=1)
    assert Path(one_piece["file"]).read_bytes().decode("utf-8") == written


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "@SUM(1+1)", "-x", "+cmd"])
def test_formula_like_output_names_are_refused_unless_the_guard_is_off(name: str) -> None:
    data = body()
    data["columnSettings"] = [{"field": "id"}, {"field": "value", "outputName": name}]
    with pytest.raises(InvalidInputError) as info:
        parse(ExporterBody, data, "exporter.json")
    assert [e.path for e in info.value.errors] == ["/columnSettings/1/outputName"]
    assert "formula" in info.value.errors[0].message

    data["fileSettings"] = {"csvInjectionGuard": False}
    parse(ExporterBody, data, "exporter.json")
    data["fileSettings"] = {"format": "parquet"}
    parse(ExporterBody, data, "exporter.json")


# ---------------------------------------------------------------- run records


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalSftp]:
    with local_sftp_server(tmp_path / "sftp-root") as srv:
        yield srv


@pytest.fixture
def home(tmp_path: Path, server: LocalSftp) -> Home:
    home = make_home(tmp_path / "home", borrowers=60)
    server.write_setting(home, "partner")
    return home


def run_row(home: Home) -> dict[str, Any]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT status, deliveryStatus, deliveryError, deliveredAt FROM export_runs "
            "WHERE exporterId = ? AND asOfDate = ?",
            [EXPORTER, AS_OF],
        ).fetchall()
    assert len(rows) == 1
    return dict(zip(("status", "deliveryStatus", "deliveryError", "deliveredAt"), rows[0], strict=True))


def run(home: Home, **options: Any) -> dict[str, Any]:
    return job.run_export(job.plan_run(home, EXPORTER, AS_OF), **options)


def test_run_records_after_delivered_repeated_skipped_and_failed_delivery(home: Home) -> None:
    first = run(home)
    assert (first["delivered"], first["deliveryStatus"]) == (True, "delivered")
    delivered = run_row(home)
    assert delivered["deliveryStatus"] == "delivered"
    assert delivered["deliveredAt"] is not None

    again = run(home)
    assert (again["delivered"], again["deliveryStatus"]) == (False, "already_delivered")
    assert run_row(home) == {**delivered, "deliveryStatus": "already_delivered"}  # deliveredAt kept

    local = run(home, deliver_enabled=False)
    assert local["deliveryStatus"] == "skipped"
    assert run_row(home) == {**delivered, "deliveryStatus": "skipped"}

    setting = home.configs / "sftp" / "partner.yaml"
    setting.write_text(setting.read_text().replace("remoteDir: /upload", "remoteDir: /missing"))
    exporter = home.exporters_dir / f"{EXPORTER}.json"
    exporter.write_text(exporter.read_text().replace('"header": true', '"header": false'))  # new bytes
    with pytest.raises(TerminalError, match="/missing does not exist"):
        run(home)
    failed = run_row(home)
    assert failed["status"] == "succeeded"  # the export itself is fine and recorded
    assert failed["deliveryStatus"] == "failed"
    assert "/missing does not exist" in failed["deliveryError"]
    assert failed["deliveredAt"] is None  # these bytes were never delivered


def test_summary_and_manifest_name_the_delivered_file(home: Home, server: LocalSftp) -> None:
    result = run(home)
    upload = server.root / "upload"
    manifest = json.loads((upload / (Path(result["file"]).name + ".manifest.json")).read_text())
    assert manifest["sha256"] == files.sha256_of(upload / Path(result["file"]).name)[0]
    assert not [
        p.name
        for p in Path(result["file"]).parent.iterdir()
        if p.name.startswith(".") and p.name != ".run.lock"
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="=@\t\r\n+-.eE0123456789 aZ|(", max_size=8), min_size=1, max_size=30))
def test_the_vectorized_guard_agrees_with_the_cell_by_cell_rule(cells: list[str]) -> None:
    out = files.neutralise_formulas(pl.DataFrame({"v": cells}))["v"].to_list()
    assert out == [("'" + c) if is_formula_like(c) else c for c in cells]
