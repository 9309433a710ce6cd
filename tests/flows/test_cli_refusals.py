"""The CLI refuses bad configs and bodies early, with exit 2 and a clear message, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worlds import SEED_REQUEST, make_home


def cli(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_home(tmp_path_factory.mktemp("refusals"), borrowers=40).root


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            json.dumps({**SEED_REQUEST, "name": "Caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
            b"not UTF-8",
        ),
        (b"[" * 100_000 + b"]" * 100_000, b"nested more than 32"),
        (json.dumps({**SEED_REQUEST, "name": "x" * 2_000_000}).encode(), b"at most 1,048,576"),
        (
            json.dumps(
                {**SEED_REQUEST, "checkCanInteractData": {"theme": "opsCollDebt", "isAutodialed": "no"}}
            ).encode(),
            b"/checkCanInteractData/isAutodialed",
        ),
        (
            json.dumps({**SEED_REQUEST, "name": "HUGE"}).replace('"HUGE"', "9" * 5000).encode(),
            b"/name: is an integer of 5,000 digits",
        ),
    ],
)
def test_bad_bodies_exit_2_with_a_message(home: Path, raw: bytes, message: bytes) -> None:
    out = cli(home, "exporters", "create", "--file", "-", stdin=raw)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert b"Traceback" not in out.stderr
    assert json.loads(out.stdout)["status"] in (400, 422)


def test_non_utf8_company_yaml_exits_2(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", borrowers=20).root
    (home / "configs" / "companies" / "CP-ACME.yaml").write_bytes(
        b"id: CP-ACME\nname: Caf\xe9\ntimezone: UTC\n"
    )
    out = cli(home, "run", "CE-VOICECOL", "--as-of", "2026-11-03", "--no-deliver")
    assert out.returncode == 2, out.stderr
    assert b"not UTF-8" in out.stderr
    assert b"Traceback" not in out.stderr


def test_campaign_with_unknown_exporter_fails_before_its_query(home: Path) -> None:
    campaigns = home / "configs" / "campaigns"
    # The query would fail loudly if it ran: the exporter check must come first.
    (campaigns / "ghost.yaml").write_text("exporterId: CE-NOBODY22\nquery: SELECT id FROM no_such_table\n")
    out = cli(home, "campaigns", "run", "ghost", "--as-of", "2026-11-03", "--no-deliver")
    assert out.returncode == 2, out.stderr
    assert b"CE-NOBODY22" in out.stderr
    assert b"no_such_table" not in out.stderr + out.stdout


def test_campaign_config_with_a_string_timeout_is_refused(home: Path) -> None:
    campaigns = home / "configs" / "campaigns"
    (campaigns / "slow.yaml").write_text(
        'exporterId: CE-VOICECOL\nquery: SELECT id FROM borrowers\ntimeoutSeconds: "60"\n'
    )
    out = cli(home, "campaigns", "run", "slow", "--as-of", "2026-11-03", "--no-deliver")
    assert out.returncode == 2, out.stderr
    assert b"/timeoutSeconds" in out.stderr


def test_campaign_config_with_a_timeout_too_long_to_read_is_refused(home: Path) -> None:
    campaigns = home / "configs" / "campaigns"
    (campaigns / "endless.yaml").write_text(
        "exporterId: CE-VOICECOL\nquery: SELECT id FROM borrowers\ntimeoutSeconds: " + "9" * 5000 + "\n"
    )
    out = cli(home, "campaigns", "run", "endless", "--as-of", "2026-11-03", "--no-deliver")
    assert out.returncode == 2, out.stderr
    assert b"/timeoutSeconds: is an integer of 5,000 digits" in out.stderr
    assert b"unexpected" not in out.stderr


@pytest.mark.parametrize("damage", ["empty", "damaged"])
def test_a_damaged_warehouse_is_named_with_what_to_do(home: Path, tmp_path: Path, damage: str) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    good = (home / "data" / "warehouse.duckdb").read_bytes()
    # damaged: the header of a real database, then blocks that fail their checksum
    warehouse.write_bytes(b"" if damage == "empty" else good[:4096] + bytes(len(good) - 4096))
    run = cli(
        home, "run", "CE-VOICECOL", "--as-of", "2026-11-03", "--no-deliver", "--warehouse", str(warehouse)
    )
    sql = cli(home, "sql", "--warehouse", str(warehouse), "SELECT count(*) FROM export_runs")
    for out in (run, sql):
        assert out.returncode == 2, out.stderr
        first = out.stderr.decode().splitlines()[0]
        assert first.startswith(f"error: DuckDB file {warehouse} is ")
        assert "restore it from a backup, or move it aside" in first
        assert b"unexpected" not in out.stderr


def test_exporters_list_skips_an_unreadable_file_with_a_warning(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", borrowers=20).root
    (home / "configs" / "exporters" / "CE-VOICECOL.json").write_bytes(b"{ not json")
    out = cli(home, "exporters", "list")
    assert out.returncode == 0, out.stderr
    assert [e["id"] for e in json.loads(out.stdout)["data"]] == ["CE-EMAILSVC"]
    assert b"exporter CE-VOICECOL cannot be read" in out.stderr
    got = cli(home, "exporters", "get", "CE-VOICECOL")
    assert got.returncode == 2
    assert b"stored exporter CE-VOICECOL" in got.stderr
    assert str(home).encode() not in got.stdout
