"""`explain` tells what the day's run recorded (what was sent), and says when the source, evaluated
now, would decide otherwise."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipelines.lookup import explain
from pipelines.model.errors import NotFoundError
from pipelines.run import job
from tests.frontdoor import add_exporter, borrower, make_home, phone, run, write_csv_source

AS_OF = date(2026, 4, 7)
DNI = {"id": "N1", "personId": "B1", "channels": '["voice"]', "themes": '["all"]', "startDate": "2026-04-01"}


def test_explain_gives_the_recorded_decision_and_notices_a_changed_source(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home)
    source = write_csv_source(tmp_path / "src", borrowers=[borrower()], contacts=[phone()])
    summary = run(home, exporter_id, AS_OF, source)
    plan = job.plan_run(home, exporter_id, AS_OF, source=source)

    same = explain.explain_recorded(plan.exporter, plan.company, source, home.warehouse, "C1", AS_OF)
    assert same["recorded"]["runId"] == summary["runId"]
    assert (same["canInteract"], same["reasons"], same["sourceChanged"]) == (True, [], False)

    write_csv_source(tmp_path / "src", borrowers=[borrower()], contacts=[phone()], do_not_interact=[DNI])
    later = explain.explain_recorded(plan.exporter, plan.company, source, home.warehouse, "C1", AS_OF)
    assert (later["canInteract"], later["reasons"], later["exported"]) == (True, [], True), "what was sent"
    assert later["sourceChanged"] is True
    assert later["now"]["reasons"] == ["DO_NOT_INTERACT"]
    assert summary["runId"] in later["note"]


def test_explain_without_a_recorded_run_says_how_to_get_one(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    exporter_id = add_exporter(home)
    source = write_csv_source(tmp_path / "src", borrowers=[borrower()], contacts=[phone()])
    plan = job.plan_run(home, exporter_id, AS_OF, source=source)
    with pytest.raises(NotFoundError) as caught:
        explain.explain_recorded(plan.exporter, plan.company, source, home.warehouse, "C1", AS_OF)
    assert "--recompute" in str(caught.value)
