"""Rejected source rows (COMPLIANCE.md SOURCE_ROW_REJECTED): what a row that failed validation said
is unknown, so every matched contact of its borrower is blocked (and of every borrower, when the row
names none). Only a corrected source clears it. Which borrowers are hit: `pipelines.rules.rejection`."""

from __future__ import annotations

import polars as pl

from pipelines.rules.base import Judged, Rule, Seen, rows


def _rejected(_: Judged) -> pl.Expr:
    return pl.col("sourceRejected")


def _evidence(seen: Seen) -> dict[str, object]:
    return {"rejectedRows": rows(seen.rejected.drop("personId", strict=False))}


SOURCE_ROW_REJECTED = Rule("SOURCE_ROW_REJECTED", _rejected, True, _evidence)
