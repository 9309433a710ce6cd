"""Consent rules (COMPLIANCE.md): an autodialed call or text needs the borrower's `autodialedColl`
consent (absent = not consented); an email or text is blocked when `electronicComms` is revoked
(absent = consented). The latest record at the instant counts; at the same instant `revoked` wins.
No passing of time clears either: only a new record does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from pipelines.model.vocab import one_of
from pipelines.rules.base import Judged, Rule, Seen, rows

_channel = pl.col("channel")


def consent_facts(consents: pl.LazyFrame, instant: datetime) -> pl.LazyFrame:
    """personId, autodialConsented, electronicRevoked: whether the latest autodialedColl row at the
    instant says consented and the latest electronicComms row revoked (null: no row). Booleans, not
    the status text, since they are copied to every contact of the borrower. Both in one pass, each a
    plain `max` per borrower (`_latest_is`), cheaper than taking each name's row at its `arg_max`."""
    return (
        consents.filter(pl.col("updatedAt") <= instant)
        .group_by("personId")
        .agg(
            _latest_is("autodialedColl", "consented").alias("autodialConsented"),
            _latest_is("electronicComms", "revoked").alias("electronicRevoked"),
        )
        .filter(pl.col("autodialConsented").is_not_null() | pl.col("electronicRevoked").is_not_null())
    )


def _consent_order() -> pl.Expr:
    """Later is greater; at the same instant a revocation is greater than a consent. Rows of equal
    order have the same status (there are two), so which of them is taken does not matter."""
    return pl.col("updatedAt").dt.epoch("us") * 2 + (pl.col("status") == "revoked").cast(pl.Int64)


def _latest_is(name: str, status: str) -> pl.Expr:
    """Per group: whether the latest row of that consent name has `status` (null: no such row).

    Each row's order with one bit more, set when its status is `status`: the greatest of those
    belongs to the latest row, and its last bit answers."""
    code = _consent_order() * 2 + (pl.col("status") == status).cast(pl.Int64)
    return (pl.when(pl.col("name") == name).then(code).max() & 1) == 1


def _autodial_missing(judged: Judged) -> pl.Expr:
    consented = judged.fact("autodialConsented", False)
    return pl.lit(judged.check.isAutodialed) & one_of(_channel, ("voice", "text")) & ~consented


def _electronic_revoked(judged: Judged) -> pl.Expr:
    return one_of(_channel, ("email", "text")) & judged.fact("electronicRevoked", False)


def _consent_rows(seen: Seen, name: str) -> list[dict[str, Any]]:
    return rows(seen.consents.filter(pl.col("name") == name).select("name", "status", "updatedAt"))


AUTODIAL_CONSENT = Rule(
    "AUTODIAL_CONSENT_MISSING",
    _autodial_missing,
    True,
    lambda seen: {"isAutodialed": seen.check.isAutodialed, "consents": _consent_rows(seen, "autodialedColl")},
)
ELECTRONIC_CONSENT = Rule(
    "ELECTRONIC_CONSENT_REVOKED",
    _electronic_revoked,
    True,
    lambda seen: {"consents": _consent_rows(seen, "electronicComms")},
)
