"""The file a partner receives (CONTRACT.md §3 fileSettings): its format, its name (a rendered
fileNameTemplate must stay inside the export folder and show as it is) and its cells (a cell a
spreadsheet would evaluate as a formula is recognised: OWASP CSV injection)."""

from __future__ import annotations

import re
import string
from datetime import date
from typing import Literal

from pydantic import Field, field_validator

from pipelines.model.strict import Strict

_TEMPLATE_FIELDS = {"exporterId", "asOfDate", "companyId", "campaignId"}


def render_file_name(
    template: str, exporter_id: str, as_of: date, company_id: str, campaign_id: str | None = None
) -> str:
    """Render a fileNameTemplate; raises ValueError for a name that could leave the export folder.

    `{campaignId}` is the campaign of a campaign run and empty in an exporter's daily run."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in _TEMPLATE_FIELDS:
            raise ValueError(
                f"unknown placeholder {{{name}}} in fileNameTemplate; use {', '.join(sorted(_TEMPLATE_FIELDS))}"
            )
    try:
        name = template.format(
            exporterId=exporter_id, asOfDate=as_of, companyId=company_id, campaignId=campaign_id or ""
        )
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"fileNameTemplate {template!r} cannot be rendered: {exc}") from exc
    if not name or name in {".", ".."} or "/" in name or "\\" in name or ".." in name or name.startswith("."):
        raise ValueError(
            f"fileNameTemplate renders to {name!r}: a file name must stay inside the export folder"
        )
    if _UNSAFE_NAME.search(name):
        raise ValueError(
            f"fileNameTemplate renders to {name!r}: control and bidirectional-text characters are not "
            "allowed in a file name (they hide or reorder what a partner sees)"
        )
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(
            f"fileNameTemplate renders to a name of {size} bytes; at most {MAX_NAME_BYTES} (UTF-8) are allowed"
        )
    return name


# A partner's file system and tools must show a name as it is: no C0/C1 controls, no bidi overrides.
_UNSAFE_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


MAX_NAME_BYTES = 200


def template_uses_as_of_date(template: str) -> bool:
    return any(name == "asOfDate" for _, name, _, _ in string.Formatter().parse(template))


def template_uses_campaign_id(template: str) -> bool:
    return any(name == "campaignId" for _, name, _, _ in string.Formatter().parse(template))


# OWASP CSV injection: a cell a spreadsheet would evaluate. `+` and `-` only start a formula when the
# cell is not a plain number (E.164 phones and signed amounts stay as they are).
FORMULA_START = "^[=@\t\r]"


SIGNED_START = "^[+-]"


_PLAIN_BODY = "[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?"


PLAIN_NUMBER = f"^{_PLAIN_BODY}$"  # for Polars (Rust regex: `$` is the end of the text only)


def is_formula_like(text: str) -> bool:
    if re.match(FORMULA_START, text):
        return True
    return re.match(SIGNED_START, text) is not None and re.fullmatch(_PLAIN_BODY, text) is None


class FileSettings(Strict):
    format: Literal["csv", "parquet"] = "csv"
    fileNameTemplate: str | None = Field(
        None,
        max_length=255,
        description="default {exporterId}_{asOfDate:%Y%m%d}.csv (or .parquet for parquet)",
    )
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = True
    csvInjectionGuard: bool = Field(
        True, description="CSV: prefix cells a spreadsheet would run as a formula with ' (OWASP)"
    )

    @field_validator("fileNameTemplate")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            render_file_name(v, "CE-ABCDEFGH", date(2026, 1, 2), "CP-X")
            if not template_uses_as_of_date(v):
                raise ValueError(
                    f"fileNameTemplate {v!r} does not use {{asOfDate}}: every day would replace the "
                    "partner's earlier file; add the date, e.g. '{exporterId}_{asOfDate:%Y%m%d}.csv'"
                )
            # Dates one day, one month and one year apart must give distinct names.
            days = (date(2026, 1, 2), date(2026, 1, 3), date(2026, 2, 2), date(2027, 1, 2))
            if len({render_file_name(v, "CE-ABCDEFGH", d, "CP-X") for d in days}) < len(days):
                raise ValueError(
                    f"fileNameTemplate {v!r} gives the same name for different as-of dates; use the "
                    "day, month and year of {asOfDate}, e.g. {asOfDate:%Y%m%d}"
                )
        return v

    @field_validator("delimiter")
    @classmethod
    def _delim(cls, v: str) -> str:
        if v in {'"', "\n", "\r"}:
            raise ValueError("delimiter must not be a quote or a line break")
        return v

    @property
    def template(self) -> str:
        if self.fileNameTemplate is not None:
            return self.fileNameTemplate
        return "{exporterId}_{asOfDate:%Y%m%d}." + self.format

    def campaign_template(self) -> str:
        """The name of a campaign run's file: never the daily file's name, so a partner receives both.

        Default `{exporterId}_{campaignId}_{asOfDate:%Y%m%d}.<format>`; a fileNameTemplate without
        `{campaignId}` gets `_{campaignId}` before its extension."""
        if self.fileNameTemplate is None:
            return "{exporterId}_{campaignId}_{asOfDate:%Y%m%d}." + self.format
        if template_uses_campaign_id(self.fileNameTemplate):
            return self.fileNameTemplate
        stem, dot, ext = self.fileNameTemplate.rpartition(".")
        if not dot or "}" in ext:
            return self.fileNameTemplate + "_{campaignId}"
        return stem + "_{campaignId}." + ext
