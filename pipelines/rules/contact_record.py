"""Rules read from the contact's own record (COMPLIANCE.md): archived, invalid, a third party
without authority, a text without opt-in, a channel that does not fit the contact type. None of them
is cleared by time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from pipelines.model.vocab import CHANNEL_FITS_TYPE
from pipelines.rules.base import Judged, Rule, Seen, rows

_channel = pl.col("channel")


def _archived(_: Judged) -> pl.Expr:
    return pl.col("status") == "archived"


def _invalid(_: Judged) -> pl.Expr:
    return ~pl.col("valid").fill_null(True)


def _third_party(_: Judged) -> pl.Expr:
    # spouse, guardian and representative need a flag too: the data cannot prove the legal status
    authorized = pl.col("authorizedThirdParty").fill_null(False) | pl.col("powerOfAttorney").fill_null(False)
    return (pl.col("affiliation") != "self") & ~authorized


def _no_text_opt_in(_: Judged) -> pl.Expr:
    return (_channel == "text") & ~pl.col("receiveTextMessages").fill_null(False)


def _mismatch(_: Judged) -> pl.Expr:
    fits = pl.any_horizontal(
        (_channel == ch) & (pl.col("contactType") == kind) for ch, kind in CHANNEL_FITS_TYPE.items()
    )
    return ~fits.fill_null(False)


def _record(*keys: str) -> Callable[[Seen], dict[str, Any]]:
    """Evidence that is the contact's own fields."""

    def evidence(seen: Seen) -> dict[str, Any]:
        return rows(pl.DataFrame([{key: seen.contact.get(key) for key in keys}]))[0]

    return evidence


ARCHIVED = Rule("CONTACT_ARCHIVED", _archived, True, _record("status", "archivedAt"))
INVALID = Rule("CONTACT_INVALID", _invalid, True, _record("valid"))
THIRD_PARTY = Rule(
    "THIRD_PARTY_NOT_AUTHORIZED",
    _third_party,
    True,
    _record("affiliation", "authorizedThirdParty", "powerOfAttorney"),
)
TEXT_OPT_IN = Rule("TEXT_OPT_IN_MISSING", _no_text_opt_in, True, _record("receiveTextMessages"))
CHANNEL_MISMATCH = Rule(
    "CHANNEL_MISMATCH",
    _mismatch,
    True,
    lambda seen: {"channel": seen.channel, "contactType": seen.contact.get("contactType")},
)
