"""Who may be exported: a company's borrowers, an id file, or a campaign's read-only DuckDB query."""

from __future__ import annotations

import json
import threading
from typing import Any

import duckdb
import polars as pl

from pipelines.io import sources
from pipelines.model.errors import ErrorItem, InvalidInputError
from pipelines.model.tables import TABLES, SourceTables


def restrict_to_company(ids: pl.LazyFrame, borrowers: pl.LazyFrame, company_id: str) -> pl.LazyFrame:
    """Only ids of borrowers of `company_id`: an exporter never reaches another company's borrowers."""
    own = borrowers.filter(pl.col("companyId") == company_id).select("id")
    return ids.select(pl.col("id").cast(pl.String)).unique().join(own, on="id", how="semi")


def check_campaign_query(query: str, source: str) -> None:
    """Accept exactly one SELECT statement; anything else (DDL, DML, COPY, PRAGMA, several) is refused."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise InvalidInputError(source, [ErrorItem("/query", f"not valid DuckDB SQL: {exc}")]) from None
    if len(statements) != 1:
        raise InvalidInputError(
            source, [ErrorItem("/query", f"give exactly one SELECT statement, not {len(statements)}")]
        )
    if statements[0].type != duckdb.StatementType.SELECT:
        raise InvalidInputError(
            source, [ErrorItem("/query", f"only SELECT is allowed, not {statements[0].type.name}")]
        )


def campaign_tables(query: str, source: sources.Source) -> SourceTables:
    """The source tables a campaign query runs over: only the columns it can name (`query_columns`),
    or every column when it may read any. A query naming borrowers' `id` and `companyId` and two
    columns of interactions reads those, not the whole book (figures in docs/configuration.md).
    The query was checked when the run was planned (`preflight.check_plan`)."""
    named = query_columns(query)
    if named is None:
        return sources.open_source(source)
    return sources.open_columns(source, named)


def query_columns(query: str) -> dict[str, set[str]] | None:
    """Per source table a query reads, the columns of its spec that the query can name; None when
    it may read any column: a `*` or `COLUMNS(...)`, a NATURAL join, or a name that is no source
    column (a whole row `b`, an output alias, a lambda's parameter). A name counts in every table
    the query reads that has it, whatever its qualifier, and case does not matter (as in DuckDB):
    more is read rather than less."""
    tree = _parsed(query)
    if tree is None:
        return None
    names: set[str] = set()
    tables: set[str] = set()
    if not _walk(tree, names, tables):
        return None
    known = {c.name.lower(): c.name for spec in TABLES for c in spec.columns}
    names -= _NAMES_OF_VALUES
    if not names <= known.keys():
        return None
    wanted = {known[n] for n in names}
    return {
        spec.name: {c.name for c in spec.columns if c.name in wanted}
        for spec in TABLES
        if spec.name.lower() in tables
    }


# SQL's values written without parentheses, which DuckDB parses as names (`current_date - 30`).
_NAMES_OF_VALUES = frozenset(
    {"current_date", "current_time", "current_timestamp", "localtime", "localtimestamp"}
)


def _parsed(query: str) -> Any:
    """DuckDB's own parse of the query (its statements as JSON), or None if it does not parse."""
    with duckdb.connect() as con:
        row = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    return None if tree.get("error") else tree.get("statements")


# The parts of a query (nodes, table references, modifiers) whose columns are all named in it. Any
# other (a table function such as `query_table('borrowers')`, which names a table in a string; a
# PIVOT; whatever a later DuckDB adds) makes the query read every column.
_PLAIN_PARTS = frozenset(
    {"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE", "RECURSIVE_CTE_NODE", "BASE_TABLE", "JOIN",
     "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "ORDER_MODIFIER", "LIMIT_MODIFIER", "DISTINCT_MODIFIER",
     "LIMIT_PERCENT_MODIFIER", "ORDER_DEFAULT", "ASCENDING", "DESCENDING"}
)  # fmt: skip


def _walk(node: Any, names: set[str], tables: set[str]) -> bool:
    """Collect the column names and table names of a parse tree; False at anything that may read
    columns it does not name (a star, a NATURAL join, a part not in `_PLAIN_PARTS`)."""
    if isinstance(node, list):
        return all(_walk(item, names, tables) for item in node)
    if not isinstance(node, dict):
        return True
    kind = node.get("class")
    part = node.get("type")
    if kind is None and isinstance(part, str) and part not in _PLAIN_PARTS:
        return False
    if kind == "STAR" or node.get("ref_type") == "NATURAL":
        return False
    if kind == "COLUMN_REF":
        names.add(str(node["column_names"][-1]).lower())
    if node.get("type") == "BASE_TABLE":  # a source table, or a CTE's name (not a source table)
        tables.add(str(node.get("table_name", "")).lower())
    names.update(str(n).lower() for n in node.get("using_columns") or ())
    return all(_walk(value, names, tables) for value in node.values())


DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MEMORY_LIMIT = "2GB"


def campaign_ids(
    query: str,
    tables: SourceTables,
    source: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> pl.DataFrame:
    """Run the campaign query over the source tables (as views) in an isolated in-memory DuckDB.

    File access is switched off before the query runs, so it can read nothing but the source tables.
    The query may use `memory_limit` (nothing is spilled to disk) and is interrupted after
    `timeout_seconds`; either way it fails cleanly with an InvalidInputError naming the campaign.
    """
    check_campaign_query(query, source)
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": ""})
    timer = threading.Timer(timeout_seconds, con.interrupt)
    try:
        _register_sealed(con, tables)
        timer.start()
        result = _query(con, query, source, timeout_seconds, memory_limit)
    finally:
        timer.cancel()
        con.close()
    if "id" not in result.columns:
        raise InvalidInputError(
            source, [ErrorItem("/query", f"the query must return a column 'id' (got {result.columns})")]
        )
    return result.select(pl.col("id").cast(pl.String)).drop_nulls().unique().sort("id")


def _register_sealed(con: duckdb.DuckDBPyConnection, tables: SourceTables) -> None:
    """The source tables as views, then file access and the configuration locked."""
    con.execute("SET enable_progress_bar = false")
    for name in ("borrowers", "contacts", "interactions", "do_not_interact", "consents"):
        con.register(name, tables.get(name).collect().to_arrow())
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _query(
    con: duckdb.DuckDBPyConnection, query: str, source: str, timeout_seconds: float, memory_limit: str
) -> pl.DataFrame:
    try:
        return pl.DataFrame(con.sql(query).to_arrow_table())
    except duckdb.InterruptException:
        raise InvalidInputError(
            source,
            [
                ErrorItem(
                    "/query",
                    f"cancelled: still running after timeoutSeconds={timeout_seconds:g}; "
                    "make the query cheaper or raise timeoutSeconds",
                )
            ],
        ) from None
    except duckdb.OutOfMemoryException:
        raise InvalidInputError(
            source,
            [
                ErrorItem(
                    "/query",
                    f"cancelled: needs more than memoryLimit={memory_limit}; "
                    "make the query leaner or raise memoryLimit",
                )
            ],
        ) from None
    except duckdb.Error as exc:
        raise InvalidInputError(source, [ErrorItem("/query", f"query failed: {exc}")]) from None
