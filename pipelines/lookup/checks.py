"""The Compliance Guard at any instant, for a few contacts (`contact-exporter check`).

Only the rows of the borrowers concerned are read: their contacts (the requested ones and every other
one of the same borrowers, since addresses decide zones and state rules), their borrower rows,
interactions, DNIs and consents. Rows sharing an id with one of those are read too, so a duplicate id
is rejected here as it is in a run. DuckDB sources and Parquet files are filtered where they are
read (the filter is pushed into the query or the scan); a CSV file has to be read whole, then
filtered. The rows then go through the same validation, point-in-time view, fail-closed rule, screen
and next-eligible search as a run, at the instant given: at the noon of an as-of date a check gives
that run's screening row. Nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipelines.io import duck, files, sources
from pipelines.lookup.warm import WarmSource
from pipelines.model.config import Company, Exporter
from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import CONTACTS, TABLES, SourceTables, TableSpec
from pipelines.rules import compliance, eligibility, matching, schemas
from pipelines.rules.history import contacts_at

log = logging.getLogger(__name__)

# Tables read by borrower (personId), and whether their rows have an id that must stay unique.
BY_ID: frozenset[str] = frozenset({"contacts", "interactions", "do_not_interact"})


def _duckdb_rows(path: Path, contact_ids: list[str]) -> dict[str, pl.DataFrame]:
    with duck.connect(path, read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("BEGIN TRANSACTION")
        present = sources.duckdb_tables(con)
        missing = [spec.name for spec in TABLES if spec.name not in present]
        if missing:
            raise SourceDataError(
                str(path),
                [ErrorItem(f"/{missing[0]}", "required table is missing")],
                message=f"source {path} has no table {missing[0]}",
            )
        persons = [
            str(r[0])
            for r in con.execute(
                'SELECT DISTINCT "personId" FROM contacts WHERE id IN (SELECT unnest(?::VARCHAR[])) '
                'AND "personId" IS NOT NULL',
                [contact_ids],
            ).fetchall()
        ]
        frames = {spec.name: _duckdb_table(con, spec, persons, contact_ids) for spec in TABLES}
        con.execute("COMMIT")
    return frames


def _duckdb_table(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, persons: list[str], contact_ids: list[str]
) -> pl.DataFrame:
    """The rows of `persons` in one table (table and column names are constants; values are bound)."""
    key = "id" if spec.name == "borrowers" else "personId"
    sql = f'SELECT * FROM "{spec.name}" WHERE "{key}" IN (SELECT unnest(?::VARCHAR[]))'  # noqa: S608
    frame: pl.DataFrame = con.sql(sql, params=[persons]).pl()
    if spec.name not in BY_ID:
        return frame
    # Every row of the borrowers is there (a row without an id too: validation rejects it, which
    # blocks its borrower as in a run); add the other rows sharing an id with one of them or with a
    # requested contact. Two plain filtered scans: one query with OR or NOT IN reads the table
    # several times over.
    ids = frame.get_column("id").cast(pl.String).drop_nulls().unique().to_list()
    if spec.name == "contacts":
        ids += contact_ids
    same = f'SELECT * FROM "{spec.name}" WHERE id IN (SELECT unnest(?::VARCHAR[]))'  # noqa: S608
    twins: pl.DataFrame = con.sql(same, params=[ids]).pl()
    others = pl.col("personId").is_null() | ~pl.col("personId").cast(pl.String).is_in(persons)
    return pl.concat([frame, twins.filter(others)], how="vertical_relaxed")


def _folder_rows(folder: Path, contact_ids: list[str]) -> dict[str, pl.DataFrame]:
    def scan(spec: TableSpec) -> pl.LazyFrame:
        parquet, csv = folder / f"{spec.name}.parquet", folder / f"{spec.name}.csv"
        if parquet.is_file():
            return pl.scan_parquet(parquet)
        if csv.is_file():
            return sources.read_csv_strict(csv, spec.name).lazy()
        raise SourceDataError(
            str(folder),
            [ErrorItem(f"/{spec.name}", "required table is missing")],
            message=f"source {folder} has no table {spec.name} (add {spec.name}.parquet or {spec.name}.csv)",
        )

    ids = pl.Series(contact_ids, dtype=pl.String()).implode()
    contacts = scan(CONTACTS)
    persons = (
        contacts.filter(pl.col("id").cast(pl.String).is_in(ids))
        .select(pl.col("personId").cast(pl.String))
        .drop_nulls()
        .unique()
        .collect()
        .get_column("personId")
        .implode()
    )
    frames = {}
    for spec in TABLES:
        frame = scan(spec)
        if spec.name == "borrowers":
            frames[spec.name] = frame.filter(pl.col("id").cast(pl.String).is_in(persons)).collect()
            continue
        mine = pl.col("personId").cast(pl.String).is_in(persons)
        if spec.name in BY_ID:
            twins = frame.filter(mine).select(pl.col("id").cast(pl.String)).collect().get_column("id")
            wanted = pl.col("id").cast(pl.String).is_in(twins.implode())
            if spec.name == "contacts":
                wanted = wanted | pl.col("id").cast(pl.String).is_in(ids)
            frames[spec.name] = frame.filter(mine | wanted).collect()
        else:
            frames[spec.name] = frame.filter(mine).collect()
    return frames


def read_for_contacts(path: Path, contact_ids: Sequence[str]) -> SourceTables:
    """The source rows that concern the borrowers of `contact_ids`, typed as `open_source` types them."""
    path = Path(path)
    ids = list(dict.fromkeys(contact_ids))
    if path.is_dir():
        raw = _folder_rows(path, ids)
    elif path.is_file():
        raw = _duckdb_rows(path, ids)
    else:
        raise SourceDataError(
            str(path), [ErrorItem("", "does not exist")], message=f"source {path} does not exist"
        )
    return conform_rows(raw, path)


def conform_rows(raw: dict[str, pl.DataFrame], source: Path) -> SourceTables:
    """Raw rows of the five tables, typed as `open_source` types them."""
    frames = {spec.name: sources.conform(raw[spec.name], spec, str(source)) for spec in TABLES}
    return SourceTables(**{name: frame.lazy() for name, frame in frames.items()})


def check_contacts(
    exporter: Exporter,
    company: Company,
    source: Path,
    contact_ids: Sequence[str],
    at: datetime,
    warm: WarmSource | None = None,
) -> dict[str, Any]:
    """The guard for `contact_ids` at `at`: canInteract, reasons and nextEligibleDate per contact.

    The rows are read from `source`, or taken from `warm` (the same source kept in memory by a
    server, pipelines/lookup/warm.py) when given.
    """
    read = (
        conform_rows(warm.rows_for_contacts(contact_ids), source)
        if warm is not None
        else read_for_contacts(source, contact_ids)
    )
    checked = schemas.validate_sources(read, source=str(source))
    tables, owned = checked.tables, checked.owned
    instant, day = compliance.judged_at(company, at.date(), at)
    wanted = list(dict.fromkeys(contact_ids))
    present = contacts_at(tables.contacts, instant).filter(pl.col("id").is_in(wanted)).collect()
    screening, matched_ids = _screened(exporter, company, tables, owned, present, day, instant)
    results, errors = _answers(wanted, screening, matched_ids, owned, tables)
    blocked = sum(1 for r in results if not r["canInteract"])
    at_text = files.iso_utc(instant)
    log.info("checked %d contacts of exporter %s at %s: %d blocked, %d unknown", len(results), exporter.id, at_text, blocked, len(errors))  # fmt: skip
    return {
        "exporterId": exporter.id,
        "companyId": company.id,
        "at": files.iso_utc(instant),
        "date": day.isoformat(),
        "screened": exporter.checkCanInteractData is not None,
        "results": results,
        "errors": errors,
    }


def _screened(
    exporter: Exporter,
    company: Company,
    tables: SourceTables,
    owned: pl.DataFrame,
    present: pl.DataFrame,
    day: date,
    instant: datetime,
) -> tuple[pl.DataFrame, set[str]]:
    """The screening rows of the contacts present at the instant (by the batch's own rules), and
    which of them the exporter's criteria match."""
    population = matching.company_population(tables.borrowers, company.id)
    matched = matching.match_contacts(present.lazy(), population, exporter.contactMatchingCriteria)
    matched_ids = set(matched.select("id").collect().get_column("id").to_list())
    check = exporter.checkCanInteractData
    if check is None:
        return compliance.unscreened(present.lazy()).collect(), matched_ids
    screening = compliance.screen(present.lazy(), tables, company, check, day, rejected=owned, at=instant)
    rows = eligibility.next_eligible(
        screening.collect(), present.lazy(), tables, company, check, day, at=instant
    )
    return rows, matched_ids


def _answers(
    wanted: list[str],
    screening: pl.DataFrame,
    matched_ids: set[str],
    owned: pl.DataFrame,
    tables: SourceTables,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One answer per requested contact, in request order; an error for each one not there."""
    rows = {r["contactId"]: r for r in screening.to_dicts()}
    own_rejected = set(owned.filter(pl.col("tableName") == "contacts").get_column("rowKey").to_list())
    results: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for index, contact_id in enumerate(wanted):
        row = rows.get(contact_id)
        if row is not None:
            next_date = row.get("nextEligibleDate")
            results.append(
                {"contactId": contact_id, "personId": row["personId"], "matched": contact_id in matched_ids,
                 "channel": row["channel"], "canInteract": row["canInteract"], "reasons": row["reasons"],
                 "nextEligibleDate": next_date.isoformat() if next_date else None}
            )  # fmt: skip
        elif contact_id in own_rejected:  # its own row could not be read: never exported, so blocked here
            results.append(
                {"contactId": contact_id, "personId": None, "matched": False, "channel": None,
                 "canInteract": False, "reasons": ["SOURCE_ROW_REJECTED"], "nextEligibleDate": None}
            )  # fmt: skip
        else:
            known = tables.contacts.filter(pl.col("id") == contact_id).select(pl.len()).collect().item()
            why = (
                "the contact did not exist yet at that instant" if known else "no such contact in the source"
            )
            errors.append({"path": f"/contactIds/{index}", "message": why})
    return results, errors


__all__ = ["check_contacts", "conform_rows", "read_for_contacts"]
