"""Candidate time zones: ZIP, state fallback, disagreement, phone numbers, and the per-prefix lookup."""

from __future__ import annotations

import random
from pathlib import Path

import phonenumbers
import polars as pl
import pytest
import us
import zipcodes
from phonenumbers.timezone import time_zones_for_number

from pipelines.rules import lookups, nanp_patterns, phone_numbers
from pipelines.rules import timezones as tz
from tests.pipelines.compliance_fixtures import address, borrower, email, phone, world

HONOLULU = "Pacific/Honolulu"


def zones_of(
    *contacts: dict[str, object], borrower_zone: str | None = None, contact: str = "C1"
) -> tuple[list[str], list[str]]:
    tables = world([borrower("B1", borrower_zone)], list(contacts))
    out = tz.candidate_zones(tables.contacts, tables.contacts, tables.borrowers).collect()
    row = out.filter(pl.col("contactId") == contact).to_dicts()[0]
    return row["zones"], row["states"]


def direct(number: str) -> set[str]:
    """What phonenumbers itself says, minus its 'unknown' marker."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return set()
    return {z for z in time_zones_for_number(parsed) if z != "Etc/Unknown"}


def test_zip_gives_its_zone_and_state() -> None:
    assert zones_of(email("C1"), address("A1", "02108", "MA")) == (["America/New_York"], ["MA"])
    assert zones_of(email("C1"), address("A1", "02108-1234", "ma")) == (["America/New_York"], ["MA"])
    assert zones_of(email("C1"), address("A1", " 85001", "AZ")) == (["America/Phoenix"], ["AZ"])


def test_state_fallback_when_zip_missing_or_unknown() -> None:
    assert zones_of(email("C1"), address("A1", None, "AZ")) == (["America/Phoenix"], ["AZ"])
    texas = sorted(us.states.lookup("TX").time_zones)
    assert zones_of(email("C1"), address("A1", "00000", "TX")) == (texas, ["TX"])
    assert zones_of(email("C1"), address("A1", "021", " tx ")) == (texas, ["TX"])
    # A ZIP the package knows without a usable zone (military) also falls back to the state.
    assert zipcodes.matching("09001")[0]["timezone"] == ""
    assert zones_of(email("C1"), address("A1", "09001", "NY")) == (["America/New_York"], ["AE", "NY"])
    assert zones_of(email("C1"), address("A1", "09001", None)) == ([], ["AE"])
    assert zones_of(email("C1"), address("A1", None, "ZZ")) == ([], ["ZZ"])


def test_zip_and_state_disagreeing_gives_both() -> None:
    zones, states = zones_of(email("C1"), address("A1", "96813", "CA"))
    assert zones == ["America/Los_Angeles", HONOLULU]
    assert states == ["CA", "HI"]


def test_borrower_and_contact_zones_join_the_union() -> None:
    zones, states = zones_of(
        email("C1", timezone="America/Denver"), address("A1", "02108", "MA"), borrower_zone="America/Chicago"
    )
    assert zones == ["America/Chicago", "America/Denver", "America/New_York"]
    assert states == ["MA"]


def test_archived_and_third_party_addresses_are_ignored_invalid_ones_count() -> None:
    contacts = [
        email("C1"),
        address("A1", "96813", "HI", status="archived"),
        address("A2", "99501", "AK", affiliation="spouse"),
        address("A3", "85001", "AZ", valid=False),
        address("A4", "02108", "MA", pid="B2"),  # another borrower's
    ]
    assert zones_of(*contacts) == (["America/Phoenix"], ["AZ"])


def test_phone_zones_only_for_the_contacts_own_number() -> None:
    contacts = [phone("C1", "+12125550123"), phone("C2", "+18085550123"), email("C3")]
    assert zones_of(*contacts) == (["America/New_York"], [])
    assert zones_of(*contacts, contact="C2") == ([HONOLULU], [])
    assert zones_of(*contacts, contact="C3") == ([], [])
    # Area code 907 is Alaska, which phonenumbers answers with two zones.
    assert zones_of(phone("C1", "+19075550123"))[0] == ["America/Adak", "America/Anchorage"]


def test_phone_toll_free_gives_every_zone_unknown_gives_none() -> None:
    toll_free = zones_of(phone("C1", "+18005550123"))[0]
    assert set(toll_free) == direct("+18005550123")
    assert len(toll_free) > 20
    assert zones_of(phone("C1", "+15555550123"))[0] == []  # Etc/Unknown
    assert zones_of(phone("C1", "not a number"))[0] == []
    assert zones_of(phone("C1", None))[0] == []
    assert zones_of(phone("C1", "+442071838750"))[0] == ["Europe/London"]


def test_candidate_zones_frame_shape() -> None:
    tables = world([borrower("B1", None)], [phone("C2", "+12125550123"), email("C1")])
    out = tz.candidate_zones(tables.contacts, tables.contacts, tables.borrowers).collect()
    assert out.schema == pl.Schema(
        {
            "contactId": pl.String(),
            "personId": pl.String(),
            "zones": pl.List(pl.String()),
            "states": pl.List(pl.String()),
        }
    )
    assert out.rows() == [("C1", "B1", [], []), ("C2", "B1", ["America/New_York"], [])]


def test_lookup_tables_come_from_the_packages() -> None:
    states = tz.state_zone_table()
    for state in us.states.STATES_AND_TERRITORIES:
        got = sorted(states.filter(pl.col("state") == state.abbr).get_column("zone"))
        assert got == sorted(state.time_zones)
    zips = tz.zip_table()
    assert zips.get_column("zip").is_unique().all()
    assert zips.height == len(zipcodes.list_all())
    assert set(zips.get_column("zipZone").drop_nulls()) <= lookups.known_zones()
    assert zips.filter(pl.col("zip") == "96813").row(0) == ("96813", HONOLULU, "HI")


def test_phone_metadata_is_analysed_so_the_prefix_lookup_is_used() -> None:
    sets = nanp_patterns.nanp_prefix_sets()
    assert sets is not None
    assert sets[0] == frozenset({""})
    assert sets[-1] == frozenset()
    # New York numbers are decided by area code and the exchange's first digit.
    keys = pl.DataFrame({"value": ["+12125550123", "+12125559876", "+12125020000"]}).select(
        phone_numbers.phone_key(pl.col("value"))
    )
    assert keys.to_series().to_list() == ["N2125", "N2125", "N2125"]


@pytest.mark.parametrize("seed", [1, 2])
def test_per_prefix_lookup_equals_one_lookup_per_number(seed: int) -> None:
    rng = random.Random(seed)
    sets = nanp_patterns.nanp_prefix_sets()
    assert sets is not None
    deep = sorted(set().union(*sets) - {""})
    numbers = ["+1" + str(rng.randint(2_000_000_000, 9_999_999_999)) for _ in range(1000)]
    for _ in range(1000):
        prefix = rng.choice(deep)
        rest = "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))
        if prefix[0] not in "01":
            numbers.append("+1" + prefix + rest)
    numbers += [
        "+18005550123",
        "+18001412345",  # Dominican toll-free split on the fifth digit
        "+18766060123",  # Jamaica fixed line, decided on the seventh digit
        "+12465210123",
        "+15235550123",  # personal numbers
        "+12085550123",  # Idaho, split between zones by exchange
        "+442071838750",
        "+1212555012",
        "+12125550123 ",
    ]
    table = phone_numbers.phone_zones(pl.Series(numbers))
    got: dict[str, set[str]] = {}
    for value, zone in table.iter_rows():
        got.setdefault(value, set()).add(zone)
    mismatches = [n for n in set(numbers) if got.get(n, set()) != direct(n)]
    assert mismatches == []
    distinct_keys = (
        pl.DataFrame({"value": numbers}).select(phone_numbers.phone_key(pl.col("value"))).n_unique()
    )
    assert distinct_keys < len(set(numbers))


def test_every_nanp_number_has_its_key_in_the_key_table() -> None:
    """The cached table holds every key `phone_key` can give a +1 number, and agrees with lookups."""
    rnd = random.Random(5)
    numbers = [f"+1{rnd.randint(2, 9)}{rnd.randrange(10**9):09d}" for _ in range(20_000)]
    keys = set(
        pl.DataFrame({"value": numbers})
        .select(phone_numbers.phone_key(pl.col("value")))
        .to_series()
        .to_list()
    )
    enumerated = set(phone_numbers.nanp_keys())
    assert keys <= enumerated
    table = phone_numbers.phone_key_zones(sorted(keys))
    got: dict[str, set[str]] = {}
    for key, zone in table.iter_rows():
        got.setdefault(key, set()).add(zone)
    assert [
        k for k in rnd.sample(sorted(keys), 400) if got.get(k, set()) != set(phone_numbers.zones_for_key(k))
    ] == []


def deciding_prefix(national: str, sets: tuple[frozenset[str], ...]) -> str:
    """The key's digits by the definition: the shortest prefix no longer deciding prefix extends."""
    return next(
        (national[:d] for d in range(len(sets)) if national[:d] not in sets[d]), national[: len(sets)]
    )


