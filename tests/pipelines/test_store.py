"""Exporter store: envelopes, validation before any write, lookups, pagination, crash safety, concurrency."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flows.envelopes import error_envelope, list_envelope, ok_envelope
from pipelines.io import store as store_module
from pipelines.io.store import (
    ExporterStore,
    StoredExporterError,
    load_exporter_file,
)
from pipelines.model.config import Home
from pipelines.model.errors import BadRequestError, ConflictError, InvalidInputError, NotFoundError
from tests.worlds import SEED_REQUEST

REPO = Path(__file__).resolve().parents[2]


ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def seed(**extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_REQUEST)
    body.update(extra)
    return body


def make_home(root: Path, companies: tuple[str, ...] = ("CP-TEST",)) -> Home:
    folder = root / "configs" / "companies"
    folder.mkdir(parents=True)
    for company in companies:
        (folder / f"{company}.yaml").write_text(f"id: {company}\ntimezone: America/New_York\n")
    return Home(root)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


@pytest.fixture
def store(home: Home) -> ExporterStore:
    return ExporterStore(home)


def listing(home: Home) -> list[str]:
    folder = home.exporters_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def stored_files(home: Home) -> list[Path]:
    return sorted(p for p in home.exporters_dir.glob("CE-*.json"))


# ---------------------------------------------------------------- create / get / update / list


def test_seed_request_round_trip_through_envelopes(store: ExporterStore, home: Home) -> None:
    created = store.create(seed(), "request")

    assert re.fullmatch(r"CE-[A-Z2-7]{8}", created.id)
    assert created.companyId == "CP-TEST"
    assert ISO_UTC.fullmatch(created.createdAt)
    assert created.updatedAt == created.createdAt

    envelope = ok_envelope(created)
    assert envelope["status"] == 200
    assert envelope["message"] == "success"
    data = envelope["data"]
    # Exactly the seed's shape: what was sent, plus what the store sets; no key that was not set.
    assert data == {
        **SEED_REQUEST,
        "id": created.id,
        "companyId": "CP-TEST",
        "createdAt": created.createdAt,
        "updatedAt": created.updatedAt,
    }

    assert ok_envelope(store.get(created.id)) == envelope

    page = store.list()
    listed = list_envelope(page, 25)
    assert listed == {
        "status": 200,
        "total": 1,
        "count": 1,
        "nextUrl": None,
        "previousUrl": None,
        "data": [data],
    }

    changed = seed(name="Phones, personal", checkCanInteractData=None)
    updated = store.update(created.id, changed, "request")
    assert updated.id == created.id
    assert updated.createdAt == created.createdAt
    assert updated.updatedAt > created.updatedAt
    assert updated.name == "Phones, personal"
    assert updated.checkCanInteractData is None
    assert ok_envelope(store.get(created.id))["data"] == ok_envelope(updated)["data"]


def test_file_on_disk_is_pretty_json_of_the_exporter(store: ExporterStore, home: Home) -> None:
    created = store.create(seed(), "request")
    path = home.exporters_dir / f"{created.id}.json"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("{\n  ")
    assert json.loads(text) == created.public()
    assert load_exporter_file(path) == created
    assert listing(home) == [".lock", f"{created.id}.json"]


def test_update_is_a_full_replacement(store: ExporterStore) -> None:
    created = store.create(seed(name="first", externalId="X1"), "request")
    updated = store.update(created.id, seed(), "request")
    assert updated.name is None
    assert updated.externalId is None
    with pytest.raises(NotFoundError):
        store.get("ext-X1")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (seed(unknown=1), "/unknown"),
        (seed(contactMatchingCriteria={"label": []}), "/contactMatchingCriteria/label"),
        (seed(columnSettings=[{"field": "ssn"}]), "/columnSettings/0/field"),
        (seed(companyId="CP-NOPE"), "/companyId"),
        (seed(sftpSettingId="partner"), "/sftpSettingId"),
        ([], ""),
        ("not an object", ""),
    ],
)
def test_invalid_bodies_write_nothing(store: ExporterStore, home: Home, body: Any, path: str) -> None:
    existing = store.create(seed(), "request")
    before = listing(home)
    with pytest.raises(InvalidInputError) as info:
        store.create(body, "request")
    assert [e.path for e in info.value.errors] == [path]
    with pytest.raises(InvalidInputError):
        store.update(existing.id, body, "request")
    assert listing(home) == before
    assert store.get(existing.id) == existing


def test_error_envelope_carries_paths_and_status(store: ExporterStore) -> None:
    with pytest.raises(InvalidInputError) as info:
        store.create(seed(columnSettings=[{"field": "value", "outputName": "a\tb"}]), "request")
    envelope = error_envelope(info.value)
    assert envelope["status"] == 422
    assert envelope["errors"] == [
        {"path": "/columnSettings/0/outputName", "message": "must not contain the control character U+0009"}
    ]
    assert "/columnSettings/0/outputName" in envelope["message"]

    with pytest.raises(NotFoundError) as missing:
        store.get("CE-AAAAAAAA")
    assert error_envelope(missing.value) == {
        "status": 404,
        "message": str(missing.value),
        "errors": [],
    }
    assert error_envelope(RuntimeError("boom"))["status"] == 500


def test_sftp_setting_must_exist(store: ExporterStore, home: Home) -> None:
    with pytest.raises(InvalidInputError) as info:
        store.create(seed(sftpSettingId="partner"), "request")
    assert "partner" in info.value.errors[0].message
    sftp = home.configs / "sftp"
    sftp.mkdir(parents=True)
    # Only existence is checked at create time; the content (and its secrets) is read at delivery.
    (sftp / "partner.yaml").write_text("host: example.invalid\n")
    assert store.create(seed(sftpSettingId="partner"), "request").sftpSettingId == "partner"


# ---------------------------------------------------------------- lookups


def test_lookup_by_external_id(store: ExporterStore) -> None:
    created = store.create(seed(externalId="crm-42"), "request")
    store.create(seed(externalId="crm-43"), "request")
    assert store.get("ext-crm-42") == created
    with pytest.raises(NotFoundError, match="ext-crm-44"):
        store.get("ext-crm-44")


@pytest.mark.parametrize(
    "ident",
    ["CE-AAAAAAAA", "CE-aaaaaaaa", "CE-0000000A", "../CE-AAAAAAAA", "CE-AAAAAAAA/../x", "", "ext-", "x"],
)
def test_unknown_or_malformed_ids_are_not_found(store: ExporterStore, ident: str) -> None:
    store.create(seed(), "request")
    with pytest.raises(NotFoundError) as info:
        store.get(ident)
    assert repr(ident) in str(info.value)
    with pytest.raises(NotFoundError):
        store.update(ident, seed(), "request")


def test_path_like_id_never_reaches_the_file_system(store: ExporterStore, home: Home) -> None:
    outside = home.root / "configs" / "evil.json"
    outside.write_text(json.dumps({"not": "an exporter"}))
    with pytest.raises(NotFoundError):
        store.get("../evil")


# ---------------------------------------------------------------- externalId uniqueness


def test_duplicate_external_id_conflicts(store: ExporterStore, home: Home) -> None:
    first = store.create(seed(externalId="crm-1"), "request")
    before = listing(home)
    with pytest.raises(ConflictError) as info:
        store.create(seed(externalId="crm-1"), "request")
    assert first.id in str(info.value)
    envelope = error_envelope(info.value)
    assert envelope["status"] == 409
    assert [e["path"] for e in envelope["errors"]] == ["/externalId"]
    assert listing(home) == before


def test_update_may_keep_its_own_external_id_but_not_take_another(store: ExporterStore) -> None:
    first = store.create(seed(externalId="crm-1"), "request")
    second = store.create(seed(externalId="crm-2"), "request")
    assert store.update(first.id, seed(externalId="crm-1", name="renamed"), "request").name == "renamed"
    with pytest.raises(ConflictError):
        store.update(second.id, seed(externalId="crm-1"), "request")
    assert store.get(second.id).externalId == "crm-2"


# ---------------------------------------------------------------- company resolution


def test_given_company_must_be_configured(tmp_path: Path) -> None:
    home = make_home(tmp_path, ("CP-A", "CP-B"))
    with pytest.raises(InvalidInputError) as info:
        ExporterStore(home).create(seed(companyId="CP-C"), "request")
    [error] = info.value.errors
    assert error.path == "/companyId"
    assert "CP-A" in error.message
    assert "CP-B" in error.message


def test_given_company_is_used(tmp_path: Path) -> None:
    home = make_home(tmp_path, ("CP-A", "CP-B"))
    assert ExporterStore(home).create(seed(companyId="CP-B"), "request").companyId == "CP-B"


def test_only_company_is_the_default(tmp_path: Path) -> None:
    home = make_home(tmp_path, ("CP-ONLY",))
    assert ExporterStore(home).create(seed(), "request").companyId == "CP-ONLY"


def test_several_companies_need_company_id(tmp_path: Path) -> None:
    home = make_home(tmp_path, ("CP-A", "CP-B"))
    with pytest.raises(InvalidInputError) as info:
        ExporterStore(home).create(seed(), "request")
    [error] = info.value.errors
    assert error.path == "/companyId"
    assert "several" in error.message
    assert "CP-A" in error.message


def test_no_company_configured(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with pytest.raises(InvalidInputError) as info:
        ExporterStore(home).create(seed(), "request")
    [error] = info.value.errors
    assert error.path == "/companyId"
    assert "no company" in error.message
    assert not home.exporters_dir.exists() or listing(home) == []


# ---------------------------------------------------------------- pagination


def test_pagination_both_directions(store: ExporterStore) -> None:
    created = [store.create(seed(name=f"n{i}"), "request") for i in range(7)]
    newest_first = [e.id for e in sorted(created, key=lambda e: (e.createdAt, e.id), reverse=True)]
    # Creation order and time order agree, so newest first is reverse creation order.
    assert newest_first == [e.id for e in reversed(created)]

    first = store.list(limit=3)
    assert [e.id for e in first.data] == newest_first[0:3]
    assert (first.total, first.has_more_after, first.has_more_before) == (7, True, False)
    envelope = list_envelope(first, 3)
    assert envelope["count"] == 3
    assert envelope["previousUrl"] is None
    assert (
        envelope["nextUrl"] == f"/campaign-workers/contact-exporters?limit=3&startingAfter={newest_first[2]}"
    )

    second = store.list(limit=3, starting_after=first.last_id)
    assert [e.id for e in second.data] == newest_first[3:6]
    assert second.has_more_after
    assert second.has_more_before

    third = store.list(limit=3, starting_after=second.last_id)
    assert [e.id for e in third.data] == newest_first[6:7]
    assert not third.has_more_after
    envelope = list_envelope(third, 3, base_path="/x")
    assert envelope["nextUrl"] is None
    assert envelope["previousUrl"] == f"/x?limit=3&endingBefore={newest_first[6]}"

    back = store.list(limit=3, ending_before=third.first_id)
    assert [e.id for e in back.data] == newest_first[3:6]
    assert back.has_more_before
    back = store.list(limit=3, ending_before=back.first_id)
    assert [e.id for e in back.data] == newest_first[0:3]
    assert not back.has_more_before
    assert list_envelope(back, 3)["previousUrl"] is None

    # A short page going backwards stops at the newest exporter.
    partial = store.list(limit=3, ending_before=newest_first[1])
    assert [e.id for e in partial.data] == newest_first[0:1]
    assert not partial.has_more_before
    assert partial.has_more_after


def test_ties_on_created_at_break_by_id_descending(store: ExporterStore, home: Home) -> None:
    for i in range(3):
        store.create(seed(name=f"n{i}"), "request")
    for path in stored_files(home):
        data = json.loads(path.read_text())
        data["createdAt"] = "2026-01-01T00:00:00.000000Z"
        path.write_text(json.dumps(data))
    ids = [e.id for e in store.list().data]
    assert ids == sorted(ids, reverse=True)


def test_empty_store_lists_nothing(store: ExporterStore) -> None:
    page = store.list()
    assert list_envelope(page, 25) == {
        "status": 200,
        "total": 0,
        "count": 0,
        "nextUrl": None,
        "previousUrl": None,
        "data": [],
    }


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_limit_out_of_range(store: ExporterStore, limit: int) -> None:
    with pytest.raises(BadRequestError) as info:
        store.list(limit=limit)
    assert [e.path for e in info.value.errors] == ["/limit"]
    assert error_envelope(info.value)["status"] == 400


def test_limit_bounds_are_accepted(store: ExporterStore) -> None:
    for i in range(2):
        store.create(seed(name=f"n{i}"), "request")
    assert store.list(limit=1).has_more_after
    assert store.list(limit=100).total == 2


def test_unknown_cursor_is_a_bad_request(store: ExporterStore) -> None:
    store.create(seed(), "request")
    with pytest.raises(BadRequestError) as info:
        store.list(starting_after="CE-AAAAAAAA")
    assert [e.path for e in info.value.errors] == ["/startingAfter"]
    with pytest.raises(BadRequestError) as info:
        store.list(ending_before="CE-AAAAAAAA")
    assert [e.path for e in info.value.errors] == ["/endingBefore"]


def test_both_cursors_are_refused(store: ExporterStore) -> None:
    a = store.create(seed(), "request")
    with pytest.raises(BadRequestError):
        store.list(starting_after=a.id, ending_before=a.id)


# ---------------------------------------------------------------- damaged files and crashes


def test_crash_during_rename_leaves_no_partial_file(
    store: ExporterStore, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = store.create(seed(), "request")
    before = listing(home)
    original = (home.exporters_dir / f"{existing.id}.json").read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        store.create(seed(name="never"), "request")
    with pytest.raises(OSError, match="simulated"):
        store.update(existing.id, seed(name="never"), "request")
    monkeypatch.undo()

    assert listing(home) == before
    assert (home.exporters_dir / f"{existing.id}.json").read_bytes() == original
    assert [e.id for e in store.list().data] == [existing.id]


def test_crash_during_write_leaves_no_partial_file(
    store: ExporterStore, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create(seed(), "request")
    before = listing(home)

    def crash(fd: int) -> None:
        raise OSError("simulated power cut during fsync")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        store.create(seed(name="never"), "request")
    monkeypatch.undo()
    assert listing(home) == before


def test_leftover_temp_files_are_ignored(store: ExporterStore, home: Home) -> None:
    existing = store.create(seed(), "request")
    # What a process killed between write and rename leaves behind.
    (home.exporters_dir / f".{existing.id}.abc123.tmp").write_text('{"contactMatch')
    (home.exporters_dir / ".CE-BBBBBBBB.json").write_text("{")
    assert [e.id for e in store.list().data] == [existing.id]
    assert store.get(existing.id) == existing


def test_hand_edited_invalid_file_names_the_exporter_never_the_path(store: ExporterStore, home: Home) -> None:
    existing = store.create(seed(), "request")
    other = store.create(seed(name="still fine"), "request")
    path = home.exporters_dir / f"{existing.id}.json"
    data = json.loads(path.read_text())
    data["columnSettings"][0]["field"] = "ssn"
    path.write_text(json.dumps(data))
    with pytest.raises(StoredExporterError) as info:
        store.get(existing.id)
    assert info.value.source == f"stored exporter {existing.id}"
    assert [e.path for e in info.value.errors] == ["/columnSettings/0/field"]
    assert existing.id in str(info.value)
    assert str(home.root) not in str(info.value)
    assert isinstance(info.value, InvalidInputError)
    assert info.value.exit_code == 2
    assert error_envelope(info.value)["status"] == 500
    # The rest of the store keeps working: the broken file is left out of lists and reported.
    page = store.list()
    assert [e.id for e in page.data] == [other.id]
    assert page.total == 1
    assert page.skipped == (existing.id,)
    assert store.get(other.id).name == "still fine"


def test_truncated_file_is_reported(store: ExporterStore, home: Home) -> None:
    existing = store.create(seed(), "request")
    path = home.exporters_dir / f"{existing.id}.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(StoredExporterError, match="not valid JSON"):
        store.get(existing.id)


def test_file_name_must_match_id(store: ExporterStore, home: Home) -> None:
    existing = store.create(seed(), "request")
    (home.exporters_dir / f"{existing.id}.json").rename(home.exporters_dir / "CE-BBBBBBBB.json")
    with pytest.raises(StoredExporterError) as info:
        store.get("CE-BBBBBBBB")
    assert [e.path for e in info.value.errors] == ["/id"]
    assert store.list().skipped == ("CE-BBBBBBBB",)


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"[" * 100_000, b'{"contactMatchingCriteria": '])
def test_unreadable_bytes_are_a_stored_exporter_error(store: ExporterStore, home: Home, raw: bytes) -> None:
    existing = store.create(seed(), "request")
    (home.exporters_dir / f"{existing.id}.json").write_bytes(raw)
    with pytest.raises(StoredExporterError) as info:
        store.get(existing.id)
    assert existing.id in info.value.message
    assert store.list().skipped == (existing.id,)


def test_load_exporter_file_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_exporter_file(tmp_path / "CE-AAAAAAAA.json")


def test_id_collision_is_retried(store: ExporterStore, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = store.create(seed(), "request")
    candidates = iter([taken.id, taken.id, "CE-ZZZZZZZZ"])
    monkeypatch.setattr(store_module, "new_exporter_id", lambda: next(candidates))
    fresh = store.create(seed(), "request")
    assert fresh.id == "CE-ZZZZZZZZ"
    assert store.get(taken.id) == taken


# ---------------------------------------------------------------- concurrency across processes

_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pipelines.model.config import Home
    from pipelines.model.errors import ConflictError
    from pipelines.io.store import ExporterStore

    home, index, external_id, ready, go = sys.argv[1:6]
    store = ExporterStore(Home(Path(home)))
    body = {
        "contactMatchingCriteria": {"contactType": ["phone"]},
        "columnSettings": [{"field": "value"}],
        "name": f"worker {index}",
    }
    if external_id:
        body["externalId"] = external_id
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    try:
        exporter = store.create(body, "request")
    except ConflictError:
        print(json.dumps({"conflict": True}))
    else:
        print(json.dumps({"id": exporter.id}))
    """
)


