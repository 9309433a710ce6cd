"""The contract's vocabulary: enum values, channels, themes and reason codes (CONTRACT.md §5, §8)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    import polars as pl

# A config id (company, SFTP setting, campaign): safe as a file name, at most 128 characters.
SAFE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# An exporter id as the store sets it: CE- and 8 characters of base32.
EXPORTER_ID: Final = re.compile(r"CE-[A-Z2-7]{8}")


@functools.cache
def iana_zones() -> frozenset[str]:
    """The IANA zone names this process knows: one cached list for configs, validation and screening."""
    return frozenset(zoneinfo.available_timezones())


# Up to this many values, `one_of` compares instead of looking values up.
COMPARED_UP_TO: Final = 8


def one_of(expr: pl.Expr, values: Iterable[str]) -> pl.Expr:
    """`expr.is_in(values)` (null for null), as one comparison per value for a few values.

    Polars holds text as views that carry a short string (or its first bytes) inline, so comparing
    to a constant rarely touches the text, while `is_in` hashes every value.
    """
    wanted = list(dict.fromkeys(values))
    if not wanted or len(wanted) > COMPARED_UP_TO:
        return expr.is_in(wanted)
    import polars as pl  # here, not at import: the CLI's --help and configs never need Polars

    return pl.any_horizontal(expr == value for value in wanted)


ContactType = Literal["phone", "email", "address"]
Label = Literal["personal", "work", "home", "military"]
Affiliation = Literal[
    "self", "spouse", "parent", "guardian", "representative", "attorney", "employer", "other"
]
ContactStatus = Literal["primary", "secondary", "additional", "archived"]
ExportChannel = Literal["voice", "text", "email", "mail"]
Theme = Literal[
    "opsCollDebt",
    "opsCollLocateBorrower",
    "opsCollVerifyEmployment",
    "opsCollContactEmployerNotice",
    "opsServicingDebtValidation",
    "opsServicingNegativeCreditReportNotice",
    "opsServicingTimeBarredNotice",
    "opsServicing",
    "opsAccountCredentials",
    "agentNotification",
]

CONTACT_TYPES: Final = get_args(ContactType)
LABELS: Final = get_args(Label)
AFFILIATIONS: Final = get_args(Affiliation)
CONTACT_STATUSES: Final = get_args(ContactStatus)
EXPORT_CHANNELS: Final = get_args(ExportChannel)
DNI_CHANNELS: Final = ("voice", "email", "text", "mail", "chat")
INTERACTION_CHANNELS: Final = ("voice", "email", "text", "mail", "chat", "fax", "gui", "document")
DIRECTIONS: Final = ("outbound", "inbound")
INTERACTION_STATUSES: Final = ("scheduled", "inProgress", "attempted", "succeeded", "failed", "canceled")
THEMES: Final = get_args(Theme)
CONSENT_NAMES: Final = (
    "electronicComms",
    "autodialedColl",
    "contactPersonWork",
    "contactPersonRepByAttorney",
    "contactPersonUnusualTime",
)
CONSENT_STATUSES: Final = ("consented", "revoked")

# statusDetails vocabulary (COMPLIANCE.md): voice outcomes that count as attempts, and those that never do.
VOICE_ATTEMPT_DETAILS: Final = (
    "voiceSpokeWithFirstParty",
    "voiceSpokeWithThirdParty",
    "voiceLeftVoicemail",
    "voiceReachedVoicemail",
    "voiceNoAnswer",
    "voiceAnsweredNoConversation",
)
VOICE_NON_ATTEMPT_DETAILS: Final = ("voiceBusy", "voiceNotInService", "voiceWrongNumber")
STATUS_DETAILS: Final = VOICE_ATTEMPT_DETAILS + VOICE_NON_ATTEMPT_DETAILS
CONVERSATION_DETAIL: Final = "voiceSpokeWithFirstParty"
ATTEMPT_STATUSES: Final = ("attempted", "succeeded", "inProgress")

DEFAULT_CHANNEL_FOR_TYPE: Final[dict[str, str]] = {"phone": "voice", "email": "email", "address": "mail"}
CHANNEL_FITS_TYPE: Final[dict[str, str]] = {
    "voice": "phone",
    "text": "phone",
    "email": "email",
    "mail": "address",
}

REASON_CODES: Final = (
    "AUTODIAL_CONSENT_MISSING",
    "CHANNEL_MISMATCH",
    "CONTACT_ARCHIVED",
    "CONTACT_INVALID",
    "DO_NOT_INTERACT",
    "ELECTRONIC_CONSENT_REVOKED",
    "FREQUENCY_LIMIT",
    "OUTSIDE_CONTACT_HOURS",
    "RECENT_CONVERSATION",
    "SOURCE_ROW_REJECTED",
    "TEXT_OPT_IN_MISSING",
    "THIRD_PARTY_NOT_AUTHORIZED",
    "TIMEZONE_UNKNOWN",
)
