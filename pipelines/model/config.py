"""Typed configuration (CONTRACT.md §1–§3, §7): company, exporter, SFTP destination, campaign.

Every model forbids unknown keys. `parse()` turns a pydantic error into an `InvalidInputError`
that names the file (or request) and the JSON path of each problem.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipelines.model import safeload
from pipelines.model.errors import ErrorItem, InvalidInputError, NotFoundError
from pipelines.model.vocab import (
    SAFE_ID,
    Affiliation,
    ContactStatus,
    ContactType,
    ExportChannel,
    Label,
    Theme,
    iana_zones,
)

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


# ---------------------------------------------------------------- company (§2)

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ContactHours(Strict):
    start: str = Field("08:00", description="earliest borrower-local time, inclusive, HH:MM")
    end: str = Field("21:00", description="latest borrower-local time, inclusive, HH:MM")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time of day as HH:MM (00:00 to 23:59)")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> ContactHours:
        if self.start_time > self.end_time:
            raise ValueError(f"contactHours start {self.start} is after end {self.end}")
        return self

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


LimitChannel = Literal["voice", "text", "email", "mail", "chat"]


class FrequencyLimit(Strict):
    channels: list[LimitChannel] = Field(min_length=1)
    maxAttempts: int = Field(ge=1, description="attempts allowed in the window")
    windowDays: int = Field(
        ge=1, le=366, description="rolling window of calendar days, the as-of date included"
    )


class StateRule(Strict):
    frequencyLimits: list[FrequencyLimit] = Field(default_factory=list)


def _default_limits() -> list[FrequencyLimit]:
    return [FrequencyLimit(channels=["voice"], maxAttempts=7, windowDays=7)]


def _default_state_rules() -> dict[str, StateRule]:
    return {
        "MA": StateRule(
            frequencyLimits=[FrequencyLimit(channels=["voice", "text"], maxAttempts=2, windowDays=7)]
        )
    }


class Policy(Strict):
    contactHours: ContactHours = Field(default_factory=lambda: ContactHours())
    frequencyLimits: list[FrequencyLimit] = Field(default_factory=_default_limits)
    conversationCooldownDays: int = Field(7, ge=0, le=366)
    stateRules: dict[str, StateRule] = Field(default_factory=_default_state_rules)
    unknownTimezone: Literal["block", "allow"] = "block"
    maxRejectedShare: float = Field(
        0.01,
        ge=0,
        le=1,
        description="a run fails when more than this share of the matched borrowers are blocked "
        "for SOURCE_ROW_REJECTED (a broken feed, not a bad row)",
    )

    @field_validator("stateRules")
    @classmethod
    def _states(cls, v: dict[str, StateRule]) -> dict[str, StateRule]:
        for key in v:
            if not re.fullmatch(r"[A-Z]{2}", key):
                raise ValueError(f"state {key!r} must be a 2-letter uppercase code such as 'MA'")
        return v


class Company(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=MAX_NAME)
    timezone: IanaZone
    policy: Policy = Field(default_factory=lambda: Policy())

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)


# ---------------------------------------------------------------- exporter (§3)


class ContactMatchingCriteria(Strict):
    label: list[Label] | None = Field(None, min_length=1)
    contactType: list[ContactType] | None = Field(None, min_length=1)
    affiliation: list[Affiliation] | None = Field(None, min_length=1)
    status: list[ContactStatus] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_key(self) -> ContactMatchingCriteria:
        if not self.as_dict():
            raise ValueError("give at least one of label, contactType, affiliation, status")
        return self

    def as_dict(self) -> dict[str, list[str]]:
        """Only the attributes given, in a fixed order, each value list deduplicated and sorted."""
        out: dict[str, list[str]] = {}
        for key in ("label", "contactType", "affiliation", "status"):
            values = getattr(self, key)
            if values is not None:
                out[key] = sorted(set(values))
        return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ColumnSetting(Strict):
    field: str = Field(description="a contacts column, or borrower.<column>")
    outputName: str | None = Field(
        None, max_length=256, description="column name in the file; defaults to field"
    )

    @field_validator("field")
    @classmethod
    def _known(cls, v: str) -> str:
        from pipelines.model.tables import EXPORTABLE_FIELDS  # Polars' types: imported when a config is read

        if v not in EXPORTABLE_FIELDS:
            raise ValueError(f"unknown field {v!r}; valid fields: {', '.join(EXPORTABLE_FIELDS)}")
        return v

    @field_validator("outputName")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("outputName must not be empty")
        if _CONTROL.search(v):
            raise ValueError("outputName must not contain control characters")
        return v

    @property
    def output(self) -> str:
        return self.outputName if self.outputName is not None else self.field


class CheckCanInteractData(Strict):
    theme: Theme
    isAutodialed: bool = False
    channel: ExportChannel | None = None


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


class ExporterBody(Strict):
    """What create and update accept (CONTRACT.md §3)."""

    contactMatchingCriteria: ContactMatchingCriteria
    columnSettings: list[ColumnSetting] = Field(min_length=1)
    checkCanInteractData: CheckCanInteractData | None = None
    companyId: str | None = None
    externalId: str | None = Field(None, min_length=1)
    name: str | None = Field(None, max_length=MAX_NAME)
    sftpSettingId: str | None = Field(None, min_length=1)
    fileSettings: FileSettings = Field(default_factory=lambda: FileSettings())

    @field_validator("columnSettings")
    @classmethod
    def _unique(cls, v: list[ColumnSetting]) -> list[ColumnSetting]:
        seen: dict[str, int] = {}
        for i, c in enumerate(v):
            if c.output in seen:
                raise PydanticCustomError(
                    "duplicate_output_name",
                    "outputName '{name}' of item {index} repeats item {first}",
                    {"name": c.output, "index": i, "first": seen[c.output]},
                )
            seen[c.output] = i
        return v

    @model_validator(mode="after")
    def _safe_headers(self) -> ExporterBody:
        settings = self.fileSettings
        if settings.format != "csv" or not settings.csvInjectionGuard:
            return self
        for i, c in enumerate(self.columnSettings):
            if is_formula_like(c.output):
                raise PydanticCustomError(
                    "formula_output_name",
                    "outputName '{name}' of item {index} would be read as a formula by a spreadsheet; "
                    "rename it (or set fileSettings.csvInjectionGuard: false)",
                    {"name": c.output, "index": i},
                )
        return self

    @field_validator("externalId")
    @classmethod
    def _external(cls, v: str | None) -> str | None:
        if v is not None and not _EXTERNAL_ID.fullmatch(v):
            raise ValueError(
                f"{v!r}: externalId may hold letters, digits and '-', '_', '.', ':' (at most 128)"
            )
        return v

    @field_validator("sftpSettingId", "companyId")
    @classmethod
    def _safe_id(cls, v: str | None) -> str | None:
        if v is not None and not _ID.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid id (letters, digits, '-', '_', '.')")
        return v


_ID = SAFE_ID
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class Exporter(ExporterBody):
    """A stored exporter: the body plus what the store sets."""

    id: str
    companyId: str
    createdAt: str
    updatedAt: str

    def public(self) -> dict[str, Any]:
        """The exporter as stored and served: only the keys that were set (the seed's shape)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def channel(self) -> str | None:
        return self.checkCanInteractData.channel if self.checkCanInteractData else None


# ---------------------------------------------------------------- SFTP (§7)


class Timeouts(Strict):
    connect: float = Field(10, gt=0)
    auth: float = Field(10, gt=0)
    channel: float = Field(30, gt=0)


_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}")


