"""Synthetic source data (CONTRACT.md §4 `generate`, §5): realistic, deterministic per seed, vectorised.

Shapes: borrowers spread over the given companies (a share of each company's borrowers live in its
own time zone), mostly with a time zone; 1–6 contacts each (mostly `self`, some third parties with or
without authorisation, some archived or invalid); US addresses with real ZIP codes, cities and states
from the `zipcodes` package (sometimes without ZIP); E.164 phone numbers whose area code belongs to
the home ZIP most of the time (movers keep an old one); interactions over the `HISTORY_DAYS` days up
to `end` (voice outcomes from the vocabulary, some borrowers with bursts of 7+ call attempts in a
week, conversations, texts, emails, inbound calls); do-not-interact records with channel, theme,
weekday, time-of-day and label scopes, end dates and deletions; consents with revocations.

Randomness comes from one `random.Random(seed)` stream (stable across Python versions), drawn in
bulk and turned into Polars columns, so there is no Python loop per row.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow as pa
import yaml
import zipcodes

from pipelines.io.files import atomic_write
from pipelines.model.config import Company, Home
from pipelines.model.errors import ErrorItem, InvalidInputError
from pipelines.model.progress import Progress
from pipelines.model.tables import (
    BORROWERS,
    CONSENTS,
    CONTACTS,
    DO_NOT_INTERACT,
    INTERACTIONS,
    TABLES,
    TIME_WINDOW,
    SourceTables,
    TableSpec,
)
from pipelines.model.vocab import THEMES

log = logging.getLogger(__name__)

DEFAULT_END: Final = date(2026, 12, 31)
HISTORY_DAYS: Final = 45
DAY_US: Final = 86_400_000_000
SECOND_US: Final = 1_000_000


FIRST_NAMES: Final = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Kenji", "Emily",
    "Luis", "Maria", "Wei", "Aisha", "Kaimana", "Leilani", "Omar", "Fatima", "Ivan", "Grace",
)  # fmt: skip
LAST_NAMES: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Nguyen", "Kim", "Patel", "Chen", "Kealoha", "Nakamura", "Okafor", "Cohen", "Murphy", "Rivera",
)  # fmt: skip
STREETS: Final = (
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
    "Sunset", "Highland", "River", "Church", "Mill", "Spring", "Ridge", "Union", "Walnut", "Chestnut",
)  # fmt: skip
STREET_KINDS: Final = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way")
EMAIL_DOMAINS: Final = ("example.com", "example.org", "example.net")


def default_companies() -> list[Company]:
    """A small sample set of companies in three time zones, with the default policy."""
    return [
        Company(id="CP-ACME", name="Acme Lending", timezone="America/New_York"),
        Company(id="CP-PACIFIC", name="Pacific Servicing", timezone="America/Los_Angeles"),
        Company(id="CP-ISLAND", name="Island Credit Union", timezone="Pacific/Honolulu"),
    ]


def write_sample_companies(home: Home) -> list[Company]:
    """The home's companies; when it has none, write `default_companies()` there first."""
    existing = home.company_ids()
    if existing:
        return [home.company(company_id) for company_id in existing]
    folder = home.configs / "companies"
    folder.mkdir(parents=True, exist_ok=True)
    companies = default_companies()
    for company in companies:
        body = {"id": company.id, "name": company.name, "timezone": company.timezone}
        text = yaml.safe_dump(body, sort_keys=False)

        def write(tmp: Path, text: str = text) -> None:
            tmp.write_text(text, encoding="utf-8")

        atomic_write(folder / f"{company.id}.yaml", write)
    log.info("wrote %d sample companies under %s", len(companies), folder)
    return companies


# ---------------------------------------------------------------- randomness


