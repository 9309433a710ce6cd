"""Synthetic borrowers and their contacts: names, homes at real US ZIP codes (a share in their
company's time zone), phones whose area code mostly belongs to the home ZIP, emails and addresses.

Every draw comes from the block's one stream, in a fixed order: moving a draw changes the data."""

from __future__ import annotations

from typing import Final

import polars as pl

from pipelines.model.config import Company
from pipelines.synth.draws import Draws, ids, places, take, zip_rows

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


def draw_borrowers(rng: Draws, n: int, companies: list[Company], first: int = 0) -> pl.DataFrame:
    """Borrowers plus the helper columns the other tables draw from (`__`-prefixed)."""
    zones = places().zips.get_column("timezone")
    company_index = rng.below(n, len(companies))
    home = _home_zips(rng, n, companies, company_index)
    tz_draw = rng.choice(n, [0.85, 0.12, 0.03])  # home zone, none, somewhere else (moved)
    elsewhere = zones.gather(zip_rows(rng, n))
    frame = pl.DataFrame(
        {
            "__i": pl.int_range(0, n, eager=True).cast(pl.Int64),
            "companyId": take([c.id for c in companies], company_index, pl.String()),
            "firstName": take(FIRST_NAMES, rng.below(n, len(FIRST_NAMES)), pl.String()),
            "lastName": take(LAST_NAMES, rng.below(n, len(LAST_NAMES)), pl.String()),
            "__home": home,
            "__tzDraw": tz_draw,
            "__elsewhere": elsewhere,
            "__hasExternal": rng.uniform(n) < 0.9,
        }
    )
    return _with_home_place(frame).with_columns(
        ids("BR-", n, 8, first).alias("id"),
        pl.when(pl.col("__hasExternal")).then(ids("EXT-", n, 8, first)).alias("externalId"),
        pl.when(pl.col("__tzDraw") == 0)
        .then(pl.col("__zone"))
        .when(pl.col("__tzDraw") == 2)
        .then(pl.col("__elsewhere"))
        .alias("timezone"),
    )


def _home_zips(rng: Draws, n: int, companies: list[Company], company_index: pl.Series) -> pl.Series:
    """Row numbers of each borrower's home ZIP: anywhere in the US, or in the company's time zone."""
    zones = places().zips.get_column("timezone")
    # about 40% of a company's borrowers live in its own time zone (when any ZIP has it)
    local = rng.uniform(n) < 0.4
    national = zip_rows(rng, n)
    home = national
    for i, company in enumerate(companies):
        pool = pl.arg_where(zones == company.timezone, eager=True).cast(pl.Int64)
        if pool.len():
            candidates = zip_rows(rng, n, pool)
            home = pl.select(
                pl.when(pl.lit(local) & (pl.lit(company_index) == i))
                .then(pl.lit(candidates))
                .otherwise(pl.lit(home))
            ).to_series()
    return home


