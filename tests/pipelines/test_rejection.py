"""The share of matched borrowers blocked by rejected rows, and the error when it is too high."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.model.errors import SourceDataError
from pipelines.rules import rejection
from pipelines.rules.schemas import MAX_ERROR_ITEMS, OWNED_SCHEMA


def owned(*persons: str | None, table: str = "interactions") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tableName": [table] * len(persons),
            "rowKey": [f"IN-{i:03d}" for i in range(len(persons))],
            "checks": [["channel_in_vocabulary"]] * len(persons),
            "personId": list(persons),
        },
        schema=OWNED_SCHEMA,
    )


def test_share_counts_matched_borrowers_with_a_rejected_row() -> None:
    persons = pl.Series(["B1", "B1", "B2", "B3", "B4"])
    assert rejection.blocked_share(persons, owned("B1", "B1", "B9")) == (1, 4)
    assert rejection.blocked_share(persons, owned()) == (0, 4)
    assert rejection.blocked_share(persons, None) == (0, 4)
    # a row that names no borrower could be anyone's
    assert rejection.blocked_share(persons, owned(None)) == (4, 4)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["B1", "B2", "B3", "B10", "B11"]), max_size=12),
    st.lists(st.sampled_from(["B1", "B3", "B9", None]), max_size=3),
)
def test_counting_by_borrower_key_gives_the_same_share(
    persons: list[str], rejected: list[str | None]
) -> None:
    ids = pl.Series(persons, dtype=pl.String)
    keys = ids.replace_strict({p: k for k, p in enumerate(sorted(set(persons)))}, return_dtype=pl.UInt32)
    rows = owned(*rejected)
    assert rejection.blocked_share(ids, rows, keys) == rejection.blocked_share(ids, rows)
    # keys that cannot stand for the ids (a null, another length) are not used
    assert rejection.blocked_share(ids, rows, keys.head(1)) == rejection.blocked_share(ids, rows)


def test_run_fails_only_above_the_share() -> None:
    persons = pl.Series([f"B{i}" for i in range(100)])
    rejection.check_share(persons, owned("B1"), 0.01, "src")  # 1 % is not more than 1 %
    with pytest.raises(SourceDataError) as caught:
        rejection.check_share(persons, owned("B1", "B2"), 0.01, "src")
    error = caught.value
    assert error.exit_code == 2
    assert "2 of 100 matched borrowers" in error.message
    assert "maxRejectedShare" in error.message
    assert error.rejected.rows() == [
        ("interactions", "IN-000", ["channel_in_vocabulary"]),
        ("interactions", "IN-001", ["channel_in_vocabulary"]),
    ]
    rejection.check_share(persons, owned(*[f"B{i}" for i in range(100)]), 1.0, "src")


def test_error_list_is_capped_with_a_count() -> None:
    many = owned(*[f"B{i}" for i in range(MAX_ERROR_ITEMS + 10)])
    error = rejection.broken_feed_error("src", many, 60, 60, 0.01)
    assert len(error.errors) == MAX_ERROR_ITEMS + 1
    assert error.errors[-1].message == "10 more failed checks not listed"