class _Random:
    """Bulk draws from one Mersenne Twister stream, as Polars Series."""

    def __init__(self, seed: int | str) -> None:
        self._random = random.Random(seed)

    def uniform(self, n: int) -> pl.Series:
        """n floats in [0, 1)."""
        if n == 0:
            return pl.Series([], dtype=pl.Float64)
        raw = self._random.randbytes(4 * n)
        words = pa.Array.from_buffers(pa.uint32(), n, [None, pa.py_buffer(raw)])
        series = pl.from_arrow(words)
        assert isinstance(series, pl.Series)
        return series.cast(pl.Float64) * (1.0 / 2**32)

    def below(self, n: int, high: int | pl.Series) -> pl.Series:
        """n integers in [0, high) (high may vary per row)."""
        return (self.uniform(n) * high).floor().cast(pl.Int64)

    def choice(self, n: int, weights: Sequence[float]) -> pl.Series:
        """n indexes into `weights`, drawn with those relative weights."""
        total = float(sum(weights))
        cumulative, running = [], 0.0
        for w in weights[:-1]:
            running += w / total
            cumulative.append(running)
        edges = pl.Series(cumulative, dtype=pl.Float64)
        return edges.search_sorted(self.uniform(n), side="right").cast(pl.Int64)


def _take(
    options: Sequence[object] | pl.Series, index: pl.Series, dtype: pl.DataType | None = None
) -> pl.Series:
    values = options if isinstance(options, pl.Series) else pl.Series(list(options), dtype=dtype)
    return values.gather(index)


# ---------------------------------------------------------------- reference data


@dataclass(frozen=True)
class _Places:
    zips: pl.DataFrame  # zip, city, state, timezone, areaCodes (list)
    area_codes: pl.Series  # every area code seen, sorted


@functools.cache
def _places() -> _Places:
    columns: dict[str, list[object]] = {"zip": [], "city": [], "state": [], "timezone": [], "areaCodes": []}
    for z in sorted(zipcodes.list_all(), key=lambda z: str(z["zip_code"])):  # type: ignore[no-untyped-call]
        if z["active"] and z["zip_code_type"] == "STANDARD" and z["timezone"] and z["area_codes"]:
            columns["zip"].append(z["zip_code"])
            columns["city"].append(z["city"])
            columns["state"].append(z["state"])
            columns["timezone"].append(z["timezone"])
            columns["areaCodes"].append(z["area_codes"])
    zips = pl.DataFrame(
        columns,
        schema={
            "zip": pl.String,
            "city": pl.String,
            "state": pl.String,
            "timezone": pl.String,
            "areaCodes": pl.List(pl.String),
        },
    ).filter(pl.col("state").str.contains(r"^[A-Z]{2}$"))
    codes = zips.get_column("areaCodes").explode().unique().sort()
    return _Places(zips, codes)


def _zip_rows(rng: _Random, n: int, pool: pl.Series | None = None) -> pl.Series:
    """n row numbers into `_places().zips`, uniform, or uniform within `pool` (row numbers)."""
    if pool is None:
        return rng.below(n, _places().zips.height)
    return pool.gather(rng.below(n, pool.len()))


# ---------------------------------------------------------------- generation


def generate(
    borrowers: int,
    seed: int,
    companies: list[Company],
    *,
    end: date = DEFAULT_END,
    progress: Progress | None = None,
) -> SourceTables:
    """Generate the five source tables; the same arguments give identical frames."""
    # One chunk of all the borrowers: `generate_blocks` checks the arguments and yields it.
    blocks = list(
        generate_blocks(borrowers, seed, companies, end=end, progress=progress, chunk=max(borrowers, 1))
    )
    if len(blocks) == 1:
        return blocks[0]
    return SourceTables(**{spec.name: pl.concat([b.get(spec.name) for b in blocks]) for spec in TABLES})


# Borrowers are generated in blocks of this many, block b from its own random stream (block 0 from
# `seed` itself, so small data sets are what a single stream gives), ids numbered on from the
# blocks before. The data depend on the seed and the number of borrowers only; `chunk` only sets
# how many borrowers are held (and handed to the writer) at once.
BLOCK_BORROWERS: Final = 50_000
DEFAULT_CHUNK_BORROWERS: Final = 200_000


