"""The run report page: pure rendering (order, bars, escaping) from rows as the views give them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from pipelines.lookup.days_report import Day, DaysReport, render_days, window
from pipelines.lookup.report import RunReport, bars, largest_first, render, report_path, report_url

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


# ---------------------------------------------------------------- across days


def test_a_runs_report_path_and_url_are_beside_its_file() -> None:
    assert report_path("data/exports/CE-X/2026-11-03/x.csv") == Path(
        "data/exports/CE-X/2026-11-03/report.html"
    )
    assert report_path(None) is None
    url = report_url("/srv/exports/CE-X/2026-11-03/x.csv")
    assert url == "file:///srv/exports/CE-X/2026-11-03/report.html"
    assert report_url(None) is None
    assert str(report_url("rel/x.csv")).startswith("file:///")  # absolute, whatever the working folder


def test_the_window_is_the_last_days_oldest_first() -> None:
    days = window(date(2026, 11, 3), 30)
    assert len(days) == 30
    assert (days[0], days[-1]) == (date(2026, 10, 5), date(2026, 11, 3))


def days_page(**overrides: object) -> str:
    dates = window(date(2026, 11, 3), 5)
    days = [
        Day(dates[0], "RUN-A", "succeeded", 300, 100, "2026-10-30/report.html"),
        Day(dates[1]),
        Day(dates[2], "RUN-C", "failed"),
        Day(dates[3], "RUN-D", "succeeded", 150, 50, "2026-11-02/report.html"),
        Day(dates[4], "RUN-E", "succeeded", 0, 400, "2026-11-03/report.html"),
    ]
    reasons = [("AUTODIAL_CONSENT_MISSING", 40, "tcpa"), ("CONTACT_INVALID", 500, "invalid"), ("DNI", 40, "")]
    report = DaysReport("CE-X", "CP-X", days, largest_first(reasons))
    return render_days(DaysReport(**{**report.__dict__, **overrides}))  # type: ignore[arg-type]


def test_the_days_page_has_a_column_per_day_scaled_and_linked() -> None:
    page = days_page()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    exported = [int(h) for h in re.findall(r'<rect class="exported"[^>]*height="(\d+)"', page)]
    blocked = [int(h) for h in re.findall(r'<rect class="blocked"[^>]*height="(\d+)"', page)]
    assert exported == [150, 0, 0, 75, 0]  # scaled to the busiest day (400 = 200 px)
    assert blocked == [50, 0, 0, 25, 200]
    links = re.findall(r'<a href="([^"]+)">', page)
    assert sorted(set(links)) == [
        "2026-10-30/report.html",
        "2026-11-02/report.html",
        "2026-11-03/report.html",
    ]
    assert "RUN-C" in page  # a failed day, without a file to link
    assert "no run" in page  # a day without a run
    assert ">450<" in page  # exported over the days
    assert ">550<" in page  # blocked over the days


def test_the_days_page_lists_reasons_by_count_not_by_name() -> None:
    page = days_page()
    section = page[page.index("Blocked contacts by reason") :]
    order = sorted(["AUTODIAL_CONSENT_MISSING", "CONTACT_INVALID", "DNI"], key=section.index)
    assert order == ["CONTACT_INVALID", "AUTODIAL_CONSENT_MISSING", "DNI"]


def test_the_days_page_escapes_what_it_shows() -> None:
    page = days_page(exporterId="CE-<b>", companyId="CP-&")
    assert "CE-&lt;b&gt;" in page
    assert "CP-&amp;" in page
    assert "CE-<b>" not in page
