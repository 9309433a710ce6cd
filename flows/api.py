"""HTTP API (CONTRACT.md §4.1): the exporter store behind FastAPI, with the envelopes of §3.

Every request but `GET /health` needs the `X-API-KEY` header (the key is never read from the query
string); every response, errors included, is one of our envelopes, and its HTTP status equals the
envelope's `status`. The store is read from disk on each request, so a write made through the CLI is
visible at once. The OpenAPI schema is served at `/openapi.json`, behind the key like everything else;
the interactive docs pages are off.

`POST /campaign-workers/compliance-checks` is the Compliance Guard at an instant for 1 to 1,000
contacts (flows/checks_api.py), read-only: each check reads its borrowers' rows from the source.

GET answers carry an `ETag` (a digest of the stored exporter); a PUT with `If-Match` is applied only
if the exporter still has that ETag (else 412), a PUT without it replaces whatever is stored (last
writer wins). The access log is written here, without query strings: a key pasted into a URL by
mistake never reaches a log file.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flows import checks_api
from flows.envelopes import API_BASE_PATH, error_envelope, list_envelope, ok_envelope
from pipelines.io.store import DEFAULT_LIMIT, ExporterStore, StaleExporterError, exporter_version
from pipelines.lookup import checks
from pipelines.model import safeload
from pipelines.model.config import Exporter, ExporterBody, Home
from pipelines.model.errors import BadRequestError, ContactExporterError, ErrorItem, InvalidInputError

log = logging.getLogger(__name__)
# The access log, in uvicorn's format (serve() gives it uvicorn's access handler), path alone.
ACCESS_LOGGER = "contact_exporters.access"
access_log = logging.getLogger(ACCESS_LOGGER)

API_KEY_ENV = "CONTACT_EXPORTER_API_KEY"
API_KEY_HEADER = "x-api-key"
MAX_BODY_BYTES = 1024 * 1024
HEALTH_PATH = "/health"
OPENAPI_PATH = "/openapi.json"
SKIPPED_HEADER = "X-Skipped-Exporters"
_LIST_PARAMS = frozenset({"limit", "startingAfter", "endingBefore"})


class BodyTooLargeError(ContactExporterError):
    """The request body is larger than MAX_BODY_BYTES. HTTP 413."""

    http_status = 413


def _envelope_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]), headers=headers)


def etag(exporter: Exporter) -> str:
    return f'"{exporter_version(exporter)}"'


def _exporter_response(exporter: Exporter) -> JSONResponse:
    return _envelope_response(ok_envelope(exporter), headers={"ETag": etag(exporter)})


def _if_match(request: Request) -> Callable[[Exporter], None] | None:
    """The If-Match check for a PUT, run under the store lock; None when the header is absent."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    wanted = {tag.strip() for tag in header.split(",") if tag.strip()}

    def check(current: Exporter) -> None:
        if "*" in wanted:
            return
        current_tag = etag(current)
        if current_tag not in wanted:
            raise StaleExporterError(
                f"exporter {current.id} changed since it was read: its ETag is {current_tag}, "
                f"If-Match was {header}; GET it again and reapply the change"
            )

    return check


