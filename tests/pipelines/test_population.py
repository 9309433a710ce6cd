"""Campaign queries: one read-only SELECT over the source tables, nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from pipelines.io.population import (
    campaign_ids,
    campaign_tables,
    check_campaign_query,
    query_columns,
    restrict_to_company,
)
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


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT b.id FROM borrowers AS b WHERE b.companyId = 'CP-A' AND EXISTS "
            "(SELECT 1 FROM interactions AS i WHERE i.personId = b.id AND i.theme = 'opsCollDebt')",
            {"borrowers": {"id", "companyId"}, "interactions": {"id", "personId", "theme"}},
        ),
        ("SELECT ID FROM Borrowers WHERE COMPANYID = 'CP-A'", {"borrowers": {"id", "companyId"}}),
        (
            "SELECT companyId AS id FROM borrowers JOIN contacts USING (id)",
            {"borrowers": {"id", "companyId"}, "contacts": {"id"}},
        ),
        (
            "WITH recent AS (SELECT personId FROM interactions WHERE startedAt > current_date - 30) "
            "SELECT personId AS id FROM recent",
            {"interactions": {"personId", "startedAt"}},
        ),
        ("SELECT 'B1' AS id", {}),
        ("SELECT * FROM borrowers", None),  # every column
        ("SELECT b.* FROM borrowers b", None),
        ("SELECT COLUMNS('id') FROM borrowers", None),
        ("SELECT personId AS id FROM consents NATURAL JOIN contacts", None),  # joined on what both hold
        ("SELECT b.id FROM borrowers b WHERE b IS NOT NULL", None),  # a whole row
        ("SELECT personId AS id, count(*) AS n FROM interactions GROUP BY ALL ORDER BY n", None),  # an alias
        ("SELECT id FROM interactions WHERE list_any_value(list_filter(themes, t -> t = 'a')) = 'a'", None),
        ("SELECT id FROM query_table('borrowers')", None),  # a table named in a string
        ("SELECT personId AS id FROM (PIVOT contacts ON contactType)", None),  # groups by the others
        ("SELECT id FROM borrowers, unnest([1, 2]) AS u(x)", None),
        (
            "SELECT id FROM borrowers UNION SELECT personId FROM contacts ORDER BY 1 LIMIT 5",
            {"borrowers": {"id"}, "contacts": {"id", "personId"}},
        ),
        ("SELEC id FROM borrowers", None),  # refused later, by campaign_ids
    ],
)
def test_a_campaign_query_reads_the_columns_it_can_name(
    query: str, expected: dict[str, set[str]] | None
) -> None:
    """Every column a query can name is read, in every table it reads that has one of that name
    (case aside); whatever may read a column without naming it reads every column."""
    assert query_columns(query) == expected


CAMPAIGNS = [
    "SELECT b.id FROM borrowers AS b WHERE b.companyId = 'CP-ACME' AND EXISTS "
    "(SELECT 1 FROM interactions AS i WHERE i.personId = b.id AND i.theme = 'opsCollDebt')",
    "SELECT DISTINCT c.personId AS id FROM contacts c JOIN borrowers b ON b.id = c.personId "
    "WHERE c.contactType = 'phone' AND b.timezone IS NOT NULL AND c.archivedAt IS NULL",
    "SELECT b.id FROM borrowers b WHERE NOT EXISTS (SELECT 1 FROM do_not_interact d WHERE d.personId = b.id)",
    "SELECT personId AS id FROM consents JOIN contacts USING (personId) WHERE name = 'autodialedColl'",
    "SELECT consents.name AS id FROM consents JOIN contacts USING (personId)",
    "WITH voice AS (SELECT personId FROM interactions WHERE channel = 'voice' AND startedAt < current_date) "
    "SELECT personId AS id FROM voice",
    "SELECT ID FROM BORROWERS WHERE COMPANYID = 'CP-ACME' AND lastName >= 'M'",
    "SELECT * FROM borrowers WHERE companyId = 'CP-ACME'",
    "SELECT id FROM query_table('borrowers') WHERE companyId = 'CP-ACME'",
]


@pytest.mark.parametrize("fmt", ["duckdb", "parquet", "csv"])
def test_a_campaign_reading_only_its_columns_picks_whom_reading_everything_picks(
    tmp_path: Path, fmt: str
) -> None:
    """Through the front door: a sample book written as each local kind, each campaign query run
    over the columns it names and over the whole source, the same ids (and some of them)."""
    from pipelines.io import sources
    from tests.worlds import sample_tables

    target = tmp_path / ("book.duckdb" if fmt == "duckdb" else "book")
    sources.write_source(sample_tables(120), target, fmt)  # type: ignore[arg-type]
    for query in CAMPAIGNS:
        narrow = campaign_ids(query, campaign_tables(query, target), "c.yaml")
        whole = campaign_ids(query, sources.open_source(target), "c.yaml")
        assert narrow.equals(whole), query
        assert narrow.height > 0, query