class Encryption(Strict):
    pgpPublicKeyFile: str = Field(
        min_length=1, description="the partner's OpenPGP public key (ASCII-armored or binary)"
    )
    pgpFingerprint: str | None = Field(
        None,
        description="optional pin: the key's fingerprint (40 hex digits, no spaces, any case); "
        "a key file holding another key is refused",
    )

    @field_validator("pgpFingerprint")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is not None and not _FINGERPRINT.fullmatch(v):
            raise ValueError(
                "must be the key's fingerprint: 40 hex digits without spaces, as "
                "`gpg --with-colons --fingerprint` prints it on its fpr line"
            )
        return v


class SftpSetting(Strict):
    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    username: str = Field(min_length=1)
    knownHostsFile: str = Field(min_length=1, description="pinned host key(s); required")
    privateKeyFile: str | None = None
    passwordEnv: str | None = Field(None, description="name of the environment variable holding the password")
    passwordSecretBlock: str | None = Field(None, description="name of a Prefect Secret block holding it")
    remoteDir: str = "/"
    timeouts: Timeouts = Field(default_factory=lambda: Timeouts())
    encryption: Encryption | None = Field(None, description="deliver <name>.pgp encrypted to this key")

    @model_validator(mode="after")
    def _auth(self) -> SftpSetting:
        if not (self.privateKeyFile or self.passwordEnv or self.passwordSecretBlock):
            raise ValueError(
                "give privateKeyFile, passwordEnv or passwordSecretBlock (secrets never in this file)"
            )
        return self


