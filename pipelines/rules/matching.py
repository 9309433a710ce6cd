"""Contact matching criteria → one Polars expression, or a DuckDB WHERE clause with bound parameters.

Keys AND together; values inside a key OR together (CONTRACT.md §3). Both backends give the same ids.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.model.config import ContactMatchingCriteria
from pipelines.model.vocab import one_of

# Identifiers allowed in SQL: the criteria keys, which are contacts columns. Values are always bound.
_SQL_COLUMNS = {
    "label": '"label"',
    "contactType": '"contactType"',
    "affiliation": '"affiliation"',
    "status": '"status"',
}


def criteria_expr(criteria: ContactMatchingCriteria) -> pl.Expr:
    """A boolean expression over contacts columns; null attributes never match."""
    expr = pl.lit(True)
    for key, values in criteria.as_dict().items():
        expr = expr & one_of(pl.col(key), values).fill_null(False)
    return expr


def criteria_sql(criteria: ContactMatchingCriteria) -> tuple[str, list[str]]:
    """`("label" IN (?, ?)) AND (...)` and its parameters, in order."""
    clauses: list[str] = []
    params: list[str] = []
    for key, values in criteria.as_dict().items():
        column = _SQL_COLUMNS[key]  # KeyError here would mean a model change: fail loudly
        clauses.append(f"({column} IN ({', '.join('?' for _ in values)}))")
        params.extend(values)
    return " AND ".join(clauses), params


def in_population(contacts: pl.LazyFrame, population: pl.LazyFrame) -> pl.LazyFrame:
    """Contacts whose personId is in `population` (a frame with column `id`)."""
    ids = population.select(pl.col("id").alias("personId")).unique()
    return contacts.join(ids, on="personId", how="semi")


def match_contacts(
    contacts: pl.LazyFrame, population: pl.LazyFrame | None, criteria: ContactMatchingCriteria
) -> pl.LazyFrame:
    """Contacts of the population (None: of every borrower) that meet the criteria."""
    within = contacts if population is None else in_population(contacts, population)
    return within.filter(criteria_expr(criteria))


def company_population(borrowers: pl.LazyFrame, company_id: str) -> pl.LazyFrame:
    return borrowers.filter(pl.col("companyId") == company_id).select("id")


def matching_ids_duckdb(
    con: duckdb.DuckDBPyConnection, table: str, criteria: ContactMatchingCriteria
) -> list[str]:
    """Ids of matching contacts in a DuckDB table or view (`table` must be a plain identifier)."""
    if not table.isidentifier():
        raise ValueError(f"{table!r} is not a table name")
    where, params = criteria_sql(criteria)
    rows = con.execute(f'SELECT id FROM "{table}" WHERE {where} ORDER BY id', params).fetchall()  # noqa: S608
    return [str(r[0]) for r in rows]
