"""The warehouse for analysts (CONTRACT.md §6): reason codes, views and a comment on everything.

`install(con)` runs with every write to the warehouse (from `warehouse.create_tables`). It keeps
- `reason_codes`: every code a contact can be blocked for, what it means, the rule in COMPLIANCE.md and
  the regulation behind it where one applies;
- four views: `blocked_contacts` (the latest successful run of each exporter, campaign and as-of
  date; one row per blocked contact), `run_summary` (one row per run), `rejected_by_check` (rejected
  source rows per failed check) and `company_days` (each company's today and yesterday in its own
  time zone, so "yesterday" never means the UTC day);
- a comment on every table, view and column, so `DESCRIBE`, `duckdb_columns()` and any SQL client
  explain the warehouse without the README.

The objects are compared with what the file holds and written only when they differ, so a run adds
no catalog churn once the warehouse is up to date.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

import duckdb

COMPLIANCE_RULES: Final = "COMPLIANCE.md#the-rules-and-their-reason-codes"


@dataclass(frozen=True)
class ReasonCode:
    code: str
    meaning: str
    rule: str
    regulation: str | None
    clearsWithTime: bool  # nextEligibleDate can be set: the block ends by itself on a later date


REASON_CODES: Final = (
    ReasonCode(
        "AUTODIAL_CONSENT_MISSING",
        "an autodialed call or text without the borrower's autodialedColl consent",
        COMPLIANCE_RULES,
        "TCPA, 47 U.S.C. 227(b); 47 CFR 64.1200(a)",
        False,
    ),
    ReasonCode(
        "CHANNEL_MISMATCH",
        "the exporter's channel does not fit the contact type (voice/text need a phone, email an email, "
        "mail an address)",
        "COMPLIANCE.md#the-channel",
        None,
        False,
    ),
    ReasonCode("CONTACT_ARCHIVED", "the contact's status is archived", COMPLIANCE_RULES, None, False),
    ReasonCode("CONTACT_INVALID", "the contact is marked not valid", COMPLIANCE_RULES, None, False),
    ReasonCode(
        "DO_NOT_INTERACT",
        "an active Do Not Interact record of the borrower covers the channel and the theme",
        "COMPLIANCE.md#do-not-interact",
        "Regulation F, 12 CFR 1006.6(c) and 1006.14(h)",
        True,
    ),
    ReasonCode(
        "ELECTRONIC_CONSENT_REVOKED",
        "email or text while the borrower's electronicComms consent is revoked",
        COMPLIANCE_RULES,
        "Regulation F, 12 CFR 1006.6(e); E-SIGN Act, 15 U.S.C. 7001(c)",
        False,
    ),
    ReasonCode(
        "FREQUENCY_LIMIT",
        "the attempts on this channel in the rolling window already reach a frequency limit "
        "(the company's or a state rule's)",
        "COMPLIANCE.md#counting-attempts-and-conversations",
        "Regulation F, 12 CFR 1006.14(b)(2)(i) (7 calls in 7 days); Massachusetts, 940 CMR 7.04(1)(f)",
        True,
    ),
    ReasonCode(
        "OUTSIDE_CONTACT_HOURS",
        "noon of the as-of date falls outside the contact hours in at least one of the borrower's "
        "possible time zones",
        "COMPLIANCE.md#candidate-time-zones-where-is-the-borrower",
        "Regulation F, 12 CFR 1006.6(b)(1)(i) (8 a.m. to 9 p.m. local time)",
        False,
    ),
    ReasonCode(
        "RECENT_CONVERSATION",
        "a phone conversation with the borrower within the cool-down days",
        "COMPLIANCE.md#counting-attempts-and-conversations",
        "Regulation F, 12 CFR 1006.14(b)(2)(ii) (7 days after a conversation)",
        True,
    ),
    ReasonCode(
        "SOURCE_ROW_REJECTED",
        "a source row of the borrower failed validation (see rejected_rows): what it said is unknown, "
        "so every matched contact of the borrower is blocked",
        COMPLIANCE_RULES,
        None,
        False,
    ),
    ReasonCode(
        "TEXT_OPT_IN_MISSING",
        "a text to a contact that has not opted in to text messages",
        COMPLIANCE_RULES,
        "TCPA, 47 U.S.C. 227(b); 47 CFR 64.1200",
        False,
    ),
    ReasonCode(
        "THIRD_PARTY_NOT_AUTHORIZED",
        "a contact of someone other than the borrower, without authorizedThirdParty or powerOfAttorney",
        COMPLIANCE_RULES,
        "FDCPA, 15 U.S.C. 1692c(b); Regulation F, 12 CFR 1006.6(d)",
        False,
    ),
    ReasonCode(
        "TIMEZONE_UNKNOWN",
        "no time zone can be found for the borrower, so the contact hours cannot be checked "
        "(policy unknownTimezone: block)",
        "COMPLIANCE.md#candidate-time-zones-where-is-the-borrower",
        "Regulation F, 12 CFR 1006.6(b)(1)(i)",
        False,
    ),
)

REASON_CODES_DDL = """CREATE TABLE IF NOT EXISTS reason_codes (
    code VARCHAR PRIMARY KEY, meaning VARCHAR NOT NULL, rule VARCHAR NOT NULL, regulation VARCHAR,
    clearsWithTime BOOLEAN NOT NULL)"""

# Company dates without a time zone database (every DuckDB client reads the views): asOfInstant is
# noon of asOfDate in the company's zone, so (asOfDate 12:00 - asOfInstant) is the company's UTC
# offset that day, and the date of an instant there is floor((epoch + offset) / 1 day) after 1970-01-01.
VIEWS: Final[dict[str, str]] = {
    # The latest successful run of each (exporterId, asOfDate, campaignId): a rerun replaces a daily
    # run's rows, but a failed run leaves the earlier rows, and a campaign run sits beside the daily one.
    "blocked_contacts": """SELECT s.exporterId, s.asOfDate, latest.campaignId, s.runId, s.contactId,
        s.personId, s.channel, s.reasons, s.nextEligibleDate, latest.companyId
    FROM screening_results AS s JOIN (
        SELECT runId, companyId, campaignId FROM export_runs WHERE status = 'succeeded'
        QUALIFY row_number() OVER (
            PARTITION BY exporterId, asOfDate, campaignId ORDER BY finishedAt DESC, runId DESC) = 1
    ) AS latest ON latest.runId = s.runId
    WHERE NOT s.canInteract""",
    "run_summary": """SELECT e.runId, e.exporterId, e.companyId, e.campaignId, e.asOfDate, e.status,
        e.population, e.matched, e.screenedOut, e.exported,
        round(100.0 * e.screenedOut / nullif(e.matched, 0), 1) AS screenedOutPct,
        coalesce(rj.rejectedRows, 0) AS rejectedRows, e.deliveryStatus, e.deliveredAt,
        round(epoch(e.finishedAt) - epoch(e.startedAt), 1) AS seconds, e.error, e.filePath,
        e.startedAt, e.finishedAt,
        DATE '1970-01-01' + CAST(floor((epoch(e.startedAt) + epoch(e.asOfDate + INTERVAL 12 HOUR)
            - epoch(e.asOfInstant)) / 86400) AS INTEGER) AS companyStartDate
    FROM export_runs AS e
    LEFT JOIN (SELECT runId, count(*) AS rejectedRows FROM rejected_rows GROUP BY runId) AS rj
        ON rj.runId = e.runId""",
    "rejected_by_check": """SELECT e.exporterId, e.asOfDate, e.campaignId, c.runId, c.tableName,
        c.checkName, count(*) AS rowCount, min(c.rowKey) AS exampleRowKey
    FROM (SELECT runId, tableName, rowKey, unnest(checks) AS checkName FROM rejected_rows) AS c
    JOIN export_runs AS e ON e.runId = c.runId
    GROUP BY e.exporterId, e.asOfDate, e.campaignId, c.runId, c.tableName, c.checkName""",
    # The offset of each company's latest as-of date stands for today's (see the comments below).
    "company_days": """SELECT companyId, utcOffsetMinutes, today, CAST(today - 1 AS DATE) AS yesterday,
        latestAsOfDate
    FROM (SELECT companyId, utcOffsetMinutes, latestAsOfDate,
            DATE '1970-01-01' + CAST(floor((epoch(now()) + 60 * utcOffsetMinutes) / 86400) AS INTEGER) AS today
        FROM (SELECT companyId, max(asOfDate) AS latestAsOfDate, arg_max(CAST(round(
                (epoch(asOfDate + INTERVAL 12 HOUR) - epoch(asOfInstant)) / 60) AS BIGINT), asOfDate)
                AS utcOffsetMinutes
            FROM export_runs WHERE companyId IS NOT NULL AND asOfInstant IS NOT NULL GROUP BY companyId))""",
}

_RUN = "the run: export_runs.runId"
_EXPORTER = "the exporter (CE-...): configs/exporters/<exporterId>.json"
_AS_OF = "the as-of date; screening is judged at noon of this date in the company time zone"
_CAMPAIGN = "the campaign that ran the exporter (configs/campaigns/<campaignId>.yaml); null for a daily run"

# Every table and view, and every column of each: (comment of the object, {column: comment}).
COMMENTS: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "export_runs": (
        "One row per run of an exporter for an as-of date: counts, file and delivery. A rerun of the "
        "same (exporterId, asOfDate) replaces the earlier rows; a failed run is added beside them.",
        {
            "runId": "run id, RUN-<UTC start>-<random>",
            "exporterId": _EXPORTER,
            "companyId": "the exporter's company: configs/companies/<companyId>.yaml",
            "asOfDate": _AS_OF,
            "asOfInstant": "noon of asOfDate in the company time zone, the instant every rule is judged at",
            "status": "succeeded or failed",
            "population": "borrowers considered: the company's, a --population file's or a campaign's",
            "matched": "contacts of the population matching the exporter's contactMatchingCriteria",
            "screenedOut": "matched contacts blocked by screening (canInteract false)",
            "exported": "rows written to the file",
            "filePath": "the file written, data/exports/<exporterId>/<asOfDate>/[campaigns/<campaignId>/]<fileName>",
            "sha256": "SHA-256 of the file's bytes (also in its manifest)",
            "deliveredAt": "when the file was delivered by SFTP (UTC); null if not delivered",
            "startedAt": "when the run started (UTC)",
            "finishedAt": "when the run finished (UTC)",
            "error": "why a failed run failed; null when it succeeded",
            "campaignId": _CAMPAIGN,
            "deliveryStatus": "delivered, already_delivered, skipped or failed; null before delivery",
            "deliveryError": "why the delivery failed; null otherwise",
        },
    ),
    "screening_results": (
        "One row per matched contact of a run, blocked or not, with every reason that blocks it.",
        {
            "runId": _RUN,
            "exporterId": _EXPORTER,
            "asOfDate": _AS_OF,
            "contactId": "the contact (contacts.id)",
            "personId": "the contact's borrower (borrowers.id)",
            "channel": "the channel screened: voice, text, email or mail; null when not screened",
            "canInteract": "true when no rule blocks the contact (and for exporters without screening)",
            "reasons": "sorted reason codes that block the contact, empty when allowed; see reason_codes",
            "nextEligibleDate": "first later date the contact would pass if no new record arrived; "
            "null when allowed or when no date would (COMPLIANCE.md, Next eligible date)",
        },
    ),
    "rejected_rows": (
        "Source rows that failed validation in a run: never exported, never silently dropped; "
        "their borrower's contacts are blocked with SOURCE_ROW_REJECTED.",
        {
            "runId": _RUN,
            "tableName": "the source table: borrowers, contacts, interactions, do_not_interact or consents",
            "rowKey": "the row's id (or its position when it has none)",
            "checks": "the validation checks the row failed",
        },
    ),
    "deliveries": (
        "The SFTP delivery ledger: one row per file delivered; a file already delivered for "
        "(exporterId, asOfDate, sha256) is not sent again unless --redeliver. Never replaced by a rerun.",
        {
            "exporterId": _EXPORTER,
            "asOfDate": _AS_OF + " (the company's date the file is for)",
            "sha256": "SHA-256 of the bytes delivered",
            "fileName": "the file's name",
            "remotePath": "where the file was placed on the server",
            "host": "the SFTP server",
            "deliveredAt": "when the delivery finished (UTC)",
            "bytes": "size of the file delivered",
            "runId": "the run that uploaded the file, or the rerun that since replaced that run's rows "
            "(a rerun of an (exporterId, asOfDate, campaignId) takes over its deliveries): always an "
            "export_runs.runId",
            "campaignId": _CAMPAIGN,
            "sftpSettingId": "the SFTP destination: configs/sftp/<sftpSettingId>.yaml; null when the "
            "run did not name it",
            "rows": "data rows in the file delivered (its manifest's rows)",
        },
    ),
    "reason_codes": (
        "Every reason code a contact can be blocked for: its meaning, its rule in COMPLIANCE.md and "
        "the regulation behind it where one applies.",
        {
            "code": "the reason code as it appears in screening_results.reasons",
            "meaning": "what blocks the contact, in one sentence",
            "rule": "the section of COMPLIANCE.md that defines the rule",
            "regulation": "the regulation the rule implements; null for data-quality rules",
            "clearsWithTime": "true when the block ends by itself (nextEligibleDate can be set)",
        },
    ),
    "blocked_contacts": (
        "Blocked contacts of the latest successful run of each (exporterId, asOfDate, campaignId): "
        "one row per contact with all its reasons and the date it may be contacted again. A contact "
        "can be blocked in the daily run and in a campaign run of the same date: filter "
        "campaignId IS NULL for daily runs only.",
        {
            "exporterId": _EXPORTER,
            "companyId": "the exporter's company",
            "asOfDate": _AS_OF,
            "campaignId": _CAMPAIGN,
            "runId": _RUN,
            "contactId": "the contact (contacts.id)",
            "personId": "the contact's borrower (borrowers.id)",
            "channel": "the channel screened",
            "reasons": "sorted reason codes that block the contact; see reason_codes",
            "nextEligibleDate": "first later date the contact would pass if no new record arrived; "
            "null when no date would",
        },
    ),
    "run_summary": (
        "One row per run, failed ones included: counts, blocked share, rejected rows, delivery, time taken.",
        {
            "runId": _RUN,
            "exporterId": _EXPORTER,
            "companyId": "the exporter's company",
            "campaignId": _CAMPAIGN,
            "asOfDate": _AS_OF,
            "status": "succeeded or failed",
            "population": "borrowers considered",
            "matched": "contacts matching the exporter's criteria",
            "screenedOut": "matched contacts blocked by screening",
            "exported": "rows written to the file",
            "screenedOutPct": "screenedOut as a percentage of matched (one decimal); null when none matched",
            "rejectedRows": "source rows rejected by validation in this run",
            "deliveryStatus": "delivered, already_delivered, skipped or failed",
            "deliveredAt": "when the file was delivered (UTC)",
            "startedAt": "when the run started (UTC)",
            "finishedAt": "when the run finished (UTC)",
            "seconds": "time the run took, from startedAt to finishedAt",
            "companyStartDate": "the company's date when the run started (startedAt in the company "
            "time zone, at its offset on asOfDate); asOfDate is the date the run is for",
            "error": "why a failed run failed",
            "filePath": "the file written",
        },
    ),
    "rejected_by_check": (
        "Rejected source rows per run, table and failed check (a row failing two checks counts under both).",
        {
            "exporterId": _EXPORTER,
            "asOfDate": _AS_OF,
            "campaignId": _CAMPAIGN,
            "runId": _RUN,
            "tableName": "the source table",
            "checkName": "the validation check that failed",
            "rowCount": "rows of the table failing this check in the run",
            "exampleRowKey": "one such row's key (the smallest), to look it up",
        },
    ),
    "company_days": (
        "Each company's today and yesterday in its own time zone (not UTC): join on companyId and filter "
        "asOfDate = yesterday for \"yesterday's runs\". The offset is the one of the company's latest "
        "as-of date; within an hour of midnight after a daylight-saving change, before the next run, "
        "today can be the neighbouring date.",
        {
            "companyId": "the company: configs/companies/<companyId>.yaml",
            "utcOffsetMinutes": "the company's offset from UTC on latestAsOfDate, in minutes "
            "(-300 for New York in winter)",
            "today": "today's date in the company time zone, when the query runs",
            "yesterday": "the day before today, in the company time zone",
            "latestAsOfDate": "the latest as-of date of any run of the company",
        },
    ),
}


def _literal(text: str) -> str:
    """A SQL string literal of a constant of this module (COMMENT ON takes no bound parameter)."""
    return "'" + text.replace("'", "''") + "'"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reason_rows() -> list[tuple[str, str, str, str | None, bool]]:
    return [(r.code, r.meaning, r.rule, r.regulation, r.clearsWithTime) for r in REASON_CODES]


def install(con: duckdb.DuckDBPyConnection, table_ddl: tuple[str, ...]) -> None:
    """Create or update reason_codes, the views and every comment.

    `table_ddl` are the statements that create the output tables the views read (already run on `con`).
    """
    con.execute(REASON_CODES_DDL)
    stored = con.execute(
        "SELECT code, meaning, rule, regulation, clearsWithTime FROM reason_codes ORDER BY code"
    ).fetchall()
    if stored != sorted(_reason_rows()):
        con.execute("DELETE FROM reason_codes")
        con.executemany("INSERT INTO reason_codes VALUES (?, ?, ?, ?, ?)", _reason_rows())

    current = dict(
        con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'"
        ).fetchall()
    )
    expected = _view_sql(table_ddl)
    for name, body in VIEWS.items():
        if _canonical(current.get(name)) != _canonical(expected[name]):  # missing, or another version's
            con.execute(f"CREATE OR REPLACE VIEW {_quoted(name)} AS {body}")
    _comment(con)


def _canonical(sql: str | None) -> str:
    # DuckDB re-renders a view's SQL when it reads the catalog back, with parentheses of its own.
    return re.sub(r"[()\s]", "", sql or "")


@functools.cache
def _view_sql(table_ddl: tuple[str, ...]) -> dict[str, str]:
    """Each view's SQL as DuckDB stores it (it keeps a normalized form, not the text given)."""
    with duckdb.connect() as scratch:
        for ddl in (*table_ddl, REASON_CODES_DDL):
            scratch.execute(ddl)
        for name, body in VIEWS.items():
            scratch.execute(f"CREATE VIEW {_quoted(name)} AS {body}")
        return dict(
            scratch.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
        )


def _comment(con: duckdb.DuckDBPyConnection) -> None:
    objects = {
        name: (kind, comment)
        for name, kind, comment in con.execute(
            "SELECT table_name, 'TABLE', comment FROM duckdb_tables() "
            "WHERE NOT internal AND schema_name = 'main' "
            "UNION ALL SELECT view_name, 'VIEW', comment FROM duckdb_views() "
            "WHERE NOT internal AND schema_name = 'main'"
        ).fetchall()
    }
    columns = {
        (table, column): comment
        for table, column, comment in con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE NOT internal AND schema_name = 'main'"
        ).fetchall()
    }
    for name, (text, column_comments) in COMMENTS.items():
        if name not in objects:
            continue
        kind, current = objects[name]
        if current != text:
            con.execute(f"COMMENT ON {kind} {_quoted(name)} IS {_literal(text)}")
        for column, column_text in column_comments.items():
            if (name, column) in columns and columns[(name, column)] != column_text:
                con.execute(f"COMMENT ON COLUMN {_quoted(name)}.{_quoted(column)} IS {_literal(column_text)}")
