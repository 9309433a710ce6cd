"""Campaign queries: one read-only SELECT over the source tables, nothing else."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.errors import InvalidInputError
from pipelines.population import campaign_ids, check_campaign_query, restrict_to_company
from pipelines.tables import TABLES, SourceTables


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
