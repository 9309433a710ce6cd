"""Configs refuse early what would fail later: coercions, huge or hidden text, unreadable files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pipelines.model import safeload
from pipelines.model.config import Campaign, Company, ExporterBody, Home, SftpSetting
from pipelines.model.errors import BadRequestError, InvalidInputError
from pipelines.model.strict import parse
from tests.worlds import SEED_REQUEST


def body(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SEED_REQUEST)
    data.update(changes)
    return data


def errors(model: type[Any], data: Any) -> dict[str, str]:
    with pytest.raises(InvalidInputError) as info:
        parse(model, data, "test")
    return {e.path: e.message for e in info.value.errors}


@pytest.mark.parametrize("value", ["no", "false", "False", 0, 1, "0"])
def test_booleans_are_not_coerced(value: object) -> None:
    got = errors(
        ExporterBody, body(checkCanInteractData={"theme": "agentNotification", "isAutodialed": value})
    )
    assert got == {"/checkCanInteractData/isAutodialed": "Input should be a valid boolean"}
    got = errors(ExporterBody, body(fileSettings={"header": value}))
    assert got == {"/fileSettings/header": "Input should be a valid boolean"}


@pytest.mark.parametrize("value", ["7", 7.0, True])
def test_integers_are_not_coerced(value: object) -> None:
    company = {"id": "CP-X", "timezone": "UTC", "policy": {"conversationCooldownDays": value}}
    assert errors(Company, company) == {"/policy/conversationCooldownDays": "Input should be a valid integer"}
    sftp = {"host": "h", "username": "u", "knownHostsFile": "k", "passwordEnv": "P", "port": value}
    assert errors(SftpSetting, sftp) == {"/port": "Input should be a valid integer"}


def test_real_booleans_and_integers_still_pass() -> None:
    parsed = parse(ExporterBody, body(fileSettings={"header": False}), "test")
    assert parsed.fileSettings.header is False
    company = parse(
        Company, {"id": "CP-X", "timezone": "UTC", "policy": {"conversationCooldownDays": 3}}, "t"
    )
    assert company.policy.conversationCooldownDays == 3


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        (
            {"columnSettings": [{"field": "value", "outputName": "x" * 1_000_000}]},
            "/columnSettings/0/outputName",
        ),
        ({"columnSettings": [{"field": "value", "outputName": "x" * 257}]}, "/columnSettings/0/outputName"),
        ({"name": "n" * 201}, "/name"),
        ({"externalId": "e" * 129}, "/externalId"),
        ({"fileSettings": {"fileNameTemplate": "{asOfDate}" + "x" * 300}}, "/fileSettings/fileNameTemplate"),
    ],
)
def test_strings_have_length_limits(changes: dict[str, Any], path: str) -> None:
    assert list(errors(ExporterBody, body(**changes))) == [path]


@pytest.mark.parametrize("char", ["\u202e", "\u202d", "\u2066", "\u2069", "\u200f", "\u061c"])
def test_bidi_controls_are_refused_everywhere(char: str) -> None:
    got = errors(ExporterBody, body(name=f"invoice{char}fdp.exe"))
    assert got["/name"].startswith(f"must not contain the bidirectional control character U+{ord(char):04X}")
    got = errors(ExporterBody, body(columnSettings=[{"field": "value", "outputName": f"ph{char}one"}]))
    assert list(got) == ["/columnSettings/0/outputName"]
    company = {"id": "CP-X", "name": f"Acme{char}", "timezone": "UTC"}
    assert list(errors(Company, company)) == ["/name"]


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\n", "\x85"])
def test_control_characters_are_refused_in_names(char: str) -> None:
    assert list(errors(ExporterBody, body(name=f"a{char}b"))) == ["/name"]
    sftp = {"host": f"h{char}", "username": "u", "knownHostsFile": "k", "passwordEnv": "P"}
    assert list(errors(SftpSetting, sftp)) == ["/host"]


def test_campaign_query_may_span_lines_but_not_hide_text() -> None:
    ok = parse(Campaign, {"exporterId": "CE-X", "query": "SELECT id\n\tFROM borrowers\r\n"}, "c")
    assert ok.timeoutSeconds == 300
    assert ok.memoryLimit == "2GB"
    assert list(errors(Campaign, {"exporterId": "CE-X", "query": "SELECT id -- \u202e\nFROM b"})) == [
        "/query"
    ]
    assert list(errors(Campaign, {"exporterId": "CE-X", "query": "SELECT\x00 id"})) == ["/query"]
    assert list(errors(Campaign, {"exporterId": "CE-X", "query": "SELECT 1", "timeoutSeconds": "60"})) == [
        "/timeoutSeconds"
    ]
    assert list(errors(Campaign, {"exporterId": "CE-X", "query": "SELECT 1", "memoryLimit": "lots"})) == [
        "/memoryLimit"
    ]


# ---------------------------------------------------------------- reading files


def write(home: Path, relative: str, raw: bytes) -> None:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"id: CP-X\nname: Caf\xe9\ntimezone: UTC\n", "not UTF-8"),
        (b"a: " + b"[" * 100_000, "nested more than 32"),
        (b"x: [" + b"[" * 40 + b"]" * 40 + b"]\n", "nested more than 32"),
        (b"name: " + b"x" * (safeload.MAX_BYTES + 1), "at most 1,048,576"),
        (
            b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
            + b"".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n".encode()
                for p, c in zip("abcde", "bcdef", strict=True)
            ),
            "more than 100,000 values",
        ),
        (b"id: [unclosed\n", "not valid YAML"),
    ],
)
def test_unreadable_yaml_is_invalid_input(tmp_path: Path, raw: bytes, message: str) -> None:
    write(tmp_path, "configs/companies/CP-X.yaml", raw)
    with pytest.raises(BadRequestError, match=message) as info:
        Home(tmp_path).company("CP-X")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"name": "\xff"}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 32"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "nested more than 32"),
        (b"{" + b" " * safeload.MAX_BYTES + b"}", "at most"),
    ],
)
def test_unreadable_json_is_invalid_input(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        safeload.load_json(raw, "body.json")


HUGE = b"7" * 5000  # Python refuses to convert an integer of more than 4,300 digits


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (
            b'{"name": "x", "columnSettings": [{"field": "id", "outputName": ' + HUGE + b"}]}",
            "/columnSettings/0/outputName",
        ),
        (b'{"a": -' + HUGE + b"}", "/a"),
        ('{"\u00e9/~": '.encode() + HUGE + b"}", "/\u00e9~1~0"),
    ],
)
def test_an_integer_too_long_to_read_in_json_is_named_by_its_path(raw: bytes, path: str) -> None:
    with pytest.raises(BadRequestError) as info:
        safeload.load_json(raw, "body.json")
    assert info.value.exit_code == 2
    assert [(e.path, e.message) for e in info.value.errors] == [
        (path, "is an integer of 5,000 digits; at most 4,300 are read")
    ]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"exporterId: CE-X\nquery: SELECT 1 AS id\ntimeoutSeconds: " + HUGE + b"\n", "/timeoutSeconds"),
        (b"exporterId: CE-X\nquery: SELECT 1 AS id\ntimeoutSeconds: 1_" + HUGE + b"\n", "/timeoutSeconds"),
        (b"exporterId: CE-X\nquery: SELECT 1 AS id\ntimeoutSeconds: 0x" + HUGE + b"\n", "/timeoutSeconds"),
        (b"exporterId: CE-X\nquery: SELECT 1 AS id\nx: [1, " + HUGE + b"]\n", "/x/1"),
    ],
)
def test_an_integer_too_long_to_read_in_yaml_is_named_by_its_path(
    tmp_path: Path, raw: bytes, path: str
) -> None:
    write(tmp_path, "configs/campaigns/daily.yaml", raw)
    with pytest.raises(BadRequestError) as info:
        Home(tmp_path).campaign("daily")
    assert info.value.exit_code == 2
    assert [e.path for e in info.value.errors] == [path]
    assert "digits" in info.value.errors[0].message


def test_an_integer_of_4300_digits_is_read_and_then_bounded_by_the_model(tmp_path: Path) -> None:
    raw = b"exporterId: CE-X\nquery: SELECT 1 AS id\ntimeoutSeconds: " + b"9" * 4300 + b"\n"
    write(tmp_path, "configs/campaigns/daily.yaml", raw)
    with pytest.raises(InvalidInputError) as info:
        Home(tmp_path).campaign("daily")
    assert [e.path for e in info.value.errors] == ["/timeoutSeconds"]


def sftp(**encryption: Any) -> dict[str, Any]:
    return {
        "host": "sftp.example",
        "username": "acme",
        "knownHostsFile": "k",
        "privateKeyFile": "id",
        "encryption": {"pgpPublicKeyFile": "partner.asc", **encryption},
    }


@pytest.mark.parametrize("pin", ["0123456789abcdef0123456789ABCDEF01234567", "F" * 40])
def test_a_pgp_fingerprint_pin_is_40_hex_digits_in_any_case(pin: str) -> None:
    encryption = parse(SftpSetting, sftp(pgpFingerprint=pin), "test").encryption
    assert encryption is not None
    assert encryption.pgpFingerprint == pin


@pytest.mark.parametrize(
    "pin", ["0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567", "F" * 39, "F" * 64, "G" * 40, 12, ""]
)
def test_a_pgp_fingerprint_pin_that_is_not_one_is_refused(pin: object) -> None:
    assert list(errors(SftpSetting, sftp(pgpFingerprint=pin))) == ["/encryption/pgpFingerprint"]


def test_an_unknown_encryption_key_is_refused() -> None:
    assert errors(SftpSetting, sftp(pgpFingerprints="F" * 40)) == {
        "/encryption/pgpFingerprints": "unknown key"
    }