def generate_blocks(
    borrowers: int,
    seed: int,
    companies: list[Company],
    *,
    end: date = DEFAULT_END,
    progress: Progress | None = None,
    chunk: int = DEFAULT_CHUNK_BORROWERS,
) -> Iterator[SourceTables]:
    """The same tables as `generate`, as consecutive chunks of about `chunk` borrowers (whole blocks):
    memory is bounded by a chunk whatever the total."""
    if borrowers < 0:
        raise InvalidInputError("arguments", [ErrorItem("/borrowers", "must be 0 or more")])
    if not companies:
        raise InvalidInputError(
            "arguments", [ErrorItem("/companies", "give at least one company to spread borrowers over")]
        )
    say = progress or (lambda _message: None)
    if borrowers == 0:
        for spec in TABLES:
            say(f"{spec.name}: 0 rows")
        yield SourceTables(**{spec.name: pl.LazyFrame(schema=spec.schema) for spec in TABLES})
        return
    companies = sorted(companies, key=lambda c: c.id)  # the same data whatever order they came in
    per_chunk = max(1, -(-max(chunk, 1) // BLOCK_BORROWERS))  # whole blocks per chunk
    firsts = dict.fromkeys(("borrowers", "contacts", "interactions", "do_not_interact"), 0)
    totals = dict.fromkeys((spec.name for spec in TABLES), 0)
    starts = list(range(0, borrowers, BLOCK_BORROWERS))
    for at in range(0, len(starts), per_chunk):
        frames: dict[str, list[pl.DataFrame]] = {spec.name: [] for spec in TABLES}
        for start in starts[at : at + per_chunk]:
            block = start // BLOCK_BORROWERS
            n = min(BLOCK_BORROWERS, borrowers - start)
            for name, frame in _block(block, n, seed, companies, end, firsts).items():
                frames[name].append(frame)
                totals[name] += frame.height
        yield SourceTables(**{name: pl.concat(parts).lazy() for name, parts in frames.items()})
    for spec in TABLES:
        say(f"{spec.name}: {totals[spec.name]:,} rows")


def _block(
    block: int, n: int, seed: int, companies: list[Company], end: date, firsts: dict[str, int]
) -> dict[str, pl.DataFrame]:
    """Borrowers block `block` (n of them) and their rows; `firsts` (ids used so far) moves on."""
    rng = _Random(seed if block == 0 else f"{seed}/block/{block}")
    people = _borrowers(rng, n, companies, firsts["borrowers"])
    contacts = _contacts(rng, people, firsts["contacts"])
    interactions = _interactions(rng, people, contacts, end, firsts["interactions"], firsts["borrowers"])
    dni = _do_not_interact(rng, people, end, firsts["do_not_interact"])
    consents = _consents(rng, people, end)
    firsts["borrowers"] += people.height
    firsts["contacts"] += contacts.height
    firsts["interactions"] += interactions.height
    firsts["do_not_interact"] += dni.height
    return {
        "borrowers": _finish(people, BORROWERS),
        "contacts": _finish(contacts, CONTACTS),
        "interactions": _finish(interactions, INTERACTIONS),
        "do_not_interact": _finish(dni, DO_NOT_INTERACT),
        "consents": _finish(consents, CONSENTS),
    }


def _finish(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    return frame.select(
        pl.col(c.name).cast(c.dtype) if c.name in frame.columns else pl.lit(c.default, c.dtype).alias(c.name)
        for c in spec.columns
    )


def _ids(prefix: str, n: int, width: int, first: int = 0) -> pl.Expr:
    """`prefix` + first+1..first+n zero-padded to `width` digits (wider when needed), sorted as text."""
    width = max(width, len(str(first + n)))
    padded = (pl.int_range(first + 1, first + n + 1, dtype=pl.Int64) + 10**width).cast(pl.String).str.slice(1)
    return pl.concat_str(pl.lit(prefix), padded)


def _borrowers(rng: _Random, n: int, companies: list[Company], first: int = 0) -> pl.DataFrame:
    """Borrowers plus the helper columns the other tables draw from (`__`-prefixed)."""
    places = _places()
    zones = places.zips.get_column("timezone")
    company_index = rng.below(n, len(companies))
    # about 40% of a company's borrowers live in its own time zone (when any ZIP has it)
    local = rng.uniform(n) < 0.4
    national = _zip_rows(rng, n)
    home = national
    for i, company in enumerate(companies):
        pool = pl.arg_where(zones == company.timezone, eager=True).cast(pl.Int64)
        if pool.len():
            candidates = _zip_rows(rng, n, pool)
            home = pl.select(
                pl.when(pl.lit(local) & (pl.lit(company_index) == i))
                .then(pl.lit(candidates))
                .otherwise(pl.lit(home))
            ).to_series()
    tz_draw = rng.choice(n, [0.85, 0.12, 0.03])  # home zone, none, somewhere else (moved)
    elsewhere = zones.gather(_zip_rows(rng, n))
    frame = pl.DataFrame(
        {
            "__i": pl.int_range(0, n, eager=True).cast(pl.Int64),
            "companyId": _take([c.id for c in companies], company_index, pl.String()),
            "firstName": _take(FIRST_NAMES, rng.below(n, len(FIRST_NAMES)), pl.String()),
            "lastName": _take(LAST_NAMES, rng.below(n, len(LAST_NAMES)), pl.String()),
            "__home": home,
            "__tzDraw": tz_draw,
            "__elsewhere": elsewhere,
            "__hasExternal": rng.uniform(n) < 0.9,
        }
    )
    frame = frame.join(
        places.zips.with_row_index("__home").with_columns(pl.col("__home").cast(pl.Int64)),
        on="__home",
        how="left",
        maintain_order="left",
    ).rename(
        {
            "zip": "__zip",
            "city": "__city",
            "state": "__state",
            "timezone": "__zone",
            "areaCodes": "__areaCodes",
        }
    )
    return frame.with_columns(
        _ids("BR-", n, 8, first).alias("id"),
        pl.when(pl.col("__hasExternal")).then(_ids("EXT-", n, 8, first)).alias("externalId"),
        pl.when(pl.col("__tzDraw") == 0)
        .then(pl.col("__zone"))
        .when(pl.col("__tzDraw") == 2)
        .then(pl.col("__elsewhere"))
        .alias("timezone"),
    )


_SLOT_TYPES: Final = (  # phone, email, address weights by contact slot (0, 1, 2, 3+)
    (0.85, 0.10, 0.05),
    (0.25, 0.15, 0.60),
    (0.30, 0.60, 0.10),
    (0.60, 0.20, 0.20),
)
_THIRD_PARTIES: Final = ("spouse", "parent", "guardian", "representative", "attorney", "employer", "other")


def _contacts(rng: _Random, people: pl.DataFrame, first: int = 0) -> pl.DataFrame:
    places = _places()
    counts = rng.choice(people.height, [0.05, 0.15, 0.30, 0.25, 0.15, 0.10]) + 1
    base = (
        people.select(
            pl.col("__i"),
            pl.col("id").alias("personId"),
            "firstName",
            "lastName",
            "__home",
            "__zone",
            "__areaCodes",
            pl.int_ranges(0, pl.lit(counts)).alias("__slot"),
        )
        .explode("__slot")
        .with_columns(pl.col("__slot").cast(pl.Int64))
    )
    n = base.height
    slot = base.get_column("__slot")
    kind = pl.zeros(n, dtype=pl.Int64, eager=True)
    for bucket, weights in enumerate(_SLOT_TYPES):
        drawn = rng.choice(n, weights)
        kind = pl.select(
            pl.when(pl.lit(slot).clip(upper_bound=3) == bucket).then(pl.lit(drawn)).otherwise(pl.lit(kind))
        ).to_series()
    self_share = pl.select(pl.when(pl.lit(slot) < 3).then(0.95).otherwise(0.5)).to_series()
    is_self = rng.uniform(n) < self_share
    third = _take(_THIRD_PARTIES, rng.choice(n, [25, 15, 5, 10, 15, 20, 10]), pl.String())
    affiliation = pl.select(
        pl.when(pl.lit(is_self)).then(pl.lit("self")).otherwise(pl.lit(third))
    ).to_series()

    phone_label = _take(("personal", "home", "work", "military"), rng.choice(n, [50, 30, 15, 5]), pl.String())
    email_label = _take(("personal", "work"), rng.choice(n, [80, 20]), pl.String())
    address_label = _take(("home", "work", "military"), rng.choice(n, [85, 10, 5]), pl.String())
    other_status = _take(
        ("secondary", "additional", "archived", "primary"), rng.choice(n, [45, 40, 10, 5]), pl.String()
    )

    # phone: area code of the home ZIP most of the time; a mover or a third party keeps another one
    home_codes = base.get_column("__areaCodes")
    home_code = home_codes.list.get(rng.below(n, home_codes.list.len()), null_on_oob=True)
    other_code = places.area_codes.gather(rng.below(n, places.area_codes.len()))
    keeps_home = rng.uniform(n) < pl.select(pl.when(pl.lit(is_self)).then(0.85).otherwise(0.5)).to_series()
    exchange = 200 + rng.below(n, 800)
    exchange = pl.select(
        pl.when(pl.lit(exchange) % 100 == 11).then(pl.lit(exchange) + 1).otherwise(pl.lit(exchange))
    ).to_series()
    line = rng.below(n, 10_000)

    # address: self addresses at home mostly, others anywhere; some without ZIP
    address_zip = pl.select(
        pl.when(pl.lit(is_self) & (pl.lit(rng.uniform(n)) < 0.8))
        .then(base.get_column("__home"))
        .otherwise(pl.lit(_zip_rows(rng, n)))
    ).to_series()

    frame = base.with_columns(
        pl.Series("__kind", kind),
        pl.Series("affiliation", affiliation),
        pl.Series("__phoneLabel", phone_label),
        pl.Series("__emailLabel", email_label),
        pl.Series("__addressLabel", address_label),
        pl.Series("__otherStatus", other_status),
        pl.Series("__homeCode", home_code),
        pl.Series("__otherCode", other_code),
        pl.Series("__keepsHome", keeps_home),
        pl.Series("__exchange", exchange),
        pl.Series("__line", line),
        pl.Series("__addressZip", address_zip),
        pl.Series("__emailNumber", rng.below(n, 100)),
        pl.Series("__domain", _take(EMAIL_DOMAINS, rng.below(n, len(EMAIL_DOMAINS)), pl.String())),
        pl.Series("__thirdFirst", _take(FIRST_NAMES, rng.below(n, len(FIRST_NAMES)), pl.String())),
        pl.Series("__houseNumber", 1 + rng.below(n, 9999)),
        pl.Series("__street", _take(STREETS, rng.below(n, len(STREETS)), pl.String())),
        pl.Series("__streetKind", _take(STREET_KINDS, rng.below(n, len(STREET_KINDS)), pl.String())),
        pl.Series(
            "__apartment",
            pl.select(pl.when(pl.lit(rng.uniform(n)) < 0.2).then(1 + pl.lit(rng.below(n, 40)))).to_series(),
        ),
        pl.Series("__noZip", rng.uniform(n) < 0.05),
        pl.Series("valid", rng.uniform(n) >= 0.05),
        pl.Series("verified", rng.uniform(n) < 0.6),
        pl.Series("__textOptIn", rng.uniform(n) < 0.4),
        pl.Series("__authorized", rng.uniform(n) < 0.5),
        pl.Series("__attorneyPower", rng.uniform(n) < 0.4),
        pl.Series("__contactZone", rng.uniform(n) < 0.05),
    ).join(
        places.zips.with_row_index("__addressZip").with_columns(pl.col("__addressZip").cast(pl.Int64)),
        on="__addressZip",
        how="left",
        maintain_order="left",
    )
    kind_name = pl.col("__kind").replace_strict(
        {0: "phone", 1: "email", 2: "address"}, return_dtype=pl.String
    )
    is_phone = pl.col("__kind") == 0
    is_email = pl.col("__kind") == 1
    is_address = pl.col("__kind") == 2
    area = (
        pl.when(pl.col("__keepsHome") & pl.col("__homeCode").is_not_null())
        .then(pl.col("__homeCode"))
        .otherwise(pl.col("__otherCode"))
    )
    phone = pl.concat_str(
        pl.lit("+1"),
        area,
        pl.col("__exchange").cast(pl.String),
        pl.col("__line").cast(pl.String).str.zfill(4),
    )
    email_first = (
        pl.when(pl.col("affiliation") == "self").then(pl.col("firstName")).otherwise(pl.col("__thirdFirst"))
    )
    email = pl.concat_str(
        email_first.str.to_lowercase(),
        pl.lit("."),
        pl.col("lastName").str.to_lowercase(),
        pl.col("__emailNumber").cast(pl.String),
        pl.lit("@"),
        pl.col("__domain"),
    )
    third_party = pl.col("affiliation") != "self"
    return frame.with_columns(
        _ids("CT-", n, 9, first).alias("id"),
        kind_name.alias("contactType"),
        pl.when(is_phone)
        .then(pl.col("__phoneLabel"))
        .when(is_email)
        .then(pl.col("__emailLabel"))
        .otherwise(pl.col("__addressLabel"))
        .alias("label"),
        pl.when(pl.col("__slot") == 0)
        .then(pl.lit("primary"))
        .otherwise(pl.col("__otherStatus"))
        .alias("status"),
        pl.when(is_phone).then(phone).when(is_email).then(email).alias("value"),
        pl.when(is_address)
        .then(pl.format("{} {} {}", pl.col("__houseNumber"), pl.col("__street"), pl.col("__streetKind")))
        .alias("addressLine1"),
        pl.when(is_address).then(pl.format("Apt {}", pl.col("__apartment"))).alias("addressLine2"),
        pl.when(is_address).then(pl.col("city")).alias("city"),
        pl.when(is_address).then(pl.col("state")).alias("state"),
        pl.when(is_address & ~pl.col("__noZip")).then(pl.col("zip")).alias("postalCode"),
        pl.when(is_address).then(pl.lit("US")).alias("country"),
        (is_phone & pl.col("__textOptIn")).alias("receiveTextMessages"),
        (third_party & pl.col("__authorized")).alias("authorizedThirdParty"),
        (pl.col("affiliation").is_in(["attorney", "representative"]) & pl.col("__attorneyPower")).alias(
            "powerOfAttorney"
        ),
        pl.when(pl.col("__contactZone"))
        .then(pl.when(is_address).then(pl.col("timezone")).otherwise(pl.col("__zone")))
        .alias("timezone"),
    )


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


def _interactions(
    rng: _Random,
    people: pl.DataFrame,
    contacts: pl.DataFrame,
    end: date,
    first: int = 0,
    first_borrower: int = 0,
) -> pl.DataFrame:
    start_us = _epoch_us(end - timedelta(days=HISTORY_DAYS - 1))
    counts = rng.choice(people.height, [20, 20, 18, 14, 10, 7, 5, 3, 2, 1])
    regular = (
        people.select("__i", "id", pl.int_ranges(0, pl.lit(counts)).alias("__k"))
        .explode("__k")
        .drop_nulls("__k")
    )
    n = regular.height
    channel = _take(_CHANNELS, rng.choice(n, _CHANNEL_WEIGHTS), pl.String())
    inbound_share = pl.select(
        pl.when(pl.lit(channel) == "voice")
        .then(0.15)
        .when(pl.lit(channel).is_in(["text", "email", "chat"]))
        .then(0.1)
        .otherwise(0.0)
    ).to_series()
    inbound = rng.uniform(n) < inbound_share
    out_detail = _take(_VOICE_OUT_DETAILS, rng.choice(n, _VOICE_OUT_WEIGHTS), pl.String())
    in_detail = pl.select(
        pl.when(pl.lit(rng.uniform(n)) < 0.7).then(pl.lit("voiceSpokeWithFirstParty"))
    ).to_series()
    plain_status = _take(_STATUSES, rng.choice(n, _PLAIN_STATUS_WEIGHTS), pl.String())
    day = rng.below(n, HISTORY_DAYS)
    second = 12 * 3600 + rng.below(n, 14 * 3600)  # 12:00–02:00 UTC: daytime across US zones
    regular = regular.with_columns(
        pl.Series("channel", channel),
        pl.Series(
            "direction",
            pl.select(
                pl.when(pl.lit(inbound)).then(pl.lit("inbound")).otherwise(pl.lit("outbound"))
            ).to_series(),
        ),
        pl.Series("__outDetail", out_detail),
        pl.Series("__inDetail", in_detail),
        pl.Series("__plainStatus", plain_status),
        pl.Series("theme", _take(THEMES, rng.choice(n, _THEME_WEIGHTS), pl.String())),
        pl.Series("__noTheme", rng.uniform(n) < 0.05),
        pl.Series("__at", start_us + day * DAY_US + second * SECOND_US),
        pl.Series("__loan", 1 + rng.below(n, 2)),
    )
    voice = pl.col("channel") == "voice"
    details = (
        pl.when(voice & (pl.col("direction") == "outbound"))
        .then(pl.col("__outDetail"))
        .when(voice)
        .then(pl.col("__inDetail"))
    )
    regular = regular.with_columns(details.alias("statusDetails")).with_columns(
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

    # bursts: some borrowers had 7–10 call attempts in the 7 days before a day in the history
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
    burst = burst.with_columns(
        pl.lit("voice").alias("channel"),
        pl.lit("outbound").alias("direction"),
        pl.Series("statusDetails", _take(_BURST_DETAILS, rng.choice(m, [50, 25, 15, 10]), pl.String())),
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
        _ids("IN-", both.height, 10, first).alias("id"),
        channel_contact.alias("contactId"),
        pl.format(
            "LN-{}-{}", (pl.col("__i") + first_borrower + 1).cast(pl.String).str.zfill(8), pl.col("__loan")
        ).alias("loanId"),
        pl.col("__at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("startedAt"),
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


def _do_not_interact(rng: _Random, people: pl.DataFrame, end: date, first: int = 0) -> pl.DataFrame:
    counts = rng.choice(people.height, [95, 4, 1])
    base = (
        people.select("__i", "id", "__zone", pl.int_ranges(0, pl.lit(counts)).alias("__k"))
        .explode("__k")
        .drop_nulls("__k")
    )
    n = base.height
    end_day = _epoch_days(end)
    start = end_day - rng.below(n, 120)
    has_end = rng.uniform(n) < 0.5
    end_date = start + 7 + rng.below(n, 90)
    created = (start - rng.below(n, 3)) * DAY_US + rng.below(n, 86_400) * SECOND_US
    deleted = rng.uniform(n) < 0.1
    deleted_at = created + (1 + rng.below(n, 40)) * DAY_US + rng.below(n, 86_400) * SECOND_US
    zone_draw = rng.choice(n, [75, 15, 10])  # none (company zone), borrower's, Central
    has_case = rng.uniform(n) < 0.6
    return base.with_columns(
        _ids("DNI-", n, 8, first).alias("id"),
        pl.col("id").alias("personId"),
        pl.Series(
            "caseId",
            pl.select(
                pl.when(pl.lit(has_case)).then(
                    pl.format("CASE-{}", pl.lit(1_000_000 + rng.below(n, 8_999_999)))
                )
            ).to_series(),
        ),
        pl.Series(
            "channels", _take(_DNI_CHANNELS, rng.choice(n, [30, 30, 10, 10, 12, 5, 3]), pl.List(pl.String()))
        ),
        pl.Series("themes", _take(_DNI_THEMES, rng.choice(n, [55, 20, 10, 5, 5, 5]), pl.List(pl.String()))),
        pl.Series("startDate", start.cast(pl.Int32).cast(pl.Date)),
        pl.Series(
            "endDate",
            pl.select(pl.when(pl.lit(has_end)).then(pl.lit(end_date)))
            .to_series()
            .cast(pl.Int32)
            .cast(pl.Date),
        ),
        pl.Series("daysOfWeek", _take(_DNI_DAYS, rng.choice(n, [70, 10, 10, 10]), pl.List(pl.Int64()))),
        pl.Series("timesOfDay", _take(_DNI_TIMES, rng.choice(n, [75, 10, 10, 5]), pl.List(TIME_WINDOW))),
        pl.Series("__zoneDraw", zone_draw),
        pl.Series("contactLabels", _take(_DNI_LABELS, rng.choice(n, [80, 10, 8, 2]), pl.List(pl.String()))),
        pl.Series("createdAt", created.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")),
        pl.Series(
            "deletedAt",
            pl.select(pl.when(pl.lit(deleted)).then(pl.lit(deleted_at)))
            .to_series()
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
        ),
    ).with_columns(
        pl.when(pl.col("__zoneDraw") == 1)
        .then(pl.col("__zone"))
        .when(pl.col("__zoneDraw") == 2)
        .then(pl.lit("America/Chicago"))
        .alias("timezone"),
    )


_CONSENT_SHARES: Final = (
    ("electronicComms", 0.6, 0.9),
    ("autodialedColl", 0.5, 0.8),
    ("contactPersonWork", 0.05, 1.0),
)


def _consents(rng: _Random, people: pl.DataFrame, end: date) -> pl.DataFrame:
    n = people.height
    end_us = _epoch_us(end) + DAY_US
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


def _epoch_days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _epoch_us(day: date) -> int:
    return (
        int(
            (
                datetime(day.year, day.month, day.day, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
            ).total_seconds()
        )
        * SECOND_US
    )


__all__ = ["DEFAULT_END", "HISTORY_DAYS", "default_companies", "generate", "write_sample_companies"]