def test_key_index_gives_each_number_its_deciding_prefix() -> None:
    """The gather by a number's first seven digits finds the key the prefix sets define, at every
    range edge of every key and at random numbers; any other value has no position."""
    sets = nanp_patterns.nanp_prefix_sets()
    index = phone_numbers.nanp_key_index()
    assert sets is not None
    assert index is not None
    keys, by_start = index
    assert keys.is_sorted()
    assert by_start.len() == 10**7
    assert by_start.is_sorted()
    rnd = random.Random(7)
    numbers = [f"+1{rnd.randint(2, 9)}{rnd.randrange(10**9):09d}" for _ in range(20_000)]
    for key in rnd.sample(keys.to_list(), 2_000):  # the first and last number of each key's range
        digits = key[1:]
        for fill in "09":
            national = digits.ljust(10, fill)
            if national[0] not in "01":
                numbers.append("+1" + national)
    frame = pl.DataFrame({"value": numbers}).with_columns(
        phone_numbers.nanp_key_position(pl.col("value")).alias("at")
    )
    got = keys.gather(frame.get_column("at")).to_list()
    want = ["N" + deciding_prefix(n[2:], sets) for n in numbers]
    assert [n for n, g, w in zip(numbers, got, want, strict=True) if g != w] == []
    others = ["+1212555012", "+12125550123 ", "+11125550123", "+442071838750", "+1-212555012", None]
    assert (
        pl.DataFrame({"value": others})
        .select(phone_numbers.nanp_key_position(pl.col("value")))
        .null_count()
        .item()
        == 6
    )


