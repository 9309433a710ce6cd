"""Projection: borrower fields gathered by row when the borrower keys are row numbers, else joined."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.model.config import ColumnSetting
from pipelines.rules.borrower_keys import BORROWER_KEY, is_row_number, keyed_contacts, numbered
from pipelines.rules.columns import contact_columns, project

SETTINGS = [
    ColumnSetting(field="id"),
    ColumnSetting(field="borrower.firstName", outputName="first"),
    ColumnSetting(field="value"),
    ColumnSetting(field="borrower.lastName", outputName="last"),
]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], True),
        ([0], True),
        ([0, 1, 2, 3], True),
        ([1], False),
        ([0, 2, 3], False),
        ([0, 1, 1, 3], False),
        ([0, 2, 1, 3], False),
        ([0, None, 2], False),
    ],
)
def test_row_numbers_are_recognised(keys: list[int | None], expected: bool) -> None:
    assert is_row_number(pl.Series(keys, dtype=pl.UInt32)) is expected


def test_gathered_fields_equal_joined_ones() -> None:
    borrowers = numbered(
        pl.DataFrame(
            {"id": ["B3", "B1", "B2"], "firstName": ["Cy", "Al", None], "lastName": ["Cole", "Ames", "Bo"]}
        )
    )
    contacts = keyed_contacts(
        pl.DataFrame(
            {
                "id": ["C1", "C2", "C3", "C4", "C5"],
                "personId": ["B1", "B3", "B9", "B2", "B1"],  # B9: no such borrower (a null key)
                "value": ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"],
            }
        ),
        borrowers,
    )
    want = pl.DataFrame(
        {
            "id": ["C1", "C2", "C3", "C4", "C5"],
            "first": ["Al", "Cy", None, None, "Al"],
            "value": ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"],
            "last": ["Ames", "Cole", None, "Bo", "Ames"],
        }
    )
    gathered = project(contacts.lazy(), borrowers.lazy(), SETTINGS).collect()
    # Keys that are not row numbers (here shifted by 7) take the join.
    shifted = BORROWER_KEY, pl.col(BORROWER_KEY) + 7
    joined = project(
        contacts.with_columns(shifted[1].alias(shifted[0])).lazy(),
        borrowers.with_columns(shifted[1].alias(shifted[0])).lazy(),
        SETTINGS,
    ).collect()
    by_id = project(
        contacts.drop(BORROWER_KEY).lazy(), borrowers.drop(BORROWER_KEY).lazy(), SETTINGS
    ).collect()
    assert gathered.equals(want)
    assert joined.equals(want)
    assert by_id.equals(want)


def test_a_key_past_the_last_borrower_gets_no_fields() -> None:
    borrowers = numbered(pl.DataFrame({"id": ["B1"], "firstName": ["Al"], "lastName": ["Ames"]}))
    contacts = pl.DataFrame(
        {"id": ["C1", "C2"], "personId": ["B1", "B2"], "value": ["a", "b"], BORROWER_KEY: [0, 5]},
        schema_overrides={BORROWER_KEY: pl.UInt32},
    )
    out = project(contacts.lazy(), borrowers.lazy(), SETTINGS).collect()
    assert out.get_column("first").to_list() == ["Al", None]


def test_the_projection_reads_only_the_contact_columns_it_names() -> None:
    """`contact_columns` is what the run keeps of the exported contacts: projecting from those alone
    gives what projecting from every column gives."""
    borrowers = numbered(
        pl.DataFrame({"id": ["B1", "B2"], "firstName": ["Al", "Bo"], "lastName": ["A", "B"]})
    )
    contacts = keyed_contacts(
        pl.DataFrame(
            {
                "id": ["C1", "C2"],
                "personId": ["B2", "B1"],
                "label": ["home", "work"],
                "value": ["a@x.io", "b@x.io"],
                "state": ["MA", None],
            }
        ),
        borrowers,
    )
    kept = contact_columns(SETTINGS, contacts.columns)
    assert kept == ["id", "personId", "value", BORROWER_KEY]  # in the frame's order; no label, state
    for frame in (contacts, contacts.drop(BORROWER_KEY)):
        names = contact_columns(SETTINGS, frame.columns)
        narrow = project(frame.select(names).lazy(), borrowers.lazy(), SETTINGS).collect()
        assert narrow.equals(project(frame.lazy(), borrowers.lazy(), SETTINGS).collect())
