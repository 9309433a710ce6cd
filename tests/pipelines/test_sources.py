"""Reading and writing source tables: DuckDB, Parquet and CSV give the same frames; bad values are reported."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.io.sources import open_source, read_ids, write_source
from pipelines.model.errors import InvalidInputError, SourceDataError
from pipelines.model.tables import CONTACTS, DO_NOT_INTERACT, INTERACTIONS, TABLES, SourceTables
from pipelines.rules.borrower_keys import BORROWER_KEY
from pipelines.rules.schemas import CAST_ERRORS, validate_sources
from pipelines.synth.book import default_companies, generate

HEADERS = {
    "borrowers": "id,companyId,timezone",
    "contacts": "id,personId,contactType,label,affiliation,status,value,postalCode,valid,verified,nickname",
    "interactions": "id,personId,channel,direction,status,statusDetails,startedAt",
    "do_not_interact": "id,personId,channels,themes,startDate,daysOfWeek,timesOfDay",
    "consents": "personId,name,status,updatedAt",
}
ROWS = {
    "borrowers": ["BR-1,CP-ACME,America/New_York"],
    "contacts": [
        "CT-1,BR-1,phone,personal,self,primary,+14155550123,,true,,Pat",
        "CT-2,BR-1,address,home,self,primary,,02108,,TRUE,",
    ],
    "interactions": ["IN-1,BR-1,voice,outbound,attempted,voiceNoAnswer,2026-11-03T14:00:00Z"],
    "do_not_interact": [
        'DNI-1,BR-1,"[""voice"",""text""]","[""all""]",2026-11-01,"[1,2]","[{""fromHour"":9,""toHour"":17}]"'
    ],
    "consents": ["BR-1,autodialedColl,consented,2026-11-03T12:00:00Z"],
}


def write_csv_folder(folder: Path, **changes: list[str]) -> Path:
    """A CSV source folder from HEADERS/ROWS; a change replaces a table's header-plus-rows lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, header in HEADERS.items():
        lines = changes.get(table, [header, *ROWS[table]])
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def collect(tables: SourceTables) -> dict[str, pl.DataFrame]:
    return {spec.name: tables.get(spec.name).collect() for spec in TABLES}


def test_csv_keeps_text_and_converts_types(tmp_path: Path) -> None:
    tables = collect(open_source(write_csv_folder(tmp_path / "src")))
    for spec in TABLES:
        frame = tables[spec.name]
        assert [frame.schema[c] for c in spec.names] == [c.dtype for c in spec.columns], spec.name
    contacts = tables["contacts"]
    assert contacts.get_column("postalCode").to_list() == [None, "02108"]
    assert contacts.get_column("value").to_list() == ["+14155550123", None]
    # booleans: given values kept, nulls and absent columns take the contract's defaults
    assert contacts.get_column("valid").to_list() == [True, True]
    assert contacts.get_column("verified").to_list() == [False, True]
    assert contacts.get_column("receiveTextMessages").to_list() == [False, False]
    # extra columns are kept, after the spec's columns
    assert contacts.columns[-1] == "nickname"
    assert contacts.get_column("nickname").to_list() == ["Pat", None]
    assert CAST_ERRORS not in contacts.columns
    validated = validate_sources(SourceTables(**{name: f.lazy() for name, f in tables.items()}))
    assert validated.rejected.height == 0
    assert validated.tables.contacts.collect().columns == [*CONTACTS.names, "nickname", BORROWER_KEY]
    dni = tables["do_not_interact"]
    assert dni.get_column("channels").to_list() == [["voice", "text"]]
    assert dni.get_column("daysOfWeek").to_list() == [[1, 2]]
    assert dni.get_column("timesOfDay").to_list() == [[{"fromHour": 9, "toHour": 17}]]
    assert dni.get_column("endDate").to_list() == [None]
    started = tables["interactions"].get_column("startedAt").item()
    assert started == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)


def test_timestamps_with_offsets_or_without_zone_are_utc(tmp_path: Path) -> None:
    header = HEADERS["interactions"]
    lines = [
        header,
        "IN-1,BR-1,voice,outbound,attempted,,2026-11-03T09:00:00-05:00",
        "IN-2,BR-1,voice,outbound,attempted,,2026-11-03 14:00:00",
        "IN-3,BR-1,voice,outbound,attempted,,2026-11-03T14:00:00.250Z",
    ]
    folder = write_csv_folder(tmp_path / "src", interactions=lines)
    started = open_source(folder).interactions.collect().get_column("startedAt").to_list()
    noon = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    assert started == [noon, noon, noon.replace(microsecond=250_000)]


