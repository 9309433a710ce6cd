"""The Compliance Guard at any instant, for a few contacts (`contact-exporter check`).

Only the rows of the borrowers concerned are read: their contacts (the requested ones and every other
one of the same borrowers, since addresses decide zones and state rules), their borrower rows,
interactions, DNIs and consents. Rows sharing an id with one of those are read too, so a duplicate id
is rejected here as it is in a run. They are read per check, from any kind of source, through the
same reader as a run's partitions (`sources.reading`, with a `RowFilter` of these keys): the filter
runs in DuckDB's scan, the Parquet reader (local or S3) and Postgres (bound values; an index on
`personId` and `id` is used). Nothing of the source is kept between checks, so a check sees every
write made before it. A CSV file has no such filter: its fields are counted and it is scanned
whole on each check. The rows then go through the same validation, point-in-time view, fail-closed rule, screen
and next-eligible search as a run, at the instant given: at the noon of an as-of date a check gives
that run's screening row. Nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from pipelines.io import files, sources
from pipelines.io.source_ref import RowFilter
from pipelines.model.config import Company, Exporter
from pipelines.model.tables import CONTACTS, TABLES, SourceTables
from pipelines.rules import compliance, eligibility, matching, schemas
from pipelines.rules.history import contacts_at
from pipelines.run.deciding import unread_columns

log = logging.getLogger(__name__)

# Tables read by borrower (personId), and whether their rows have an id that must stay unique.
BY_ID: frozenset[str] = frozenset({"contacts", "interactions", "do_not_interact"})


def answering_checks() -> None:
    """Set up a process that answers checks and runs no export (the API server, the `check`
    command): Polars' in-memory engine for every query. A check makes a few hundred small queries
    over a few rows each, where the default choice of engine costs about twice as much a query
    (0.51 ms against 0.24 ms for a trivial one here) and a whole check about a third more."""
    pl.Config.set_engine_affinity("in-memory")


def read_for_contacts(
    source: sources.Source, contact_ids: Sequence[str], skip: sources.Skip | None = None
) -> SourceTables:
    """The source rows that concern the borrowers of `contact_ids`, typed as `open_source` types them;
    `skip`: columns not read, as a run of the exporter does not read them (`deciding.unread_columns`).

    Three reads through one reader (one snapshot where the source has them), each filtered where it
    is read: the requested contacts (by id); every row of their borrowers and every row without a
    borrower key (a rejected one could be anyone's, so it blocks every contact, as in each partition
    of a run); then the rows of other borrowers sharing an id with one of those rows."""
    ref = sources.ref_of(source)
    ids = list(dict.fromkeys(contact_ids))
    with sources.reading(ref, keep=True) as read:  # a check server reuses its Postgres connections
        own = read([CONTACTS], RowFilter.of(ids, on="id"), skip)["contacts"]
        persons = sorted(_values(own, "personId"))
        raw = read(TABLES, RowFilter.of(persons, nulls=True), skip)
        # Every row of the borrowers is there (a row without an id too: validation rejects it, which
        # blocks its borrower as in a run). The ids they hold, and the requested ones (a requested
        # contact without a borrower is read here), may be held by other rows too.
        held = {name: _values(raw[name], "id") for name in BY_ID}
        held["contacts"] |= set(ids)
        twins = read(
            [spec for spec in TABLES if spec.name in BY_ID],
            RowFilter.of(set().union(*held.values()), on="id"),
            skip,
        )
    for name, frame in twins.items():
        person = pl.col("personId").cast(pl.String)
        theirs = person.is_not_null() & ~person.is_in(persons)  # the rows read above are not read twice
        raw[name] = pl.concat(
            [raw[name], frame.filter(pl.col("id").cast(pl.String).is_in(list(held[name])) & theirs)],
            how="vertical_relaxed",
        )
    return sources.typed(raw, ref)


def _values(frame: pl.DataFrame, column: str) -> set[str]:
    """The values of `column` as text (none if the column is missing: validation reports it)."""
    if column not in frame.columns:
        return set()
    return set(frame.get_column(column).cast(pl.String).drop_nulls().to_list())


def check_contacts(
    exporter: Exporter,
    company: Company,
    source: sources.Source,
    contact_ids: Sequence[str],
    at: datetime,
) -> dict[str, Any]:
    """The guard for `contact_ids` at `at`: canInteract, reasons and nextEligibleDate per contact,
    from the rows of their borrowers read from `source` now (`read_for_contacts`)."""
    ref = sources.ref_of(source)
    read = read_for_contacts(ref, contact_ids, unread_columns(exporter))  # as a run reads them
    checked = schemas.validate_sources(read, source=str(ref))
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


__all__ = ["answering_checks", "check_contacts", "read_for_contacts"]
