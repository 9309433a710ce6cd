"""Sources on real servers: the same worlds written to CSV, Parquet, DuckDB, S3 (moto's server) and
PostgreSQL (Debian's server, password auth) give the same file bytes, screening rows and rejected rows
in 1, 3 and `auto` partitions; wrong credentials and a missing bucket or table are exit 2 naming the
source and never the secret; a server stopped in the middle of a partitioned run fails the run
(exit 1, one line naming the source), writes nothing, releases the lock, and a rerun after the
restart gives the same bytes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.io import sources
from pipelines.io.source_ref import SourceRef
from pipelines.model.config import Home
from pipelines.model.errors import ContactExporterError, SourceDataError, TransientError
from pipelines.rules import table_wide
from pipelines.run import job, preflight
from tests.frontdoor import COMPANY, HEADERS, add_exporter, make_home
from tests.pipelines.test_table_wide import Row, keyless_world, outcome, world, write
from tests.reference.source import reference_run
from tests.servers import PG_PASSWORD, S3_SECRET, PostgresServer, S3Server, aws_environment

pytestmark = [pytest.mark.slow, pytest.mark.integration]

AS_OF = date(2026, 4, 7)
BODY: dict[str, Any] = {
    "contactMatchingCriteria": {"contactType": ["phone", "address"]},
    "columnSettings": [{"field": "id"}, {"field": "personId"}],
    "checkCanInteractData": {"theme": "opsCollDebt"},
}
_COUNTER = iter(range(10**6))


@pytest.fixture
def servers(
    postgres_server: PostgresServer, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PostgresServer, S3Server]]:
    """Both servers, with the AWS variables and PGPASSWORD set as a deployment would set them."""
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    with aws_environment(s3_server):
        yield postgres_server, s3_server


def to_s3(server: S3Server, folder: Path) -> str:
    """The Parquet files of `folder` under a new bucket's prefix: the same bytes as the local folder."""
    bucket = f"book-{next(_COUNTER)}"
    server.make_bucket(bucket)
    fs = sources.s3.filesystem()
    for file in sorted(folder.glob("*.parquet")):
        with fs.open_output_stream(f"{bucket}/daily/{file.name}") as out:
            out.write(file.read_bytes())
    return f"s3://{bucket}/daily/"


def to_postgres(server: PostgresServer, folder: Path) -> str:
    """The tables of the Parquet folder `folder` in a new schema of the server (as they are typed there)."""
    import adbc_driver_postgresql.dbapi as pg

    schema = f"world_{next(_COUNTER)}"
    with pg.connect(server.uri()) as con, con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        for file in sorted(folder.glob("*.parquet")):
            cur.adbc_ingest(file.stem, pq.read_table(file), mode="create", db_schema_name=schema)
        con.commit()
    return f"{server.uri()}?schema={schema}"


def every_kind(
    root: Path, raw: dict[str, list[Row]], servers: tuple[PostgresServer, S3Server]
) -> dict[str, Any]:
    """The world as each kind of source (S3 and Postgres hold the Parquet folder's tables)."""
    made: dict[str, Any] = {fmt: write(root / fmt, raw, fmt) for fmt in ("csv", "parquet", "duckdb")}
    made["s3"] = to_s3(servers[1], made["parquet"])
    made["postgres"] = to_postgres(servers[0], made["parquet"])
    return made


def kind_outcome(home: Home, exporter: str, source: Any, kind: str, partitions: int | str) -> Any:
    """`outcome` of test_table_wide for any source (its warehouse named by kind, not by path)."""
    return outcome(home, exporter, AS_OF, _Named(source, kind), partitions)  # type: ignore[arg-type]


