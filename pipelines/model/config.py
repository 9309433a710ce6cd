"""Typed configuration (CONTRACT.md §1–§3, §7): company, exporter, SFTP destination, campaign.

Every model is `Strict` (pipelines/model/strict.py): unknown keys are refused, and `parse()` turns a
pydantic error into an `InvalidInputError` that names the file and the JSON path of each problem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipelines.model.errors import ErrorItem, InvalidInputError, NotFoundError
from pipelines.model.file_names import FileSettings, is_formula_like
from pipelines.model.strict import MAX_NAME, IanaZone, Strict, check_cron, check_timezone, parse, read_yaml
from pipelines.model.vocab import (
    SAFE_ID,
    Affiliation,
    ContactStatus,
    ContactType,
    ExportChannel,
    Label,
    Theme,
)

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

    def campaign_file(self, campaign_id: str) -> Path:
        """The campaign's config file (errors about its query name it)."""
        return self._config_file("campaigns", campaign_id)

    def campaign(self, campaign_id: str) -> Campaign:
        path = self.campaign_file(campaign_id)
        if not path.exists():
            raise NotFoundError(f"campaign {campaign_id!r} not found: no {path}")
        campaign = parse(Campaign, read_yaml(path), str(path))
        return campaign.model_copy(update={"id": campaign.id or campaign_id})

    def schedules(self) -> Schedules:
        path = self.configs / "schedules.yaml"
        if not path.exists():
            return Schedules()
        return parse(Schedules, read_yaml(path) or {}, str(path))