@pytest.fixture(scope="module")
def small() -> SourceTables:
    return generate(40, 5, default_companies())


def test_csv_parquet_and_duckdb_read_to_identical_frames(tmp_path: Path, small: SourceTables) -> None:
    expected = collect(small)
    paths = {"csv": tmp_path / "csv", "parquet": tmp_path / "parquet", "duckdb": tmp_path / "src.duckdb"}
    for fmt, path in paths.items():
        write_source(small, path, fmt)  # type: ignore[arg-type]
    read = {fmt: collect(open_source(path)) for fmt, path in paths.items()}
    for spec in TABLES:
        for fmt in paths:
            assert_frame_equal(read[fmt][spec.name], expected[spec.name], check_exact=True)
    # nothing temporary is left behind
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert left == ["csv", "parquet", "src.duckdb"]
    assert sorted(p.name for p in paths["csv"].iterdir()) == sorted(f"{t.name}.csv" for t in TABLES)


def test_hand_written_csv_round_trips_through_every_format(tmp_path: Path) -> None:
    original = open_source(write_csv_folder(tmp_path / "src"))
    for fmt in ("csv", "parquet", "duckdb"):
        target = tmp_path / f"copy-{fmt}"
        write_source(original, target, fmt)  # type: ignore[arg-type]
        again = collect(open_source(target))
        for spec in TABLES:
            want = original.get(spec.name).collect()
            got = again[spec.name]
            if fmt == "csv":  # CSV has no types: extra columns come back as text (all text here)
                assert got.schema == want.schema
            assert_frame_equal(got, want)


def test_duckdb_with_other_column_types_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "src.duckdb"
    write_source(open_source(write_csv_folder(tmp_path / "csv")), path, "duckdb")
    with duckdb.connect(str(path)) as con:
        # a hand-made table: plain TIMESTAMP (no zone: UTC), INTEGER[] days, VARCHAR dates
        con.execute("DROP TABLE do_not_interact")
        con.execute(
            "CREATE TABLE do_not_interact AS SELECT 'DNI-1' AS id, 'BR-1' AS personId, "
            "['voice'] AS channels, ['all'] AS themes, '2026-11-01' AS startDate, "
            "[1, 2]::INTEGER[] AS daysOfWeek, TIMESTAMP '2026-11-01 10:00:00' AS createdAt"
        )
    dni = open_source(path).do_not_interact.collect()
    assert dni.schema == pl.Schema(DO_NOT_INTERACT.schema)
    assert dni.row(0, named=True)["createdAt"] == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert dni.get_column("daysOfWeek").to_list() == [[1, 2]]


def test_duckdb_write_keeps_other_tables(tmp_path: Path, small: SourceTables) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE export_runs AS SELECT 'R-1' AS runId")
        con.execute("CREATE TABLE contacts AS SELECT 1 AS stale")
    write_source(small, path, "duckdb")
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT runId FROM export_runs").fetchall() == [("R-1",)]
    assert_frame_equal(open_source(path).contacts.collect(), small.contacts.collect())
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["warehouse.duckdb"]


def test_folder_write_replaces_the_other_format(tmp_path: Path, small: SourceTables) -> None:
    folder = tmp_path / "src"
    write_source(small, folder, "csv")
    write_source(small, folder, "parquet")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t.name}.parquet" for t in TABLES)


def test_unconvertible_values_are_reported_not_nulled(tmp_path: Path) -> None:
    """A timestamp 'yesterday' must not crash the reader nor pass as a missing optional value."""
    interactions = [HEADERS["interactions"], "IN-1,BR-1,voice,outbound,attempted,,yesterday"]
    folder = write_csv_folder(tmp_path / "src", interactions=interactions)
    tables = open_source(folder)
    frame = tables.interactions.collect()
    assert frame.get_column(CAST_ERRORS).to_list() == [["startedAt_is_timestamp"]]
    result = validate_sources(tables, source=str(folder))
    assert result.owned.rows() == [("interactions", "IN-1", ["startedAt_is_timestamp"], "BR-1")]
    assert result.tables.interactions.collect().height == 0


