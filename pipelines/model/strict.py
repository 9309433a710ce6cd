"""The base of every config model and how config text is read: unknown keys refused, no coercion,
strings free of control and bidirectional characters; a pydantic error becomes an
`InvalidInputError` that names the file (or request) and the JSON path of each problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from pipelines.model import safeload
from pipelines.model.errors import ErrorItem, InvalidInputError, NotFoundError
from pipelines.model.vocab import iana_zones

M = TypeVar("M", bound=BaseModel)


# Longest string any config key takes unless the key says otherwise (a campaign query does).
MAX_STRING = 4096


MAX_NAME = 200


_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _check_text(value: str, multiline: bool) -> None:
    bidi = _BIDI.search(value)
    if bidi:
        raise ValueError(
            f"must not contain the bidirectional control character U+{ord(bidi.group()):04X} "
            "(it makes text display in another order than it is read)"
        )
    control = (_CONTROL_BUT_LINES if multiline else _CONTROL_CHARS).search(value)
    if control:
        raise ValueError(f"must not contain the control character U+{ord(control.group()):04X}")


class Strict(BaseModel):
    """Base of every config model: unknown keys refused, no coercion (`"false"` is not a boolean,
    `"7"` not an integer), strings at most MAX_STRING characters and free of control and
    bidirectional characters (line breaks and tabs only in the keys of MULTILINE)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, str_max_length=MAX_STRING)
    MULTILINE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any, info: ValidationInfo) -> Any:
        multiline = info.field_name in cls.MULTILINE
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in items:
            for text in (key, *(item if isinstance(item, list) else [item])):
                if isinstance(text, str):
                    _check_text(text, multiline)
        return value


def check_timezone(name: str) -> str:
    if name not in iana_zones():
        raise ValueError(f"unknown IANA time zone {name!r} (for example 'America/New_York')")
    return name


IanaZone = Annotated[str, Field(min_length=1)]


def check_cron(expression: str) -> str:
    """A standard five-field cron expression (minute hour day-of-month month day-of-week), as a
    Prefect cron schedule takes it; random or hashed fields (H, R) and @-nicknames are refused."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: give 5 fields (minute hour day month weekday), "
            "for example '0 6 * * 1-5'"
        )
    try:
        CronSim(" ".join(fields), datetime(2026, 1, 1))  # noqa: DTZ001 (parsing only)
    except CronSimError as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    return expression


def json_pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc) if loc else ""


def errors_of(exc: ValidationError) -> list[ErrorItem]:
    items = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"]
        if err["type"] == "duplicate_output_name":
            loc = (*loc, err["ctx"]["index"], "outputName")
        if err["type"] == "formula_output_name":
            loc = (*loc, "columnSettings", err["ctx"]["index"], "outputName")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        items.append(ErrorItem(json_pointer(loc), message))
    return items


def parse(model: type[M], data: Any, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(source, errors_of(exc)) from None


def read_yaml(path: Path) -> Any:
    """A YAML config: UTF-8, size, depth and node count checked (pipelines/model/safeload.py)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except OSError as exc:
        raise InvalidInputError(str(path), [ErrorItem("", f"cannot be read: {exc.strerror}")]) from None
    return safeload.load_yaml(raw, str(path))
