"""Campaign queries: one read-only SELECT over the source tables, nothing else."""

from __future__ import annotations

import time

import polars as pl
import pytest

from pipelines.io.population import campaign_ids, check_campaign_query, restrict_to_company
from pipelines.model.errors import InvalidInputError
from pipelines.model.tables import TABLES, SourceTables


def tables() -> SourceTables:
    frames = {spec.name: pl.DataFrame(schema=spec.schema).lazy() for spec in TABLES}
    frames["borrowers"] = pl.DataFrame(
        {"id": ["B1", "B2", "B3"], "companyId": ["CP-A", "CP-A", "CP-B"]},
    ).lazy()
    return SourceTables(**frames)


def test_select_returns_sorted_unique_ids() -> None:
    out = campaign_ids(
        "SELECT id FROM borrowers WHERE companyId = 'CP-A' UNION ALL SELECT 'B1'", tables(), "c.yaml"
    )
    assert out["id"].to_list() == ["B1", "B2"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM borrowers", "only SELECT"),
        ("SELECT 1 AS id; SELECT 2 AS id", "exactly one"),
        ("COPY borrowers TO 'x.csv'", "only SELECT"),
        ("ATTACH 'other.duckdb'", "only SELECT"),
        ("SELECT companyId FROM borrowers", "column 'id'"),
        ("SELEC id FROM borrowers", "not valid DuckDB SQL"),
        ("SELECT * FROM read_csv('/etc/passwd')", "query failed"),
    ],
)
def test_refused_queries_name_the_file_and_path(query: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        campaign_ids(query, tables(), "configs/campaigns/x.yaml")
    assert info.value.source == "configs/campaigns/x.yaml"
    assert info.value.errors[0].path == "/query"


def test_check_accepts_a_plain_select() -> None:
    check_campaign_query("SELECT id FROM borrowers", "c.yaml")


def test_population_file_is_restricted_to_the_company() -> None:
    ids = pl.LazyFrame({"id": ["B1", "B3", "B9", "B1"]})
    out = restrict_to_company(ids, tables().borrowers, "CP-A").collect()
    assert out["id"].to_list() == ["B1"]


def test_a_query_running_past_its_timeout_is_cancelled() -> None:
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n AS id FROM r"
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match="timeoutSeconds=1") as info:
        campaign_ids(endless, tables(), "c.yaml", timeout_seconds=1, memory_limit="4GB")
    assert time.perf_counter() - started < 30
    assert info.value.errors[0].path == "/query"


def test_a_query_past_its_memory_limit_is_cancelled() -> None:
    greedy = "SELECT list(repeat('x', 1000)) AS id FROM range(10000000)"
    with pytest.raises(InvalidInputError, match="memoryLimit=100MB"):
        campaign_ids(greedy, tables(), "c.yaml", timeout_seconds=60, memory_limit="100MB")
    # Within its limits the same machinery answers as usual.
    out = campaign_ids(
        "SELECT id FROM borrowers", tables(), "c.yaml", timeout_seconds=60, memory_limit="100MB"
    )
    assert out["id"].to_list() == ["B1", "B2", "B3"]