@pytest.mark.parametrize(
    ("table", "line", "key", "check"),
    [
        ("do_not_interact", 'DNI-1,BR-1,voice,"[""all""]",2026-11-01,,', "DNI-1", "channels_is_string_list"),
        (
            "do_not_interact",
            'DNI-1,BR-1,"[""voice""]","[""all""]",11/01/2026,,',
            "DNI-1",
            "startDate_is_date",
        ),
        (
            "do_not_interact",
            'DNI-1,BR-1,"[""voice""]","[""all""]",2026-11-01,"[""mon""]",',
            "DNI-1",
            "daysOfWeek_is_integer_list",
        ),
        (
            "do_not_interact",
            'DNI-1,BR-1,"[""voice""]","[""all""]",2026-11-01,,"[{""from"":9}]"',
            "DNI-1",
            "timesOfDay_is_time_window_list",
        ),
        ("consents", "BR-1,autodialedColl,consented,soon", "row 1", "updatedAt_is_timestamp"),
    ],
)
def test_unconvertible_values_in_blocking_tables_reject_the_row(
    tmp_path: Path, table: str, line: str, key: str, check: str
) -> None:
    folder = write_csv_folder(tmp_path / "src", **{table: [HEADERS[table], line]})
    result = validate_sources(open_source(folder))
    assert result.owned.rows() == [(table, key, [check], "BR-1")]


def test_optional_values_that_do_not_convert_are_reported(tmp_path: Path) -> None:
    lines = [
        "id,personId,channels,themes,startDate,endDate,deletedAt",
        'DNI-1,BR-1,"[""voice""]","[""all""]",2026-11-01,next week,',
        'DNI-2,BR-1,"[""voice""]","[""all""]",2026-11-01,,',
    ]
    folder = write_csv_folder(tmp_path / "src", do_not_interact=lines)
    result = validate_sources(open_source(folder))
    assert result.rejected.rows() == [("do_not_interact", "DNI-1", ["endDate_is_date"])]
    assert result.tables.do_not_interact.collect().get_column("id").to_list() == ["DNI-2"]


def test_bad_boolean_rejects_the_contact(tmp_path: Path) -> None:
    lines = [HEADERS["contacts"], "CT-1,BR-1,phone,personal,self,primary,+14155550123,,maybe,,"]
    folder = write_csv_folder(tmp_path / "src", contacts=lines)
    result = validate_sources(open_source(folder))
    assert result.rejected.rows() == [("contacts", "CT-1", ["valid_is_boolean"])]
    assert result.tables.contacts.collect().height == 0


def test_missing_table_names_source_and_table(tmp_path: Path) -> None:
    folder = write_csv_folder(tmp_path / "src")
    (folder / "consents.csv").unlink()
    with pytest.raises(SourceDataError) as caught:
        open_source(folder)
    assert str(folder) in caught.value.message
    assert "consents" in caught.value.message
    assert caught.value.exit_code == 2

    path = tmp_path / "src.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE borrowers AS SELECT 'BR-1' AS id, 'CP-ACME' AS companyId")
    with pytest.raises(SourceDataError) as caught:
        open_source(path)
    assert str(path) in caught.value.message
    assert "contacts" in caught.value.message


def test_missing_required_column_names_source_table_and_column(tmp_path: Path) -> None:
    lines = ["id,personId,channel,direction,status", "IN-1,BR-1,voice,outbound,attempted"]
    folder = write_csv_folder(tmp_path / "src", interactions=lines)
    with pytest.raises(SourceDataError) as caught:
        open_source(folder)
    message = caught.value.message
    assert str(folder) in message
    assert "interactions" in message
    assert "startedAt" in message
    assert caught.value.errors[0].path == "/interactions/startedAt"