class _Named:
    """A source (path or URI) whose `.name` names its warehouse in `outcome`."""

    def __init__(self, source: Any, kind: str) -> None:
        self.source, self.name = source, f"{kind}-{next(_COUNTER)}"

    def __fspath__(self) -> str:
        return str(self.source)


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32))
def test_every_source_kind_gives_the_same_outputs(
    tmp_path_factory: pytest.TempPathFactory, servers: tuple[PostgresServer, S3Server], seed: int
) -> None:
    rnd = random.Random(seed)
    root = tmp_path_factory.mktemp("kinds")
    policy = {"maxRejectedShare": rnd.choice([0.5, 1.0])}
    home = make_home(root / "home", **policy)
    exporter = add_exporter(home, BODY)
    raw = world(rnd, AS_OF)
    company = {"id": COMPANY, "timezone": "America/New_York", "policy": policy}
    expected, rejected_keys = reference_run(raw, {}, company, BODY, AS_OF)
    seen = {}
    for kind, source in every_kind(root, raw, servers).items():
        for n in (1, 3, "auto"):
            seen[(kind, n)] = kind_outcome(home, exporter, source, kind, n)
    first = seen[("csv", 1)]
    for where, got in seen.items():
        assert got == first, f"{where} differs from csv in one partition"
    data, screening, rejected = first
    assert {(t, k) for t, k, _ in rejected} == rejected_keys
    if expected is not None:
        assert {c: list(r) for c, _, _, _, r, _ in screening} == expected


