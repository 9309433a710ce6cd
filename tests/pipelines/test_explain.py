"""`contact-exporter explain`: the run's decision for one contact, with the evidence for each reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from tests.frontdoor import (
    add_exporter,
    address,
    borrower,
    decisions,
    make_home,
    phone,
    run,
    write_csv_source,
)

D = date(2026, 4, 7)  # a Tuesday


def explain(home: Path, *args: str) -> tuple[int, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    out = subprocess.run(
        [sys.executable, "-m", "flows", "--home", str(home), "explain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else out.stderr


def calls(*days: int, details: str = "voiceNoAnswer") -> list[dict[str, object]]:
    return [
        {"id": f"I{d}", "personId": "B1", "channel": "voice", "direction": "outbound", "status": "attempted",
         "statusDetails": details, "startedAt": f"2026-04-0{d}T13:00:00Z"}
        for d in days
    ]  # fmt: skip


def test_explain_gives_the_runs_decision_with_its_evidence(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", maxRejectedShare=1)
    exporter = add_exporter(home, {
        "contactMatchingCriteria": {"contactType": ["phone"]},
        "columnSettings": [{"field": "id"}],
        "checkCanInteractData": {"theme": "opsCollDebt", "isAutodialed": True},
    })  # fmt: skip
    source = write_csv_source(
        tmp_path / "src",
        borrowers=[borrower("B1", "America/Chicago"), borrower("B2")],
        contacts=[
            phone("C1"),
            address("A1", "02108", "ma"),  # Massachusetts: 2 calls in 7 days
            phone("C2", "B2"),
            address("A2", "96813", "HI", "B2", label="mailing"),  # rejected
        ],
        interactions=calls(3, 5),
        do_not_interact=[
            {"id": "N1", "personId": "B1", "channels": ["voice"], "themes": ["all"], "startDate": "2026-04-01",
             "endDate": "2026-04-08"},
        ],
        consents=[
            {"personId": "B1", "name": "autodialedColl", "status": "consented", "updatedAt": "2026-01-01T00:00:00Z"},
            {"personId": "B2", "name": "autodialedColl", "status": "consented", "updatedAt": "2026-01-01T00:00:00Z"},
        ],
    )  # fmt: skip
    run(home, exporter, D, source)
    recorded = decisions(home)

    code, got = explain(home.root, exporter, "C1", "--as-of", D.isoformat(), "--source", str(source))
    assert code == 0, got
    assert got["reasons"] == recorded["C1"] == ["DO_NOT_INTERACT", "FREQUENCY_LIMIT"]
    assert got["canInteract"] is False
    assert got["exported"] is False
    assert got["nextEligibleDate"] == "2026-04-10"  # the DNI ends Apr 8, the Apr 3 call ages out Apr 10
    evidence = got["evidence"]
    assert evidence["DO_NOT_INTERACT"] == {"dniIds": ["N1"]}
    (limit,) = evidence["FREQUENCY_LIMIT"]["limits"]
    assert (limit["state"], limit["maxAttempts"], limit["counted"]) == ("MA", 2, 2)
    assert [a["startedAt"] for a in limit["attempts"]] == ["2026-04-03T13:00:00Z", "2026-04-05T13:00:00Z"]
    zones = {z["zone"]: z["localTime"] for z in got["candidateZones"]}
    assert zones == {
        "America/Chicago": "2026-04-07T11:00-05:00",
        "America/New_York": "2026-04-07T12:00-04:00",
    }
    assert "+1212" not in json.dumps(got)  # no contact values

    code, other = explain(home.root, exporter, "C2", "--as-of", D.isoformat(), "--source", str(source))
    assert code == 0
    assert other["reasons"] == recorded["C2"] == ["SOURCE_ROW_REJECTED"]
    assert other["nextEligibleDate"] is None
    assert other["evidence"]["SOURCE_ROW_REJECTED"]["rejectedRows"] == [
        {"tableName": "contacts", "rowKey": "A2", "checks": ["label_in_vocabulary"]}
    ]

    code, rejected = explain(home.root, exporter, "A2", "--as-of", D.isoformat(), "--source", str(source))
    assert code == 0
    assert rejected["exported"] is False
    assert rejected["rejectedRows"] == [
        {"tableName": "contacts", "rowKey": "A2", "checks": ["label_in_vocabulary"]}
    ]

    code, missing = explain(home.root, exporter, "C9", "--as-of", D.isoformat(), "--source", str(source))
    assert code == 2
    assert missing["status"] == 404
