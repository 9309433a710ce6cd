"""Property test through the front door: random small worlds with dirty rows, written as CSV files and
run by `job` (reading, validation, matching, screening, the warehouse), agree with the row-at-a-time
reference (tests/reference/source.py: its own row checks, matching and fail-closed rule, then the
reference guard)."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.model.errors import SourceDataError
from tests.frontdoor import COMPANY, HEADERS, add_exporter, csv_text, decisions, make_home, query, run
from tests.reference.source import reference_run

pytestmark = pytest.mark.slow

ZONES = ["America/New_York", "America/Chicago", "Pacific/Honolulu", "America/Los_Angeles", None]
PHONES = ["+12125550123", "+18085550123", "+16175550123", "+13105550123", "2125550123"]
PLACES = [("96813", "HI"), ("96813", "hi"), ("02108", "ma"), ("02108", " MA"), (None, "MA"), ("90210", "CA"),
          ("10001", "NY"), ("96813", "Hawaii"), (None, None)]  # fmt: skip
DIRT = {
    "label": ["mailing"],
    "valid": ["no"],
    "status": ["Archived"],
    "affiliation": ["Self"],
}
AS_OF = [date(2026, 4, 7), date(2026, 3, 8), date(2026, 11, 1), date(2026, 7, 15)]


def world(rnd: random.Random, as_of: date) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in HEADERS}
    short: dict[str, str] = {}
    noon_ish = f"{as_of.isoformat()}T15:00:00Z"
    for b in range(rnd.randint(2, 6)):
        pid = f"B{b}"
        zone = rnd.choice(ZONES) if rnd.random() > 0.03 else "Eastern"
        raw["borrowers"].append({"id": pid, "companyId": COMPANY, "timezone": zone})
        for k in range(rnd.randint(1, 3)):
            cid = f"{pid}-C{k}"
            kind = rnd.choice(["phone", "phone", "email", "address"])
            row: dict[str, Any] = {
                "id": cid, "personId": pid, "contactType": kind, "label": rnd.choice(["personal", "home", "work"]),
                "affiliation": rnd.choice(["self", "self", "self", "spouse"]),
                "status": rnd.choice(["primary", "primary", "secondary", "archived"]),
                "valid": rnd.choice(["true", "true", "", "false"]),
                "receiveTextMessages": rnd.choice(["true", "false", ""]),
                "authorizedThirdParty": rnd.choice(["", "", "true"]),
            }  # fmt: skip
            if kind == "phone":
                row["value"] = rnd.choice(PHONES)
            elif kind == "email":
                row["value"] = f"{cid.lower()}@example.com"
            else:
                row["postalCode"], row["state"] = rnd.choice(PLACES)
            if rnd.random() < 0.08:
                key = rnd.choice(sorted(DIRT))
                row[key] = rnd.choice(DIRT[key])
            if rnd.random() < 0.15:
                row["createdAt" if rnd.random() < 0.5 else "archivedAt"] = rnd.choice(
                    [f"{(as_of + timedelta(days=d)).isoformat()}T12:00:00Z" for d in (-3, 1, 5)]
                )
            if rnd.random() < 0.03:
                short[cid] = pid  # written cut short below
                continue
            raw["contacts"].append(row)
        for k in range(rnd.randint(0, 4)):
            day = as_of - timedelta(days=rnd.randint(0, 8))
            raw["interactions"].append(
                {"id": f"{pid}-I{k}", "personId": pid, "channel": "voice" if rnd.random() > 0.03 else "pigeon",
                 "direction": "outbound", "status": "attempted",
                 "statusDetails": rnd.choice(["voiceNoAnswer", "voiceSpokeWithFirstParty", "voiceBusy", ""]),
                 "startedAt": f"{day.isoformat()}T{rnd.choice(['13:00', '16:59', '17:01', '03:00'])}:00Z"}
            )  # fmt: skip
        if rnd.random() < 0.3:
            raw["do_not_interact"].append(
                {"id": f"{pid}-N", "personId": pid, "channels": json.dumps(rnd.choice([["voice"], ["all"], ["fax"]])),
                 "themes": json.dumps(["all"]), "startDate": (as_of - timedelta(days=2)).isoformat(),
                 "endDate": rnd.choice(["", (as_of + timedelta(days=1)).isoformat()]),
                 "daysOfWeek": rnd.choice(["", "[1, 2, 3]"]), "timezone": ""}
            )  # fmt: skip
        if rnd.random() < 0.4:
            raw["consents"].append(
                {"personId": pid, "name": "autodialedColl", "status": rnd.choice(["consented", "revoked", "maybe"]),
                 "updatedAt": noon_ish if rnd.random() < 0.3 else "2026-01-01T00:00:00Z"}
            )  # fmt: skip
    return raw, short


def write(folder: Path, raw: dict[str, list[dict[str, Any]]], short: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, header in HEADERS.items():
        text = csv_text(header, raw[name])
        if name == "contacts":
            text += "".join(f"{cid},{pid},phone,personal,self,primary\n" for cid, pid in short.items())
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.integers(0, 2**32))
def test_run_agrees_with_the_reference_on_dirty_worlds(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    rnd = random.Random(seed)
    root = tmp_path_factory.mktemp("world")
    as_of = rnd.choice(AS_OF)
    share = rnd.choice([0.01, 0.34, 1.0])
    policy = {"maxRejectedShare": share}
    home = make_home(root / "home", rnd.choice(["America/New_York", "America/Chicago"]), **policy)
    check = rnd.choice([{"theme": "opsCollDebt"}, {"theme": "opsCollDebt", "isAutodialed": True}, None])
    body = {
        "contactMatchingCriteria": {"contactType": rnd.choice([["phone"], ["phone", "email", "address"]])},
        "columnSettings": [{"field": "id"}],
        "checkCanInteractData": check,
    }
    exporter = add_exporter(home, body)
    raw, short = world(rnd, as_of)
    source = write(root / "src", raw, short)
    company = {"id": COMPANY, "timezone": home.company(COMPANY).timezone, "policy": policy}
    expected, rejected = reference_run(raw, short, company, body, as_of)
    if expected is None:
        with pytest.raises(SourceDataError, match="maxRejectedShare"):
            run(home, exporter, as_of, source)
    else:
        run(home, exporter, as_of, source)
        assert decisions(home) == expected
    assert set(query(home, "SELECT tableName, rowKey FROM rejected_rows")) == rejected
