"""Candidate time zones of a contact (COMPLIANCE.md, "Candidate time zones").

The union of: the borrower's `timezone`; the contact's `timezone`; for every non-archived `address`
contact of the borrower with affiliation `self` (valid or not), the zone of its ZIP code and, when
the ZIP is missing or unknown, every zone of its `state` (both when ZIP and state disagree); and for a
phone contact every zone `phonenumbers` gives for its own number.

The states of the addresses used decide which state rules apply; an address counts for its own
`state` and for the state of its ZIP code (where the two disagree the borrower may be in either, so
both states' limits apply, the stricter reading).

Lookups come from maintained packages (`zipcodes`, `us`, `phonenumbers`), loaded once per process
and cached as small tables (pipelines/rules/lookups.py); phone numbers are placed by the prefix
that decides their zones (pipelines/rules/phone_numbers.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final

import polars as pl
import us
import zipcodes

from pipelines.rules.lookups import cached, known_zones, usable_zones
from pipelines.rules.phone_numbers import nanp_key_index, nanp_key_table, phone_zones

log = logging.getLogger(__name__)

S: Final = pl.String()
ZONE_LIST: Final = pl.List(pl.String())

# ZIP code: the first five digits of postalCode ("02108-1234" → "02108"); anything else is missing.
ZIP5_PATTERN: Final = r"^[ \t]*([0-9]{5})"


# ---------------------------------------------------------------- lookup tables (once per process)


def _all_zips() -> list[dict[str, Any]]:
    list_all: Callable[[], list[dict[str, Any]]] = zipcodes.list_all
    return list_all()


_ZIP_SCHEMA: Final = pl.Schema({"zip": S, "zipZone": S, "zipState": S})


@functools.cache
def zip_table() -> pl.DataFrame:
    """ZIP → its zone (null when the package has none usable) and its state, from `zipcodes`."""
    return cached("zips", _ZIP_SCHEMA, _build_zip_table)


def _build_zip_table() -> pl.DataFrame:
    known = known_zones()
    rows = [
        (r["zip_code"], r["timezone"] if r["timezone"] in known else None, r["state"] or None)
        for r in _all_zips()
    ]
    return pl.DataFrame(rows, schema=_ZIP_SCHEMA, orient="row").unique(
        "zip", keep="first", maintain_order=True
    )


@functools.cache
def state_zone_table() -> pl.DataFrame:
    """State abbreviation → each of its zones (long form), from `us.states`."""
    rows = [(s.abbr, z) for s in us.states.STATES_AND_TERRITORIES for z in usable_zones(s.time_zones)]
    return pl.DataFrame(rows, schema={"state": S, "zone": S}, orient="row").unique(maintain_order=True)


def load_lookups() -> None:
    """Load (building and caching on first use) every lookup table: ZIPs, phone keys, key index."""
    zip_table()
    nanp_key_table()
    nanp_key_index()


# ---------------------------------------------------------------- frames


def zip5(column: str) -> pl.Expr:
    return pl.col(column).str.extract(ZIP5_PATTERN, 1)


def norm_state(column: str) -> pl.Expr:
    state = pl.col(column).str.strip_chars().str.to_uppercase()
    return pl.when(state == "").then(None).otherwise(state)


def _persons_of(contacts: pl.LazyFrame) -> pl.LazyFrame:
    return contacts.select("personId").unique()


def address_places(all_contacts: pl.LazyFrame, persons: pl.LazyFrame | None) -> pl.LazyFrame:
    """The addresses the time-zone rule uses, with ZIP, state and the ZIP's zone and state.
    `persons`: the borrowers whose addresses; None when `all_contacts` holds only theirs."""
    addresses = all_contacts.filter(
        (pl.col("contactType") == "address")
        & pl.col("status").ne_missing("archived")  # null: not archived at the instant
        & (pl.col("affiliation") == "self")
    )
    if persons is not None:
        addresses = addresses.join(persons, on="personId", how="semi")
    return addresses.select(
        "personId", zip5("postalCode").alias("zip"), norm_state("state").alias("state")
    ).join(zip_table().lazy(), on="zip", how="left")


def uses_state_zones() -> pl.Expr:
    """Over `address_places` rows: whether the address adds every zone of its state, i.e. it has a
    state and its ZIP is missing, has no usable zone, or lies in another state."""
    return pl.col("state").is_not_null() & (
        pl.col("zipZone").is_null()
        | (pl.col("zipState").is_not_null() & (pl.col("zipState") != pl.col("state")))
    )


def person_zones(places: pl.LazyFrame, borrowers: pl.LazyFrame, persons: pl.LazyFrame) -> pl.LazyFrame:
    """(personId, zone), unique: the borrower's own zone and those of the addresses used.

    `places` is `address_places(...)` for the same persons.
    """
    own = (
        borrowers.select(pl.col("id").alias("personId"), pl.col("timezone").alias("zone"))
        .join(persons, on="personId", how="semi")
        .drop_nulls("zone")
    )
    by_zip = places.select("personId", pl.col("zipZone").alias("zone")).drop_nulls("zone")
    by_state = (
        places.filter(uses_state_zones())
        .select("personId", "state")
        .join(state_zone_table().lazy(), on="state", how="inner")
        .select("personId", "zone")
    )
    return pl.concat([own, by_zip, by_state], how="vertical").unique()


def person_states(places: pl.LazyFrame) -> pl.LazyFrame:
    """(personId, state), unique: each address's state and its ZIP's state (either may be the truth).

    `places` is `address_places(...)`.
    """
    return (
        pl.concat(
            [
                places.select("personId", "state"),
                places.select("personId", pl.col("zipState").alias("state")),
            ]
        )
        .drop_nulls("state")
        .unique()
    )


def contact_zones(contacts: pl.DataFrame) -> pl.DataFrame:
    """(contactId, zone), unique: the contact's own zone and, for a phone, its number's zones."""
    phones = (
        contacts.lazy()
        .filter(pl.col("contactType") == "phone")
        .select(pl.col("id").alias("contactId"), "value")
    )
    numbers = phone_zones(contacts.filter(pl.col("contactType") == "phone").get_column("value"))
    own = (
        contacts.lazy().select(pl.col("id").alias("contactId"), pl.col("timezone").alias("zone")).drop_nulls()
    )
    by_number = phones.join(numbers.lazy(), on="value", how="inner").select("contactId", "zone")
    return pl.concat([own, by_number]).unique().collect()


def candidate_zones(
    contacts: pl.LazyFrame, all_contacts: pl.LazyFrame, borrowers: pl.LazyFrame
) -> pl.LazyFrame:
    """contactId, personId, zones (sorted, unique; empty when unknown), states of the addresses used.

    Screening uses the same pieces (`address_places`, `uses_state_zones`, `state_zone_table`,
    `phone_key_zones`) but folds each zone into its contact-hours answer before joining; this long
    form lists the zones themselves, to test and to explain a decision.

    `contacts` are the contacts to place (a subset of `all_contacts`); addresses come from
    `all_contacts`. Phone zones are looked up here, eagerly; the result is a LazyFrame over it.
    """
    mine = contacts.select("id", "personId", "contactType", "value", "timezone").collect()
    persons = mine.lazy().pipe(_persons_of)
    places = address_places(all_contacts, persons).collect().lazy()
    by_person = person_zones(places, borrowers, persons)
    ids = mine.lazy().select(pl.col("id").alias("contactId"), "personId")
    by_contact = contact_zones(mine).lazy().join(ids, on="contactId").select("contactId", "personId", "zone")
    zones = pl.concat([ids.join(by_person, on="personId"), by_contact])
    zone_lists = zones.group_by("contactId").agg(pl.col("zone").unique().sort().alias("zones"))
    state_lists = (
        person_states(places).group_by("personId").agg(pl.col("state").unique().sort().alias("states"))
    )
    out = (
        ids.join(zone_lists, on="contactId", how="left")
        .join(state_lists, on="personId", how="left")
        .with_columns(
            pl.col("zones").fill_null(pl.lit([], dtype=ZONE_LIST)),
            pl.col("states").fill_null(pl.lit([], dtype=ZONE_LIST)),
        )
        .sort("contactId")
    )
    return pl.LazyFrame(out.collect())


__all__ = [
    "ZIP5_PATTERN",
    "address_places",
    "candidate_zones",
    "contact_zones",
    "load_lookups",
    "norm_state",
    "person_states",
    "person_zones",
    "state_zone_table",
    "uses_state_zones",
    "zip5",
    "zip_table",
]
