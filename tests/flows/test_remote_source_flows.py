"""Dask workers read their own partitions from an S3 source: the scheduler carries the plan (with the
source as a URI) and small results, never frames, and the bytes are those of a local run."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pipelines.io import sources
from pipelines.model.config import Home
from pipelines.model.request import RunRequest
from pipelines.run import job
from tests.servers import S3Server, aws_environment
from tests.worlds import make_home, sample_tables, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

AS_OF = date(2026, 12, 1)
BUCKET = "dask-book"


@pytest.fixture
def s3_book(s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[Home, str]]:
    """A home whose source is the sample book as Parquet on the S3 server (and the AWS variables set,
    before the cluster's workers start, so they inherit them)."""
    home = make_home(tmp_path, 120, with_sftp=False)
    without_sftp(home, "CE-VOICECOL")
    with aws_environment(s3_server):
        s3_server.make_bucket(BUCKET)
        uri = f"s3://{BUCKET}/book/"
        sources.write_source(sample_tables(120), uri, "parquet")
        yield home, uri


def run(home: Home, name: str, source: str, **options: Any) -> str:
    """The sha256 of CE-VOICECOL's file from `source`, run through the export flow."""
    from flows.prefect_flows import export_contacts

    result = export_contacts(
        exporter_id="CE-VOICECOL",
        as_of=AS_OF,
        home=str(home.root),
        source=source,
        warehouse=str(home.root / "data" / f"{name}.duckdb"),
        deliver=False,
        **options,
    )
    assert result["counts"]["exported"] > 0
    return hashlib.sha256(Path(result["file"]).read_bytes()).hexdigest()


def test_dask_workers_read_their_partitions_from_s3(s3_book: tuple[Home, str]) -> None:
    from distributed import LocalCluster

    home, uri = s3_book
    local = run(home, "local", str(home.warehouse), partitions=1)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
    ) as cluster:
        remote = run(home, "dask", uri, partitions=3, dask_address=cluster.scheduler_address)
        prefix = cluster.scheduler.task_prefixes["partition_task"]
        assert prefix.all_durations["compute"] > 0, "the workers computed the partitions"
        results_bytes = prefix.nbytes_total
    assert remote == local
    # What crosses the scheduler per partition: the task's parameters (the plan names the source
    # by its URI) and its result (counts and staging paths).
    plan = job.plan_request(
        RunRequest(exporter_id="CE-VOICECOL", as_of=AS_OF, home=str(home.root), source=uri)
    )
    parameters = len(pickle.dumps(plan))
    print(
        f"per partition: parameters {parameters} B, results held by the scheduler {results_bytes / 3:.0f} B"
    )
    assert parameters < 1 << 20
    assert results_bytes / 3 < 1 << 20
