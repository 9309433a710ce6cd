"""Candidate time zones of a contact (COMPLIANCE.md, "Candidate time zones").

The union of: the borrower's `timezone`; the contact's `timezone`; for every non-archived `address`
contact of the borrower with affiliation `self` (valid or not), the zone of its ZIP code and, when
the ZIP is missing or unknown, every zone of its `state` (both when ZIP and state disagree); and for a
phone contact every zone `phonenumbers` gives for its own number.

The states of the addresses used decide which state rules apply; an address counts for its own
`state` and for the state of its ZIP code (where the two disagree the borrower may be in either, so
both states' limits apply, the stricter reading).

Lookups come from maintained packages (`zipcodes`, `us`, `phonenumbers`), loaded once per process.
Zone names a package gives that the IANA database here does not know (for example a blank ZIP zone)
count as unknown.

Lookup tables are built from the packages once per package version and kept as small Parquet
files in the lookup cache (`$CONTACT_EXPORTER_CACHE`, else `$XDG_CACHE_HOME/contact-exporter`, else
`~/.cache/contact-exporter`), named by a fingerprint of the package versions and the zone database,
so an upgrade starts a fresh table; a cache that cannot be read or written is rebuilt in memory.

Phone numbers: `phonenumbers` costs ~100 µs a number, far too slow for millions of rows. Its answer
for a North American (+1) number depends only on which patterns of its metadata the number matches
and on the longest time-zone prefix it starts with; every such pattern is a set of digit prefixes
followed by free digits. `_nanp_prefix_sets` enumerates those prefixes once, which gives each number
the shortest prefix that decides its answer (its `phone_key`, a few thousand distinct at most); the
package is then asked once per key, about any number with that prefix. The keys cut the numbers
into ranges, so a table indexed by a number's first seven digits gives its key in one gather
(`nanp_key_index`). Any other number is asked about once per distinct value.
tests/pipelines/test_timezones.py checks the keys against one lookup per number.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, NamedTuple

import phonenumbers
import polars as pl
import us
import zipcodes
from phonenumbers import timezone as phone_tz
from phonenumbers.tzdata import TIMEZONE_DATA

from pipelines.io.files import atomic_write
from pipelines.model.vocab import iana_zones

log = logging.getLogger(__name__)

S: Final = pl.String()
ZONE_LIST: Final = pl.List(pl.String())

# ZIP code: the first five digits of postalCode ("02108-1234" → "02108"); anything else is missing.
ZIP5_PATTERN: Final = r"^[ \t]*([0-9]{5})"
# E.164 numbers of the North American Numbering Plan that the prefix lookup handles.
NANP_PATTERN: Final = r"^\+1[2-9][0-9]{9}$"
_NANP_LENGTH: Final = 10


known_zones = iana_zones  # IANA zone names this process can compute local times for


def usable_zones(zones: Iterable[str]) -> list[str]:
    """The given zones that are real IANA names (drops `Etc/Unknown`, blanks and typos), sorted."""
    known = known_zones()
    return sorted({z for z in zones if z in known})


# ---------------------------------------------------------------- lookup tables (once per process)


def _all_zips() -> list[dict[str, Any]]:
    list_all: Callable[[], list[dict[str, Any]]] = zipcodes.list_all
    return list_all()


CACHE_ENV: Final = "CONTACT_EXPORTER_CACHE"
_CACHE_FORMAT: Final = "1"  # bump when the way a cached table is built changes


def cache_dir() -> Path:
    """Where lookup tables are cached (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "contact-exporter"


@functools.cache
def _fingerprint() -> str:
    parts = [_CACHE_FORMAT, *(version(p) for p in ("zipcodes", "us", "phonenumbers")), *sorted(known_zones())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cached(name: str, schema: pl.Schema, build: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """A lookup table from the cache, else built and cached (best effort)."""
    path = cache_dir() / f"{name}-{_fingerprint()}.parquet"
    try:
        frame = pl.read_parquet(path)
        if frame.schema == schema:
            return frame
        log.warning("lookup cache %s has an unexpected layout; building it again", path)
    except FileNotFoundError:
        pass
    except (OSError, pl.exceptions.PolarsError) as exc:
        log.warning("lookup cache %s unreadable (%s); building it again", path, type(exc).__name__)
    frame = build().cast(schema)
    try:
        atomic_write(path, lambda tmp: frame.write_parquet(tmp))
    except OSError as exc:
        log.warning("lookup cache %s not written (%s); it is built again next run", path, exc)
    return frame


_ZIP_SCHEMA: Final = pl.Schema({"zip": S, "zipZone": S, "zipState": S})


@functools.cache
def zip_table() -> pl.DataFrame:
    """ZIP → its zone (null when the package has none usable) and its state, from `zipcodes`."""
    return _cached("zips", _ZIP_SCHEMA, _build_zip_table)


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


# ---------------------------------------------------------------- phone numbers


class _UnsupportedPatternError(Exception):
    """A metadata pattern this analysis does not understand: fall back to one lookup per number."""


_DIGITS: Final = "0123456789"
_MAX_STATES: Final = 500_000


def _charset(items: list[tuple[Any, Any]], sre: Any) -> str | None:
    """The digits a character class accepts; None when it accepts every digit."""
    chars: set[str] = set()
    for op, av in items:
        if op == sre.LITERAL:
            chars.add(chr(av))
        elif op == sre.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        elif op == sre.CATEGORY and av == sre.CATEGORY_DIGIT:
            chars.update(_DIGITS)
        else:
            raise _UnsupportedPatternError(f"character class item {op}")
    digits = "".join(sorted(chars & set(_DIGITS)))
    return None if digits == _DIGITS else digits


def _extend(states: set[tuple[str, int]], chars: str) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for head, free in states:
        if free > 4:
            raise _UnsupportedPatternError("too many free digits before a fixed one")
        for fill in itertools.product(_DIGITS, repeat=free):
            base = head + "".join(fill)
            out.update((base + c, 0) for c in chars)
    return out


def _walk(items: list[tuple[Any, Any]], states: set[tuple[str, int]], sre: Any) -> set[tuple[str, int]]:
    """Advance (fixed prefix, free digits after it) pairs over a parsed pattern sequence."""
    for op, av in items:
        if op == sre.LITERAL:
            states = _extend(states, chr(av) if chr(av) in _DIGITS else "")
        elif op == sre.IN:
            chars = _charset(list(av), sre)
            states = {(h, f + 1) for h, f in states} if chars is None else _extend(states, chars)
        elif op == sre.SUBPATTERN:
            states = _walk(list(av[-1]), states, sre)
        elif op == sre.BRANCH:
            out: set[tuple[str, int]] = set()
            for branch in av[1]:
                out |= _walk(list(branch), states, sre)
            states = out
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)):
            low, high, body = av
            if high == sre.MAXREPEAT or high > _NANP_LENGTH:
                raise _UnsupportedPatternError("unbounded repeat")
            out = set()
            current = states
            for count in range(high + 1):
                if count >= low:
                    out |= current
                if count < high:
                    current = _walk(list(body), current, sre)
            states = out
        else:
            raise _UnsupportedPatternError(f"pattern operation {op}")
        if len(states) > _MAX_STATES:
            raise _UnsupportedPatternError("pattern expands too far")
    return states


def _pattern_heads(pattern: str) -> set[tuple[str, int]]:
    """Every (fixed digit prefix, number of free digits after it) a pattern is made of."""
    sre = importlib.import_module("re._parser")
    return _walk(list(sre.parse(pattern)), {("", 0)}, sre)


@functools.cache
def _nanp_prefix_sets() -> tuple[frozenset[str], ...] | None:
    """For d = 0..10, the d-digit national prefixes that some deciding prefix longer than d extends.

    A 10-digit national number n is decided by n[:d] for the smallest d with n[:d] not in set d:
    every deciding prefix longer than d differs from n there, so no number sharing n[:d] has it.
    None when the metadata holds a pattern this analysis cannot read.
    """
    heads: set[str] = set()
    descs = (
        "general_desc",
        "fixed_line",
        "mobile",
        "toll_free",
        "premium_rate",
        "shared_cost",
        "personal_number",
        "voip",
        "pager",
        "uan",
        "voicemail",
    )
    try:
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if meta is None:
                continue
            if meta.leading_digits:  # matched as a prefix
                heads |= {h for h, _ in _pattern_heads(meta.leading_digits)}
            for name in descs:
                desc = getattr(meta, name)
                if desc is None or not desc.national_number_pattern:
                    continue
                if desc.possible_length and _NANP_LENGTH not in desc.possible_length:
                    continue
                heads |= {
                    h
                    for h, free in _pattern_heads(desc.national_number_pattern)
                    if len(h) + free == _NANP_LENGTH
                }
    except _UnsupportedPatternError as exc:
        log.warning("phone metadata not analysable (%s): one time-zone lookup per number", exc)
        return None
    heads |= {key[1:] for key in TIMEZONE_DATA if key.startswith("1")}
    return tuple(frozenset(h[:d] for h in heads if len(h) > d) for d in range(_NANP_LENGTH + 1))


# The most leading national digits a key may have for the key index (10**7 entries of 2 bytes).
_INDEX_DIGITS: Final = 7
_INDEX_SCHEMA: Final = pl.Schema({"key": pl.UInt16()})


class KeyIndex(NamedTuple):
    keys: pl.Series  # every +1 key, sorted
    by_start: pl.Series  # for each 7-digit start of a national number, its key's position in `keys`


@functools.cache
def nanp_key_index() -> KeyIndex | None:
    """(keys, by_start): every key of a +1 number (the cached key table's, sorted) and, for each
    `_INDEX_DIGITS`-digit start of a national number (at its own position), the position of its key.

    The keys are prefix-free and, sorted, cover the starts from 0…0 to 9…9 range by range, so the
    table counts the ranges begun up to each start. A number's key is then one gather, not a string
    test per prefix length. The table (10M entries) is built once per package version and cached
    (small and quick to read). None when the metadata could not be
    analysed (no keys), or when a key is longer than `_INDEX_DIGITS` (then every number is looked up
    by its own value).
    """
    # The keys as the cached key table holds them: the metadata is analysed only to build it.
    keys = sorted(set(_nanp_key_table().get_column("key").to_list()))
    if not keys or len(keys) >= 1 << 16 or max(len(k) for k in keys) - 1 > _INDEX_DIGITS:
        return None
    spans = [10 ** (_INDEX_DIGITS - (len(k) - 1)) for k in keys]
    if sum(spans) != 10**_INDEX_DIGITS:  # not a cover: the keys cannot be trusted to decide
        log.warning("phone keys do not cover every +1 number: one time-zone lookup per number")
        return None

    def build() -> pl.DataFrame:
        begins = pl.zeros(10**_INDEX_DIGITS, dtype=pl.UInt32(), eager=True)
        begins.scatter(pl.Series(spans[:-1], dtype=pl.Int64()).cum_sum(), 1)
        return begins.cum_sum().alias("key").to_frame()

    by_start = _cached("phone-key-index", _INDEX_SCHEMA, build).to_series().rechunk()
    if by_start.len() != 10**_INDEX_DIGITS or by_start.max() != len(keys) - 1:
        by_start = build().cast(_INDEX_SCHEMA).to_series()
    return KeyIndex(pl.Series("keys", keys, dtype=S), by_start)


def nanp_key_position(value: pl.Expr) -> pl.Expr:
    """The position in `nanp_key_index()`'s keys of a +1 number's key (UInt16); null for any other
    value, and for every value when there is no index."""
    index = nanp_key_index()
    if index is None:
        return pl.lit(None, dtype=pl.UInt16())
    start = value.str.slice(2, _INDEX_DIGITS).str.to_integer(strict=False)
    return pl.lit(index.by_start).gather(pl.when(value.str.contains(NANP_PATTERN)).then(start))


def phone_key(value: pl.Expr) -> pl.Expr:
    """A key such that numbers with the same key get the same zones from `phonenumbers`:
    `N` + the deciding national digits for a +1 number, else `V` + the value itself."""
    index = nanp_key_index()
    raw = pl.lit("V") + value
    if index is None:
        return raw
    return pl.coalesce(pl.lit(index.keys).gather(nanp_key_position(value)), raw)


def zones_for_number(value: str) -> list[str]:
    """The zones `phonenumbers` gives for one number: none when unknown or unparsable."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return []
    return usable_zones(z for z in phone_tz.time_zones_for_number(number) if z != phone_tz.UNKNOWN_TIMEZONE)


@functools.lru_cache(maxsize=1 << 16)
def zones_for_key(key: str) -> tuple[str, ...]:
    """The zones of every number with this `phone_key`: any completion of the deciding digits
    answers for all of them."""
    if key.startswith("N"):
        return tuple(zones_for_number("+1" + key[1:].ljust(_NANP_LENGTH, "0")))
    return tuple(zones_for_number(key[1:]))


def phone_zones(values: pl.Series) -> pl.DataFrame:
    """(value, zone) for every zone of every distinct non-null number in `values`."""
    numbers = pl.LazyFrame({"value": values.cast(S)}).drop_nulls().unique()
    keyed = numbers.with_columns(phone_key(pl.col("value")).alias("key")).collect()
    table = phone_key_zones(keyed.get_column("key").unique().to_list())
    return keyed.lazy().join(table.lazy(), on="key", how="inner").select("value", "zone").collect()


_KEY_SCHEMA: Final = pl.Schema({"key": S, "zone": S})


def nanp_keys() -> list[str]:
    """Every key `phone_key` can give a +1 number: each prefix that decides, at its own depth."""
    prefixes = _nanp_prefix_sets()
    if prefixes is None:
        return []
    depth = max(d for d, known in enumerate(prefixes) if known) + 1
    keys: list[str] = []
    frontier = [""]
    for d in range(1, depth + 1):
        grown = [head + digit for head in frontier for digit in _DIGITS]
        if d == depth:
            keys += grown
        else:
            keys += [p for p in grown if p not in prefixes[d]]
            frontier = [p for p in grown if p in prefixes[d]]
    return ["N" + k for k in keys]


@functools.cache
def _nanp_key_table() -> pl.DataFrame:
    """(key, zone) for every key of `nanp_keys()`; a null zone for a key without any."""

    def build() -> pl.DataFrame:
        rows = [(key, zone) for key in nanp_keys() for zone in (zones_for_key(key) or (None,))]
        return pl.DataFrame(rows, schema=_KEY_SCHEMA, orient="row")

    return _cached("phone-keys", _KEY_SCHEMA, build)


def phone_key_zones(keys: Iterable[str]) -> pl.DataFrame:
    """(key, zone) for every zone of every `phone_key` given.

    +1 keys come from the cached table of all keys; any key not in it (other countries, or a
    metadata the analysis could not read) is looked up directly.
    """
    wanted = pl.DataFrame({"key": sorted(set(keys))}, schema={"key": S})
    table = _nanp_key_table()
    known = wanted.join(table, on="key", how="inner")
    rest = wanted.join(table, on="key", how="anti").get_column("key").to_list()
    looked_up = pl.DataFrame(
        [(key, zone) for key in rest for zone in zones_for_key(key)], schema=_KEY_SCHEMA, orient="row"
    )
    return pl.concat([known.drop_nulls("zone"), looked_up]).sort("key", "zone")


def load_lookups() -> None:
    """Load (building and caching on first use) every lookup table: ZIPs, phone keys, key index."""
    zip_table()
    _nanp_key_table()
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
    by_contact = contact_zones(mine).lazy()
    zones = pl.concat(
        [
            mine.lazy().select(pl.col("id").alias("contactId"), "personId").join(by_person, on="personId"),
            by_contact.join(
                mine.lazy().select(pl.col("id").alias("contactId"), "personId"), on="contactId"
            ).select("contactId", "personId", "zone"),
        ]
    )
    zone_lists = zones.group_by("contactId").agg(pl.col("zone").unique().sort().alias("zones"))
    state_lists = (
        person_states(places).group_by("personId").agg(pl.col("state").unique().sort().alias("states"))
    )
    out = (
        mine.lazy()
        .select(pl.col("id").alias("contactId"), "personId")
        .join(zone_lists, on="contactId", how="left")
        .join(state_lists, on="personId", how="left")
        .with_columns(
            pl.col("zones").fill_null(pl.lit([], dtype=ZONE_LIST)),
            pl.col("states").fill_null(pl.lit([], dtype=ZONE_LIST)),
        )
        .sort("contactId")
    )
    return pl.LazyFrame(out.collect())


__all__ = [
    "KeyIndex",
    "NANP_PATTERN",
    "ZIP5_PATTERN",
    "address_places",
    "candidate_zones",
    "contact_zones",
    "cache_dir",
    "known_zones",
    "load_lookups",
    "nanp_key_index",
    "nanp_key_position",
    "nanp_keys",
    "norm_state",
    "person_states",
    "person_zones",
    "phone_key",
    "phone_key_zones",
    "phone_zones",
    "state_zone_table",
    "usable_zones",
    "uses_state_zones",
    "zip5",
    "zip_table",
    "zones_for_number",
]