def _run_concurrently(home: Home, tmp_path: Path, count: int, external_id: str) -> list[dict[str, Any]]:
    sync = tmp_path / "sync"
    sync.mkdir()
    go = sync / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(home.root),
                str(i),
                external_id,
                str(sync / f"r{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(sync.glob("r*"))) < count:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker exited before the start signal"
            time.sleep(0.02)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_concurrent_creates_from_separate_processes(home: Home, tmp_path: Path) -> None:
    results = _run_concurrently(home, tmp_path, 20, "")
    ids = {r["id"] for r in results}
    assert len(ids) == 20
    files = stored_files(home)
    assert {p.stem for p in files} == ids
    for path in files:
        assert load_exporter_file(path).id == path.stem
    assert sorted(e.name or "" for e in ExporterStore(home).all()) == sorted(f"worker {i}" for i in range(20))
    assert [p.name for p in home.exporters_dir.iterdir() if p.name.startswith(".")] == [".lock"]


@pytest.mark.slow
def test_concurrent_creates_with_same_external_id(home: Home, tmp_path: Path) -> None:
    results = _run_concurrently(home, tmp_path, 8, "crm-same")
    winners = [r for r in results if "id" in r]
    assert len(winners) == 1
    assert sum(1 for r in results if r.get("conflict")) == 7
    assert [p.stem for p in stored_files(home)] == [winners[0]["id"]]
    assert ExporterStore(home).get("ext-crm-same").id == winners[0]["id"]
