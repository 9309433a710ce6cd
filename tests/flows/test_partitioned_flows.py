"""The export flow in partitions: named task runs, a failed partition retried alone, Dask workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.model.config import Home
from pipelines.model.request import RunRequest
from pipelines.run import building, job
from tests.worlds import make_home, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AS_OF = date(2026, 12, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path, 120, with_sftp=False)
    without_sftp(h, "CE-VOICECOL")
    return h


def run(home: Home, name: str, **options: Any) -> dict[str, Any]:
    """Run CE-VOICECOL into its own warehouse; the file's bytes and the warehouse rows."""
    from flows.prefect_flows import export_contacts

    warehouse = home.root / "data" / f"{name}.duckdb"
    result = export_contacts(
        **RunRequest(
            exporter_id="CE-VOICECOL",
            as_of=AS_OF,
            home=str(home.root),
            warehouse=str(warehouse),
            deliver=False,
            **options,
        ).flow_parameters()
    )
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        screening = con.execute(
            "SELECT contactId, personId, channel, canInteract, reasons FROM screening_results ORDER BY contactId"
        ).fetchall()
        rejected = con.execute("SELECT tableName, rowKey, checks FROM rejected_rows ORDER BY ALL").fetchall()
    finally:
        con.close()
    return {
        "bytes": Path(result["file"]).read_bytes(),
        "counts": result["counts"],
        "screening": screening,
        "rejected": rejected,
    }


def test_partitions_are_named_task_runs_and_a_failed_one_is_retried_alone(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.context import get_run_context

    whole = run(home, "one", partitions=1)
    calls: Counter[int] = Counter()
    flow_names: list[str] = []
    real = building.build_part

    def build_part(plan: job.RunPlan, run_id: str, part: Any, progress: Any = None) -> Any:
        calls[part.index] += 1
        flow_names.append(get_run_context().task_run.flow_run_id.hex)  # type: ignore[union-attr]
        if part.index == 1 and calls[1] == 1:
            raise OSError("disk hiccup while writing the part")
        return real(plan, run_id, part)

    monkeypatch.setattr(building, "build_part", build_part)
    three = run(home, "three", partitions=3)
    assert dict(calls) == {0: 1, 1: 2, 2: 1}, "only the failed partition runs again"
    assert three == whole

    runs = {r.name: r for r in task_runs_of_latest(flow_names[0])}
    names = sorted(n for n in runs if n.startswith("CE-VOICECOL 2026-12-01 p") and "/" in n)
    assert names == [
        "CE-VOICECOL 2026-12-01 p1/3",
        "CE-VOICECOL 2026-12-01 p2/3",
        "CE-VOICECOL 2026-12-01 p3/3",
    ]
    assert runs["CE-VOICECOL 2026-12-01 p2/3"].run_count == 2
    assert runs["CE-VOICECOL 2026-12-01 p1/3"].run_count == 1
    assert all(runs[n].state.is_completed() for n in names)


def task_runs_of_latest(flow_run_hex: str) -> list[Any]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return list(
                await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_hex)]))
                )
            )

    return asyncio.run(read())


def test_a_terminal_error_in_a_partition_is_not_retried(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.model.errors import ErrorItem, SourceDataError

    calls: Counter[int] = Counter()

    def build_part(plan: job.RunPlan, run_id: str, part: Any, progress: Any = None) -> Any:
        calls[part.index] += 1
        staging = building.staging_dir(plan, run_id)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / f"rows-{part.name}.arrow").write_bytes(b"part written before the error")
        raise SourceDataError("interactions", [ErrorItem("/statusDetails", "unknown value")])

    monkeypatch.setattr(building, "build_part", build_part)
    with pytest.raises(SourceDataError):
        run(home, "bad", partitions=2)
    assert not list((home.root / "data" / "runs").glob("*")), "a failed run leaves no staging behind"
    # partition 1 may or may not have started when partition 0 failed; neither ran twice
    assert calls[0] == 1
    assert set(calls.values()) == {1}


def test_partitions_on_a_dask_cluster_give_the_same_bytes(home: Home) -> None:
    from distributed import LocalCluster

    # A contact id used by the first and the last borrower: their rows fall in different partitions,
    # and only the table-wide check over the whole source sees the twin.
    con = duckdb.connect(str(home.warehouse))
    try:
        first, last = con.execute('SELECT min("personId"), max("personId") FROM contacts').fetchall()[0]
        twin = con.execute('SELECT min(id) FROM contacts WHERE "personId" = ?', [first]).fetchall()[0][0]
        con.execute(
            'UPDATE contacts SET id = ? WHERE id = (SELECT min(id) FROM contacts WHERE "personId" = ?)',
            [twin, last],
        )
    finally:
        con.close()
    company = home.root / "configs" / "companies" / "CP-ACME.yaml"
    company.write_text(company.read_text().replace("maxRejectedShare: 0.01", "maxRejectedShare: 0.5"))
    local = run(home, "local", partitions=1)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
    ) as cluster:
        remote = run(home, "dask", partitions=3, dask_address=cluster.scheduler_address)
        ran = cluster.scheduler.task_prefixes  # the partition tasks went through the scheduler
    assert "partition_task" in ran
    assert ran["partition_task"].all_durations["compute"] > 0, "the workers computed the partitions"
    assert remote == local
    assert local["counts"]["exported"] > 0
    assert [(t, k) for t, k, _ in local["rejected"]] == [("contacts", twin), ("contacts", twin)]
    assert twin.encode() not in local["bytes"]