def test_key_index_is_read_from_the_cache_as_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = phone_numbers.nanp_key_index()
    monkeypatch.setenv(lookups.CACHE_ENV, str(tmp_path / "cache"))
    phone_numbers.nanp_key_index.cache_clear()
    try:
        first = phone_numbers.nanp_key_index()  # built and written
        phone_numbers.nanp_key_index.cache_clear()
        second = phone_numbers.nanp_key_index()  # read back
        assert len(list((tmp_path / "cache").glob("phone-key-index-*.parquet"))) == 1
    finally:
        phone_numbers.nanp_key_index.cache_clear()
    assert built is not None
    assert first is not None
    assert second is not None
    assert first[1].equals(built[1])
    assert second[1].equals(built[1])
    assert second[0].equals(built[0])


def test_keys_outside_the_table_are_looked_up_directly() -> None:
    table = phone_numbers.phone_key_zones(["V+442071838750", "V+33142685300"])
    assert set(table.get_column("key")) == {"V+442071838750", "V+33142685300"}
    assert set(table.get_column("zone")) == direct("+442071838750") | direct("+33142685300")


def test_lookup_cache_is_built_once_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lookups.CACHE_ENV, str(tmp_path / "cache"))
    schema = pl.Schema({"key": pl.String(), "zone": pl.String()})
    builds: list[int] = []

    def build() -> pl.DataFrame:
        builds.append(1)
        return pl.DataFrame({"key": ["N212"], "zone": ["America/New_York"]})

    first = lookups.cached("probe", schema, build)
    second = lookups.cached("probe", schema, build)
    assert first.equals(second)
    assert len(builds) == 1
    (cached,) = (tmp_path / "cache").glob("probe-*.parquet")

    cached.write_bytes(b"not parquet")  # a damaged cache is rebuilt and replaced, not trusted
    assert lookups.cached("probe", schema, build).equals(first)
    assert len(builds) == 2
    assert pl.read_parquet(cached).equals(first)


def test_lookup_cache_that_cannot_be_written_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(lookups.CACHE_ENV, str(blocker / "cache"))
    schema = pl.Schema({"zip": pl.String()})
    frame = lookups.cached("probe", schema, lambda: pl.DataFrame({"zip": ["02108"]}))
    assert frame.to_dict(as_series=False) == {"zip": ["02108"]}
