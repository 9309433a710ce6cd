"""POST /campaign-workers/compliance-checks against a real uvicorn server over a sample home.

The home's warehouse file is both the source the server checks against and the warehouse a batch
run wrote its screening rows to before the server started.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from pipelines.io import duck
from pipelines.model.config import Home
from pipelines.rules import compliance
from pipelines.run import job
from tests.flows.served import API_KEY, serving
from tests.frontdoor import query
from tests.worlds import make_home, without_sftp

pytestmark = pytest.mark.integration

CHECKS = "/campaign-workers/compliance-checks"
EXPORTER = "CE-VOICECOL"
AS_OF = date(2026, 12, 1)


class Served:
    def __init__(self, url: str, home: Home, log: Path):
        self.url, self.home, self.log = url, home, log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = make_home(tmp_path_factory.mktemp("checks-home"), with_sftp=False)
    without_sftp(home, EXPORTER)
    job.run_export(job.plan_run(home, EXPORTER, AS_OF), deliver_enabled=False)
    log_path = home.root.parent / "server.log"
    with serving(home.root, log_path, "/health") as (url, _):
        yield Served(url, home, log_path)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers={"X-API-KEY": API_KEY}, timeout=60) as c:
        yield c


def batch_rows(home: Home) -> dict[str, tuple[bool, list[str], str | None]]:
    rows = query(home, "SELECT contactId, canInteract, reasons, nextEligibleDate FROM screening_results")
    return {str(c): (ok, list(r), n.isoformat() if n else None) for c, ok, r, n in rows}


def post(client: httpx.Client, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(CHECKS, json=body)
    assert response.status_code == status, response.text
    out: dict[str, Any] = response.json()
    assert out["status"] == status
    return out


def test_at_the_batch_instant_the_check_gives_the_batch_row(client: httpx.Client, served: Served) -> None:
    batch = batch_rows(served.home)
    assert len({ok for ok, _, _ in batch.values()}) == 2, "the sample must allow some and block some"
    assert any(n is not None for _, _, n in batch.values())
    noon = compliance.as_of_instant(served.home.company("CP-ACME"), AS_OF)
    ids = sorted(batch)
    got: dict[str, tuple[bool, list[str], str | None]] = {}
    for start in range(0, len(ids), 1000):
        out = post(
            client, {"exporterId": EXPORTER, "contactIds": ids[start : start + 1000], "at": noon.isoformat()}
        )
        assert out["message"] == "success"
        assert out["errors"] == []
        assert [r["contactId"] for r in out["data"]] == ids[start : start + 1000]
        assert {r["at"] for r in out["data"]} == {"2026-12-01T17:00:00Z"}
        got |= {r["contactId"]: (r["canInteract"], r["reasons"], r["nextEligibleDate"]) for r in out["data"]}
    assert got == batch


def test_at_defaults_to_now_and_takes_an_offset(client: httpx.Client, served: Served) -> None:
    contact = sorted(batch_rows(served.home))[0]
    before = datetime.now(UTC).replace(microsecond=0)
    out = post(client, {"exporterId": EXPORTER, "contactIds": [contact]})
    after = datetime.now(UTC)
    (row,) = out["data"]
    assert before <= datetime.fromisoformat(row["at"]) <= after
    assert set(row) == {
        "contactId", "personId", "channel", "matched", "canInteract", "reasons", "nextEligibleDate", "at"
    }  # fmt: skip

    # 03:00 in New York is outside contact hours wherever the borrower is in the US
    out = post(client, {"exporterId": EXPORTER, "contactIds": [contact], "at": "2026-12-02T03:00:00-05:00"})
    (row,) = out["data"]
    assert row["at"] == "2026-12-02T08:00:00Z"
    assert "OUTSIDE_CONTACT_HOURS" in row["reasons"]
    assert row["canInteract"] is False


def test_unknown_ids_are_listed_in_errors(client: httpx.Client, served: Served) -> None:
    known = sorted(batch_rows(served.home))[:2]
    out = post(client, {"exporterId": EXPORTER, "contactIds": ["CT-NOBODY", known[1], known[0], known[1]]})
    assert [r["contactId"] for r in out["data"]] == [known[1], known[0]]
    assert out["errors"] == [{"path": "/contactIds/0", "message": "no such contact in the source"}]
    out = post(client, {"exporterId": EXPORTER, "contactIds": ["CT-NOBODY"]})
    assert out["data"] == []
    assert len(out["errors"]) == 1


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"exporterId": EXPORTER, "contactIds": [f"CT-{i}" for i in range(1001)]}, "/contactIds"),
        ({"exporterId": EXPORTER, "contactIds": []}, "/contactIds"),
        ({"exporterId": EXPORTER}, "/contactIds"),
        ({"contactIds": ["C1"]}, "/exporterId"),
        ({"exporterId": EXPORTER, "contactIds": [7]}, "/contactIds/0"),
        ({"exporterId": EXPORTER, "contactIds": ["C1"], "at": "2026-12-01T12:00:00"}, "/at"),
        ({"exporterId": EXPORTER, "contactIds": ["C1"], "at": "2026-12-01"}, "/at"),
        ({"exporterId": EXPORTER, "contactIds": ["C1"], "at": 1764608400}, "/at"),
        ({"exporterId": EXPORTER, "contactIds": ["C1"], "at": "noon"}, "/at"),
        ({"exporterId": EXPORTER, "contactIds": ["C1"], "source": "/etc"}, "/source"),
    ],
)
def test_invalid_requests_are_422_with_a_json_path(
    client: httpx.Client, body: dict[str, Any], path: str
) -> None:
    out = post(client, body, 422)
    assert [e["path"] for e in out["errors"]] == [path]
    assert "data" not in out


def test_bad_json_unknown_exporter_and_missing_key(client: httpx.Client, served: Served) -> None:
    response = client.post(CHECKS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["status"] == 400
    out = post(client, {"exporterId": "CE-AAAAAAAA", "contactIds": ["C1"]}, 404)
    assert "data" not in out
    for headers in ({}, {"X-API-KEY": "wrong"}):
        response = httpx.post(
            served.url + CHECKS,
            json={"exporterId": EXPORTER, "contactIds": ["C1"]},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 401
        assert response.json()["status"] == 401


def test_openapi_lists_the_endpoint(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][CHECKS]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["exporterId", "contactIds"]
    assert body["properties"]["contactIds"]["maxItems"] == 1000
    assert body["additionalProperties"] is False


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_checks_are_read_only_and_logged_without_contact_values(client: httpx.Client, served: Served) -> None:
    home = served.home
    ids = sorted(batch_rows(home))[:50]
    before = _files(home.root)
    post(client, {"exporterId": EXPORTER, "contactIds": [*ids, "CT-NOBODY"], "at": "2026-12-01T15:00:00Z"})
    post(client, {"exporterId": EXPORTER, "contactIds": ids})
    assert _files(home.root) == before  # no file written or changed: warehouse, exports, configs
    values = [
        str(v)
        for (v,) in query(
            home, "SELECT value FROM contacts WHERE id IN (SELECT unnest(?)) AND value IS NOT NULL", [ids]
        )
    ]
    assert values
    log = served.log.read_text()
    assert "compliance check, exporter CE-VOICECOL at 2026-12-01T15:00:00Z: 51 ids," in log
    assert not [v for v in values if v in log]


def test_a_change_to_the_source_is_seen_by_the_next_check(client: httpx.Client, served: Served) -> None:
    home = served.home
    batch = batch_rows(home)
    contact = next(c for c, (ok, _, _) in sorted(batch.items()) if ok)
    (person,) = query(home, "SELECT personId FROM contacts WHERE id = ?", [contact])[0]
    body = {"exporterId": EXPORTER, "contactIds": [contact], "at": "2026-12-01T17:00:00Z"}
    assert post(client, body)["data"][0]["reasons"] == []

    def write(sql: str, params: list[Any]) -> None:
        with duck.connect(home.warehouse) as con:
            con.execute(sql, params)

    write(
        "INSERT INTO do_not_interact (id, personId, channels, themes, startDate) VALUES (?, ?, ?, ?, ?)",
        ["DNI-CHECK-TEST", person, ["all"], ["all"], date(2026, 11, 1)],
    )
    try:
        assert post(client, body)["data"][0]["reasons"] == ["DO_NOT_INTERACT"]
    finally:
        write("DELETE FROM do_not_interact WHERE id = ?", ["DNI-CHECK-TEST"])
    assert post(client, body)["data"][0]["reasons"] == []


def test_the_server_does_not_hold_the_source_open(client: httpx.Client, served: Served) -> None:
    """Between checks, a writer opens the file at once (DuckDB allows one writer process)."""
    post(client, {"exporterId": EXPORTER, "contactIds": sorted(batch_rows(served.home))[:3]})
    con = duckdb.connect(str(served.home.warehouse))  # read-write, without waiting for any lock
    con.close()


def test_an_unreadable_source_is_503_without_its_path(client: httpx.Client, served: Served) -> None:
    warehouse = served.home.warehouse
    moved = warehouse.with_name("moved-away.duckdb")
    warehouse.rename(moved)
    try:
        out = post(client, {"exporterId": EXPORTER, "contactIds": ["CT-000000001"]}, 503)
    finally:
        moved.rename(warehouse)
    assert (
        out["message"] == "the source of compliance checks cannot be read or is invalid; see the server log"
    )
    assert str(served.home.root) not in out["message"]
    assert "warehouse.duckdb does not exist" in served.log.read_text()
    assert post(client, {"exporterId": EXPORTER, "contactIds": ["CT-000000001"]})["data"]


def test_concurrent_checks_give_the_answers_of_one_at_a_time(client: httpx.Client, served: Served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = sorted(batch_rows(served.home))
    bodies = [
        {"exporterId": EXPORTER, "contactIds": ids[i::7][:40], "at": f"2026-12-0{1 + i % 3}T1{i}:30:00Z"}
        for i in range(7)
    ]
    alone = [post(client, body) for body in bodies]
    with ThreadPoolExecutor(max_workers=7) as pool:
        together = list(pool.map(lambda body: post(client, body), bodies * 2))
    assert together == alone * 2


def test_the_server_says_at_start_when_its_source_cannot_serve_checks_well(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder of CSV files serves checks, but each check reads the files whole: the log says so
    at start, naming them; a folder without a table says it cannot serve checks at all."""
    import logging

    from flows import checks_api
    from pipelines.io.source_ref import SourceRef
    from tests.frontdoor import borrower, phone, write_csv_source

    source = write_csv_source(tmp_path / "csv", borrowers=[borrower("B1")], contacts=[phone("C1", "B1")])
    with caplog.at_level(logging.WARNING, logger="flows.checks_api"):
        checks_api.preload(SourceRef.parse(str(source))).join(timeout=60)
    assert "holds borrowers.csv, consents.csv, contacts.csv" in caplog.text
    assert "cannot serve" not in caplog.text
    caplog.clear()
    (source / "consents.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="flows.checks_api"):
        checks_api.preload(SourceRef.parse(str(source))).join(timeout=60)
    assert "cannot serve compliance checks: no table consents" in caplog.text
