"""What the demo prints about a run: reasons largest first."""

from __future__ import annotations

from flows.demo import describe, largest_first


def test_reasons_are_listed_largest_first_ties_by_code() -> None:
    counts = {
        "CONTACT_INVALID": 7,
        "AUTODIAL_CONSENT_MISSING": 2,
        "DO_NOT_INTERACT": 7,
        "FREQUENCY_LIMIT": 40,
    }
    assert [code for code, _ in largest_first(counts)] == [
        "FREQUENCY_LIMIT",
        "CONTACT_INVALID",
        "DO_NOT_INTERACT",
        "AUTODIAL_CONSENT_MISSING",
    ]
    result = {
        "exporterId": "CE-X",
        "asOfDate": "2026-11-03",
        "asOfInstant": "2026-11-03T17:00:00Z",
        "counts": {
            "population": 1,
            "matched": 56,
            "screenedOut": 50,
            "exported": 6,
            "rejected": 0,
            "byReason": counts,
        },
        "file": "f.csv",
        "delivery": "skipped",
    }
    [line] = [x for x in describe(result) if "blocked by reason" in x]
    assert line.strip() == (
        "blocked by reason: FREQUENCY_LIMIT 40, CONTACT_INVALID 7, DO_NOT_INTERACT 7, AUTODIAL_CONSENT_MISSING 2"
    )
