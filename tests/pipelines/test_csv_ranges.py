"""CSV sources read by range: each file's fields are counted once per run (during the split, kept
beside the cuts), each partition reads only its own rows, and every output is the same for every N."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.io import local_sources, sources
from pipelines.model.config import Home
from pipelines.model.errors import SourceDataError
from pipelines.model.tables import CAST_ERRORS, CONTACTS, TABLES
from pipelines.run import partitions
from tests.pipelines.test_partitions import flawed_tables, outcome
from tests.worlds import make_home, without_sftp

BORROWERS = 60
TABLE_NAMES = [spec.name for spec in TABLES]

# Values without the characters that end a field or a record or quote one, and sometimes with one
# of those the plain count must leave to the csv module.
FIELD = st.text(alphabet=st.characters(blacklist_characters=',"\r\n\x1f', blacklist_categories=("Cs",)))
SPECIAL = st.sampled_from(['"', "\r", "\x1f", '"a,b"', "\r\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.lists(FIELD, min_size=1, max_size=6), min_size=1, max_size=12),
    special=st.none() | st.tuples(st.integers(0, 11), SPECIAL),
)
def test_counting_in_polars_agrees_with_the_csv_module(
    tmp_path: Path, lines: list[list[str]], special: tuple[int, str] | None
) -> None:
    """The plain-file count (commas per line, in Polars) is the csv module's count wherever it
    applies (blank lines and CRLF line ends included), and it declines every file with a quote."""
    if special is not None:
        where, text = special
        lines[where % len(lines)][0] += text
    file = tmp_path / "t.csv"
    file.write_text("".join(",".join(fields) + "\n" for fields in lines), encoding="utf8", newline="")
    fast = local_sources._plain_field_counts(file)
    if special is not None and '"' in special[1]:
        assert fast is None
        return
    if special is not None and fast is None:
        assert special[1] == "\r"  # a lone CR (not before a line end): left to the csv module
        return
    slow = local_sources._quoted_field_counts(file, lambda why: SourceDataError(str(file), [], message=why))
    assert fast is not None
    assert fast.to_list() == slow.to_list()


def ragged_source(folder: Path) -> Path:
    """The flawed world as CSV, plus records without the header's fields: in contacts (a plain file)
    one cut short and one too long, and in interactions one too long beside a quoted field holding a
    comma (so that file is counted by the csv module)."""
    sources.write_source(flawed_tables(BORROWERS), folder, "csv")
    contacts = folder / "contacts.csv"
    lines = contacts.read_text().splitlines()
    person = lines[5].split(",")[1]
    lines.insert(3, f"CT-SHORT,{person},phone,personal,self,primary,+14155550123")
    lines.insert(9, lines[9] + ",extra")
    contacts.write_text("\n".join(lines) + "\n")
    interactions = folder / "interactions.csv"
    lines = interactions.read_text().splitlines()
    fields = lines[4].split(",")
    fields[7] = '"busy, then voicemail"'
    lines[4] = ",".join(fields)
    lines.insert(7, lines[7] + ",,")
    interactions.write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path, BORROWERS, with_sftp=False)
    without_sftp(h, "CE-VOICECOL")
    # a small world where each ragged record blocks a borrower: let the run go on (and block them)
    company = h.root / "configs" / "companies" / "CP-ACME.yaml"
    text = company.read_text()
    assert "maxRejectedShare: 0.01" in text
    company.write_text(text.replace("maxRejectedShare: 0.01", "maxRejectedShare: 1.0"))
    return h


def test_ragged_records_are_rejected_the_same_for_every_n_counted_once(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ragged_source(home.root / "data" / "csv")
    calls: list[str] = []
    real = local_sources.csv_shape

    def counting(file: Path, table: str) -> local_sources.CsvShape:
        calls.append(table)
        return real(file, table)

    monkeypatch.setattr(local_sources, "csv_shape", counting)
    one = outcome(home, "CE-VOICECOL", 1, source=source)
    assert sorted(calls) == sorted(TABLE_NAMES)
    calls.clear()
    three = outcome(home, "CE-VOICECOL", 3, source=source)
    assert len(calls) == 5, calls  # once per file for the run, not once per partition
    assert three == one
    ragged = [row for row in one["rejected"] if "fields_match_header" in row[2]]
    assert ("contacts", "CT-SHORT") in {(table, key) for table, key, _ in ragged}
    assert [table for table, _, _ in ragged].count("contacts") == 2
    assert [table for table, _, _ in ragged].count("interactions") == 1
    assert one["counts"]["exported"] > 0


def test_a_partition_reads_only_its_rows_from_the_runs_copy(home: Home) -> None:
    source = ragged_source(home.root / "data" / "csv")
    staging = home.root / "staging"
    shapes = sources.csv_pass(source, staging)
    assert set(shapes) == set(TABLE_NAMES)
    contacts = shapes["contacts"]
    assert contacts.copy is not None
    assert Path(contacts.copy).parent == staging
    assert contacts.ragged.len() == 2
    whole = sources.read_folder_table(source, CONTACTS)
    cut = sorted(whole.get_column("personId").drop_nulls().unique().to_list())[BORROWERS // 2]
    low = sources.read_folder_table(
        source, CONTACTS, sources.RowFilter(None, cut, nulls=True), shape=contacts
    )
    high = sources.read_folder_table(
        source, CONTACTS, sources.RowFilter(cut, None, nulls=True), shape=contacts
    )
    assert low.height + high.height == whole.height  # no row without a borrower in this file
    assert 0 < low.height < whole.height
    marked = pl.concat([low, high], how="diagonal").filter(pl.col(CAST_ERRORS).is_not_null())
    assert marked.height == 2


def test_the_csv_row_estimate_sizes_a_run_without_reading_it(home: Home) -> None:
    source = ragged_source(home.root / "data" / "csv")
    counted = sum(sources.csv_shape(file, file.stem).records for file in sorted(source.glob("*.csv")))
    assert partitions.source_rows(source) == counted  # small files: the estimate is exact
    big = home.root / "big.csv"
    line = b"CT-000000001,BR-00000001,phone,personal,self,primary,+14155550123\n"
    big.write_bytes(b"id,personId,contactType,label,affiliation,status,value\n" + line * 200_000)
    assert abs(sources.csv_records_estimate(big, sample=1 << 16) - 200_000) <= 200  # within 0.1 %


def test_a_csv_file_cut_short_fails_a_partitioned_run_at_the_split_leaving_nothing(home: Home) -> None:
    source = ragged_source(home.root / "data" / "csv")
    contacts = source / "contacts.csv"
    contacts.write_bytes(contacts.read_bytes()[:-7])  # the last record cut, no final line end
    with pytest.raises(SourceDataError, match="contacts.csv") as caught:
        outcome(home, "CE-VOICECOL", 3, source=source)
    assert caught.value.exit_code == 2
    assert "cut short" in caught.value.message
    assert list(home.exports.rglob("*.csv")) == []
    runs = home.root / "data" / "runs"  # the runs' staging folders: no staged copy left behind
    assert not runs.exists() or list(runs.rglob("*.parquet")) == []
