"""Schema checks: one minimal bad row per check, the reject/fail policy, and both engines agreeing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pandera.polars as pa
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.model.errors import SourceDataError
from pipelines.model.tables import (
    BORROWERS,
    CONSENTS,
    CONTACTS,
    DO_NOT_INTERACT,
    INTERACTIONS,
    TABLES,
    SourceTables,
    TableSpec,
)
from pipelines.rules.borrower_keys import BORROWER_KEY
from pipelines.rules.schemas import (
    CAST_ERRORS,
    check_names,
    pandera_schema,
    validate_sources,
)

T0 = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)

BORROWER = {"id": "BR-1", "companyId": "CP-ACME", "timezone": "America/New_York"}
PHONE = {
    "id": "CT-1",
    "personId": "BR-1",
    "contactType": "phone",
    "label": "personal",
    "affiliation": "self",
    "status": "primary",
    "value": "+14155550123",
}
EMAIL = {**PHONE, "id": "CT-2", "contactType": "email", "value": "pat@example.com"}
ADDRESS = {
    **PHONE,
    "id": "CT-3",
    "contactType": "address",
    "label": "home",
    "value": None,
    "state": "MA",
    "postalCode": "02108",
}
INTERACTION = {
    "id": "IN-1",
    "personId": "BR-1",
    "channel": "voice",
    "direction": "outbound",
    "status": "attempted",
    "statusDetails": "voiceNoAnswer",
    "theme": "opsCollDebt",
    "startedAt": T0,
}
DNI = {
    "id": "DNI-1",
    "personId": "BR-1",
    "channels": ["voice"],
    "themes": ["all"],
    "startDate": date(2026, 11, 1),
    "daysOfWeek": [1, 2],
    "timesOfDay": [{"fromHour": 9, "toHour": 17}],
    "timezone": "America/Chicago",
    "contactLabels": ["home"],
}
CONSENT = {"personId": "BR-1", "name": "autodialedColl", "status": "consented", "updatedAt": T0}


def frame(spec: TableSpec, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows as a frame with the spec's exact types; absent keys are null, booleans get defaults."""
    data = {c.name: [r.get(c.name, c.default) for r in rows] for c in spec.columns}
    return pl.DataFrame(data, schema=spec.schema)


def tables(**rows: list[dict[str, Any]]) -> SourceTables:
    defaults = {
        "borrowers": [BORROWER],
        "contacts": [PHONE, EMAIL, ADDRESS],
        "interactions": [INTERACTION],
        "do_not_interact": [DNI],
        "consents": [CONSENT],
    }
    defaults.update(rows)
    return SourceTables(**{spec.name: frame(spec, defaults[spec.name]).lazy() for spec in TABLES})


ENGINES = ["polars", "pandera"]


@pytest.mark.parametrize("engine", ENGINES)
def test_valid_tables_pass_unchanged(engine: str) -> None:
    source = tables()
    result = validate_sources(source, engine=engine)  # type: ignore[arg-type]
    assert result.rejected.height == 0
    assert result.rejected.schema == pl.Schema(
        {"tableName": pl.String, "rowKey": pl.String, "checks": pl.List(pl.String)}
    )
    for spec in TABLES:
        validated = result.tables.get(spec.name).collect().drop(BORROWER_KEY, strict=False)
        assert_frame_equal(validated, source.get(spec.name).collect())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("order", ["as given", "sorted by personId"])
