"""Invalid exporter and company configs: each error names the source and the JSON path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pipelines.model.config import Company, ExporterBody
from pipelines.model.errors import InvalidInputError
from pipelines.model.strict import parse
from tests.worlds import SEED_REQUEST


def _body(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(SEED_REQUEST)
    change(body)
    return body


def _errors(model: type[Any], data: Any) -> dict[str, str]:
    with pytest.raises(InvalidInputError) as info:
        parse(model, data, "exporter.json")
    assert info.value.source == "exporter.json"
    assert "exporter.json" in str(info.value)
    return {e.path: e.message for e in info.value.errors}


def test_seed_request_is_accepted_as_is() -> None:
    body = parse(ExporterBody, copy.deepcopy(SEED_REQUEST), "request")
    assert body.contactMatchingCriteria.as_dict() == SEED_REQUEST["contactMatchingCriteria"]
    assert [c.output for c in body.columnSettings] == ["phone"]
    assert body.checkCanInteractData is not None
    assert body.checkCanInteractData.theme == "agentNotification"
    assert body.checkCanInteractData.isAutodialed is False


def test_null_check_can_interact_data_means_no_screening() -> None:
    body = parse(ExporterBody, _body(lambda b: b.update(checkCanInteractData=None)), "request")
    assert body.checkCanInteractData is None


def test_unknown_top_level_key() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(colour="red")))
    assert errors == {"/colour": "unknown key"}


def test_unknown_nested_key() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["checkCanInteractData"].update(urgent=True)))
    assert errors == {"/checkCanInteractData/urgent": "unknown key"}


def test_unknown_key_in_column_setting() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["columnSettings"][0].update(width=3)))
    assert errors == {"/columnSettings/0/width": "unknown key"}


def test_empty_matching_attribute() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["contactMatchingCriteria"].update(label=[])))
    assert list(errors) == ["/contactMatchingCriteria/label"]
    assert "at least 1 item" in errors["/contactMatchingCriteria/label"]


def test_no_matching_attribute_at_all() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(contactMatchingCriteria={})))
    assert list(errors) == ["/contactMatchingCriteria"]
    assert "at least one of label" in errors["/contactMatchingCriteria"]


def test_missing_matching_criteria() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.pop("contactMatchingCriteria")))
    assert list(errors) == ["/contactMatchingCriteria"]


def test_unknown_enum_value_lists_valid_values() -> None:
    errors = _errors(
        ExporterBody, _body(lambda b: b["contactMatchingCriteria"].update(label=["personal", "cell"]))
    )
    assert list(errors) == ["/contactMatchingCriteria/label/1"]
    message = errors["/contactMatchingCriteria/label/1"]
    for valid in ("personal", "work", "home", "military"):
        assert valid in message


def test_duplicate_output_name() -> None:
    errors = _errors(
        ExporterBody, _body(lambda b: b["columnSettings"].append({"field": "id", "outputName": "phone"}))
    )
    # The error points at the repeating item; the message names both items.
    assert list(errors) == ["/columnSettings/1/outputName"]
    assert "'phone'" in errors["/columnSettings/1/outputName"]
    assert "item 1 repeats item 0" in errors["/columnSettings/1/outputName"]


def test_default_output_name_counts_as_duplicate() -> None:
    errors = _errors(
        ExporterBody,
        _body(
            lambda b: b.update(columnSettings=[{"field": "value"}, {"field": "id", "outputName": "value"}])
        ),
    )
    assert list(errors) == ["/columnSettings/1/outputName"]
    assert "'value'" in errors["/columnSettings/1/outputName"]


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_output_name(name: str) -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["columnSettings"][0].update(outputName=name)))
    assert errors == {"/columnSettings/0/outputName": "outputName must not be empty"}


@pytest.mark.parametrize("name", ["pho\nne", "tab\there", "nul\x00", "del\x7f"])
def test_control_characters_in_output_name(name: str) -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["columnSettings"][0].update(outputName=name)))
    assert list(errors) == ["/columnSettings/0/outputName"]
    assert errors["/columnSettings/0/outputName"].startswith("must not contain the control character U+00")


def test_unknown_field() -> None:
    errors = _errors(
        ExporterBody,
        _body(lambda b: b["columnSettings"].append({"field": "ssn", "outputName": "x"})),
    )
    assert list(errors) == ["/columnSettings/1/field"]
    assert "'ssn'" in errors["/columnSettings/1/field"]
    assert "borrower.firstName" in errors["/columnSettings/1/field"]


def test_borrower_field_is_accepted() -> None:
    body = parse(
        ExporterBody,
        _body(lambda b: b["columnSettings"].append({"field": "borrower.lastName"})),
        "request",
    )
    assert [c.output for c in body.columnSettings] == ["phone", "borrower.lastName"]


def test_empty_column_settings() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(columnSettings=[])))
    assert list(errors) == ["/columnSettings"]


def test_unknown_theme() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["checkCanInteractData"].update(theme="marketing")))
    assert list(errors) == ["/checkCanInteractData/theme"]
    assert "agentNotification" in errors["/checkCanInteractData/theme"]


def test_unknown_channel() -> None:
    errors = _errors(ExporterBody, _body(lambda b: b["checkCanInteractData"].update(channel="fax")))
    assert list(errors) == ["/checkCanInteractData/channel"]


def test_bad_time_zone_in_company() -> None:
    errors = _errors(Company, {"id": "CP-X", "timezone": "America/Springfield"})
    assert list(errors) == ["/timezone"]
    assert "America/Springfield" in errors["/timezone"]


def test_unknown_key_in_company_policy() -> None:
    errors = _errors(Company, {"id": "CP-X", "timezone": "UTC", "policy": {"quietHours": {}}})
    assert errors == {"/policy/quietHours": "unknown key"}


def test_valid_company() -> None:
    company = parse(Company, {"id": "CP-X", "timezone": "America/New_York"}, "c.yaml")
    assert company.timezone == "America/New_York"


@pytest.mark.parametrize(
    "template", ["../x", "a/b", "/etc/passwd", "{exporterId}/../x", "..\\x", ".hidden", "{asOfDate:%Y/%m}"]
)
def test_file_name_template_escaping_the_folder(template: str) -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(fileSettings={"fileNameTemplate": template})))
    assert list(errors) == ["/fileSettings/fileNameTemplate"]
    assert "inside the export folder" in errors["/fileSettings/fileNameTemplate"]


def test_file_name_template_unknown_placeholder() -> None:
    errors = _errors(
        ExporterBody, _body(lambda b: b.update(fileSettings={"fileNameTemplate": "{borrowerId}.csv"}))
    )
    assert list(errors) == ["/fileSettings/fileNameTemplate"]


def test_file_name_template_inside_the_folder_is_accepted() -> None:
    body = parse(
        ExporterBody,
        _body(lambda b: b.update(fileSettings={"fileNameTemplate": "{companyId}-{asOfDate:%Y%m%d}.csv"})),
        "request",
    )
    assert body.fileSettings.template == "{companyId}-{asOfDate:%Y%m%d}.csv"


@pytest.mark.parametrize("ident", ["../other", "a/b", ".hidden", ""])
def test_unsafe_sftp_setting_id(ident: str) -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(sftpSettingId=ident)))
    assert list(errors) == ["/sftpSettingId"]


def test_several_errors_are_all_reported() -> None:
    def change(b: dict[str, Any]) -> None:
        b["columnSettings"][0]["field"] = "nope"
        b["checkCanInteractData"]["theme"] = "nope"
        b["extra"] = 1

    errors = _errors(ExporterBody, _body(change))
    assert set(errors) == {"/columnSettings/0/field", "/checkCanInteractData/theme", "/extra"}


@pytest.mark.parametrize("external", ["a/b", "x\ny", " lead", ""])
def test_external_id_must_be_url_safe(external: str) -> None:
    errors = _errors(ExporterBody, _body(lambda b: b.update(externalId=external)))
    assert list(errors) == ["/externalId"]
