"""`POST /campaign-workers/compliance-checks`: the Compliance Guard at an instant, for a few contacts.

Body `{"exporterId", "contactIds": [1..1000 ids], "at"?}` (unknown keys refused; `at` an ISO-8601
instant with `Z` or an offset, default now). The answer is the seed's envelope, one item per
contact found (in the order asked) and the ids not found listed in `errors`:

    {"status": 200, "message": "success",
     "data": [{"contactId", "personId", "channel", "matched", "canInteract", "reasons",
               "nextEligibleDate", "at"}, ...],
     "errors": [{"path": "/contactIds/3", "message": "no such contact in the source"}]}

Read-only: nothing is written (no file, no warehouse row). Each check is logged with the number of
ids and of decisions, never a contact's values. The rows come from the server's warm copy of the
source (pipelines/lookup/warm.py).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, Field, ValidationError

from pipelines.io.store import ExporterStore
from pipelines.lookup import checks
from pipelines.lookup.warm import WarmSource, warm_source
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


def source_of(home: Home, source: Path | None) -> Path:
    """The source checks read: `source` (relative to the home) or the home's warehouse."""
    return home.path(source) if source else home.warehouse


def run_check(home: Home, warm: WarmSource, body: ComplianceCheckRequest) -> dict[str, Any]:
    """The envelope for one request (blocking: run it in a worker thread)."""
    exporter = ExporterStore(home).get(body.exporterId)
    company = home.company(exporter.companyId)
    at = body.at or datetime.now(UTC)
    try:
        out = checks.check_contacts(exporter, company, warm.path, body.contactIds, at, warm=warm)
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


def preload(warm: WarmSource) -> threading.Thread:
    """Load the lookup tables and the source in the background, so the first check is warm too."""

    def load() -> None:
        try:
            timezones.load_lookups()
            if warm.path.exists():
                warm.tables()
        except ContactExporterError as exc:
            log.warning("source %s not preloaded for checks: %s", warm.path, exc)

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
    "warm_source",
]
