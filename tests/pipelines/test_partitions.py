"""Runs in borrower partitions: the file, the manifest and the warehouse rows do not depend on N."""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.ipc as ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.io import sources
from pipelines.model.config import Home
from pipelines.model.tables import TABLES, SourceTables
from pipelines.run import cuts, job, partitions
from tests.worlds import make_home, sample_tables, without_sftp

AS_OF = date(2026, 12, 1)
BORROWERS = 60


def flawed_tables(borrowers: int = BORROWERS) -> SourceTables:
    """Generated tables plus rows that validation rejects: an orphan contact, a borrower with a bad
    time zone and a contact of that borrower (rejected with it)."""
    t = sample_tables(borrowers)
    people = t.borrowers.collect()
    contacts = t.contacts.collect()
    bad_borrower = people.head(1).with_columns(id=pl.lit("B-BADZONE"), timezone=pl.lit("Mars/Base"))
    orphan = contacts.head(1).with_columns(id=pl.lit("C-ORPHAN"), personId=pl.lit("B-NOBODY"))
    of_bad = contacts.head(1).with_columns(id=pl.lit("C-OFBAD"), personId=pl.lit("B-BADZONE"))
    return replace(
        t,
        borrowers=pl.concat([people, bad_borrower]).lazy(),
        contacts=pl.concat([contacts, orphan, of_bad]).lazy(),
    )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path, BORROWERS, with_sftp=False)
    sources.write_source(flawed_tables(), h.warehouse, "duckdb")
    return h


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def outcome(home: Home, exporter_id: str, n: int | str, **plan: Any) -> dict[str, Any]:
    """Run with N partitions; the file's bytes, the manifest without runId and the warehouse rows."""
    warehouse = home.root / "data" / f"out-{n}.duckdb"
    planned = job.plan_run(home, exporter_id, AS_OF, warehouse_path=warehouse, **plan)
    summary = job.run_export(planned, deliver_enabled=False, partitions=n)
    file = Path(summary["file"])
    manifest = json.loads(file.with_name(file.name + ".manifest.json").read_text())
    run_id = manifest.pop("runId")
    assert run_id == summary["runId"]
    return {
        "bytes": file.read_bytes(),
        "manifest": manifest,
        "counts": summary["counts"],
        "screening": rows(
            warehouse,
            "SELECT exporterId, asOfDate, contactId, personId, channel, canInteract, reasons, nextEligibleDate "
            "FROM screening_results ORDER BY contactId",
        ),
        "rejected": rows(warehouse, "SELECT tableName, rowKey, checks FROM rejected_rows ORDER BY ALL"),
        "run": rows(
            warehouse,
            "SELECT exporterId, companyId, asOfDate, status, population, matched, screenedOut, exported, "
            "sha256 FROM export_runs",
        ),
    }


def test_partitions_are_ranges_cut_at_the_quantiles_of_the_borrower_ids() -> None:
    ids = pl.Series("id", [f"B{i:02d}" for i in range(10)])  # sorted, K = 10
    assert cuts.cuts(ids, 4) == ["B02", "B05", "B07"]  # ids[floor(k * 10 / 4)], k = 1..3
    assert cuts.cuts(ids, 1) == []
    assert cuts.cuts(ids, 13)[:4] == ["B00", "B01", "B02", "B03"]  # more parts than ids: some empty
    probe = pl.Series("id", ["A", "B01", "B02", "B04", "B05", "B99", "C", None])
    assert partitions.partition_of(probe, ["B02", "B05", "B07"]).to_list() == [0, 0, 1, 1, 2, 3, 3, 0]
    assert partitions.partition_of(probe, []).to_list() == [0] * 8
    four = partitions.parts_of(["B02", "B05", "B07"], 4)
    assert [(p.low, p.high, p.label) for p in four] == [
        (None, "B02", "p1/4"),
        ("B02", "B05", "p2/4"),
        ("B05", "B07", "p3/4"),
        ("B07", None, "p4/4"),
    ]
    # every text is in exactly one partition's filter, the same one partition_of gives; a row without
    # a key is read by every partition (a rejected one blocks every borrower), reported by the first
    frame = probe.to_frame()
    for part in four:
        rows = part.rows
        assert rows is not None
        kept = frame.filter(rows.expr("id")).get_column("id").to_list()
        expected = probe.drop_nulls().filter(
            partitions.partition_of(probe.drop_nulls(), ["B02", "B05", "B07"]) == part.index
        )
        assert kept == [*expected.to_list(), None]
        assert part.reports_unowned == (part.index == 0)


