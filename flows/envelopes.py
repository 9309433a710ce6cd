"""The envelopes of CONTRACT.md §3: what the CLI prints on stdout and the HTTP API sends as a body."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pipelines.io.store import Page
from pipelines.model.config import Exporter
from pipelines.model.errors import ContactExporterError, ErrorItem, InvalidInputError

API_BASE_PATH = "/campaign-workers/contact-exporters"


def ok_envelope(exporter: Exporter) -> dict[str, Any]:
    return {"status": 200, "message": "success", "data": exporter.public()}


def _page_url(base_path: str, limit: int, key: str, cursor: str) -> str:
    return f"{base_path}?{urlencode({'limit': limit, key: cursor})}"


def list_envelope(page: Page, limit: int, base_path: str = API_BASE_PATH) -> dict[str, Any]:
    next_url = (
        _page_url(base_path, limit, "startingAfter", page.last_id)
        if page.has_more_after and page.last_id is not None
        else None
    )
    previous_url = (
        _page_url(base_path, limit, "endingBefore", page.first_id)
        if page.has_more_before and page.first_id is not None
        else None
    )
    return {
        "status": 200,
        "total": page.total,
        "count": len(page.data),
        "nextUrl": next_url,
        "previousUrl": previous_url,
        "data": [e.public() for e in page.data],
    }


def error_envelope(exc: BaseException) -> dict[str, Any]:
    """The error envelope; `status` is the HTTP status the error maps to (500 for unexpected ones)."""
    if not isinstance(exc, ContactExporterError):
        return {"status": 500, "message": "internal error; see the server log", "errors": []}
    errors: list[ErrorItem] = list(getattr(exc, "errors", []))
    message = exc.message if isinstance(exc, InvalidInputError) else str(exc)
    return {"status": exc.http_status, "message": message, "errors": [e.as_dict() for e in errors]}
