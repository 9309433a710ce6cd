"""One root error type, split into invalid input (exit 2), terminal and transient failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ContactExporterError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = 1
    http_status = 500


@dataclass(frozen=True)
class ErrorItem:
    """One problem, located by a JSON pointer (`/columnSettings/1/outputName`)."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class InvalidInputError(ContactExporterError):
    """Bad config, arguments or request body: the user must fix something. Exit 2, HTTP 422."""

    exit_code = 2
    http_status = 422

    def __init__(self, source: str, errors: list[ErrorItem] | None = None, message: str | None = None):
        self.source = source
        self.errors = errors or []
        self.message = message or self._default_message()
        super().__init__(self.message)

    def _default_message(self) -> str:
        if not self.errors:
            return f"{self.source}: invalid input"
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{self.source}: {first.path or '/'}: {first.message}{more}"

    def describe(self) -> str:
        lines = [f"invalid input in {self.source}:"]
        lines += [f"  {e.path or '/'}: {e.message}" for e in self.errors] or [f"  {self.message}"]
        return "\n".join(lines)


class BadRequestError(InvalidInputError):
    """Malformed request (not JSON, bad query parameter). HTTP 400."""

    http_status = 400


class NotFoundError(ContactExporterError):
    """A named object (exporter, company, SFTP setting, campaign) does not exist. HTTP 404, exit 2."""

    exit_code = 2
    http_status = 404


class ConflictError(ContactExporterError):
    """The request conflicts with stored state (duplicate externalId, run already in progress). HTTP 409."""

    exit_code = 1
    http_status = 409


class SourceDataError(InvalidInputError):
    """Source tables are missing, malformed, or hold rows that fail validation where skipping is unsafe."""

    # The failing rows as data (tableName, rowKey, checks), for the warehouse's rejected_rows.
    rejected: Any = None


class TerminalError(ContactExporterError):
    """A failure that retrying cannot fix (auth refused, host key mismatch, missing remote dir)."""


class WarehouseBusyError(TerminalError):
    """The warehouse stayed open in another process beyond the wait bound. Exit 1.

    Terminal for the run: it already waited (pipelines/io/duck.py), so a retry would only wait again.
    """


class TransientError(ContactExporterError):
    """A failure that may pass on retry (connection refused or reset, timeout)."""


class GuardError(ContactExporterError):
    """A run's own result failed its guard (pipelines.rules.guards): a defect, not bad input. Exit 1.

    Nothing was written or delivered; `rejected` holds the failed checks as rejected_rows rows.
    """

    exit_code = 1
    http_status = 500

    def __init__(self, frame: str, message: str, rejected: Any = None):
        self.frame = frame
        self.rejected = rejected
        super().__init__(message)