def test_rows_without_a_key_are_named_by_their_place_in_every_kind(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter = add_exporter(home, BODY)
    raw = keyless_world()
    raw["contacts"].insert(1, {"personId": "M", "contactType": "phone", "label": "personal",
                               "affiliation": "self", "status": "primary", "value": "+12125550123"})  # fmt: skip
    for kind, source in every_kind(tmp_path, raw, servers).items():
        for n in (1, 3):
            _, _, rejected = kind_outcome(home, exporter, source, kind, n)
            assert [(t, k) for t, k, _ in rejected] == [("consents", "row 4"), ("contacts", "row 2")], (
                kind,
                n,
            )


def test_the_table_wide_scan_reads_ids_from_s3_and_postgres(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    raw["borrowers"] = [{"id": "A", "companyId": COMPANY}, {"id": "B", "companyId": COMPANY}]
    raw["interactions"] = [
        {"id": i, "personId": p, "channel": "voice", "direction": "outbound", "status": "attempted",
         "startedAt": "2026-04-01T14:00:00Z"}
        for i, p in (("I-1", "A"), ("I-2", "B"), ("I-1", "B"), ("Ж", "A"), ("Ж", None), (None, "A"))
    ]  # fmt: skip
    made = every_kind(tmp_path, raw, servers)
    for kind in ("s3", "postgres"):
        found = table_wide.scan(SourceRef.parse(made[kind]))
        assert found.repeated_ids("interactions").to_list() == ["I-1", "Ж"], kind
        assert found.repeated_ids("contacts").to_list() == [], kind


def whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The tables whose ids are read whole from a remote source from now on (the fallback of the
    streamed reads), recorded as they are read."""
    read: list[list[str]] = []
    whole = sources.remote_column

    def counted(ref: SourceRef, tables: list[str], name: str) -> dict[str, pl.Series]:
        read.append(tables)
        return whole(ref, tables, name)

    monkeypatch.setattr(sources, "remote_column", counted)
    return read


@pytest.mark.parametrize("ordered", [True, False], ids=["sorted", "unsorted"])
def test_the_table_wide_scan_streams_a_postgres_table_stored_in_id_order(
    servers: tuple[PostgresServer, S3Server], monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    """Ids stored in byte order (the column in a language's order) are checked as they stream by,
    never read whole; out of order, that table is read whole. The same repeats either way."""
    import adbc_driver_postgresql.dbapi as pg

    ids = ["I-1", "I-1", "I-2", "I-3", None, "Ж", "Ж", "Ж"]
    ids = ids if ordered else ids[::-1]
    schema = f"tw_{next(_COUNTER)}"
    with pg.connect(servers[0].uri()) as con, con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        for table, column in (("borrowers", ["A", "B"]), ("interactions", ids)):
            cur.execute(f'CREATE TABLE {schema}.{table} (id text COLLATE "und-x-icu")')
            cur.adbc_ingest(
                table, pa.table({"id": pa.array(column, pa.string())}), mode="append", db_schema_name=schema
            )
        con.commit()
    read_whole = whole_reads(monkeypatch)
    found = table_wide.scan(SourceRef.parse(f"{servers[0].uri()}?schema={schema}"))
    assert found.repeated_ids("interactions").to_list() == ["I-1", "Ж"]
    assert found.repeated_ids("borrowers").to_list() == []
    assert read_whole == ([] if ordered else [["interactions"]])


@pytest.mark.parametrize("ordered", [True, False], ids=["sorted", "unsorted"])
def test_ids_on_s3_are_streamed_by_row_group_when_they_come_sorted(
    servers: tuple[PostgresServer, S3Server], monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    """Interactions in two part files of row groups of 2 (a repeat straddles them), borrowers in one
    file: in id order, the table-wide scan and the cuts stream them and read nothing whole; out of
    order, those tables are read whole. The same answers either way."""
    interactions = ["I-1", "I-2", "I-3", "I-3", None, "I-4", "I-5", "Ж", "Ж"]
    borrowers = [f"B{i:02d}" for i in range(20)] + ["B19"]
    if not ordered:
        interactions, borrowers = interactions[::-1], borrowers[::-1]
    bucket = f"ids-{next(_COUNTER)}"
    servers[1].make_bucket(bucket)
    fs = sources.s3.filesystem()
    objects = {
        "interactions/part-0.parquet": interactions[:5],
        "interactions/part-1.parquet": interactions[5:],
        "borrowers.parquet": borrowers,
    }
    for key, ids in objects.items():
        with fs.open_output_stream(f"{bucket}/book/{key}") as out:
            pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), out, row_group_size=2)
    read_whole = whole_reads(monkeypatch)
    source = SourceRef.parse(f"s3://{bucket}/book/")
    found = table_wide.scan(source)
    assert found.repeated_ids("interactions").to_list() == ["I-3", "Ж"]
    assert found.repeated_ids("borrowers").to_list() == ["B19"]
    from pipelines.run import cuts

    assert cuts.borrower_cuts(source, 4) == ["B05", "B10", "B15"]
    assert read_whole == ([] if ordered else [["borrowers"], ["interactions"], ["borrowers"]])


# ---------------------------------------------------------------- refused before the run (exit 2)


def _refused(source: str) -> SourceDataError:
    with pytest.raises(SourceDataError) as caught:
        preflight.check_source(SourceRef.parse(source))
    assert caught.value.exit_code == 2
    return caught.value


def test_a_wrong_password_is_exit_2_naming_the_source_never_the_secret(
    servers: tuple[PostgresServer, S3Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_server, _ = servers
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    error = _refused(pg_server.uri())
    assert pg_server.uri() in str(error)
    assert "password authentication failed" in str(error)
    assert "not-the-password" not in str(error)
    # a password written into the URI is used, and shown masked
    monkeypatch.delenv("PGPASSWORD")
    wrong = pg_server.uri().replace("exporter@", "exporter:Wr0ng-secret@")
    error = _refused(wrong)
    assert "Wr0ng-secret" not in str(error)
    assert "exporter:***@127.0.0.1" in str(error)
    # the right password in the URI reads; it never appears in the name the source is shown by
    right = SourceRef.parse(pg_server.uri(with_password=True))
    assert PG_PASSWORD not in str(right)
    assert PG_PASSWORD not in repr(right)


def test_an_unreachable_server_is_exit_2(servers: tuple[PostgresServer, S3Server]) -> None:
    from tests.servers import free_port

    error = _refused(f"postgresql://exporter@127.0.0.1:{free_port()}/book")
    assert "connecting" in str(error)


def test_a_missing_bucket_or_table_is_exit_2_naming_it(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    pg_server, s3_server = servers
    error = _refused("s3://no-such-bucket/daily/")
    assert "s3://no-such-bucket/daily/" in str(error)
    assert S3_SECRET not in str(error)
    raw: dict[str, list[Row]] = {name: [] for name in HEADERS}
    folder = write(tmp_path, raw, "parquet")
    (folder / "consents.parquet").unlink()
    for source in (to_s3(s3_server, folder), to_postgres(pg_server, folder)):
        error = _refused(source)
        assert "has no table consents" in str(error)
        assert PG_PASSWORD not in str(error)
        assert S3_SECRET not in str(error)
    error = _refused(pg_server.uri("no_such_database"))
    assert "no_such_database" in str(error)


# ---------------------------------------------------------------- a server lost in the middle (exit 1)


def _book(tmp_path: Path) -> tuple[Home, str, Path]:
    from tests.worlds import make_home as make_sample_home
    from tests.worlds import sample_tables, without_sftp

    home = make_sample_home(tmp_path / "home", 120, with_sftp=False)
    without_sftp(home, "CE-VOICECOL")
    folder = tmp_path / "parquet"
    sources.write_source(sample_tables(120), folder, "parquet")
    return home, "CE-VOICECOL", folder


def _run_stopping(home: Home, plan: job.RunPlan, stop: Any) -> None:
    """A run in 3 partitions whose source server is stopped once the first partition is done."""

    def progress(message: str) -> None:
        if message.startswith("partition p1/3"):
            stop()

    job.run_export(plan, deliver_enabled=False, partitions=3, progress=progress)


@pytest.mark.parametrize("kind", ["postgres", "s3"])
def test_a_server_stopped_mid_run_fails_the_run_and_writes_nothing(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server], kind: str
) -> None:
    pg_server, s3_server = servers
    home, exporter, folder = _book(tmp_path)
    if kind == "postgres":
        from tests.worlds import sample_tables

        source = f"{pg_server.uri()}?schema=book_{next(_COUNTER)}"
        sources.write_source(sample_tables(120), source, "parquet")
    else:
        source = to_s3(s3_server, folder)
    plan = job.plan_run(home, exporter, AS_OF, source=source)
    stop, start = (
        (pg_server.stop, pg_server.start) if kind == "postgres" else (s3_server.stop, s3_server.start)
    )
    try:
        with pytest.raises(ContactExporterError) as caught:
            _run_stopping(home, plan, stop)
    finally:
        start()
    error = caught.value
    assert isinstance(error, TransientError)
    assert error.exit_code == 1
    assert str(SourceRef.parse(source)) in str(error)
    assert len(str(error).splitlines()) == 1
    print(f"{kind}: {error}")
    assert not plan.folder.exists(), "nothing written (the failed first run of a date leaves no folder)"
    assert not list(plan.exports.rglob("*.csv")), "no export file anywhere"
    assert not list((home.root / "data" / "runs").glob("*")), "no staging left"
    if kind == "s3":  # moto keeps its buckets in memory: the restarted store is loaded again
        bucket = SourceRef.parse(source).bucket
        s3_server.make_bucket(bucket)
        fs = sources.s3.filesystem()
        for file in sorted(folder.glob("*.parquet")):
            with fs.open_output_stream(f"{bucket}/daily/{file.name}") as out:
                out.write(file.read_bytes())
    again = job.run_export(plan, deliver_enabled=False, partitions=3)  # the lock was released
    local = job.run_export(
        job.plan_run(home, exporter, AS_OF, source=folder, warehouse_path=home.root / "local.duckdb"),
        deliver_enabled=False,
        partitions=1,
    )
    assert Path(again["file"]).read_bytes() == Path(local["file"]).read_bytes()
    assert again["counts"] == local["counts"]
    assert again["counts"]["exported"] > 0


def test_generate_writes_the_same_rows_to_every_kind(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    from tests.worlds import sample_tables

    pg_server, s3_server = servers
    s3_server.make_bucket("generated")
    tables = sample_tables(60)
    targets = [tmp_path / "p", "s3://generated/book/", pg_server.uri() + "?schema=generated"]
    for target in targets:
        sources.write_source(tables, target, "parquet")
    import pyarrow.fs as pafs

    keys = sources.s3.filesystem().get_file_info(pafs.FileSelector("generated/book"))
    assert sorted(k.base_name for k in keys) == sorted(f"{name}.parquet" for name in HEADERS), (
        "no temporary keys"
    )
    frames = [
        sources.open_source(target if isinstance(target, Path) else SourceRef.parse(target))
        for target in targets
    ]
    for name in HEADERS:
        want = frames[0].get(name).collect()
        for got in frames[1:]:
            assert got.get(name).collect().drop("__sourceRow", strict=False).equals(want, null_equal=True), (
                name
            )
    assert pl.DataFrame(frames[0].borrowers.collect()).height == 60


def test_the_cli_refuses_a_wrong_password_with_exit_2(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    import os
    import subprocess
    import sys

    from tests.worlds import make_home as make_sample_home
    from tests.worlds import without_sftp

    pg_server, _ = servers
    home = make_sample_home(tmp_path / "home", 20, with_sftp=False)
    without_sftp(home, "CE-VOICECOL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PGPASSWORD"] = "Not-The-Password-42"
    for extra in ([], ["--dry-run"]):
        done = subprocess.run(
            [sys.executable, "-m", "flows", "--home", str(home.root), "run", "CE-VOICECOL", "--no-deliver",
             "--source", pg_server.uri(), *extra],
            capture_output=True, timeout=300, env=env, check=False,
        )  # fmt: skip
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert pg_server.uri() in err
        assert "Not-The-Password-42" not in err + done.stdout.decode()
        assert "Traceback" not in err
        assert not home.exports.exists(), "nothing created"


KEYS = st.text(alphabet=st.sampled_from("AaBbZz09-_éÉß€ "), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.one_of(KEYS, st.none()), max_size=40), presorted=st.booleans(), count=st.integers(2, 12)
)
def test_postgres_cuts_are_the_cuts_of_the_definition(
    servers: tuple[PostgresServer, S3Server],
    monkeypatch: pytest.MonkeyPatch,
    ids: list[str | None],
    presorted: bool,
    count: int,
) -> None:
    """Over the distinct keys in byte order whatever the column's collation (repeats, nulls,
    non-ASCII text, more parts than keys): exactly `cuts` of the sorted distinct column. A table
    stored in key order is streamed, never read whole; any other is read whole."""
    import adbc_driver_postgresql.dbapi as pg

    from pipelines.run import cuts

    if presorted:
        ids = sorted((i for i in ids if i is not None), key=str.encode) + [None] * ids.count(None)
    schema = f"cuts_{next(_COUNTER)}"
    table = pa.table({"id": pa.array(ids, pa.string())})
    with pg.connect(servers[0].uri()) as con, con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        # a column in a language's order (as on a replica made with en_US.UTF-8), not byte order
        cur.execute(f'CREATE TABLE {schema}.borrowers (id text COLLATE "und-x-icu")')
        cur.adbc_ingest("borrowers", table, mode="append", db_schema_name=schema)
        con.commit()
    distinct = sorted({i for i in ids if i is not None}, key=str.encode)
    expected = cuts.cuts(pl.Series("id", distinct, pl.String), count)
    read_whole: list[object] = []
    whole = cuts.sorted_borrower_ids

    def counted(source: object) -> pl.Series:
        read_whole.append(source)
        return whole(source)  # type: ignore[arg-type]

    monkeypatch.setattr(cuts, "sorted_borrower_ids", counted)
    assert cuts.borrower_cuts(f"{servers[0].uri()}?schema={schema}", count) == expected
    in_byte_order = [i.encode() for i in ids if i is not None] == [
        i.encode() for i in sorted((i for i in ids if i is not None), key=str.encode)
    ]
    assert (read_whole == []) == in_byte_order


def test_checks_from_s3_and_postgres_answer_as_the_run(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    """A check reads its borrowers' rows from a remote source itself (no local copy), and at the
    noon of the as-of date gives the run's screening row for every contact."""
    from pipelines.lookup import checks
    from pipelines.rules import compliance

    rnd = random.Random(11)
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home, BODY)
    made = every_kind(tmp_path, world(rnd, AS_OF), servers)
    _, screening, _ = kind_outcome(home, exporter_id, made["parquet"], "parquet", 1)
    plan = job.plan_run(home, exporter_id, AS_OF, source=made["parquet"])
    noon = compliance.as_of_instant(plan.company, AS_OF)
    ids = [contact for contact, *_ in screening]
    assert ids
    want = {contact: (ok, list(reasons), channel) for contact, _, channel, ok, reasons, _ in screening}
    for kind in ("csv", "parquet", "duckdb", "s3", "postgres"):
        out = checks.check_contacts(plan.exporter, plan.company, made[kind], ids, noon)
        got = {r["contactId"]: (r["canInteract"], r["reasons"], r["channel"]) for r in out["results"]}
        assert got == want, kind
        assert out["errors"] == [], kind


def _scans(server: PostgresServer, schema: str) -> dict[str, tuple[int, int, int]]:
    """(sequential scans, index scans, rows) per table of `schema`, as the server counts them."""
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(server.uri()) as con, con.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT relname, coalesce(seq_scan, 0), coalesce(idx_scan, 0), n_live_tup FROM pg_stat_user_tables "
            "WHERE schemaname = $1",
            [schema],
        )
        return {str(name): (int(seq), int(idx), int(rows)) for name, seq, idx, rows in cur.fetchall()}