# ---------------------------------------------------------------- campaign (§1)


class Campaign(Strict):
    MULTILINE: ClassVar[frozenset[str]] = frozenset({"query"})

    id: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=MAX_NAME)
    exporterId: str = Field(min_length=1, max_length=128)
    query: str = Field(
        min_length=1, max_length=100_000, description="one read-only DuckDB SELECT returning column id"
    )
    timeoutSeconds: int = Field(300, ge=1, le=86_400, description="the query is cancelled after this")
    memoryLimit: str = Field(
        "2GB", pattern=r"^[1-9][0-9]{0,5}(MB|GB)$", description="DuckDB memory limit of the query (MB or GB)"
    )
    source: str | None = Field(None, description="source the query and the run read; default the home's")
    schedule: str | None = Field(None, description="cron expression, company time zone")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return check_cron(v) if v is not None else v


class Schedules(Strict):
    """configs/schedules.yaml: daily deployments per exporter (campaigns carry their own)."""

    exporters: dict[str, str] = Field(default_factory=dict)

    @field_validator("exporters")
    @classmethod
    def _crons(cls, v: dict[str, str]) -> dict[str, str]:
        for exporter_id, cron in v.items():
            try:
                check_cron(cron)
            except ValueError as exc:
                raise ValueError(f"{exporter_id}: {exc}") from None
        return v


# ---------------------------------------------------------------- parsing helpers


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


# ---------------------------------------------------------------- home (§1)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        raw = explicit or os.environ.get("CONTACT_EXPORTER_HOME") or "."
        return cls(Path(raw).expanduser().resolve())

    def path(self, relative: str | os.PathLike[str]) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def exporters_dir(self) -> Path:
        return self.configs / "exporters"

    @property
    def warehouse(self) -> Path:
        return self.root / "data" / "warehouse.duckdb"

    @property
    def exports(self) -> Path:
        return self.root / "data" / "exports"

    def _config_file(self, kind: str, ident: str) -> Path:
        if not _ID.fullmatch(ident):
            raise InvalidInputError("arguments", [ErrorItem("", f"{ident!r} is not a valid {kind} id")])
        return self.configs / kind / f"{ident}.yaml"

    def company_ids(self) -> list[str]:
        d = self.configs / "companies"
        return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []

    def company(self, company_id: str) -> Company:
        path = self._config_file("companies", company_id)
        if not path.exists():
            known = ", ".join(self.company_ids()) or "none"
            raise NotFoundError(f"company {company_id!r} not found: no {path} (configured: {known})")
        company = parse(Company, read_yaml(path), str(path))
        if company.id != company_id:
            raise InvalidInputError(
                str(path), [ErrorItem("/id", f"id {company.id!r} differs from file name")]
            )
        return company

    def sftp(self, setting_id: str) -> SftpSetting:
        path = self._config_file("sftp", setting_id)
        if not path.exists():
            raise NotFoundError(f"SFTP setting {setting_id!r} not found: no {path}")
        return parse(SftpSetting, read_yaml(path), str(path))

    def campaign_ids(self) -> list[str]:
        d = self.configs / "campaigns"
        return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []

    def campaign(self, campaign_id: str) -> Campaign:
        path = self._config_file("campaigns", campaign_id)
        if not path.exists():
            raise NotFoundError(f"campaign {campaign_id!r} not found: no {path}")
        campaign = parse(Campaign, read_yaml(path), str(path))
        return campaign.model_copy(update={"id": campaign.id or campaign_id})

    def schedules(self) -> Schedules:
        path = self.configs / "schedules.yaml"
        if not path.exists():
            return Schedules()
        return parse(Schedules, read_yaml(path) or {}, str(path))