IDS = st.lists(st.one_of(st.none(), st.text(alphabet="AB-09é\u00ff", max_size=4)), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=IDS, presorted=st.booleans())
def test_sorted_borrower_ids_are_the_distinct_ids_in_byte_order(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str | None], presorted: bool
) -> None:
    """Whatever the source's order (sorted sources take a faster path), DuckDB and Parquet alike."""
    if presorted:
        ids = sorted(i for i in ids if i is not None) + [None] * ids.count(None)
    expected = sorted({i for i in ids if i is not None}, key=lambda i: i.encode())
    folder = tmp_path_factory.mktemp("ids")
    frame = pl.DataFrame({"id": ids}, schema={"id": pl.String})
    frame.write_parquet(folder / "borrowers.parquet")
    with duckdb.connect(str(folder / "source.duckdb")) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE borrowers AS SELECT * FROM frame")
    for source in (folder, folder / "source.duckdb"):
        assert cuts.sorted_borrower_ids(source).to_list() == expected, source


REPEATING_IDS = st.lists(st.one_of(st.none(), st.sampled_from(["", "A", "A0", "B", "é"])), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    ids=st.one_of(IDS, REPEATING_IDS),
    presorted=st.booleans(),
    batch=st.integers(1, 7),
    count=st.integers(2, 9),
)
def test_cuts_from_sorted_batches_are_the_cuts_of_the_whole_column(
    ids: list[str | None], presorted: bool, batch: int, count: int
) -> None:
    """Read in batches (a repeat may straddle two, a batch may be all nulls), sorted ids give the
    same cuts as the sorted distinct column; unsorted ones give None, for the caller to sort."""
    if presorted:
        ids = sorted((i for i in ids if i is not None), key=str.encode) + [None] * ids.count(None)
    column = pl.Series("id", ids, pl.String)

    def batches() -> list[pl.Series]:
        return [column.slice(i, batch) for i in range(0, max(len(ids), 1), batch)]

    present = [i for i in ids if i is not None]
    in_byte_order = [i.encode() for i in present] == sorted(i.encode() for i in present)
    streamed = cuts.cuts_streamed(batches, count)
    if in_byte_order:
        distinct = pl.Series("id", sorted(set(present), key=lambda i: i.encode()), pl.String)
        assert streamed == cuts.cuts(distinct, count)
    else:
        assert streamed is None


