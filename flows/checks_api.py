"""`POST /campaign-workers/compliance-checks`: the Compliance Guard at an instant, for a few contacts.

Body `{"exporterId", "contactIds": [1..1000 ids], "at"?}` (unknown keys refused; `at` an ISO-8601
instant with `Z` or an offset, default now). The answer is the seed's envelope, one item per
contact found (in the order asked) and the ids not found listed in `errors`:

    {"status": 200, "message": "success",
     "data": [{"contactId", "personId", "channel", "matched", "canInteract", "reasons",
               "nextEligibleDate", "at"}, ...],
     "errors": [{"path": "/contactIds/3", "message": "no such contact in the source"}]}

Read-only: nothing is written (no file, no warehouse row). Each check is logged with the number of
ids and of decisions, never a contact's values. Each check reads the rows of the borrowers it asks
about from the source, filtered where they are read (pipelines/lookup/checks.py): the server keeps
no copy of the source, so its memory does not grow with the book and a check sees every write
made before it.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, Field, ValidationError

from pipelines.io import sources
from pipelines.io.source_ref import SourceRef
from pipelines.io.store import ExporterStore
from pipelines.lookup import checks
from pipelines.model.config import Home
from pipelines.model.errors import ContactExporterError, InvalidInputError, SourceDataError
from pipelines.model.strict import Strict, errors_of
from pipelines.rules import timezones

log = logging.getLogger(__name__)

CHECKS_PATH: Final = "/campaign-workers/compliance-checks"
MAX_CONTACT_IDS: Final = 1000


class CheckUnavailableError(ContactExporterError):
    """The server's source cannot be read or is invalid: no check can be answered. HTTP 503.

    The details (paths, what is wrong) go to the server log, not to the client."""

    http_status = 503


class ComplianceCheckRequest(Strict):
    """The body of a compliance check."""

    exporterId: str = Field(min_length=1, description="exporter id, or ext-<externalId>")
    contactIds: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, max_length=MAX_CONTACT_IDS, description=f"1 to {MAX_CONTACT_IDS} contact ids"
    )
    at: AwareDatetime | None = Field(
        None, description="instant to judge at, ISO-8601 with Z or an offset (default: now)"
    )


def parse_request(raw: bytes) -> ComplianceCheckRequest:
    try:
        return ComplianceCheckRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInputError("request", errors_of(exc)) from None


def source_of(home: Home, source: str | None) -> SourceRef:
    """The source checks read: `source` (a path relative to the home, or a URI) or the home's
    warehouse."""
    return SourceRef.parse(source or home.warehouse, home.root)


def run_check(home: Home, source: SourceRef, body: ComplianceCheckRequest) -> dict[str, Any]:
    """The envelope for one request (blocking: run it in a worker thread)."""
    exporter = ExporterStore(home).get(body.exporterId)
    company = home.company(exporter.companyId)
    at = body.at or datetime.now(UTC)
    try:
        out = checks.check_contacts(exporter, company, source, body.contactIds, at)
    except SourceDataError as exc:
        log.error("compliance check, exporter %s: the source cannot be used: %s", exporter.id, exc.message)
        raise CheckUnavailableError(
            "the source of compliance checks cannot be read or is invalid; see the server log"
        ) from None
    data = [{**row, "at": out["at"]} for row in out["results"]]
    allowed = sum(1 for row in data if row["canInteract"])
    log.info(
        "compliance check, exporter %s at %s: %d ids, %d allowed, %d blocked, %d unknown",
        exporter.id,
        out["at"],
        len(body.contactIds),
        allowed,
        len(data) - allowed,
        len(out["errors"]),
    )
    return {"status": 200, "message": "success", "data": data, "errors": out["errors"]}


def preload(source: SourceRef) -> threading.Thread:
    """In the background: load the lookup tables (time zones, area codes), so that the first check
    does not wait for them, and say in the log at once if the source cannot serve checks (missing,
    unreachable, or without a table) rather than at the first check."""

    def load() -> None:
        timezones.load_lookups()
        try:
            missing = sources.missing_tables(source)
        except ContactExporterError as exc:
            log.warning("source %s cannot serve compliance checks: %s", source, exc)
            return
        if missing:
            log.warning("source %s cannot serve compliance checks: no table %s", source, ", ".join(missing))
        if source.kind == "folder" and (
            csv := sorted(f.name for f in sources.folder_files(source.path) if f.suffix == ".csv")
        ):
            log.warning(
                "source %s holds %s: each check reads them whole (a CSV file has no index or row groups to "
                "skip); serve checks from Parquet, DuckDB, S3 or Postgres", source, ", ".join(csv)
            )  # fmt: skip

    thread = threading.Thread(target=load, name="preload-checks", daemon=True)
    thread.start()
    return thread


def request_schema() -> dict[str, Any]:
    """The request body for /openapi.json."""
    schema = ComplianceCheckRequest.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": schema}}}


__all__ = [
    "CHECKS_PATH",
    "CheckUnavailableError",
    "MAX_CONTACT_IDS",
    "ComplianceCheckRequest",
    "parse_request",
    "preload",
    "request_schema",
    "run_check",
    "source_of",
]
