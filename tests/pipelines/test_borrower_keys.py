"""Borrower keys: the lookup gives each personId its borrower's key, by either path, and tables that
did not come through validation are keyed consistently."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.model.tables import SourceTables
from pipelines.rules.borrower_keys import BORROWER_KEY, keyed, lookup

IDS = st.sampled_from([f"BR-{n}" for n in (0, 1, 2, 10, 15, 2000, 3, 9)])


@settings(max_examples=200, deadline=None)
@given(
    people=st.lists(st.one_of(IDS, st.none()), max_size=30),
    known=st.lists(IDS, unique=True, max_size=8),
    sort_people=st.booleans(),
    sort_known=st.booleans(),
)
def test_lookup_finds_each_person_s_key_sorted_or_not(
    people: list[str | None], known: list[str], sort_people: bool, sort_known: bool
) -> None:
    if sort_people:
        people = sorted(people, key=lambda p: (p is not None, p or ""))
    if sort_known:
        known = sorted(known)
    keys = {person: 100 + i for i, person in enumerate(known)}
    ids = pl.DataFrame(
        {"personId": known, "k": [keys[p] for p in known]}, schema={"personId": pl.String, "k": pl.UInt32}
    )
    found = lookup(pl.Series("personId", people, dtype=pl.String), ids, "k")
    assert found.to_list() == [keys.get(p) if p is not None else None for p in people]


def test_sorted_people_between_and_around_the_known_ids_find_nothing() -> None:
    """The ordered walk meets, for an unknown personId, the id just below it: that must not count."""
    ids = pl.DataFrame({"personId": ["BR-1", "BR-2"], "k": [7, 8]})
    people = pl.Series("personId", ["BR-0", "BR-1", "BR-15", "BR-2", "BR-3"])
    assert lookup(people, ids, "k").to_list() == [None, 7, None, 8, None]


def test_tables_without_keys_are_keyed_alike() -> None:
    """Every borrower id and contact personId gets one key, the same in every frame; a contact whose
    borrower is missing still gets one of its own."""
    borrowers = pl.LazyFrame({"id": ["BR-2", "BR-1"]})
    contacts = pl.LazyFrame({"id": ["CT-1", "CT-2", "CT-3"], "personId": ["BR-1", "BR-9", "BR-2"]})
    empty = pl.LazyFrame({"personId": pl.Series([], dtype=pl.String)})
    tables = SourceTables(borrowers, contacts, empty, empty, empty)
    matched, keyed_tables = keyed(contacts.filter(pl.col("id") != "CT-1"), tables)
    by_person = dict(keyed_tables.contacts.select("personId", BORROWER_KEY).collect().iter_rows())
    by_borrower = dict(keyed_tables.borrowers.select("id", BORROWER_KEY).collect().iter_rows())
    assert len(set(by_person.values())) == 3
    assert by_borrower == {"BR-1": by_person["BR-1"], "BR-2": by_person["BR-2"]}
    assert dict(matched.select("personId", BORROWER_KEY).collect().iter_rows()) == {
        "BR-9": by_person["BR-9"],
        "BR-2": by_person["BR-2"],
    }


def test_sorted_runs_take_their_key_whether_or_not_every_id_has_rows() -> None:
    """Sorted personIds in runs: each run gets its id's key when the runs are the ids themselves
    (every borrower has rows) and when some id has none."""
    ids = pl.DataFrame({"personId": ["BR-1", "BR-2", "BR-3"], "k": [7, 8, 9]})
    every = pl.Series("personId", ["BR-1", "BR-1", "BR-2", "BR-3", "BR-3", "BR-3"])
    assert lookup(every, ids, "k").to_list() == [7, 7, 8, 9, 9, 9]
    some = pl.Series("personId", ["BR-1", "BR-1", "BR-15", "BR-3", "BR-3"])
    assert lookup(some, ids, "k").to_list() == [7, 7, None, 9, 9]
