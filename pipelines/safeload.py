"""Reading JSON and YAML that a user or a client wrote, refusing early what would fail later.

A config or request body must be UTF-8, at most MAX_BYTES, nested at most MAX_DEPTH deep and hold at
most MAX_NODES values (YAML aliases count each time they are used, so an alias bomb is refused
too). Anything else is a BadRequestError (exit 2, HTTP 400) naming the file and what is wrong,
never a crash.
"""

from __future__ import annotations

import json
from typing import Any, Final

import yaml

from pipelines.errors import BadRequestError, ErrorItem

MAX_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 32
MAX_NODES: Final = 100_000


def decode(raw: bytes, source: str) -> str:
    if len(raw) > MAX_BYTES:
        raise BadRequestError(
            source, [ErrorItem("", f"is {len(raw):,} bytes; a config or body may have at most {MAX_BYTES:,}")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            source, [ErrorItem("", f"is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8")]
        ) from None


def check_shape(data: Any, source: str) -> Any:
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_NODES values."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise BadRequestError(source, [ErrorItem("", f"holds more than {MAX_NODES:,} values")])
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise BadRequestError(source, [ErrorItem("", f"is nested more than {MAX_DEPTH} levels deep")])
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return data


def _too_deep(source: str) -> BadRequestError:
    return BadRequestError(source, [ErrorItem("", f"is nested more than {MAX_DEPTH} levels deep")])


def load_json(raw: bytes, source: str) -> Any:
    text = decode(raw, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            source, [ErrorItem("", f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}")]
        ) from None
    except RecursionError:
        raise _too_deep(source) from None
    return check_shape(data, source)


def load_yaml(raw: bytes, source: str) -> Any:
    text = decode(raw, source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadRequestError(source, [ErrorItem("", f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise _too_deep(source) from None
    return check_shape(data, source)