def test_cuts_of_a_sorted_parquet_table_are_read_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups of 7 and batches of 5 ids, the first id in 30 rows: the same cuts as sorting the
    column whole, without it."""
    ids = ["B000"] * 30 + sorted(f"B{i:03d}" for i in range(1, 40) for _ in range(1 + i % 3))
    pl.DataFrame({"id": ids}).write_parquet(tmp_path / "borrowers.parquet", row_group_size=7)
    monkeypatch.setattr(partitions.table_wide, "BATCH_IDS", 5)
    whole = cuts.cuts(cuts.sorted_borrower_ids(tmp_path), 4)
    assert whole == ["B010", "B020", "B030"]

    def never(source: object) -> pl.Series:
        raise AssertionError("a sorted Parquet table is not read whole for its cuts")

    monkeypatch.setattr(cuts, "sorted_borrower_ids", never)
    assert cuts.borrower_cuts(tmp_path, 4) == whole


@pytest.mark.parametrize("ordered", [True, False], ids=["sorted", "unsorted"])
def test_cuts_of_a_duckdb_table_are_read_in_batches_when_sorted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    """A DuckDB `borrowers` table in id order (repeats and nulls too), batches of 5 ids: the cuts of
    the whole sorted column, without reading it whole. Out of order: read whole, the same cuts."""
    ids: list[str | None] = ["B000"] * 30 + sorted(
        f"B{i:03d}" for i in range(1, 40) for _ in range(1 + i % 3)
    )
    ids += [None, None]
    if not ordered:
        ids = ids[::-1]
    path = tmp_path / "book.duckdb"
    frame = pl.DataFrame({"id": ids}, schema={"id": pl.String})
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE borrowers AS SELECT * FROM frame")
    monkeypatch.setattr(partitions.table_wide, "BATCH_IDS", 5)
    whole = cuts.cuts(cuts.sorted_borrower_ids(path), 4)
    assert whole == ["B010", "B020", "B030"]
    read_whole = []

    def counted(source: object) -> pl.Series:
        read_whole.append(source)
        return whole_ids(source)

    whole_ids = cuts.sorted_borrower_ids
    monkeypatch.setattr(cuts, "sorted_borrower_ids", counted)
    assert cuts.borrower_cuts(path, 4) == whole
    assert read_whole == ([] if ordered else [path])


def test_part_files_hold_smaller_batches_as_parts_grow_in_number(tmp_path: Path) -> None:
    """The merge holds one batch of every part: at most MERGE_HELD_ROWS rows, whatever N."""
    assert partitions.part_batch_rows(2) == partitions.BATCH_ROWS
    assert partitions.part_batch_rows(108) * 108 <= partitions.MERGE_HELD_ROWS
    assert partitions.part_batch_rows(10_000) == 4096
    keys = pl.Series([f"C{i:05d}" for i in range(10_000)])
    rows_file, screening_file, _ = partitions.write_part(
        tmp_path,
        partitions.Part(0, 1000),
        pl.DataFrame({"v": keys}),
        keys,
        pl.DataFrame({"contactId": keys}),
        pl.DataFrame({"tableName": []}, schema={"tableName": pl.String}),
    )
    assert rows_file is not None
    reader = ipc.open_file(str(rows_file))
    sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert sizes == [4096, 4096, 1808]
    streamed = partitions.screening_batches([screening_file, screening_file]).read_all()
    assert streamed.num_rows == 20_000


@pytest.mark.parametrize("exporter_id", ["CE-VOICECOL", "CE-EMAILSVC"])
def test_file_manifest_and_warehouse_rows_are_the_same_for_every_n(home: Home, exporter_id: str) -> None:
    without_sftp(home, exporter_id)
    one = outcome(home, exporter_id, 1)
    assert one["counts"]["exported"] > 0
    assert one["counts"]["rejected"] >= 3
    assert {r[1] for r in one["rejected"]} >= {"C-ORPHAN", "B-BADZONE", "C-OFBAD"}
    if exporter_id == "CE-VOICECOL":
        assert one["counts"]["screenedOut"] > 0, "the world must block someone, or this proves little"
    # 1: the whole run in one part, which writes the file itself (what the benchmark measures)
    for n in (2, 7, BORROWERS + 5, "auto"):
        other = outcome(home, exporter_id, n)
        for key in one:
            assert other[key] == one[key], f"{key} differs with {n} partitions"


def test_a_partition_reads_only_its_borrowers_rows(home: Home) -> None:
    ids = cuts.sorted_borrower_ids(home.warehouse)
    assert ids.len() == BORROWERS + 1
    three = partitions.parts_of(cuts.cuts(ids, 3), 3)
    whole = sources.open_source(home.warehouse)
    seen = 0
    for part in three:
        assert part.rows is not None
        read = sources.open_source(home.warehouse, part.rows)
        mine = set(ids.filter(partitions.partition_of(ids, cuts.cuts(ids, 3)) == part.index).to_list())
        borrower_ids = set(read.borrowers.collect().get_column("id").to_list())
        assert borrower_ids == mine
        for name in ("contacts", "interactions", "do_not_interact", "consents"):
            got = read.get(name).collect()
            keys = got.get_column("personId")
            assert (partitions.partition_of(keys, cuts.cuts(ids, 3)) == part.index).all(), name
            if name == "contacts":
                seen += got.height
    assert seen == whole.contacts.collect().height  # the orphan contact included, exactly once


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_folder_sources_give_the_same_bytes_for_every_n(home: Home, fmt: str) -> None:
    folder = home.root / "data" / f"source-{fmt}"
    sources.write_source(flawed_tables(), folder, fmt)  # type: ignore[arg-type]
    without_sftp(home, "CE-VOICECOL")
    one = outcome(home, "CE-VOICECOL", 1, source=folder)
    three = outcome(home, "CE-VOICECOL", 3, source=folder)
    assert three == one
    assert one["counts"]["exported"] > 0


def test_parquet_export_files_are_the_same_for_every_n(home: Home) -> None:
    without_sftp(home, "CE-VOICECOL")
    path = home.exporters_dir / "CE-VOICECOL.json"
    body = json.loads(path.read_text())
    body["fileSettings"] = {**body["fileSettings"], "format": "parquet"}
    path.write_text(json.dumps(body))
    one = outcome(home, "CE-VOICECOL", 1)
    assert pl.read_parquet(one["bytes"]).height == one["counts"]["exported"] > 0
    assert outcome(home, "CE-VOICECOL", 4) == one


def test_population_file_is_split_by_the_same_function(home: Home) -> None:
    without_sftp(home, "CE-EMAILSVC")
    ids = sample_tables(BORROWERS).borrowers.collect().get_column("id").head(25)
    population = home.root / "population.csv"
    pl.DataFrame({"id": [*ids.to_list(), "B-NOT-THERE"]}).write_csv(population)
    one = outcome(home, "CE-EMAILSVC", 1, population_file=population)
    assert 0 < one["counts"]["population"] <= 25
    assert outcome(home, "CE-EMAILSVC", 5, population_file=population) == one


def test_merge_streams_sorted_parts_in_fixed_batches(tmp_path: Path) -> None:
    frame = pl.DataFrame({"v": [f"x{i:04d}" for i in range(1000)]})
    keys = pl.Series([f"C{i:05d}" for i in range(1000)])
    assignment = pl.Series([zlib.crc32(k.encode()) % 4 for k in keys.to_list()])
    files = []
    for k in range(4):
        chosen = assignment == k
        rows_file, _, _ = partitions.write_part(
            tmp_path,
            partitions.Part(k, 4),
            frame.filter(chosen),
            keys.filter(chosen),
            pl.DataFrame({"contactId": keys.filter(chosen)}),
            pl.DataFrame({"tableName": []}, schema={"tableName": pl.String}),
        )
        files.append(rows_file)
    batches = list(partitions.merged_batches(files, batch_rows=64))
    assert [b.height for b in batches] == [64] * 15 + [40]
    assert pl.concat(batches).equals(frame)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    owners=st.lists(st.integers(0, 5), max_size=300),
    contiguous=st.booleans(),
    batch=st.integers(1, 50),
    out=st.integers(1, 70),
)
def test_merged_parts_are_the_rows_in_key_order_in_fixed_batches(
    tmp_path_factory: pytest.TempPathFactory, owners: list[int], contiguous: bool, batch: int, out: int
) -> None:
    """Parts holding interleaved keys or ranges one after the other (some empty), part files in
    batches of any size: the merge gives every row once, in key order, in batches of `out` rows."""
    if contiguous:
        owners = sorted(owners)
    folder = tmp_path_factory.mktemp("merge")
    keys = [f"C{i:04d}" for i in range(len(owners))]
    count = 6
    files = []
    for k in range(count):
        mine = [key for key, owner in zip(keys, owners, strict=True) if owner == k]
        table = pl.DataFrame(
            {"v": mine, partitions.SORT_KEY: mine}, schema={"v": pl.String, partitions.SORT_KEY: pl.String}
        ).to_arrow()
        path = folder / f"rows-{k}.arrow"
        with ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table, max_chunksize=batch)
        files.append(path)
    batches = list(partitions.merged_batches(files, batch_rows=out))
    assert [b.height for b in batches] == [out] * (len(keys) // out) + (
        [len(keys) % out] if len(keys) % out else []
    )
    merged = pl.concat(batches).get_column("v").to_list() if batches else []
    assert merged == keys


def test_auto_picks_n_from_the_source_size_and_the_budget(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = partitions.source_rows(home.warehouse)
    whole = sources.open_source(home.warehouse)
    assert rows == sum(whole.get(spec.name).collect().height for spec in TABLES)
    assert partitions.auto_partitions(home.warehouse, 2 << 30) == 1  # a small source: one part
    # N = ceil(rows x PEAK_PER_ROW / (budget - 512 MiB)); this world's rows made to need 350 MiB
    monkeypatch.setattr(partitions, "PEAK_PER_ROW", (350 << 20) // rows + 1)
    budget = partitions.BASELINE_BYTES + (100 << 20)
    assert partitions.auto_partitions(home.warehouse, budget) == 4
    parquet = tmp_path / "parquet"
    sources.write_source(whole, parquet, "parquet")
    assert partitions.source_rows(parquet) == rows
    assert partitions.auto_partitions(parquet, budget) == 4
    # CSV: the rows estimated from each file's first lines (exact for files this small), the same model
    csv_folder = tmp_path / "csv"
    sources.write_source(whole, csv_folder, "csv")
    assert partitions.source_rows(csv_folder) == rows
    assert partitions.auto_partitions(csv_folder, budget) == 4


def test_each_partition_holds_only_its_share_of_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory bound, counted in rows: no partition reads more than about 1/N of the source."""
    home = make_home(tmp_path, 2000, with_sftp=False)
    without_sftp(home, "CE-VOICECOL")
    total = sum(sources.open_source(home.warehouse).get(s.name).collect().height for s in TABLES)
    read: list[int] = []
    real = sources.open_source

    def counting(
        path: Path,
        rows: sources.RowFilter | None = None,
        skip: sources.Skip | None = None,
        csv_shapes: Mapping[str, sources.CsvShape] | None = None,
    ) -> SourceTables:
        tables = real(path, rows, skip, csv_shapes)
        read.append(sum(tables.get(s.name).collect().height for s in TABLES))
        return tables

    monkeypatch.setattr(sources, "open_source", counting)
    job.run_export(job.plan_run(home, "CE-VOICECOL", AS_OF), deliver_enabled=False, partitions=5)
    assert len(read) == 5
    assert sum(read) == total  # every row read once, by one partition
    assert max(read) <= total / 5 * 1.25, read


