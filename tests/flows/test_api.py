"""HTTP API against a real uvicorn server in a subprocess, sharing its home with the test process."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.io.store import ExporterStore
from pipelines.model.config import Home
from tests.flows.served import API_KEY, REPO, free_port, serve_command, server_env, serving
from tests.worlds import SEED_REQUEST

pytestmark = pytest.mark.integration

BASE = "/campaign-workers/contact-exporters"


def seed(**extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_REQUEST)
    body.update(extra)
    return body


@dataclass
class Server:
    url: str
    home: Home
    process: subprocess.Popen[str]


def _make_home(root: Path) -> Home:
    companies = root / "configs" / "companies"
    companies.mkdir(parents=True)
    (companies / "CP-TEST.yaml").write_text("id: CP-TEST\ntimezone: America/New_York\n")
    return Home(root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = _make_home(tmp_path_factory.mktemp("api-home"))
    with serving(home.root, home.root / "server.log", BASE) as (url, process):
        yield Server(url, home, process)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": API_KEY}, timeout=30) as c:
        yield c


@pytest.fixture
def clean_store(server: Server) -> ExporterStore:
    """An empty exporter folder for tests that count what is listed."""
    for path in server.home.exporters_dir.glob("*.json"):
        path.unlink()
    return ExporterStore(server.home)


def _assert_envelope_status(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ---------------------------------------------------------------- happy path


def test_create_get_list_update(client: httpx.Client, clean_store: ExporterStore) -> None:
    created = _assert_envelope_status(client.post(BASE, json=seed(externalId="crm-7")), 200)
    assert created["message"] == "success"
    data = created["data"]
    assert data["contactMatchingCriteria"] == SEED_REQUEST["contactMatchingCriteria"]
    assert data["columnSettings"] == SEED_REQUEST["columnSettings"]
    assert data["checkCanInteractData"]["theme"] == "agentNotification"
    assert data["companyId"] == "CP-TEST"
    ident = data["id"]

    fetched = _assert_envelope_status(client.get(f"{BASE}/{ident}"), 200)
    assert fetched == created
    assert _assert_envelope_status(client.get(f"{BASE}/ext-crm-7"), 200) == created

    listed = _assert_envelope_status(client.get(BASE), 200)
    assert listed == {
        "status": 200,
        "total": 1,
        "count": 1,
        "nextUrl": None,
        "previousUrl": None,
        "data": [data],
    }

    updated = _assert_envelope_status(
        client.put(f"{BASE}/{ident}", json=seed(name="renamed", checkCanInteractData=None)), 200
    )
    assert updated["data"]["id"] == ident
    assert updated["data"]["name"] == "renamed"
    assert updated["data"]["checkCanInteractData"] is None
    assert "externalId" not in updated["data"]  # not sent in the PUT, so not set
    assert updated["data"]["createdAt"] == data["createdAt"]
    assert updated["data"]["updatedAt"] > data["updatedAt"]
    assert _assert_envelope_status(client.get(f"{BASE}/{ident}"), 200) == updated
    # The server wrote the same file the CLI reads.
    assert clean_store.get(ident).name == "renamed"


def test_write_through_the_store_is_visible_over_http(client: httpx.Client, server: Server) -> None:
    store = ExporterStore(server.home)  # what the CLI does, in another process than the server
    made = store.create(seed(name="from the CLI"), "cli.json")
    body = _assert_envelope_status(client.get(f"{BASE}/{made.id}"), 200)
    assert body["data"]["name"] == "from the CLI"

    store.update(made.id, seed(name="changed by the CLI"), "cli.json")
    body = _assert_envelope_status(client.get(f"{BASE}/{made.id}"), 200)
    assert body["data"]["name"] == "changed by the CLI"


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-KEY": "wrong"}, {"X-API-KEY": ""}, {"X-API-KEY": API_KEY + "x"}]
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", BASE),
        ("POST", BASE),
        ("GET", f"{BASE}/CE-AAAAAAAA"),
        ("PUT", f"{BASE}/CE-AAAAAAAA"),
        ("GET", "/"),
    ],
)
def test_missing_or_wrong_key_is_refused(
    server: Server, headers: dict[str, str], method: str, path: str
) -> None:
    before = (
        sorted(p.name for p in server.home.exporters_dir.glob("*"))
        if server.home.exporters_dir.exists()
        else []
    )
    response = httpx.request(method, server.url + path, headers=headers, json=seed(), timeout=30)
    assert response.status_code == 401
    assert response.json() == {"status": 401, "message": "invalid or missing X-API-KEY", "errors": []}
    after = (
        sorted(p.name for p in server.home.exporters_dir.glob("*"))
        if server.home.exporters_dir.exists()
        else []
    )
    assert after == before


def test_key_header_name_is_case_insensitive(server: Server) -> None:
    response = httpx.get(server.url + BASE, headers={"x-api-key": API_KEY}, timeout=30)
    assert response.status_code == 200


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("ident", ["CE-AAAAAAAA", "ext-nobody", "..%2Fetc", "CE-aaaaaaaa"])
def test_unknown_ids_are_404(client: httpx.Client, ident: str) -> None:
    body = _assert_envelope_status(client.get(f"{BASE}/{ident}"), 404)
    assert "not found" in body["message"].lower()
    assert "data" not in body
    body = _assert_envelope_status(client.put(f"{BASE}/{ident}", json=seed()), 404)
    assert "data" not in body


def test_unknown_route_and_method_use_the_envelope(client: httpx.Client) -> None:
    assert _assert_envelope_status(client.get("/nothing-here"), 404)["errors"] == []
    assert _assert_envelope_status(client.delete(BASE), 405)["errors"] == []


def test_validation_errors_are_422_with_json_paths(client: httpx.Client) -> None:
    body = seed(columnSettings=[{"field": "value"}, {"field": "ssn", "outputName": "x\n"}], extra=1)
    result = _assert_envelope_status(client.post(BASE, json=body), 422)
    paths = {e["path"] for e in result["errors"]}
    assert paths == {"/columnSettings/1/field", "/columnSettings/1/outputName", "/extra"}
    assert "data" not in result

    result = _assert_envelope_status(client.post(BASE, json=seed(contactMatchingCriteria={"label": []})), 422)
    assert [e["path"] for e in result["errors"]] == ["/contactMatchingCriteria/label"]

    result = _assert_envelope_status(client.post(BASE, json=seed(companyId="CP-OTHER")), 422)
    assert [e["path"] for e in result["errors"]] == ["/companyId"]
    assert "CP-TEST" in result["errors"][0]["message"]


def test_put_validates_too(client: httpx.Client, server: Server) -> None:
    made = ExporterStore(server.home).create(seed(), "test")
    result = _assert_envelope_status(client.put(f"{BASE}/{made.id}", json=seed(checkCanInteractData={})), 422)
    assert [e["path"] for e in result["errors"]] == ["/checkCanInteractData/theme"]
    assert ExporterStore(server.home).get(made.id) == made


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000])
def test_invalid_json_is_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(BASE, content=raw, headers={"Content-Type": "application/json"})
    result = _assert_envelope_status(response, 400)
    assert result["errors"]
    assert "data" not in result


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_body_in_another_encoding_than_utf8_is_400(client: httpx.Client, encoding: str) -> None:
    raw = json.dumps(seed(name="Caf\u00e9")).encode(encoding)
    response = client.post(BASE, content=raw, headers={"Content-Type": "application/json"})
    result = _assert_envelope_status(response, 400)
    assert "is not UTF-8 text" in result["errors"][0]["message"]


@pytest.mark.parametrize(
    ("path", "body", "pointer"),
    [
        (BASE, json.dumps(seed(name="HUGE")), "/name"),
        (
            "/campaign-workers/compliance-checks",
            json.dumps({"exporterId": "CE-X", "contactIds": ["HUGE"]}),
            "/contactIds/0",
        ),
    ],
)
def test_an_integer_too_long_to_read_is_400_naming_its_path(
    client: httpx.Client, path: str, body: str, pointer: str
) -> None:
    raw = body.replace('"HUGE"', "9" * 5000).encode()
    result = _assert_envelope_status(
        client.post(path, content=raw, headers={"Content-Type": "application/json"}), 400
    )
    assert result["errors"] == [
        {"path": pointer, "message": "is an integer of 5,000 digits; at most 4,300 are read"}
    ]


def test_duplicate_external_id_is_409(client: httpx.Client) -> None:
    first = _assert_envelope_status(client.post(BASE, json=seed(externalId="dup-1")), 200)
    result = _assert_envelope_status(client.post(BASE, json=seed(externalId="dup-1")), 409)
    assert [e["path"] for e in result["errors"]] == ["/externalId"]
    assert first["data"]["id"] in result["message"]


def test_concurrent_requests_with_one_external_id(client: httpx.Client, server: Server) -> None:
    def post(_: int) -> int:
        with httpx.Client(base_url=server.url, headers={"X-API-KEY": API_KEY}, timeout=60) as c:
            return c.post(BASE, json=seed(externalId="race-1")).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(post, range(6)))
    assert statuses == [200, 409, 409, 409, 409, 409]


def test_oversized_declared_body_is_413_before_reading(server: Server) -> None:
    # Declare 10 MiB and send nothing: the answer must come without the server waiting for the body.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST {BASE} HTTP/1.1\r\nHost: {host}\r\nX-API-KEY: {API_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {10 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(payload)["status"] == 413


def test_oversized_streamed_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 65536  # 1.25 MiB in all, sent without Content-Length

    result = _assert_envelope_status(client.post(BASE, content=chunks()), 413)
    assert result["errors"] == []


def test_body_just_under_the_limit_is_parsed(client: httpx.Client) -> None:
    padding = " " * (1024 * 1024 - 2000)
    raw = json.dumps(seed(name="padded")).replace('"name"', padding + '"name"', 1).encode()
    assert len(raw) < 1024 * 1024
    assert _assert_envelope_status(client.post(BASE, content=raw), 200)["data"]["name"] == "padded"


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "/limit"),
        ("limit=101", "/limit"),
        ("limit=ten", "/limit"),
        ("startingAfter=CE-AAAAAAAA", "/startingAfter"),
        ("endingBefore=CE-AAAAAAAA", "/endingBefore"),
        ("starting_after=CE-AAAAAAAA", "/starting_after"),
    ],
)
def test_bad_list_parameters_are_400(client: httpx.Client, query: str, path: str) -> None:
    result = _assert_envelope_status(client.get(f"{BASE}?{query}"), 400)
    assert [e["path"] for e in result["errors"]] == [path]


# ---------------------------------------------------------------- pagination


def test_pagination_over_60_exporters(client: httpx.Client, clean_store: ExporterStore) -> None:
    created = [clean_store.create(seed(name=f"bulk {i}"), "test") for i in range(60)]
    expected = [e.id for e in sorted(created, key=lambda e: (e.createdAt, e.id), reverse=True)]
    assert expected == [e.id for e in reversed(created)]

    pages: list[list[str]] = []
    url: str | None = f"{BASE}?limit=7"
    last: dict[str, Any] = {}
    while url is not None:
        last = _assert_envelope_status(client.get(url), 200)
        assert last["total"] == 60
        assert last["count"] == len(last["data"])
        pages.append([d["id"] for d in last["data"]])
        url = last["nextUrl"]
        assert len(pages) <= 10, "nextUrl never ran out"
    seen = [ident for page in pages for ident in page]
    assert seen == expected
    assert len(set(seen)) == 60
    assert [len(p) for p in pages] == [7] * 8 + [4]

    back: list[list[str]] = [pages[-1]]
    url = last["previousUrl"]
    while url is not None:
        body = _assert_envelope_status(client.get(url), 200)
        back.append([d["id"] for d in body["data"]])
        url = body["previousUrl"]
        assert len(back) <= 10, "previousUrl never ran out"
    assert list(reversed(back)) == pages


# ---------------------------------------------------------------- integrators: shape, versions, health


def test_seed_example_round_trips_in_the_seeds_shape(client: httpx.Client) -> None:
    created = _assert_envelope_status(client.post(BASE, json=seed()), 200)["data"]
    store_keys = {"id", "companyId", "createdAt", "updatedAt"}
    assert {k: v for k, v in created.items() if k not in store_keys} == SEED_REQUEST
    assert set(created) == set(SEED_REQUEST) | store_keys
    fetched = _assert_envelope_status(client.get(f"{BASE}/{created['id']}"), 200)["data"]
    assert fetched == created


def test_get_data_can_be_put_back_unchanged(client: httpx.Client) -> None:
    created = _assert_envelope_status(client.post(BASE, json=seed(name="as read")), 200)["data"]
    ident = created["id"]
    put = _assert_envelope_status(client.put(f"{BASE}/{ident}", json=created), 200)["data"]
    assert put["name"] == "as read"
    assert put["createdAt"] == created["createdAt"]
    assert put["updatedAt"] > created["updatedAt"]
    # Read-only keys that differ from the stored ones are refused, each at its path.
    wrong = {**put, "id": "CE-AAAAAAAA", "createdAt": "2020-01-01T00:00:00.000000Z"}
    result = _assert_envelope_status(client.put(f"{BASE}/{ident}", json=wrong), 422)
    assert sorted(e["path"] for e in result["errors"]) == ["/createdAt", "/id"]
    # An updatedAt older than the stored one means someone else wrote in between: 412.
    stale = _assert_envelope_status(client.put(f"{BASE}/{ident}", json=created), 412)
    assert "GET it again" in stale["message"]


def test_etag_and_if_match_refuse_a_lost_update(client: httpx.Client) -> None:
    created = client.post(BASE, json=seed(name="v1"))
    ident = created.json()["data"]["id"]
    first = client.get(f"{BASE}/{ident}")
    tag = first.headers["ETag"]
    assert tag == created.headers["ETag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    # Two clients read the same version; the first write wins, the second gets 412 and changes nothing.
    one = client.put(f"{BASE}/{ident}", json=seed(name="client one"), headers={"If-Match": tag})
    _assert_envelope_status(one, 200)
    assert one.headers["ETag"] != tag
    two = client.put(f"{BASE}/{ident}", json=seed(name="client two"), headers={"If-Match": tag})
    body = _assert_envelope_status(two, 412)
    assert ident in body["message"]
    assert _assert_envelope_status(client.get(f"{BASE}/{ident}"), 200)["data"]["name"] == "client one"
    # The current ETag (among others) and "*" match; no If-Match keeps last-writer-wins.
    current = client.get(f"{BASE}/{ident}").headers["ETag"]
    again = client.put(f"{BASE}/{ident}", json=seed(name="three"), headers={"If-Match": f'"0000", {current}'})
    _assert_envelope_status(again, 200)
    _assert_envelope_status(
        client.put(f"{BASE}/{ident}", json=seed(name="four"), headers={"If-Match": "*"}), 200
    )
    _assert_envelope_status(client.put(f"{BASE}/{ident}", json=seed(name="five")), 200)


def test_health_needs_no_key_and_openapi_needs_it(server: Server, client: httpx.Client) -> None:
    health = httpx.get(server.url + "/health", timeout=30)
    assert health.status_code == 200
    assert health.json() == {"status": 200, "message": "ok"}
    head = httpx.head(server.url + "/health", timeout=30)  # what probes and load balancers send
    assert (head.status_code, head.content) == (200, b"")
    assert httpx.get(server.url + "/openapi.json", timeout=30).status_code == 401
    assert httpx.post(server.url + "/health", timeout=30).status_code == 401
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/health", BASE, BASE + "/{ident}", "/campaign-workers/compliance-checks"}
    assert "ExporterBody" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-KEY"
    put = schema["paths"][BASE + "/{ident}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExporterBody")
    assert "412" in put["responses"]


def test_key_in_the_query_string_is_refused_and_never_logged(server: Server) -> None:
    secret = API_KEY + "-in-url"
    response = httpx.get(f"{server.url}{BASE}?X-API-KEY={secret}&limit=5", timeout=30)
    assert response.status_code == 401
    ok = httpx.get(f"{server.url}{BASE}?limit=5", headers={"X-API-KEY": API_KEY}, timeout=30)
    assert ok.status_code == 200
    log_path = server.home.root / "server.log"
    deadline = time.monotonic() + 10
    while f'"GET {BASE} HTTP/1.1" 200' not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log_path.read_text()
    assert f'"GET {BASE} HTTP/1.1" 401' in text  # the request is logged, its query string is not
    assert f'"GET {BASE} HTTP/1.1" 200' in text
    assert secret not in text
    assert "limit=5" not in text


def test_an_unreadable_exporter_file_is_a_500_naming_the_exporter(
    client: httpx.Client, server: Server
) -> None:
    good = _assert_envelope_status(client.post(BASE, json=seed(name="good")), 200)["data"]
    bad = _assert_envelope_status(client.post(BASE, json=seed(name="bad")), 200)["data"]
    path = server.home.exporters_dir / f"{bad['id']}.json"
    try:
        path.write_bytes(b'{"contactMatchingCriteria": \xff')
        body = _assert_envelope_status(client.get(f"{BASE}/{bad['id']}"), 500)
        assert bad["id"] in body["message"]
        assert str(server.home.root) not in json.dumps(body)
        assert "exporters/" not in json.dumps(body)
        listed = client.get(BASE, params={"limit": 100})
        ids = [e["id"] for e in _assert_envelope_status(listed, 200)["data"]]
        assert good["id"] in ids
        assert bad["id"] not in ids
        assert listed.headers["X-Skipped-Exporters"] == bad["id"]
        _assert_envelope_status(client.get(f"{BASE}/{good['id']}"), 200)
        _assert_envelope_status(client.post(BASE, json=seed(name="still creates")), 200)
    finally:
        path.unlink()


# ---------------------------------------------------------------- startup


def test_server_refuses_to_start_without_api_key(tmp_path: Path) -> None:
    home = _make_home(tmp_path)
    result = subprocess.run(
        serve_command(home.root, free_port()),
        env=server_env(None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CONTACT_EXPORTER_API_KEY is not set" in result.stderr


def test_module_entry_point_exits_2_without_api_key(tmp_path: Path) -> None:
    home = _make_home(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "flows.api", "--home", str(home.root), "--port", str(free_port())],
        env=server_env("   "),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "CONTACT_EXPORTER_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
