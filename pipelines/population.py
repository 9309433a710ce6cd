"""Who may be exported: a company's borrowers, an id file, or a campaign's read-only DuckDB query."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.errors import ErrorItem, InvalidInputError
from pipelines.tables import SourceTables


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


def campaign_ids(query: str, tables: SourceTables, source: str) -> pl.DataFrame:
    """Run the campaign query over the source tables (as views) in an isolated in-memory DuckDB.

    File access is switched off before the query runs, so it can read nothing but the source tables.
    """
    check_campaign_query(query, source)
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        for name in ("borrowers", "contacts", "interactions", "do_not_interact", "consents"):
            con.register(name, tables.get(name).collect().to_arrow())
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            result = pl.DataFrame(con.sql(query).to_arrow_table())
        except duckdb.Error as exc:
            raise InvalidInputError(source, [ErrorItem("/query", f"query failed: {exc}")]) from None
    finally:
        con.close()
    if "id" not in result.columns:
        raise InvalidInputError(
            source, [ErrorItem("/query", f"the query must return a column 'id' (got {result.columns})")]
        )
    return result.select(pl.col("id").cast(pl.String)).drop_nulls().unique().sort("id")