def test_contacts_carry_the_key_of_their_borrower(engine: str, order: str) -> None:
    """Validation numbers the borrowers it keeps; each kept contact carries its borrower's number,
    whether the contacts come sorted by personId (looked up in order) or not (hashed)."""
    borrowers = [BORROWER, {**BORROWER, "id": "BR-2"}, {**BORROWER, "id": "BR-3"}, {**BORROWER, "id": "BR-3"}]
    contacts = [
        {**PHONE, "id": "CT-1", "personId": "BR-2"},
        {**EMAIL, "id": "CT-2", "personId": "BR-1"},
        {**PHONE, "id": "CT-3", "personId": "BR-2"},
        {**EMAIL, "id": "CT-4", "personId": "BR-3"},  # its borrower's id is repeated: both rejected
        {**PHONE, "id": "CT-5", "personId": "BR-15"},  # no such borrower, between two that exist
        {**EMAIL, "id": "CT-6", "personId": "BR-0"},  # no such borrower, before every one
        {**EMAIL, "id": "CT-7", "personId": "BR-9"},  # no such borrower, after every one
    ]
    if order == "sorted by personId":
        contacts.sort(key=lambda row: str(row["personId"]))
    result = validate_sources(tables(borrowers=borrowers, contacts=contacts), engine=engine)  # type: ignore[arg-type]
    kept_borrowers = result.tables.borrowers.collect()
    kept_contacts = result.tables.contacts.collect()
    assert kept_borrowers.get_column(BORROWER_KEY).to_list() == [0, 1]
    number = dict(kept_borrowers.select("id", BORROWER_KEY).iter_rows())
    assert sorted(kept_contacts.select("id", "personId", BORROWER_KEY).rows()) == [
        ("CT-1", "BR-2", number["BR-2"]),
        ("CT-2", "BR-1", number["BR-1"]),
        ("CT-3", "BR-2", number["BR-2"]),
    ]
    assert sorted(result.rejected.filter(pl.col("tableName") == "contacts").get_column("rowKey")) == [
        "CT-4",
        "CT-5",
        "CT-6",
        "CT-7",
    ]
    assert kept_contacts.get_column(BORROWER_KEY).n_chunks() == kept_contacts.get_column("id").n_chunks()