def test_a_check_on_postgres_reads_only_its_borrowers_through_the_indexes(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    """With indexes on the keys (as an operational replica has them), a check scans no large table
    whole: the server counts index scans and no sequential scan for it (a table of a few hundred
    rows may still be scanned whole: the planner's choice, and the cheaper one there)."""
    import time

    import adbc_driver_postgresql.dbapi as pg

    from pipelines.lookup import checks
    from tests.worlds import sample_tables

    server = servers[0]
    schema = "indexed"
    uri = f"{server.uri()}?schema={schema}"
    sources.write_source(sample_tables(2000), uri, "parquet")
    with pg.connect(server.uri()) as con, con.cursor() as cur:
        for table, column in (("borrowers", "id"), ("contacts", "personId"), ("contacts", "id"),
                              ("interactions", "personId"), ("interactions", "id"),
                              ("do_not_interact", "personId"), ("do_not_interact", "id"),
                              ("consents", "personId")):  # fmt: skip
            cur.execute(f'CREATE INDEX ON {schema}.{table} ("{column}")')
        cur.execute("ANALYZE")
        con.commit()
    wanted = sources.open_source(SourceRef.parse(uri)).contacts.collect().get_column("id").to_list()[:3]
    before = _scans(server, schema)
    read = checks.read_for_contacts(uri, wanted)
    persons = set(read.contacts.collect().filter(pl.col("id").is_in(wanted)).get_column("personId").to_list())
    assert set(read.borrowers.collect().get_column("id").to_list()) == persons
    deadline = time.monotonic() + 20  # the server publishes a session's counts once it has ended
    while True:
        after = _scans(server, schema)
        used = {
            t: (after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after if after[t][2] >= 1000
        }
        if all(idx > 0 for _, idx in used.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(used) == {"borrowers", "contacts", "interactions", "consents"}, after
    assert all(seq == 0 for seq, _ in used.values()), used
    assert all(idx > 0 for _, idx in used.values()), used


def test_a_check_server_reconnects_after_postgres_restarts(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    """Checks keep their Postgres connection open between checks; one the server dropped (here by a
    restart) is replaced by a new one instead of failing the next check."""
    from pipelines.io import postgres
    from pipelines.lookup import checks
    from tests.worlds import sample_tables

    server = servers[0]
    uri = f"{server.uri()}?schema=restarted"
    sources.write_source(sample_tables(30), uri, "parquet")
    wanted = sources.open_source(SourceRef.parse(uri)).contacts.collect().get_column("id").to_list()[:2]
    first = checks.read_for_contacts(uri, wanted).contacts.collect()
    assert len(postgres._idle[SourceRef.parse(uri).conninfo]) == 1  # kept for the next check
    server.stop()
    server.start()
    again = checks.read_for_contacts(uri, wanted).contacts.collect()
    assert again.equals(first)


def test_a_check_needing_more_ids_than_postgres_takes_parameters_answers_as_the_run(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    """A borrower with 70,000 interactions: the check reads every row sharing an id with theirs, more
    ids than the 65,535 parameters Postgres takes in one query. Each kind binds the ids as one array,
    so the check answers, and as the run does (it failed on Postgres as 'the server did not answer')."""
    from pipelines.lookup import checks
    from pipelines.rules import compliance

    raw = {name: [dict(row) for row in rows] for name, rows in keyless_world().items()}
    raw["consents"].pop()  # the rejected consent would block every contact, whatever the history
    raw["interactions"] = [
        {"id": f"A-I{k}", "personId": "A", "channel": "voice", "direction": "outbound", "status": "attempted",
         "statusDetails": "voiceNoAnswer", "startedAt": f"2025-{1 + k % 12:02d}-{1 + k % 28:02d}T14:00:00Z"}
        for k in range(70_000)
    ] + [{"id": "M-I0", "personId": "M", "channel": "voice", "direction": "outbound", "status": "attempted",
          "statusDetails": "voiceNoAnswer", "startedAt": "2026-04-06T14:00:00Z"}]  # fmt: skip
    home = make_home(tmp_path / "home", maxRejectedShare=1.0)
    exporter_id = add_exporter(home, BODY)
    local = write(tmp_path / "duckdb", raw, "duckdb")
    remote = to_postgres(servers[0], write(tmp_path / "parquet", raw, "parquet"))
    _, screening, _ = kind_outcome(home, exporter_id, local, "duckdb", 1)
    want = {c: (ok, list(reasons)) for c, _, _, ok, reasons, _ in screening}
    assert set(want) == {"A-P", "M-P", "Z-P"}
    plan = job.plan_run(home, exporter_id, AS_OF, source=local)
    noon = compliance.as_of_instant(plan.company, AS_OF)
    for source in (local, remote):
        out = checks.check_contacts(plan.exporter, plan.company, source, sorted(want), noon)
        assert {r["contactId"]: (r["canInteract"], r["reasons"]) for r in out["results"]} == want, source


def test_a_campaign_reads_only_its_columns_from_s3_and_postgres_and_picks_the_same(
    tmp_path: Path, servers: tuple[PostgresServer, S3Server]
) -> None:
    """The campaign's query over the columns it names, read from each remote kind, picks whom the
    same query over the whole local source picks."""
    from pipelines.io import population

    made = every_kind(tmp_path, world(random.Random(5), AS_OF), servers)
    query = (
        "SELECT b.id FROM borrowers b WHERE b.companyId IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM contacts c WHERE c.personId = b.id AND c.contactType = 'phone')"
    )
    assert population.query_columns(query) == {
        "borrowers": {"id", "companyId"},
        "contacts": {"id", "personId", "contactType"},
    }
    whole = population.campaign_ids(query, sources.open_source(made["parquet"]), "c.yaml")
    assert whole.height > 0
    for kind in ("s3", "postgres"):
        narrow = population.campaign_ids(query, population.campaign_tables(query, made[kind]), "c.yaml")
        assert narrow.equals(whole), kind
