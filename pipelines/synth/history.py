"""Synthetic history: interactions over the `HISTORY_DAYS` days up to `end` (voice outcomes from the
vocabulary, bursts of 7+ call attempts in a week, conversations, texts, emails, inbound calls),
do-not-interact records with their scopes, end dates and deletions, and consents with revocations.

Every draw comes from the block's one stream, in a fixed order: moving a draw changes the data."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

import polars as pl

from pipelines.model.tables import TIME_WINDOW
from pipelines.model.vocab import THEMES
from pipelines.synth.draws import DAY_US, SECOND_US, Draws, epoch_days, epoch_us, ids, take

HISTORY_DAYS: Final = 45

_CHANNELS: Final = ("voice", "text", "email", "mail", "chat", "gui", "document", "fax")


_CHANNEL_WEIGHTS: Final = (62, 12, 12, 5, 3, 3, 2, 1)


_VOICE_OUT_DETAILS: Final = (
    "voiceNoAnswer",
    "voiceLeftVoicemail",
    "voiceReachedVoicemail",
    "voiceSpokeWithFirstParty",
    "voiceSpokeWithThirdParty",
    "voiceAnsweredNoConversation",
    "voiceBusy",
    "voiceNotInService",
    "voiceWrongNumber",
    None,
)


_VOICE_OUT_WEIGHTS: Final = (30, 15, 10, 8, 3, 5, 5, 2, 2, 20)


_DETAIL_STATUS: Final = {
    "voiceSpokeWithFirstParty": "succeeded",
    "voiceSpokeWithThirdParty": "succeeded",
    "voiceBusy": "failed",
    "voiceNotInService": "failed",
    "voiceWrongNumber": "failed",
}


_STATUSES: Final = ("attempted", "succeeded", "scheduled", "canceled", "failed", "inProgress")


_PLAIN_STATUS_WEIGHTS: Final = (30, 35, 10, 8, 12, 5)


_THEME_WEIGHTS: Final = (45, 10, 4, 3, 6, 3, 2, 15, 4, 8)


_BURST_DETAILS: Final = (
    "voiceNoAnswer",
    "voiceLeftVoicemail",
    "voiceReachedVoicemail",
    "voiceAnsweredNoConversation",
)


def _first_contacts(contacts: pl.DataFrame) -> pl.DataFrame:
    """Per borrower (`__i`), the id of its first phone, email and address contact (or null)."""
    firsts = contacts.select("__i", "contactType", "id").filter(
        pl.struct("__i", "contactType").is_first_distinct()
    )
    return firsts.pivot(
        "contactType", index="__i", values="id", on_columns=["phone", "email", "address"]
    ).rename({"phone": "__phoneId", "email": "__emailId", "address": "__addressId"})


def draw_interactions(
    rng: Draws,
    people: pl.DataFrame,
    contacts: pl.DataFrame,
    end: date,
    first: int = 0,
    first_borrower: int = 0,
) -> pl.DataFrame:
    """Each borrower's interactions, with its first contact of the channel and a loan id."""
    start_us = epoch_us(end - timedelta(days=HISTORY_DAYS - 1))
    regular = _regular_interactions(rng, people, start_us)
    burst = _bursts(rng, people, start_us)
    columns = ["__i", "id", "channel", "direction", "status", "statusDetails", "theme", "__at", "__loan"]
    both = pl.concat([regular.select(columns), burst.select(columns)]).sort(
        "__i", "__at", "channel", maintain_order=True
    )
    both = both.rename({"id": "personId"})
    both = both.join(_first_contacts(contacts), on="__i", how="left", maintain_order="left")
    channel_contact = (
        pl.when(pl.col("channel").is_in(["voice", "text"]))
        .then(pl.col("__phoneId"))
        .when(pl.col("channel") == "email")
        .then(pl.col("__emailId"))
        .when(pl.col("channel") == "mail")
        .then(pl.col("__addressId"))
    )
    return both.with_columns(
        ids("IN-", both.height, 10, first).alias("id"),
        channel_contact.alias("contactId"),
        pl.format(
            "LN-{}-{}", (pl.col("__i") + first_borrower + 1).cast(pl.String).str.zfill(8), pl.col("__loan")
        ).alias("loanId"),
        pl.col("__at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("startedAt"),
    )


def _regular_interactions(rng: Draws, people: pl.DataFrame, start_us: int) -> pl.DataFrame:
    """0–9 interactions per borrower over the history, on every channel."""
    counts = rng.choice(people.height, [20, 20, 18, 14, 10, 7, 5, 3, 2, 1])
    regular = (
        people.select("__i", "id", pl.int_ranges(0, pl.lit(counts)).alias("__k"))
        .explode("__k")
        .drop_nulls("__k")
    )
    regular = regular.with_columns(*_regular_draws(rng, regular.height, start_us))
    voice = pl.col("channel") == "voice"
    details = (
        pl.when(voice & (pl.col("direction") == "outbound"))
        .then(pl.col("__outDetail"))
        .when(voice)
        .then(pl.col("__inDetail"))
    )
    return regular.with_columns(details.alias("statusDetails")).with_columns(
        pl.when(pl.col("statusDetails").is_null())
        .then(pl.col("__plainStatus"))
        .otherwise(
            pl.col("statusDetails").replace_strict(
                _DETAIL_STATUS, default="attempted", return_dtype=pl.String
            )
        )
        .alias("status"),
        pl.when(~pl.col("__noTheme")).then(pl.col("theme")).alias("theme"),
    )


def _regular_draws(rng: Draws, n: int, start_us: int) -> list[pl.Series]:
    channel = take(_CHANNELS, rng.choice(n, _CHANNEL_WEIGHTS), pl.String())
    inbound_share = pl.select(
        pl.when(pl.lit(channel) == "voice")
        .then(0.15)
        .when(pl.lit(channel).is_in(["text", "email", "chat"]))
        .then(0.1)
        .otherwise(0.0)
    ).to_series()
    inbound = rng.uniform(n) < inbound_share
    out_detail = take(_VOICE_OUT_DETAILS, rng.choice(n, _VOICE_OUT_WEIGHTS), pl.String())
    in_detail = pl.select(
        pl.when(pl.lit(rng.uniform(n)) < 0.7).then(pl.lit("voiceSpokeWithFirstParty"))
    ).to_series()
    plain_status = take(_STATUSES, rng.choice(n, _PLAIN_STATUS_WEIGHTS), pl.String())
    day = rng.below(n, HISTORY_DAYS)
    second = 12 * 3600 + rng.below(n, 14 * 3600)  # 12:00–02:00 UTC: daytime across US zones
    direction = pl.select(pl.when(pl.lit(inbound)).then(pl.lit("inbound")).otherwise(pl.lit("outbound")))
    return [
        pl.Series("channel", channel),
        pl.Series("direction", direction.to_series()),
        pl.Series("__outDetail", out_detail),
        pl.Series("__inDetail", in_detail),
        pl.Series("__plainStatus", plain_status),
        pl.Series("theme", take(THEMES, rng.choice(n, _THEME_WEIGHTS), pl.String())),
        pl.Series("__noTheme", rng.uniform(n) < 0.05),
        pl.Series("__at", start_us + day * DAY_US + second * SECOND_US),
        pl.Series("__loan", 1 + rng.below(n, 2)),
    ]


def _bursts(rng: Draws, people: pl.DataFrame, start_us: int) -> pl.DataFrame:
    """Some borrowers had 7–10 call attempts in the 7 days before a day in the history."""
    bursty = rng.uniform(people.height) < 0.06
    burst_counts = pl.select(
        pl.when(pl.lit(bursty)).then(7 + pl.lit(rng.below(people.height, 4))).otherwise(0)
    ).to_series()
    burst_end = 6 + rng.below(people.height, HISTORY_DAYS - 6)
    burst = (
        people.select(
            "__i", "id", pl.Series("__end", burst_end), pl.int_ranges(0, pl.lit(burst_counts)).alias("__k")
        )
        .explode("__k")
        .drop_nulls("__k")
    )
    m = burst.height
    return burst.with_columns(
        pl.lit("voice").alias("channel"),
        pl.lit("outbound").alias("direction"),
        pl.Series("statusDetails", take(_BURST_DETAILS, rng.choice(m, [50, 25, 15, 10]), pl.String())),
        pl.lit("attempted").alias("status"),
        pl.lit("opsCollDebt").alias("theme"),
        pl.Series(
            "__at",
            start_us
            + (burst.get_column("__end") - rng.below(m, 7)) * DAY_US
            + (13 * 3600 + rng.below(m, 10 * 3600)) * SECOND_US,
        ),
        pl.Series("__loan", pl.Series([1] * m, dtype=pl.Int64)),
    )


_DNI_CHANNELS: Final = (["all"], ["voice"], ["text"], ["email"], ["voice", "text"], ["mail"], ["chat"])


_DNI_THEMES: Final = (
    ["all"],
    ["opsCollDebt"],
    ["opsCollDebt", "opsCollLocateBorrower"],
    ["opsAccountCredentials"],
    ["agentNotification"],
    ["opsServicing", "opsServicingDebtValidation"],
)


_DNI_DAYS: Final = (None, [1, 2, 3, 4, 5], [0, 6], [0])


_DNI_TIMES: Final = (
    None,
    [{"fromHour": 9, "toHour": 17}],
    [{"fromHour": 0, "toHour": 9}, {"fromHour": 20, "toHour": 24}],
    [{"fromHour": 12, "toHour": 13}],
)


_DNI_LABELS: Final[tuple[list[str] | None, ...]] = (None, ["work"], ["home", "personal"], [])


def draw_do_not_interact(rng: Draws, people: pl.DataFrame, end: date, first: int = 0) -> pl.DataFrame:
    """0–2 do-not-interact records per borrower, with their scopes, end dates and deletions."""
    counts = rng.choice(people.height, [95, 4, 1])
    base = (
        people.select("__i", "id", "__zone", pl.int_ranges(0, pl.lit(counts)).alias("__k"))
        .explode("__k")
        .drop_nulls("__k")
    )
    n = base.height
    return base.with_columns(
        ids("DNI-", n, 8, first).alias("id"),
        pl.col("id").alias("personId"),
        *_dni_draws(rng, n, end),
    ).with_columns(
        pl.when(pl.col("__zoneDraw") == 1)
        .then(pl.col("__zone"))
        .when(pl.col("__zoneDraw") == 2)
        .then(pl.lit("America/Chicago"))
        .alias("timezone"),
    )


def _dni_draws(rng: Draws, n: int, end: date) -> list[pl.Series]:
    end_day = epoch_days(end)
    start = end_day - rng.below(n, 120)
    has_end = rng.uniform(n) < 0.5
    end_date = start + 7 + rng.below(n, 90)
    created = (start - rng.below(n, 3)) * DAY_US + rng.below(n, 86_400) * SECOND_US
    deleted = rng.uniform(n) < 0.1
    deleted_at = created + (1 + rng.below(n, 40)) * DAY_US + rng.below(n, 86_400) * SECOND_US
    zone_draw = rng.choice(n, [75, 15, 10])  # none (company zone), borrower's, Central
    has_case = rng.uniform(n) < 0.6
    case_id = pl.when(pl.lit(has_case)).then(
        pl.format("CASE-{}", pl.lit(1_000_000 + rng.below(n, 8_999_999)))
    )
    return [
        pl.Series("caseId", pl.select(case_id).to_series()),
        pl.Series(
            "channels", take(_DNI_CHANNELS, rng.choice(n, [30, 30, 10, 10, 12, 5, 3]), pl.List(pl.String()))
        ),
        pl.Series("themes", take(_DNI_THEMES, rng.choice(n, [55, 20, 10, 5, 5, 5]), pl.List(pl.String()))),
        pl.Series("startDate", start.cast(pl.Int32).cast(pl.Date)),
        pl.Series("endDate", _when(has_end, end_date).cast(pl.Int32).cast(pl.Date)),
        pl.Series("daysOfWeek", take(_DNI_DAYS, rng.choice(n, [70, 10, 10, 10]), pl.List(pl.Int64()))),
        pl.Series("timesOfDay", take(_DNI_TIMES, rng.choice(n, [75, 10, 10, 5]), pl.List(TIME_WINDOW))),
        pl.Series("__zoneDraw", zone_draw),
        pl.Series("contactLabels", take(_DNI_LABELS, rng.choice(n, [80, 10, 8, 2]), pl.List(pl.String()))),
        pl.Series("createdAt", created.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")),
        pl.Series(
            "deletedAt", _when(deleted, deleted_at).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        ),
    ]


def _when(keep: pl.Series, values: pl.Series) -> pl.Series:
    """`values` where `keep`, else null."""
    return pl.select(pl.when(pl.lit(keep)).then(pl.lit(values))).to_series()


_CONSENT_SHARES: Final = (
    ("electronicComms", 0.6, 0.9),
    ("autodialedColl", 0.5, 0.8),
    ("contactPersonWork", 0.05, 1.0),
)


def draw_consents(rng: Draws, people: pl.DataFrame, end: date) -> pl.DataFrame:
    n = people.height
    end_us = epoch_us(end) + DAY_US
    parts = []
    for name, share, consented in _CONSENT_SHARES:
        has = rng.uniform(n) < share
        status = pl.select(
            pl.when(pl.lit(rng.uniform(n)) < consented).then(pl.lit("consented")).otherwise(pl.lit("revoked"))
        ).to_series()
        at = end_us - rng.below(n, 400 * 86_400) * SECOND_US
        flips = rng.uniform(n) < 0.08  # a later record reverses it (a revocation, or consent again)
        later = at + (1 + rng.below(n, 60 * 86_400)) * SECOND_US
        first = pl.DataFrame(
            {
                "__i": people.get_column("__i"),
                "personId": people.get_column("id"),
                "name": name,
                "status": status,
                "__at": at,
            }
        ).filter(pl.lit(has))
        second = (
            pl.DataFrame(
                {
                    "__i": people.get_column("__i"),
                    "personId": people.get_column("id"),
                    "name": name,
                    "status": status,
                    "__at": later,
                }
            )
            .filter(pl.lit(has & flips))
            .with_columns(pl.col("status").replace_strict({"consented": "revoked", "revoked": "consented"}))
        )
        parts += [first, second]
    frame = pl.concat(parts).sort("__i", "name", "__at", maintain_order=True)
    return frame.with_columns(
        pl.col("__at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("updatedAt")
    )
