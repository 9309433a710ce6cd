"""`runs list | show | diff` over real runs recorded in a warehouse, as a user types them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from tests.flows.test_cli import cli
from tests.frontdoor import add_exporter, borrower, make_home, phone, run, write_csv_source

AS_OF = date(2026, 4, 7)
DNI = {"id": "N1", "personId": "B2", "channels": '["voice"]', "themes": '["all"]', "startDate": "2026-04-01"}


def test_runs_list_show_and_diff_tell_what_changed_and_why(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home)
    people = {
        "borrowers": [borrower("B1"), borrower("B2")],
        "contacts": [phone("C1", "B1"), phone("C2", "B2")],
    }
    source = write_csv_source(tmp_path / "src", **people)
    first = run(home, exporter_id, AS_OF, source)
    write_csv_source(tmp_path / "src", **people, do_not_interact=[DNI])
    second = run(home, exporter_id, AS_OF, source)

    listed = cli(home.root, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["runId"] for r in runs] == [second["runId"]], "a rerun of the same date replaces the first"
    table = cli(home.root, "runs", "list")
    assert second["runId"] in table.stdout
    assert "exported" in table.stdout.splitlines()[0]

    shown = json.loads(cli(home.root, "runs", "show", second["runId"], "--json").stdout)
    assert shown["blockedByReason"] == [{"reason": "DO_NOT_INTERACT", "contacts": 1}]
    assert shown["exported"] == 1

    # the first run's screening rows were replaced; diff against a run of another day instead
    third = run(home, exporter_id, date(2026, 4, 8), write_csv_source(tmp_path / "src", **people))
    diff = json.loads(cli(home.root, "runs", "diff", second["runId"], third["runId"], "--json").stdout)
    assert diff["changes"]["newlyAllowed"]["contacts"] == 1
    assert diff["changes"]["newlyAllowed"]["reasons"] == {"DO_NOT_INTERACT": 1}
    assert diff["changes"]["newlyAllowed"]["first"][0]["contactId"] == "C2"
    text = cli(home.root, "runs", "diff", second["runId"], third["runId"]).stdout
    assert "newlyAllowed: 1 contacts (reasons: DO_NOT_INTERACT 1)" in text
    assert first["runId"] != second["runId"]


def test_an_unknown_run_is_named(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    missing = cli(home.root, "runs", "show", "RUN-NOPE")
    assert missing.returncode == 2
    assert "no warehouse" in missing.stderr or "RUN-NOPE" in missing.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter_id = add_exporter(home)
    source = write_csv_source(tmp_path / "src", borrowers=[borrower("B1")], contacts=[phone("C1", "B1")])
    out = cli(home.root, "run", exporter_id, "--as-of", "2026-04-07", "--source", str(source), "--dry-run")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["dryRun"] is True
    assert plan["partitions"] == 1
    assert plan["file"].endswith(f"{exporter_id}/2026-04-07/{exporter_id}_20260407.csv")
    assert plan["delivery"].startswith("none: no sftpSettingId")
    assert not (home.root / "data").exists(), "a dry run writes nothing"
    days = cli(home.root, "backfill", exporter_id, "--start", "2026-04-06", "--end", "2026-04-08",
               "--source", str(source), "--dry-run")  # fmt: skip
    assert [d["asOfDate"] for d in json.loads(days.stdout)["dates"]] == [
        "2026-04-06",
        "2026-04-07",
        "2026-04-08",
    ]


def test_a_campaign_dry_run_says_which_columns_its_query_reads(tmp_path: Path) -> None:
    """The example campaign reads five columns of two tables, not the book; a query with `*` reads
    every column, and the dry run says so."""
    from tests.worlds import make_home as sample_home

    home = sample_home(tmp_path / "home", borrowers=50)
    dry_run = ("campaigns", "run", "collections-daily", "--as-of", "2026-04-07", "--no-deliver", "--dry-run")
    out = cli(home.root, *dry_run)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["campaignReads"] == {
        "borrowers": ["companyId", "id"],
        "interactions": ["id", "personId", "theme"],
    }
    assert not (home.root / "data" / "exports").exists(), "a dry run writes nothing"
    config = home.root / "configs" / "campaigns" / "collections-daily.yaml"
    config.write_text(config.read_text().replace("SELECT b.id", "SELECT b.*"))
    out = cli(home.root, *dry_run)
    assert json.loads(out.stdout)["campaignReads"].startswith("every column"), out.stderr
    config.write_text(config.read_text().replace("SELECT b.*", "SELEC b.id"))
    out = cli(home.root, *dry_run)  # a query that is not one SELECT: refused as a run refuses it
    assert out.returncode == 2, out.stderr
    assert f"{config}: /query: not valid DuckDB SQL" in out.stderr
