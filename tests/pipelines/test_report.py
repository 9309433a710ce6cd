"""The run report page: pure rendering (order, bars, escaping) from rows as the views give them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from pipelines.lookup.report import RunReport, bars, largest_first, render

RUN = {
    "runId": "RUN-1",
    "exporterId": "CE-X",
    "companyId": "CP-X",
    "campaignId": None,
    "asOfDate": date(2026, 11, 3),
    "status": "succeeded",
    "population": 1200,
    "matched": 900,
    "screenedOut": 300,
    "screenedOutPct": 33.3,
    "exported": 600,
    "rejectedRows": 2,
    "startedAt": datetime(2026, 11, 3, 11, 0, tzinfo=UTC),
    "finishedAt": datetime(2026, 11, 3, 11, 0, 4, tzinfo=UTC),
    "seconds": 4.0,
    "filePath": "data/exports/CE-X/2026-11-03/x.csv",
    "deliveryStatus": "delivered",
    "deliveredAt": None,
    "error": None,
}


def test_reasons_are_largest_first_ties_by_code() -> None:
    rows = [("B_CODE", 5, ""), ("A_CODE", 5, ""), ("Z_CODE", 9, ""), ("C_CODE", 1, "")]
    assert [code for code, _, _ in largest_first(rows)] == ["Z_CODE", "A_CODE", "B_CODE", "C_CODE"]


def test_bars_scale_to_the_largest_count() -> None:
    svg = bars([("BIG", 200, "meaning"), ("SMALL", 50, "")])
    widths = [int(w) for w in re.findall(r'<rect [^>]*width="(\d+)"', svg)]
    assert widths == [420, 105]
    assert "<title>meaning</title>" in svg
    assert bars([]) == '<p class="none">none</p>'


def test_the_page_shows_counts_reasons_checks_and_delivery_in_order() -> None:
    page = render(
        RunReport(
            run=RUN,
            reasons=largest_first(
                [("CONTACT_INVALID", 12, "invalid"), ("AUTODIAL_CONSENT_MISSING", 250, "tcpa")]
            ),
            rejected=[("contacts", "value_is_e164_phone", 2)],
            deliveries=[{"host": "127.0.0.1", "sftpSettingId": "partner", "rows": 600, "bytes": 9000}],
        )
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page  # plain HTML and SVG, nothing to run
    assert page.index("AUTODIAL_CONSENT_MISSING") < page.index("CONTACT_INVALID")
    assert "contacts · value_is_e164_phone" in page
    for shown in (">1,200<", ">partner<", ">9,000<"):
        assert shown in page
    assert (
        page.index("Blocked contacts by reason") < page.index("Rejected source rows") < page.index("Delivery")
    )


def test_text_from_the_warehouse_is_escaped() -> None:
    run = {**RUN, "status": "failed", "error": "<script>alert(1)</script> & more", "exporterId": "CE-<b>"}
    page = render(RunReport(run=run, reasons=[], rejected=[], deliveries=[]))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "CE-&lt;b&gt;" in page
