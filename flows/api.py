"""HTTP API (CONTRACT.md §4.1): the exporter store behind FastAPI, with the envelopes of §3.

Every request needs `X-API-KEY`; every response, errors included, is one of our envelopes, and its
HTTP status equals the envelope's `status`. The store is read from disk on each request, so a write
made through the CLI is visible at once. The interactive docs and the OpenAPI schema are off: the
only clients are scripts holding the key, and the schema would be served without it.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pipelines.config import Home
from pipelines.errors import BadRequestError, ContactExporterError, ErrorItem, InvalidInputError
from pipelines.store import (
    API_BASE_PATH,
    DEFAULT_LIMIT,
    ExporterStore,
    error_envelope,
    list_envelope,
    ok_envelope,
)

log = logging.getLogger(__name__)

API_KEY_ENV = "CONTACT_EXPORTER_API_KEY"
API_KEY_HEADER = "x-api-key"
MAX_BODY_BYTES = 1024 * 1024
_LIST_PARAMS = frozenset({"limit", "startingAfter", "endingBefore"})


class BodyTooLargeError(ContactExporterError):
    """The request body is larger than MAX_BODY_BYTES. HTTP 413."""

    http_status = 413


def _envelope_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]))


class ApiKeyMiddleware:
    """Refuses every request without the right X-API-KEY, before routing (unknown paths included)."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.expected = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
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
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise BadRequestError("request", [ErrorItem("", f"the body is not valid JSON: {reason}")]) from None


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


def create_app(home: Home, api_key: str) -> FastAPI:
    """The API over the store in `home`; requests must carry `X-API-KEY: <api_key>`."""
    if not api_key:
        raise InvalidInputError("arguments", [ErrorItem("", "the API key must not be empty")])
    store = ExporterStore(home)
    app = FastAPI(
        title="Contact Exporters",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.post(API_BASE_PATH)
    async def create_exporter(request: Request) -> JSONResponse:
        body = await _json_body(request)
        exporter = await run_in_threadpool(store.create, body, "request")
        return _envelope_response(ok_envelope(exporter))

    @app.get(API_BASE_PATH)
    async def list_exporters(request: Request) -> JSONResponse:
        limit, starting_after, ending_before = _list_params(request)
        page = await run_in_threadpool(store.list, limit, starting_after, ending_before)
        return _envelope_response(list_envelope(page, limit, API_BASE_PATH))

    @app.get(API_BASE_PATH + "/{ident}")
    async def get_exporter(ident: str) -> JSONResponse:
        exporter = await run_in_threadpool(store.get, ident)
        return _envelope_response(ok_envelope(exporter))

    @app.put(API_BASE_PATH + "/{ident}")
    async def update_exporter(ident: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        exporter = await run_in_threadpool(store.update, ident, body, "request")
        return _envelope_response(ok_envelope(exporter))

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


def serve(home: Home, host: str, port: int) -> None:
    """Run the API with uvicorn until interrupted; refuses to start without the API key."""
    import uvicorn

    app = create_app(home, api_key_from_env())
    log.info("serving exporters of %s on http://%s:%d%s", home.root, host, port, API_BASE_PATH)
    uvicorn.run(app, host=host, port=port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.api [--home DIR] [--host H] [--port P]` (the CLI's `serve` does the same)."""
    parser = argparse.ArgumentParser(prog="python -m flows.api", description=__doc__)
    parser.add_argument("--home", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        serve(Home.resolve(args.home), args.host, args.port)
    except ContactExporterError as exc:
        text = exc.describe() if isinstance(exc, InvalidInputError) else str(exc)
        print(f"error: {text}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