def _with_home_place(frame: pl.DataFrame) -> pl.DataFrame:
    """The home ZIP's city, state, time zone and area codes, as `__` columns."""
    return frame.join(
        places().zips.with_row_index("__home").with_columns(pl.col("__home").cast(pl.Int64)),
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


_SLOT_TYPES: Final = (  # phone, email, address weights by contact slot (0, 1, 2, 3+)
    (0.85, 0.10, 0.05),
    (0.25, 0.15, 0.60),
    (0.30, 0.60, 0.10),
    (0.60, 0.20, 0.20),
)


_THIRD_PARTIES: Final = ("spouse", "parent", "guardian", "representative", "attorney", "employer", "other")


def draw_contacts(rng: Draws, people: pl.DataFrame, first: int = 0) -> pl.DataFrame:
    """1–6 contacts per borrower: mostly `self`, some third parties, some archived or invalid."""
    base = _contact_slots(rng, people)
    n = base.height
    slot = base.get_column("__slot")
    kind = _contact_kinds(rng, slot)
    is_self, affiliation = _affiliations(rng, slot)
    labels = _labels(rng, n)
    phone = _phone_parts(rng, base, is_self)
    # address: self addresses at home mostly, others anywhere; some without ZIP
    address_zip = pl.select(
        pl.when(pl.lit(is_self) & (pl.lit(rng.uniform(n)) < 0.8))
        .then(base.get_column("__home"))
        .otherwise(pl.lit(zip_rows(rng, n)))
    ).to_series()
    frame = base.with_columns(
        pl.Series("__kind", kind),
        pl.Series("affiliation", affiliation),
        *labels,
        *phone,
        pl.Series("__addressZip", address_zip),
        *_contact_details(rng, n),
    ).join(
        places().zips.with_row_index("__addressZip").with_columns(pl.col("__addressZip").cast(pl.Int64)),
        on="__addressZip",
        how="left",
        maintain_order="left",
    )
    return _contact_columns(frame, first)


def _contact_slots(rng: Draws, people: pl.DataFrame) -> pl.DataFrame:
    """One row per contact to draw: the borrower's columns and the contact's slot (0 = first)."""
    counts = rng.choice(people.height, [0.05, 0.15, 0.30, 0.25, 0.15, 0.10]) + 1
    return (
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


def _contact_kinds(rng: Draws, slot: pl.Series) -> pl.Series:
    """0 phone, 1 email, 2 address, with the weights of the contact's slot."""
    n = slot.len()
    kind = pl.zeros(n, dtype=pl.Int64, eager=True)
    for bucket, weights in enumerate(_SLOT_TYPES):
        drawn = rng.choice(n, weights)
        kind = pl.select(
            pl.when(pl.lit(slot).clip(upper_bound=3) == bucket).then(pl.lit(drawn)).otherwise(pl.lit(kind))
        ).to_series()
    return kind


def _affiliations(rng: Draws, slot: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Whether each contact is the borrower's own, and its affiliation (`self` or a third party)."""
    n = slot.len()
    self_share = pl.select(pl.when(pl.lit(slot) < 3).then(0.95).otherwise(0.5)).to_series()
    is_self = rng.uniform(n) < self_share
    third = take(_THIRD_PARTIES, rng.choice(n, [25, 15, 5, 10, 15, 20, 10]), pl.String())
    affiliation = pl.select(
        pl.when(pl.lit(is_self)).then(pl.lit("self")).otherwise(pl.lit(third))
    ).to_series()
    return is_self, affiliation


def _labels(rng: Draws, n: int) -> list[pl.Series]:
    phone_label = take(("personal", "home", "work", "military"), rng.choice(n, [50, 30, 15, 5]), pl.String())
    email_label = take(("personal", "work"), rng.choice(n, [80, 20]), pl.String())
    address_label = take(("home", "work", "military"), rng.choice(n, [85, 10, 5]), pl.String())
    other_status = take(
        ("secondary", "additional", "archived", "primary"), rng.choice(n, [45, 40, 10, 5]), pl.String()
    )
    return [
        pl.Series("__phoneLabel", phone_label),
        pl.Series("__emailLabel", email_label),
        pl.Series("__addressLabel", address_label),
        pl.Series("__otherStatus", other_status),
    ]


def _phone_parts(rng: Draws, base: pl.DataFrame, is_self: pl.Series) -> list[pl.Series]:
    """Area code of the home ZIP most of the time; a mover or a third party keeps another one."""
    n = base.height
    area_codes = places().area_codes
    home_codes = base.get_column("__areaCodes")
    home_code = home_codes.list.get(rng.below(n, home_codes.list.len()), null_on_oob=True)
    other_code = area_codes.gather(rng.below(n, area_codes.len()))
    keeps_home = rng.uniform(n) < pl.select(pl.when(pl.lit(is_self)).then(0.85).otherwise(0.5)).to_series()
    exchange = 200 + rng.below(n, 800)
    exchange = pl.select(
        pl.when(pl.lit(exchange) % 100 == 11).then(pl.lit(exchange) + 1).otherwise(pl.lit(exchange))
    ).to_series()
    line = rng.below(n, 10_000)
    return [
        pl.Series("__homeCode", home_code),
        pl.Series("__otherCode", other_code),
        pl.Series("__keepsHome", keeps_home),
        pl.Series("__exchange", exchange),
        pl.Series("__line", line),
    ]


def _contact_details(rng: Draws, n: int) -> list[pl.Series]:
    """The remaining draws per contact, in stream order: email and address parts, then flags."""
    return [
        pl.Series("__emailNumber", rng.below(n, 100)),
        pl.Series("__domain", take(EMAIL_DOMAINS, rng.below(n, len(EMAIL_DOMAINS)), pl.String())),
        pl.Series("__thirdFirst", take(FIRST_NAMES, rng.below(n, len(FIRST_NAMES)), pl.String())),
        pl.Series("__houseNumber", 1 + rng.below(n, 9999)),
        pl.Series("__street", take(STREETS, rng.below(n, len(STREETS)), pl.String())),
        pl.Series("__streetKind", take(STREET_KINDS, rng.below(n, len(STREET_KINDS)), pl.String())),
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
    ]


def _contact_columns(frame: pl.DataFrame, first: int) -> pl.DataFrame:
    """The contact table's columns, from the drawn `__` columns."""
    is_phone = pl.col("__kind") == 0
    is_email = pl.col("__kind") == 1
    is_address = pl.col("__kind") == 2
    third_party = pl.col("affiliation") != "self"
    return frame.with_columns(
        ids("CT-", frame.height, 9, first).alias("id"),
        pl.col("__kind")
        .replace_strict({0: "phone", 1: "email", 2: "address"}, return_dtype=pl.String)
        .alias("contactType"),
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
        pl.when(is_phone).then(_phone()).when(is_email).then(_email()).alias("value"),
        *_address_columns(is_address),
        (is_phone & pl.col("__textOptIn")).alias("receiveTextMessages"),
        (third_party & pl.col("__authorized")).alias("authorizedThirdParty"),
        (pl.col("affiliation").is_in(["attorney", "representative"]) & pl.col("__attorneyPower")).alias(
            "powerOfAttorney"
        ),
        pl.when(pl.col("__contactZone"))
        .then(pl.when(is_address).then(pl.col("timezone")).otherwise(pl.col("__zone")))
        .alias("timezone"),
    )


def _phone() -> pl.Expr:
    area = (
        pl.when(pl.col("__keepsHome") & pl.col("__homeCode").is_not_null())
        .then(pl.col("__homeCode"))
        .otherwise(pl.col("__otherCode"))
    )
    return pl.concat_str(
        pl.lit("+1"),
        area,
        pl.col("__exchange").cast(pl.String),
        pl.col("__line").cast(pl.String).str.zfill(4),
    )


def _email() -> pl.Expr:
    email_first = (
        pl.when(pl.col("affiliation") == "self").then(pl.col("firstName")).otherwise(pl.col("__thirdFirst"))
    )
    return pl.concat_str(
        email_first.str.to_lowercase(),
        pl.lit("."),
        pl.col("lastName").str.to_lowercase(),
        pl.col("__emailNumber").cast(pl.String),
        pl.lit("@"),
        pl.col("__domain"),
    )


def _address_columns(is_address: pl.Expr) -> list[pl.Expr]:
    return [
        pl.when(is_address)
        .then(pl.format("{} {} {}", pl.col("__houseNumber"), pl.col("__street"), pl.col("__streetKind")))
        .alias("addressLine1"),
        pl.when(is_address).then(pl.format("Apt {}", pl.col("__apartment"))).alias("addressLine2"),
        pl.when(is_address).then(pl.col("city")).alias("city"),
        pl.when(is_address).then(pl.col("state")).alias("state"),
        pl.when(is_address & ~pl.col("__noZip")).then(pl.col("zip")).alias("postalCode"),
        pl.when(is_address).then(pl.lit("US")).alias("country"),
    ]