class AccessLogMiddleware:
    """One access-log line per request, in uvicorn's format, with the path but never the query string."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            client = scope.get("client")
            address = f"{client[0]}:{client[1]}" if client else "-"
            access_log.info(
                '%s - "%s %s HTTP/%s" %d',
                address,
                scope["method"],
                scope["path"],
                scope.get("http_version", "1.1"),
                status,
                extra={"seconds": round(time.perf_counter() - started, 4)},
            )


class ApiKeyMiddleware:
    """Refuses every request without the right X-API-KEY, before routing (unknown paths included)."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.expected = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (
            scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD")
        ):
            given = b""
            for name, value in scope["headers"]:
                if name.lower() == API_KEY_HEADER.encode("ascii"):
                    given = value
                    break
            if not hmac.compare_digest(given, self.expected):
                response = _envelope_response(
                    {"status": 401, "message": "invalid or missing X-API-KEY", "errors": []}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_body(request: Request) -> bytes:
    """The body, refusing more than MAX_BODY_BYTES before reading it (declared) or while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequestError("request", [ErrorItem("", "Content-Length is not a number")])
        if int(declared) > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"request body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request) -> object:
    raw = await _read_body(request)
    if not raw.strip():
        raise BadRequestError("request", [ErrorItem("", "the body is empty; send an exporter as JSON")])
    # As the CLI reads a file: UTF-8 only (json.loads would take UTF-16 and UTF-32 bytes too), and
    # a value that cannot be read is named by its path.
    return safeload.load_json(raw, "request")


def _list_params(request: Request) -> tuple[int, str | None, str | None]:
    unknown = sorted(set(request.query_params) - _LIST_PARAMS)
    if unknown:
        raise BadRequestError(
            "request",
            [
                ErrorItem(f"/{name}", f"unknown query parameter; use {', '.join(sorted(_LIST_PARAMS))}")
                for name in unknown
            ],
        )
    raw_limit = request.query_params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise BadRequestError(
                "request", [ErrorItem("/limit", "limit must be an integer from 1 to 100")]
            ) from None
    return limit, request.query_params.get("startingAfter"), request.query_params.get("endingBefore")


def create_app(home: Home, api_key: str, source: str | None = None) -> FastAPI:
    """The API over the store in `home`; requests must carry `X-API-KEY: <api_key>`.

    Compliance checks read `source` (a path relative to the home or a URI; default: the home's
    warehouse file), the rows each check needs, on each check.
    """
    if not api_key:
        raise InvalidInputError("arguments", [ErrorItem("", "the API key must not be empty")])
    store = ExporterStore(home)
    checked = checks_api.source_of(home, source)
    app = FastAPI(
        title="Contact Exporters",
        description="Contact exporters (CONTRACT.md §3, §4.1). Every path but /health needs X-API-KEY.",
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_PATH,
    )
    body_schema = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExporterBody"}}},
    }
    stale: dict[int | str, dict[str, Any]] = {412: {"description": "If-Match does not match the stored ETag"}}

    @app.get(HEALTH_PATH, summary="Liveness: no key needed")
    async def health() -> JSONResponse:
        return _envelope_response({"status": 200, "message": "ok"})

    # Load balancers and uptime probes often ask with HEAD; the answer is GET's without a body.
    app.add_api_route(HEALTH_PATH, health, methods=["HEAD"], include_in_schema=False)

    @app.post(API_BASE_PATH, summary="Create an exporter", openapi_extra={"requestBody": body_schema})
    async def create_exporter(request: Request) -> JSONResponse:
        body = await _json_body(request)
        exporter = await run_in_threadpool(store.create, body, "request")
        return _exporter_response(exporter)

    @app.get(API_BASE_PATH, summary="List exporters, newest first")
    async def list_exporters(request: Request) -> JSONResponse:
        limit, starting_after, ending_before = _list_params(request)
        page = await run_in_threadpool(store.list, limit, starting_after, ending_before)
        headers = {SKIPPED_HEADER: ",".join(page.skipped)} if page.skipped else None
        return _envelope_response(list_envelope(page, limit, API_BASE_PATH), headers=headers)

    @app.get(API_BASE_PATH + "/{ident}", summary="Get an exporter by id or ext-<externalId>")
    async def get_exporter(ident: str) -> JSONResponse:
        exporter = await run_in_threadpool(store.get, ident)
        return _exporter_response(exporter)

    @app.put(
        API_BASE_PATH + "/{ident}",
        summary="Replace an exporter (If-Match: its ETag, to refuse a stale update)",
        openapi_extra={"requestBody": body_schema},
        responses=stale,
    )
    async def update_exporter(ident: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        exporter = await run_in_threadpool(store.update, ident, body, "request", _if_match(request))
        return _exporter_response(exporter)

    @app.post(
        checks_api.CHECKS_PATH,
        summary="Compliance checks at an instant (default now) for 1 to 1,000 contacts; read-only",
        openapi_extra={"requestBody": checks_api.request_schema()},
    )
    async def compliance_checks(request: Request) -> JSONResponse:
        raw = await _read_body(request)
        safeload.load_json(raw, "request")  # UTF-8, valid JSON, size and depth: else 400
        body = checks_api.parse_request(raw)
        return _envelope_response(await run_in_threadpool(checks_api.run_check, home, checked, body))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
            models = ExporterBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(models.pop("$defs", {}))
            components["ExporterBody"] = models
            schema["components"]["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
            }
            schema["security"] = [{"apiKey": []}]
            schema["paths"][HEALTH_PATH]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def on_project_error(request: Request, exc: Exception) -> JSONResponse:
        envelope = error_envelope(exc)
        if envelope["status"] >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, envelope["message"])
        return _envelope_response(envelope)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _envelope_response({"status": exc.status_code, "message": str(exc.detail), "errors": []})

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        # Routes take raw requests, so this is only a safety net; it must still speak our envelope.
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"path": "/" + "/".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return _envelope_response({"status": 400, "message": "invalid request", "errors": errors})

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return _envelope_response(error_envelope(exc))

    app.add_exception_handler(ContactExporterError, on_project_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(AccessLogMiddleware)  # outermost: refused requests are logged too
    return app


def api_key_from_env() -> str:
    key = os.environ.get(API_KEY_ENV, "")
    if not key.strip():
        raise InvalidInputError(
            "environment",
            [ErrorItem("", f"{API_KEY_ENV} is not set; export it (the key clients send as X-API-KEY)")],
            message=f"{API_KEY_ENV} is not set: the server refuses to start without an API key",
        )
    return key


def serve(home: Home, host: str, port: int, source: str | None = None) -> None:
    """Run the API with uvicorn until interrupted; refuses to start without the API key."""
    import uvicorn

    app = create_app(home, api_key_from_env(), source)
    checks.answering_checks()
    checks_api.preload(checks_api.source_of(home, source))
    log.info("serving exporters of %s on http://%s:%d%s", home.root, host, port, API_BASE_PATH)
    # uvicorn's own access line would carry the query string: it is off, AccessLogMiddleware writes
    # the line instead through uvicorn's access handler and format.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"][ACCESS_LOGGER] = {"handlers": ["access"], "level": "INFO", "propagate": False}
    # Each compliance check (exporter, instant, counts); never contact values.
    for name in ("flows.checks_api",):
        log_config["loggers"][name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, log_config=log_config)


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.api [--home DIR] [--host H] [--port P]` (the CLI's `serve` does the same)."""
    parser = argparse.ArgumentParser(prog="python -m flows.api", description=__doc__)
    parser.add_argument("--home", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--source", default=None, help="source compliance checks read: a path (against the home) or a URI"
    )
    args = parser.parse_args(argv)
    try:
        serve(Home.resolve(args.home), args.host, args.port, args.source)
    except ContactExporterError as exc:
        text = exc.describe() if isinstance(exc, InvalidInputError) else str(exc)
        print(f"error: {text}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
