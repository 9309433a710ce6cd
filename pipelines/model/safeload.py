"""Reading JSON and YAML that a user or a client wrote, refusing early what would fail later.

A config or request body must be UTF-8, at most MAX_BYTES, nested at most MAX_DEPTH deep and hold at
most MAX_NODES values (YAML aliases count each time they are used, so an alias bomb is refused
too), with integers of at most MAX_INT_DIGITS digits. Anything else is a BadRequestError (exit 2,
HTTP 400) naming the file, the JSON path of the value and what is wrong, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import yaml

from pipelines.model.errors import BadRequestError, ErrorItem

MAX_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 32
MAX_NODES: Final = 100_000
# Python refuses to turn longer digit strings into integers (sys.get_int_max_str_digits, a guard
# against quadratic-time conversion); no setting needs a fraction of that.
MAX_INT_DIGITS: Final = 4300
_INT_BOUND: Final = 10**MAX_INT_DIGITS  # hex integers, which convert at any length, are held to it too


@dataclass(frozen=True)
class _Unreadable:
    """Left by the parsers in place of a number they could not turn into a value, for check_shape
    to refuse with its path."""

    why: str


def _too_long(digits: int) -> _Unreadable:
    return _Unreadable(f"is an integer of {digits:,} digits; at most {MAX_INT_DIGITS:,} are read")


def _int_or_unreadable(text: str) -> int | _Unreadable:
    digits = len(text.lstrip("+-"))
    return _too_long(digits) if digits > MAX_INT_DIGITS else int(text)


class _Loader(yaml.SafeLoader):
    """The safe YAML loader, whose integers that do not convert are left for check_shape to refuse."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            digits = sum(c.isdigit() for c in str(node.value))
            return (
                _too_long(digits)
                if digits > MAX_INT_DIGITS
                else _Unreadable("is tagged !!int but is not an integer")
            )


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _pointer(path: tuple[Any, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def decode(raw: bytes, source: str) -> str:
    if len(raw) > MAX_BYTES:
        raise BadRequestError(
            source, [ErrorItem("", f"is {len(raw):,} bytes; a config or body may have at most {MAX_BYTES:,}")]
        )
    if b"\x00" in raw:  # no JSON or YAML text holds one; UTF-16 and UTF-32 text of ASCII does
        at = raw.index(b"\x00")
        raise BadRequestError(
            source, [ErrorItem("", f"is not UTF-8 text (byte {at}: a NUL, as in UTF-16); save it as UTF-8")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            source, [ErrorItem("", f"is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8")]
        ) from None


def check_shape(data: Any, source: str) -> Any:
    """Refuse data nested deeper than MAX_DEPTH, holding more than MAX_NODES values or an integer of
    more than MAX_INT_DIGITS digits (named by its JSON path)."""
    nodes = 0
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise BadRequestError(source, [ErrorItem("", f"holds more than {MAX_NODES:,} values")])
        if isinstance(value, _Unreadable):
            raise BadRequestError(source, [ErrorItem(_pointer(path), value.why)])
        if isinstance(value, int) and abs(value) >= _INT_BOUND:
            why = f"is an integer of more than {MAX_INT_DIGITS:,} digits"
            raise BadRequestError(source, [ErrorItem(_pointer(path), why)])
        if isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                raise _too_deep(source)
            children = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((child, (*path, key)) for key, child in children)
    return data


def _too_deep(source: str) -> BadRequestError:
    return BadRequestError(source, [ErrorItem("", f"is nested more than {MAX_DEPTH} levels deep")])


def load_json(raw: bytes, source: str) -> Any:
    text = decode(raw, source)
    try:
        data = json.loads(text, parse_int=_int_or_unreadable)
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
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise BadRequestError(source, [ErrorItem("", f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise _too_deep(source) from None
    return check_shape(data, source)