def test_missing_or_unreadable_source(tmp_path: Path) -> None:
    with pytest.raises(SourceDataError, match="does not exist"):
        open_source(tmp_path / "nowhere.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    with pytest.raises(SourceDataError, match="junk.duckdb"):
        open_source(junk)


def test_folder_with_both_formats_is_ambiguous(tmp_path: Path) -> None:
    folder = write_csv_folder(tmp_path / "src")
    pl.DataFrame({"id": ["BR-1"], "companyId": ["CP-ACME"]}).write_parquet(folder / "borrowers.parquet")
    with pytest.raises(SourceDataError, match="borrowers.parquet and borrowers.csv"):
        open_source(folder)


def test_write_refuses_a_file_where_a_folder_is_needed(tmp_path: Path, small: SourceTables) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(InvalidInputError, match="taken"):
        write_source(small, target, "csv")
    assert target.read_text() == "x"


def test_read_ids_csv_keeps_text(tmp_path: Path) -> None:
    path = tmp_path / "population.csv"
    path.write_text("id,note\n00042,a\nBR-1,b\n00042,c\n")
    ids = read_ids(path)
    assert ids.schema == pl.Schema({"id": pl.String})
    assert ids.get_column("id").to_list() == ["00042", "BR-1"]


def test_read_ids_parquet(tmp_path: Path) -> None:
    path = tmp_path / "population.parquet"
    pl.DataFrame({"id": ["BR-2", None, "BR-1"]}).write_parquet(path)
    assert read_ids(path).get_column("id").to_list() == ["BR-2", "BR-1"]


def test_read_ids_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_ids(tmp_path / "missing.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("borrowerId\nBR-1\n")
    with pytest.raises(InvalidInputError, match="no column id"):
        read_ids(wrong)
    other = tmp_path / "ids.txt"
    other.write_text("id\nBR-1\n")
    with pytest.raises(InvalidInputError, match=r"\.csv or \.parquet"):
        read_ids(other)


def test_source_read_does_not_hold_the_duckdb_file(tmp_path: Path, small: SourceTables) -> None:
    path = tmp_path / "src.duckdb"
    write_source(small, path, "duckdb")
    open_source(path)
    # a writer can open it right after: the reader's connection is closed
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE touched AS SELECT 1 AS x")
    assert os.path.getsize(path) > 0


def test_contacts_spec_order(tmp_path: Path) -> None:
    lines = ["status,id,personId,contactType,label,affiliation", "primary,CT-1,BR-1,email,work,self"]
    contacts = open_source(write_csv_folder(tmp_path / "src", contacts=lines)).contacts.collect()
    assert contacts.columns == list(CONTACTS.names)
    assert INTERACTIONS.key == "id"


# ---------------------------------------------------------------- strict CSV


@pytest.mark.parametrize(
    "line",
    [
        "CT-9,BR-1,phone,personal,self,primary,+14155550123",  # cut after 7 fields: valid not defaulted
        "CT-9,BR-1,phone,personal,self,primary,+14155550123,,false,,Pat,extra",  # one field too many
        "",  # a blank line
    ],
)
def test_csv_row_without_the_headers_fields_is_rejected_not_filled_in(tmp_path: Path, line: str) -> None:
    lines = [*ROWS["contacts"], line, "CT-3,BR-1,email,personal,self,primary,pat@example.com,,,,"]
    folder = write_csv_folder(tmp_path / "src", contacts=[HEADERS["contacts"], *lines])
    result = validate_sources(open_source(folder))
    rejected = result.owned.filter(pl.col("tableName") == "contacts")
    assert rejected.height == 1
    assert rejected.item(0, "checks")[0] == "fields_match_header"
    if line:
        assert rejected.item(0, "rowKey") == "CT-9"
        assert rejected.item(0, "personId") == "BR-1"  # its borrower is blocked
    assert result.tables.contacts.collect().get_column("id").to_list() == ["CT-1", "CT-2", "CT-3"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            "CT-1,BR-1,phone,personal,self,primary,+14155550123,,true,,Pat\nCT-2,BR-1,email,personal,self,primary,pat@exa",
            "line end",
        ),
        ('CT-1,BR-1,phone,personal,self,primary,+14155550123,,true,,"Pat\n', "unterminated quote"),
    ],
)
def test_csv_file_cut_short_is_a_source_error(tmp_path: Path, text: str, why: str) -> None:
    folder = write_csv_folder(tmp_path / "src")
    (folder / "contacts.csv").write_text(HEADERS["contacts"] + "\n" + text)
    with pytest.raises(SourceDataError, match=why) as caught:
        open_source(folder)
    assert caught.value.exit_code == 2
    assert "contacts.csv" in caught.value.message


@pytest.mark.parametrize(
    ("nickname", "line_end"),
    [('"Pat\rSmith"', "\n"), ('"Pat\rSmith"', "\r\n"), ("Pat\rSmith", "\n"), ("Pat\rSmith", "\r\n")],
    ids=["quoted", "quoted-crlf", "unquoted", "unquoted-crlf"],
)
def test_csv_field_holding_a_lone_cr_is_read_as_it_is(tmp_path: Path, nickname: str, line_end: str) -> None:
    """A CR inside quotes is RFC 4180; Python's csv.writer leaves such a field unquoted when its lines
    end in LF. Either way it is one record with the CR in its field, not a file cut short."""
    row = f"CT-1,BR-1,phone,personal,self,primary,+14155550123,,true,,{nickname}"
    folder = write_csv_folder(tmp_path / "src")
    lines = [HEADERS["contacts"], row, ROWS["contacts"][1]]
    (folder / "contacts.csv").write_bytes((line_end.join(lines) + line_end).encode("utf-8"))

    result = validate_sources(open_source(folder))

    assert result.owned.filter(pl.col("tableName") == "contacts").height == 0
    contacts = result.tables.contacts.collect()
    assert contacts.get_column("id").to_list() == ["CT-1", "CT-2"]
    assert contacts.get_column("nickname").to_list()[0] == "Pat\rSmith"