def unowned_rejected_home(home: Home, share: str) -> None:
    """Add an interaction without a borrower (rejected: it could be anyone's) and set maxRejectedShare."""
    t = flawed_tables()
    interactions = t.interactions.collect()
    nobody = interactions.head(1).with_columns(id=pl.lit("I-NOBODY"), personId=pl.lit(None, pl.String))
    sources.write_source(
        replace(t, interactions=pl.concat([interactions, nobody]).lazy()), home.warehouse, "duckdb"
    )
    company = home.configs / "companies" / "CP-ACME.yaml"
    company.write_text(company.read_text().replace("maxRejectedShare: 0.01", f"maxRejectedShare: {share}"))


def test_a_rejected_row_without_a_borrower_blocks_everyone_in_every_partition(home: Home) -> None:
    """Fail closed across partitions: every partition reads the keyless row and blocks its contacts;
    the row is reported once, whatever N."""
    unowned_rejected_home(home, "1.0")
    without_sftp(home, "CE-VOICECOL")
    one = outcome(home, "CE-VOICECOL", 1)
    assert one["counts"]["exported"] == 0
    assert one["counts"]["byReason"]["SOURCE_ROW_REJECTED"] == one["counts"]["matched"] > 0
    assert [r[:2] for r in one["rejected"] if r[0] == "interactions"] == [("interactions", "I-NOBODY")]
    for n in (3, BORROWERS + 5):
        assert outcome(home, "CE-VOICECOL", n) == one, f"differs with {n} partitions"


