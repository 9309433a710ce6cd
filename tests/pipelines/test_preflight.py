"""Checks before a run: each names the file and the key, and none creates anything."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.model.config import Home
from pipelines.model.errors import InvalidInputError, SourceDataError
from pipelines.run import job, preflight
from tests.worlds import make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path, borrowers=20)


def write_sftp(home: Home, body: str) -> None:
    (home.configs / "sftp" / "partner.yaml").write_text(
        "host: sftp.example\nusername: acme\nknownHostsFile: configs/sftp/partner.known_hosts\n" + body
    )


def test_delivery_files_are_checked_only_when_the_run_delivers(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3))
    with pytest.raises(InvalidInputError) as caught:
        preflight.check_plan(plan, deliver=True)
    assert caught.value.source == str(home.configs / "sftp" / "partner.yaml")
    assert caught.value.errors[0].path == "/knownHostsFile"
    preflight.check_plan(plan, deliver=False)

    (home.configs / "sftp" / "partner.known_hosts").write_text("")
    write_sftp(home, "privateKeyFile: keys/none\n")
    with pytest.raises(InvalidInputError, match="keys/none does not exist"):
        preflight.check_plan(job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3)), deliver=True)

    write_sftp(home, "passwordEnv: PARTNER_TEST_PASSWORD\n")
    monkeypatch.delenv("PARTNER_TEST_PASSWORD", raising=False)
    with pytest.raises(InvalidInputError, match="PARTNER_TEST_PASSWORD is not set"):
        preflight.check_plan(job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3)), deliver=True)
    monkeypatch.setenv("PARTNER_TEST_PASSWORD", "x")
    preflight.check_plan(job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3)), deliver=True)


def test_a_duckdb_source_missing_a_table_is_named(home: Home, tmp_path: Path) -> None:
    partial = tmp_path / "partial.duckdb"
    con = duckdb.connect(str(partial))
    con.execute("ATTACH ? AS src (READ_ONLY)", [str(home.warehouse)])
    con.execute("CREATE TABLE borrowers AS SELECT * FROM src.borrowers")
    con.execute("CREATE TABLE contacts AS SELECT * FROM src.contacts")
    con.close()
    with pytest.raises(SourceDataError, match="has no table interactions, do_not_interact, consents"):
        preflight.check_source(partial)
    preflight.check_source(home.warehouse)


def test_checks_create_nothing(home: Home, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.rglob("*"))
    target = tmp_path / "new" / "wh.duckdb"
    preflight.check_warehouse(target)  # a warehouse that does not exist yet is fine, and not made
    with pytest.raises(InvalidInputError, match="is a folder"):
        preflight.check_warehouse(tmp_path)
    with pytest.raises(InvalidInputError, match="before --start"):
        preflight.check_dates(date(2026, 11, 7), date(2026, 11, 1))
    preflight.check_dates(date(2026, 11, 7), date(2026, 11, 7))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_run_failing_inside_leaves_no_empty_export_folder(home: Home) -> None:
    from tests.worlds import without_sftp

    without_sftp(home, "CE-EMAILSVC")
    con = duckdb.connect(str(home.warehouse))
    # Every consent row invalid: far more than maxRejectedShare of the borrowers, a broken feed.
    con.execute("UPDATE consents SET status = 'maybe'")
    con.close()
    plan = job.plan_run(home, "CE-EMAILSVC", date(2026, 11, 3))
    with pytest.raises(SourceDataError):
        job.run_export(plan)
    assert not home.exports.exists()
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT status FROM export_runs").fetchall() == [("failed",)]
        con.close()
        con = duckdb.connect(str(home.warehouse))
        con.execute("UPDATE consents SET status = 'revoked' WHERE status = 'maybe'")
    finally:
        con.close()
    summary = job.run_export(plan)  # the next run takes the lock again and keeps its folder
    assert Path(str(summary["file"])).is_file()
    assert (home.exports / "CE-EMAILSVC" / "2026-11-03" / ".run.lock").exists()


def test_an_unusable_pgp_key_is_refused_before_the_run(home: Home, tmp_path: Path) -> None:
    import gnupg

    gpg = gnupg.GPG(gnupghome=str(tmp_path))
    spec = gpg.gen_key_input(
        key_type="EDDSA", key_curve="ed25519", name_email="p@example", no_protection=True
    )
    signing_only = str(gpg.gen_key(spec).fingerprint)
    subprocess.run(["gpgconf", "--homedir", str(tmp_path), "--kill", "all"], check=False, capture_output=True)
    (home.configs / "sftp" / "partner.known_hosts").write_text("")
    (home.configs / "sftp" / "partner.asc").write_text(gpg.export_keys(signing_only))
    write_sftp(home, "passwordEnv: PATH\nencryption: {pgpPublicKeyFile: configs/sftp/partner.asc}\n")
    plan = job.plan_run(home, "CE-VOICECOL", date(2026, 11, 3))
    with pytest.raises(InvalidInputError, match="has no valid encryption subkey") as caught:
        preflight.check_plan(plan, deliver=True)
    assert str(home.configs / "sftp" / "partner.asc") in str(caught.value)
    preflight.check_plan(plan, deliver=False)
