"""Export files: deterministic bytes, CSV conventions, manifest, atomic replacement."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines.io import files
from pipelines.model.file_names import FileSettings, render_file_name

AS_OF = date(2026, 11, 3)
INSTANT = datetime(2026, 11, 3, 17, 0, tzinfo=UTC)


def sample() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "contactId": ["C1", "C2", "C3"],
            "zip": ["02108", None, "94105"],
            "verified": [True, False, None],
            "note": ['has "quotes", and commas', "line\nbreak", "plain"],
        }
    )


def write(tmp_path: Path, settings: FileSettings, run_id: str = "RUN-1") -> files.WrittenFile:
    target = tmp_path / "out" / files.file_name(settings, "CE-ABCDEFGH", AS_OF, "CP-X")
    return files.write_export(
        sample(),
        target,
        settings,
        run_id=run_id,
        exporter_id="CE-ABCDEFGH",
        as_of=AS_OF,
        as_of_instant=INSTANT,
    )


def test_csv_conventions(tmp_path: Path) -> None:
    written = write(tmp_path, FileSettings())
    assert written.path.name == "CE-ABCDEFGH_20261103.csv"
    raw = written.path.read_bytes()
    assert b"\r\n" not in raw
    lines = raw.decode("utf-8").split("\n")
    assert lines[0] == "contactId,zip,verified,note"
    assert lines[1] == 'C1,02108,true,"has ""quotes"", and commas"'
    assert lines[2].startswith("C2,,false,")  # null as an empty field, zip kept as text
    assert written.rows == 3


def test_delimiter_and_no_header(tmp_path: Path) -> None:
    written = write(tmp_path, FileSettings(delimiter="|", header=False))
    first = written.path.read_text().split("\n")[0]
    assert first.startswith("C1|02108|true|")


def test_same_frame_gives_same_bytes_and_manifest_fields(tmp_path: Path) -> None:
    a = write(tmp_path / "a", FileSettings(), run_id="RUN-A")
    b = write(tmp_path / "b", FileSettings(), run_id="RUN-B")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256 == b.sha256
    manifest = json.loads(a.manifest_path.read_text())
    assert manifest == {
        "runId": "RUN-A",
        "exporterId": "CE-ABCDEFGH",
        "asOfDate": "2026-11-03",
        "asOfInstant": "2026-11-03T17:00:00Z",
        "rows": 3,
        "columns": ["contactId", "zip", "verified", "note"],
        "sha256": files.sha256_of(a.path)[0],
        "bytes": a.path.stat().st_size,
    }


def test_parquet_round_trip(tmp_path: Path) -> None:
    written = write(tmp_path, FileSettings(format="parquet"))
    assert written.path.suffix == ".parquet"
    assert pl.read_parquet(written.path).equals(sample())
    again = write(tmp_path / "again", FileSettings(format="parquet"))
    assert again.sha256 == written.sha256


def test_crash_during_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path, FileSettings())
    before = first.path.read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, FileSettings(), run_id="RUN-2")
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in first.path.parent.iterdir()) == [first.path.name, first.manifest_path.name]


def test_crash_before_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        write(tmp_path, FileSettings())
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "template", ["../x.csv", "a/b.csv", "/etc/passwd", "{asOfDate:%Y/%m}.csv", ".hidden", "{nope}.csv"]
)
def test_templates_that_escape_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match=r"inside the export folder|unknown placeholder"):
        render_file_name(template, "CE-ABCDEFGH", AS_OF, "CP-X")


@pytest.mark.parametrize(
    ("template", "daily", "campaign"),
    [
        (None, "CE-X_20261201.csv", "CE-X_spring_20261201.csv"),
        ("{exporterId}_{asOfDate:%Y%m%d}.csv", "CE-X_20261201.csv", "CE-X_20261201_spring.csv"),
        ("calls-{campaignId}-{asOfDate:%Y%m%d}.csv", "calls--20261201.csv", "calls-spring-20261201.csv"),
        ("{exporterId}_{asOfDate:%Y%m%d}", "CE-X_20261201", "CE-X_20261201_spring"),
    ],
)
def test_a_campaign_file_never_has_the_daily_file_name(
    template: str | None, daily: str, campaign: str
) -> None:
    settings = FileSettings(fileNameTemplate=template)
    day = date(2026, 12, 1)
    assert files.file_name(settings, "CE-X", day, "CP-X") == daily
    assert files.file_name(settings, "CE-X", day, "CP-X", "spring") == campaign
    root = Path("/exports")
    assert files.export_dir(root, "CE-X", day) == root / "CE-X" / "2026-12-01"
    assert (
        files.export_dir(root, "CE-X", day, "spring") == root / "CE-X" / "2026-12-01" / "campaigns" / "spring"
    )