CONTACT_CASES = [
    ({"id": None}, "id_not_null"),
    ({"personId": None}, "personId_not_null"),
    ({"contactType": None}, "contactType_not_null"),
    ({"contactType": "fax"}, "contactType_in_vocabulary"),
    ({"label": None}, "label_not_null"),
    ({"label": "office"}, "label_in_vocabulary"),
    ({"affiliation": None}, "affiliation_not_null"),
    ({"affiliation": "friend"}, "affiliation_in_vocabulary"),
    ({"status": None}, "status_not_null"),
    ({"status": "deleted"}, "status_in_vocabulary"),
    ({"value": "4155550123"}, "value_is_e164_phone"),
    ({"value": "+04155550123"}, "value_is_e164_phone"),
    ({"value": None}, "value_is_e164_phone"),
    ({"value": "+1８０８５５５０１２３"}, "value_is_e164_phone"),  # fullwidth digits: no lookup knows them
    ({"postalCode": "９６８１３"}, "postalCode_has_ascii_digits"),
    ({"postalCode": "0210８"}, "postalCode_has_ascii_digits"),
    ({"contactType": "email", "value": "not-an-email"}, "value_is_email"),
    ({"state": "M4"}, "state_is_two_letters"),
    ({"state": "MAS"}, "state_is_two_letters"),
    ({"timezone": "Eastern"}, "timezone_is_iana"),
    ({"personId": "BR-404"}, "personId_references_borrower"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("change", "check"), CONTACT_CASES)
def test_bad_contact_is_rejected_and_left_out(engine: str, change: dict[str, Any], check: str) -> None:
    bad = {**PHONE, "id": "CT-9", **change}
    result = validate_sources(tables(contacts=[PHONE, bad, EMAIL]), engine=engine)  # type: ignore[arg-type]
    key = "row 2" if change.get("id", "x") is None else "CT-9"
    rejected = result.rejected.filter(pl.col("rowKey") == key)
    assert rejected.height == 1
    assert rejected.get_column("tableName").item() == "contacts"
    assert check in rejected.get_column("checks").item().to_list()
    kept = result.tables.contacts.collect().get_column("id").to_list()
    assert kept == ["CT-1", "CT-2"]


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_contact_ids_reject_both(engine: str) -> None:
    twin = {**EMAIL, "id": "CT-1"}
    result = validate_sources(tables(contacts=[PHONE, twin, ADDRESS]), engine=engine)  # type: ignore[arg-type]
    assert result.rejected.rows() == [
        ("contacts", "CT-1", ["id_unique"]),
        ("contacts", "CT-1", ["id_unique"]),
    ]
    assert result.tables.contacts.collect().get_column("id").to_list() == ["CT-3"]


def test_unsorted_duplicates_are_found_too() -> None:
    rows = [{**PHONE, "id": i} for i in ("CT-5", "CT-1", "CT-3", "CT-1", "CT-2")]
    result = validate_sources(tables(contacts=rows))
    assert result.rejected.get_column("rowKey").to_list() == ["CT-1", "CT-1"]


def test_every_failed_check_of_a_row_is_listed_in_check_order() -> None:
    bad = {**PHONE, "id": "CT-9", "label": "office", "value": "555", "timezone": "Mars/Base"}
    result = validate_sources(tables(contacts=[bad]))
    assert result.rejected.rows() == [
        ("contacts", "CT-9", ["label_in_vocabulary", "value_is_e164_phone", "timezone_is_iana"])
    ]


BORROWER_CASES = [
    ({"id": None}, "id_not_null"),
    ({"companyId": None}, "companyId_not_null"),
    ({"timezone": "EST+5"}, "timezone_is_iana"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("change", "check"), BORROWER_CASES)
def test_bad_borrower_is_rejected_with_its_contacts(engine: str, change: dict[str, Any], check: str) -> None:
    other = {"id": "BR-2", "companyId": "CP-ACME"}
    bad = {**BORROWER, **change}
    other_phone = {**PHONE, "id": "CT-8", "personId": "BR-2"}
    source = tables(borrowers=[other, bad], contacts=[PHONE, EMAIL, other_phone])
    result = validate_sources(source, engine=engine)  # type: ignore[arg-type]
    key = "row 2" if change.get("id", "x") is None else "BR-1"
    assert (("borrowers", key, [check])) in result.rejected.rows()
    assert result.tables.borrowers.collect().get_column("id").to_list() == ["BR-2"]
    # fail closed: the contacts of a rejected borrower are never exported
    refs = result.rejected.filter(pl.col("tableName") == "contacts")
    assert refs.rows() == [
        ("contacts", "CT-1", ["personId_references_borrower"]),
        ("contacts", "CT-2", ["personId_references_borrower"]),
    ]
    assert result.tables.contacts.collect().get_column("id").to_list() == ["CT-8"]


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_borrower_ids_reject_both_and_their_contacts(engine: str) -> None:
    result = validate_sources(tables(borrowers=[BORROWER, BORROWER]), engine=engine)  # type: ignore[arg-type]
    assert result.rejected.filter(pl.col("tableName") == "borrowers").rows() == [
        ("borrowers", "BR-1", ["id_unique"]),
        ("borrowers", "BR-1", ["id_unique"]),
    ]
    assert result.tables.contacts.collect().height == 0


FAIL_RUN_CASES = [
    ("interactions", INTERACTION, {"id": None}, "row 1", "id_not_null"),
    ("interactions", INTERACTION, {"personId": None}, "IN-1", "personId_not_null"),
    ("interactions", INTERACTION, {"channel": None}, "IN-1", "channel_not_null"),
    ("interactions", INTERACTION, {"channel": "pigeon"}, "IN-1", "channel_in_vocabulary"),
    ("interactions", INTERACTION, {"direction": "sideways"}, "IN-1", "direction_in_vocabulary"),
    ("interactions", INTERACTION, {"direction": None}, "IN-1", "direction_not_null"),
    ("interactions", INTERACTION, {"status": "done"}, "IN-1", "status_in_vocabulary"),
    ("interactions", INTERACTION, {"status": None}, "IN-1", "status_not_null"),
    ("interactions", INTERACTION, {"statusDetails": "voiceHungUp"}, "IN-1", "statusDetails_in_vocabulary"),
    ("interactions", INTERACTION, {"theme": "marketing"}, "IN-1", "theme_in_vocabulary"),
    ("interactions", INTERACTION, {"startedAt": None}, "IN-1", "startedAt_not_null"),
    ("do_not_interact", DNI, {"id": None}, "row 1", "id_not_null"),
    ("do_not_interact", DNI, {"personId": None}, "DNI-1", "personId_not_null"),
    ("do_not_interact", DNI, {"channels": None}, "DNI-1", "channels_not_null"),
    ("do_not_interact", DNI, {"channels": ["fax"]}, "DNI-1", "channels_in_vocabulary"),
    ("do_not_interact", DNI, {"channels": []}, "DNI-1", "channels_not_empty"),
    ("do_not_interact", DNI, {"themes": None}, "DNI-1", "themes_not_null"),
    ("do_not_interact", DNI, {"themes": ["opsCollDebt", "spam"]}, "DNI-1", "themes_in_vocabulary"),
    ("do_not_interact", DNI, {"themes": []}, "DNI-1", "themes_not_empty"),
    ("do_not_interact", DNI, {"startDate": None}, "DNI-1", "startDate_not_null"),
    ("do_not_interact", DNI, {"daysOfWeek": [7]}, "DNI-1", "daysOfWeek_in_range"),
    ("do_not_interact", DNI, {"daysOfWeek": [-1]}, "DNI-1", "daysOfWeek_in_range"),
    (
        "do_not_interact",
        DNI,
        {"timesOfDay": [{"fromHour": 17, "toHour": 9}]},
        "DNI-1",
        "timesOfDay_hours_valid",
    ),
    (
        "do_not_interact",
        DNI,
        {"timesOfDay": [{"fromHour": 9, "toHour": 25}]},
        "DNI-1",
        "timesOfDay_hours_valid",
    ),
    (
        "do_not_interact",
        DNI,
        {"timesOfDay": [{"fromHour": 9, "toHour": 9}]},
        "DNI-1",
        "timesOfDay_hours_valid",
    ),
    (
        "do_not_interact",
        DNI,
        {"timesOfDay": [{"fromHour": None, "toHour": 9}]},
        "DNI-1",
        "timesOfDay_hours_valid",
    ),
    ("do_not_interact", DNI, {"timezone": "Central"}, "DNI-1", "timezone_is_iana"),
    ("do_not_interact", DNI, {"contactLabels": ["cell"]}, "DNI-1", "contactLabels_in_vocabulary"),
    ("consents", CONSENT, {"personId": None}, "row 1", "personId_not_null"),
    ("consents", CONSENT, {"name": None}, "row 1", "name_not_null"),
    ("consents", CONSENT, {"name": "marketing"}, "BR-1/marketing/2026-11-03T12:00:00Z", "name_in_vocabulary"),
    ("consents", CONSENT, {"status": None}, "BR-1/autodialedColl/2026-11-03T12:00:00Z", "status_not_null"),
    (
        "consents",
        CONSENT,
        {"status": "maybe"},
        "BR-1/autodialedColl/2026-11-03T12:00:00Z",
        "status_in_vocabulary",
    ),
    ("consents", CONSENT, {"updatedAt": None}, "row 1", "updatedAt_not_null"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("table", "good", "change", "key", "check"), FAIL_RUN_CASES)
def test_bad_row_of_any_table_is_rejected_with_its_borrower(
    engine: str, table: str, good: dict[str, Any], change: dict[str, Any], key: str, check: str
) -> None:
    result = validate_sources(tables(**{table: [{**good, **change}]}), source="src.duckdb", engine=engine)  # type: ignore[arg-type]
    assert result.rejected.rows() == [(table, key, [check])]
    # the borrower it belongs to, so that screening blocks them (null: it names none)
    owner = None if change.get("personId", "x") is None else "BR-1"
    assert result.owned.rows() == [(table, key, [check], owner)]
    assert result.tables.get(table).collect().height == 0  # left out, never read as it is


def test_state_is_trimmed_and_upper_cased_before_checks() -> None:
    rows = [{**ADDRESS, "id": f"CT-{i}", "state": state} for i, state in enumerate(["ma", " HI", "Ny ", " "])]
    result = validate_sources(tables(contacts=rows))
    assert result.rejected.height == 0
    assert result.tables.contacts.collect().get_column("state").to_list() == ["MA", "HI", "NY", None]


def test_dni_with_a_null_window_list_or_days_is_fine() -> None:
    plain = {**DNI, "daysOfWeek": None, "timesOfDay": None, "contactLabels": None, "timezone": None}
    empty = {**DNI, "id": "DNI-2", "daysOfWeek": [], "timesOfDay": [], "contactLabels": []}
    assert validate_sources(tables(do_not_interact=[plain, empty])).rejected.height == 0


def test_interaction_without_optional_fields_is_fine() -> None:
    bare = {**INTERACTION, "statusDetails": None, "theme": None, "status": "attempted"}
    assert validate_sources(tables(interactions=[bare])).rejected.height == 0


def test_failures_in_several_tables_are_all_reported_with_their_borrowers() -> None:
    other = {"id": "BR-2", "companyId": "CP-ACME"}
    source = tables(
        borrowers=[BORROWER, other],
        interactions=[{**INTERACTION, "channel": "pigeon"}],
        consents=[{**CONSENT, "personId": "BR-2", "status": "maybe"}],
    )
    result = validate_sources(source)
    assert result.owned.select("tableName", "rowKey", "personId").rows() == [
        ("interactions", "IN-1", "BR-1"),
        ("consents", "BR-2/autodialedColl/2026-11-03T12:00:00Z", "BR-2"),
    ]


def test_no_contact_values_in_reports() -> None:
    bad = {**PHONE, "id": "CT-9", "value": "415-555-0123"}
    result = validate_sources(tables(contacts=[bad]))
    assert "415" not in str(result.owned.rows())


def test_type_failures_recorded_by_the_reader_are_reported() -> None:
    """A value the reader could not convert arrives as null plus its check name in CAST_ERRORS."""
    bad = frame(INTERACTIONS, [{**INTERACTION, "startedAt": None}]).with_columns(
        pl.lit(["startedAt_is_timestamp"], pl.List(pl.String)).alias(CAST_ERRORS)
    )
    source = tables()
    source = SourceTables(
        source.borrowers, source.contacts, bad.lazy(), source.do_not_interact, source.consents
    )
    # reported as a bad value, not as a missing one
    assert validate_sources(source).rejected.rows() == [("interactions", "IN-1", ["startedAt_is_timestamp"])]

    contacts = frame(CONTACTS, [PHONE, {**EMAIL, "valid": True}]).with_columns(
        pl.Series(CAST_ERRORS, [None, ["valid_is_boolean"]], pl.List(pl.String))
    )
    source = tables()
    result = validate_sources(
        SourceTables(
            source.borrowers, contacts.lazy(), source.interactions, source.do_not_interact, source.consents
        )
    )
    assert result.rejected.rows() == [("contacts", "CT-2", ["valid_is_boolean"])]
    assert CAST_ERRORS not in result.tables.contacts.collect_schema().names()


def test_wrong_column_type_names_table_and_column() -> None:
    source = tables()
    wrong = source.interactions.with_columns(pl.col("startedAt").cast(pl.String))
    with pytest.raises(SourceDataError) as caught:
        validate_sources(
            SourceTables(source.borrowers, source.contacts, wrong, source.do_not_interact, source.consents)
        )
    assert "interactions.startedAt" in caught.value.message


def test_missing_required_column_names_table_and_column() -> None:
    source = tables()
    with pytest.raises(SourceDataError) as caught:
        validate_sources(
            SourceTables(
                source.borrowers,
                source.contacts.drop("label"),
                source.interactions,
                source.do_not_interact,
                source.consents,
            ),
            source="warehouse.duckdb",
        )
    assert "warehouse.duckdb" in caught.value.message
    assert "contacts" in caught.value.message
    assert "label" in caught.value.message


def test_missing_optional_columns_are_added_with_defaults() -> None:
    source = tables()
    slim = source.contacts.select("id", "personId", "contactType", "label", "affiliation", "status", "value")
    result = validate_sources(
        SourceTables(source.borrowers, slim, source.interactions, source.do_not_interact, source.consents)
    )
    contacts = result.tables.contacts.collect()
    assert contacts.schema == pl.Schema({**CONTACTS.schema, BORROWER_KEY: pl.UInt32()})
    assert contacts.get_column("valid").to_list() == [True, True, True]
    assert contacts.get_column("verified").to_list() == [False, False, False]


def test_lazy_input_is_validated_at_data_depth() -> None:
    """Pandera checks only the schema of a LazyFrame by default; validate_sources must not."""
    bad = {**PHONE, "id": "CT-9", "contactType": "fax"}
    source = tables(contacts=[bad])
    assert isinstance(source.contacts, pl.LazyFrame)
    for engine in ENGINES:
        result = validate_sources(source, engine=engine)  # type: ignore[arg-type]
        assert result.rejected.rows() == [("contacts", "CT-9", ["contactType_in_vocabulary"])]


def test_pandera_model_reports_the_same_check_names() -> None:
    bad = frame(CONTACTS, [PHONE, {**PHONE, "id": "CT-9", "status": "deleted"}])
    schema = pandera_schema(CONTACTS, pl.Series(["BR-1"]))
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.validate(bad, lazy=True)
    cases = caught.value.failure_cases
    assert cases.select("check", "index").rows() == [("status_in_vocabulary", 1)]
    schema.validate(frame(CONTACTS, [PHONE]), lazy=True)


def test_pandera_model_checks_types() -> None:
    wrong = frame(CONSENTS, [CONSENT]).with_columns(pl.col("updatedAt").dt.replace_time_zone(None))
    with pytest.raises(pa.errors.SchemaErrors):
        pandera_schema(CONSENTS).validate(wrong, lazy=True)


def test_engines_agree_on_a_frame_full_of_faults() -> None:
    rows = [{**PHONE, "id": f"CT-{i:02d}", **change} for i, (change, _) in enumerate(CONTACT_CASES)]
    rows += [PHONE, {**EMAIL, "id": "CT-01"}]
    source = tables(contacts=rows)
    fast = validate_sources(source)
    slow = validate_sources(source, engine="pandera")
    assert fast.rejected.height >= len(CONTACT_CASES)
    assert_frame_equal(fast.rejected, slow.rejected)
    assert_frame_equal(fast.tables.contacts.collect(), slow.tables.contacts.collect())


def test_every_documented_check_has_a_case() -> None:
    covered = (
        {c for _, c in CONTACT_CASES}
        | {c for _, c in BORROWER_CASES}
        | {case[-1] for case in FAIL_RUN_CASES}
        | {"id_unique"}
        | {"fields_match_header"}  # a reader's check: tested through CSV in test_sources.py
    )
    type_checks = {n for spec in TABLES for n in check_names(spec) if "_is_" in n and not n.endswith("_iana")}
    type_checks -= {"value_is_e164_phone", "value_is_email"}
    every = {n for spec in TABLES for n in check_names(spec)}
    # the type checks are exercised through the readers in test_sources.py
    assert every - covered - type_checks == set()
    assert {spec.name for spec in (BORROWERS, CONTACTS, INTERACTIONS, DO_NOT_INTERACT, CONSENTS)} == {
        t.name for t in TABLES
    }
