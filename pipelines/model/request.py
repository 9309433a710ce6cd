"""One run request (CONTRACT.md §4 `run`): every option of a run in one frozen, validated record.

It is what the CLI, the HTTP API and the deployments hand to the export flow, and what each
partition task of the flow receives; validated once, where it is made, then passed as it is.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.model.config import Home
from pipelines.model.errors import ErrorItem, InvalidInputError

GIB: Final = 1 << 30
DEFAULT_MEMORY_BUDGET: Final = 2 * GIB
DASK_ADDRESS_ENV: Final = "CONTACT_EXPORTER_DASK_ADDRESS"
_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

Partitions = Literal["auto"] | Annotated[int, Field(ge=1, le=100_000)]


def parse_size(text: str | int) -> int:
    """Bytes from `2GiB`, `1.5G`, `512MiB`, `800MB` or a plain number of bytes (K/M/G/T: powers of 1000)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as 2GiB, 1500MiB or 3G")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_partitions(text: str | int) -> Partitions:
    """`auto` or a whole number of partitions, 1 or more."""
    if isinstance(text, int) or text.strip().isdigit():
        n = int(text)
        if n < 1:
            raise ValueError("the number of partitions is 1 or more")
        return n
    if text.strip().lower() == "auto":
        return "auto"
    raise ValueError(f"{text!r}: give a number of partitions (1 or more) or auto")


class RunRequest(BaseModel):
    """What to run: one exporter for one as-of date, with where to read, write and how to split.

    Paths are as given (relative ones resolve against the home). `as_of` None means today in the
    company's time zone, fixed when the run is planned. `dask_address` None runs partitions in this
    process; `from_options` falls back to $CONTACT_EXPORTER_DASK_ADDRESS.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exporter_id: str = Field(min_length=1)
    as_of: date | None = None
    home: str | None = None
    source: str | None = None
    warehouse: str | None = None
    population_file: str | None = None
    deliver: bool = True
    redeliver: bool = False
    partitions: Partitions = "auto"
    memory_budget: int = Field(default=DEFAULT_MEMORY_BUDGET, ge=64 << 20)
    dask_address: str | None = None
    campaign_id: str | None = None

    @field_validator("partitions", mode="before")
    @classmethod
    def _partitions(cls, value: object) -> object:
        return parse_partitions(value) if isinstance(value, (str, int)) else value

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _budget(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @classmethod
    def from_options(cls, **options: object) -> RunRequest:
        """Build and validate a request from CLI/API options; a bad value is invalid input (exit 2)."""
        if options.get("dask_address") is None:
            options["dask_address"] = os.environ.get(DASK_ADDRESS_ENV) or None
        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            items = [
                ErrorItem("--" + "-".join(str(p) for p in err["loc"][:1]).replace("_", "-"), err["msg"])
                for err in exc.errors()
            ]
            raise InvalidInputError("arguments", items) from None

    def flow_parameters(self) -> dict[str, Any]:
        """The request as the flat parameters of the `export-contacts` flow (one per field)."""
        return dict(self)

    def resolved_home(self) -> Home:
        return Home.resolve(self.home)

    def path(self, value: str | None) -> Path | None:
        return self.resolved_home().path(value) if value else None
