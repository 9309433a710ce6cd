"""Who may be exported: a company's borrowers, an id file, or a campaign's read-only DuckDB query."""

from __future__ import annotations

import threading

import duckdb
import polars as pl

from pipelines.model.errors import ErrorItem, InvalidInputError
from pipelines.model.tables import SourceTables


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
