"""Matching criteria: Polars, DuckDB and a plain-Python reading of the contract agree."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.model.config import ContactMatchingCriteria
from pipelines.model.vocab import AFFILIATIONS, CONTACT_STATUSES, CONTACT_TYPES, LABELS
from pipelines.rules.matching import criteria_expr, criteria_sql, match_contacts, matching_ids_duckdb

VOCAB = {
    "label": LABELS,
    "contactType": CONTACT_TYPES,
    "affiliation": AFFILIATIONS,
    "status": CONTACT_STATUSES,
}

contact_rows = st.lists(
    st.fixed_dictionaries({key: st.sampled_from(values) for key, values in VOCAB.items()}),
    max_size=40,
)
criteria_dicts = st.dictionaries(
    st.sampled_from(sorted(VOCAB)),
    st.none(),
    min_size=1,
).flatmap(
    lambda keys: st.fixed_dictionaries(
        {k: st.lists(st.sampled_from(VOCAB[k]), min_size=1, max_size=4) for k in keys}
    )
)


def reference_match(rows: list[dict[str, str]], criteria: dict[str, list[str]]) -> list[str]:
    """The contract, read literally: keys AND together, values inside a key OR together."""
    return sorted(r["id"] for r in rows if all(r[k] in values for k, values in criteria.items()))


def frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"id": pl.String, "personId": pl.String, **dict.fromkeys(VOCAB, pl.String)}
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows=contact_rows, raw=criteria_dicts)
def test_polars_duckdb_and_reference_agree(rows: list[dict[str, str]], raw: dict[str, list[str]]) -> None:
    rows = [{"id": f"C{i:03d}", "personId": f"B{i % 5}", **r} for i, r in enumerate(rows)]
    criteria = ContactMatchingCriteria.model_validate(raw)
    df = frame(rows)

    by_polars = sorted(df.filter(criteria_expr(criteria))["id"].to_list())
    con = duckdb.connect()
    con.register("contacts", df.to_arrow())
    by_duckdb = matching_ids_duckdb(con, "contacts", criteria)
    con.close()

    assert by_polars == by_duckdb == reference_match(rows, raw)


def test_sql_values_are_bound_not_formatted() -> None:
    hostile = "x') OR 1=1 --"
    criteria = ContactMatchingCriteria.model_construct(
        label=[hostile], contactType=None, affiliation=None, status=None
    )
    where, params = criteria_sql(criteria)
    assert hostile not in where
    assert params == [hostile]

    df = frame(
        [
            {
                "id": "C1",
                "personId": "B1",
                "label": hostile,
                "contactType": "phone",
                "affiliation": "self",
                "status": "primary",
            },
            {
                "id": "C2",
                "personId": "B1",
                "label": "home",
                "contactType": "phone",
                "affiliation": "self",
                "status": "primary",
            },
        ]
    )
    con = duckdb.connect()
    con.register("contacts", df.to_arrow())
    # Matched literally: only the row whose label is that exact string, not every row.
    assert matching_ids_duckdb(con, "contacts", criteria) == ["C1"]
    con.close()


def test_table_name_must_be_an_identifier() -> None:
    con = duckdb.connect()
    criteria = ContactMatchingCriteria(label=["home"])
    with pytest.raises(ValueError, match="not a table name"):
        matching_ids_duckdb(con, "contacts; DROP TABLE x", criteria)
    con.close()


def test_match_contacts_restricts_to_population() -> None:
    df = frame(
        [
            {
                "id": "C1",
                "personId": "B1",
                "label": "home",
                "contactType": "phone",
                "affiliation": "self",
                "status": "primary",
            },
            {
                "id": "C2",
                "personId": "B2",
                "label": "home",
                "contactType": "phone",
                "affiliation": "self",
                "status": "primary",
            },
            {
                "id": "C3",
                "personId": "B1",
                "label": "work",
                "contactType": "phone",
                "affiliation": "self",
                "status": "primary",
            },
        ]
    )
    population = pl.LazyFrame({"id": ["B1"]})
    criteria = ContactMatchingCriteria(label=["home"], contactType=["phone"])
    out = match_contacts(df.lazy(), population, criteria).collect()
    assert out["id"].to_list() == ["C1"]


def test_null_attribute_never_matches() -> None:
    df = pl.DataFrame(
        {
            "id": ["C1"],
            "personId": ["B1"],
            "label": [None],
            "contactType": ["phone"],
            "affiliation": ["self"],
            "status": ["primary"],
        },
        schema={"id": pl.String, "personId": pl.String, **dict.fromkeys(VOCAB, pl.String)},
    )
    assert df.filter(criteria_expr(ContactMatchingCriteria(label=["home"]))).height == 0
