"""Time zones of phone numbers, from `phonenumbers`, fast enough for millions of rows.

`phonenumbers` parses and looks up each number it is asked about, far too slow to ask once per row. Each +1 number gets the
shortest prefix that decides the package's answer (its `phone_key`, a few thousand distinct at most:
pipelines/rules/nanp_patterns.py); the package is then asked once per key, about any number with
that prefix. The keys cut the numbers into ranges, so a table indexed by a number's first seven
digits gives its key in one gather (`nanp_key_index`). Any other number is asked about once per
distinct value. tests/pipelines/test_timezones.py checks the keys against one lookup per number."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Final, NamedTuple

import phonenumbers
import polars as pl
from phonenumbers import timezone as phone_tz

from pipelines.rules.lookups import cached, usable_zones
from pipelines.rules.nanp_patterns import DIGITS, NANP_LENGTH, nanp_prefix_sets

log = logging.getLogger(__name__)

S: Final = pl.String()
# E.164 numbers of the North American Numbering Plan that the prefix lookup handles.
NANP_PATTERN: Final = r"^\+1[2-9][0-9]{9}$"


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
    keys = sorted(set(nanp_key_table().get_column("key").to_list()))
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

    by_start = cached("phone-key-index", _INDEX_SCHEMA, build).to_series().rechunk()
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
        return tuple(zones_for_number("+1" + key[1:].ljust(NANP_LENGTH, "0")))
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
    prefixes = nanp_prefix_sets()
    if prefixes is None:
        return []
    depth = max(d for d, known in enumerate(prefixes) if known) + 1
    keys: list[str] = []
    frontier = [""]
    for d in range(1, depth + 1):
        grown = [head + digit for head in frontier for digit in DIGITS]
        if d == depth:
            keys += grown
        else:
            keys += [p for p in grown if p not in prefixes[d]]
            frontier = [p for p in grown if p in prefixes[d]]
    return ["N" + k for k in keys]


@functools.cache
def nanp_key_table() -> pl.DataFrame:
    """(key, zone) for every key of `nanp_keys()`; a null zone for a key without any."""

    def build() -> pl.DataFrame:
        rows = [(key, zone) for key in nanp_keys() for zone in (zones_for_key(key) or (None,))]
        return pl.DataFrame(rows, schema=_KEY_SCHEMA, orient="row")

    return cached("phone-keys", _KEY_SCHEMA, build)


def phone_key_zones(keys: Iterable[str]) -> pl.DataFrame:
    """(key, zone) for every zone of every `phone_key` given.

    +1 keys come from the cached table of all keys; any key not in it (other countries, or a
    metadata the analysis could not read) is looked up directly.
    """
    wanted = pl.DataFrame({"key": sorted(set(keys))}, schema={"key": S})
    table = nanp_key_table()
    known = wanted.join(table, on="key", how="inner")
    rest = wanted.join(table, on="key", how="anti").get_column("key").to_list()
    looked_up = pl.DataFrame(
        [(key, zone) for key in rest for zone in zones_for_key(key)], schema=_KEY_SCHEMA, orient="row"
    )
    return pl.concat([known.drop_nulls("zone"), looked_up]).sort("key", "zone")