def test_the_rejected_share_is_judged_over_the_whole_run_not_per_partition(home: Home) -> None:
    """Every borrower blocked by the keyless row: over the default share, the run fails for any N,
    writes no file and records the failed run with the row."""
    from pipelines.model.errors import SourceDataError

    unowned_rejected_home(home, "0.01")
    without_sftp(home, "CE-VOICECOL")
    for n in (1, 4):
        warehouse = home.root / "data" / f"fail-{n}.duckdb"
        plan = job.plan_run(home, "CE-VOICECOL", AS_OF, warehouse_path=warehouse)
        with pytest.raises(SourceDataError, match="maxRejectedShare"):
            job.run_export(plan, deliver_enabled=False, partitions=n)
        assert not any(p.is_file() and p.suffix == ".csv" for p in plan.exports.rglob("*"))
        assert rows(warehouse, "SELECT status FROM export_runs") == [("failed",)]
        assert ("interactions", "I-NOBODY") in {
            (r[0], r[1]) for r in rows(warehouse, "SELECT tableName, rowKey FROM rejected_rows")
        }


@pytest.mark.parametrize("damage", ["parquet cut short", "not a DuckDB file"])
def test_a_damaged_source_fails_the_default_run_with_a_source_error(
    home: Home, tmp_path: Path, damage: str
) -> None:
    """Choosing N reads the source's metadata first; a file it cannot open must still end in the
    read's clear error (exit 2, the file named), not in a library's traceback."""
    if damage == "parquet cut short":
        source = tmp_path / "src"
        sources.write_source(sources.open_source(home.warehouse), source, "parquet")
        broken = source / "contacts.parquet"
        broken.write_bytes(broken.read_bytes()[:-200])
    else:
        source = broken = tmp_path / "source.duckdb"
        broken.write_text("id,personId\nCT-1,BR-1\n")
    assert partitions.source_rows(source) is None
    without_sftp(home, "CE-VOICECOL")
    plan = job.plan_run(home, "CE-VOICECOL", AS_OF, source=source, warehouse_path=tmp_path / "wh.duckdb")
    with pytest.raises(sources.SourceDataError) as caught:
        job.run_export(plan, deliver_enabled=False)
    assert caught.value.exit_code == 2
    assert broken.name in caught.value.message
