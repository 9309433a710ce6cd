"""The synthetic data generator: valid, deterministic, realistic shapes, and the committed sample."""

from __future__ import annotations

import functools
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import zipcodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipelines.io.sources import open_source, write_source, write_source_chunks
from pipelines.model.config import Company, Home
from pipelines.model.errors import InvalidInputError
from pipelines.model.tables import TABLES, SourceTables
from pipelines.model.vocab import STATUS_DETAILS
from pipelines.rules.schemas import validate_sources
from pipelines.synth import book as synth
from pipelines.synth.book import (
    DEFAULT_END,
    HISTORY_DAYS,
    default_companies,
    generate,
    write_sample_companies,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


def collect(tables: SourceTables) -> dict[str, pl.DataFrame]:
    return {spec.name: tables.get(spec.name).collect() for spec in TABLES}


@functools.cache
def world(borrowers: int = 2000, seed: int = 3) -> dict[str, pl.DataFrame]:
    return collect(generate(borrowers, seed, default_companies()))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    borrowers=st.integers(min_value=0, max_value=80),
    seed=st.integers(min_value=0, max_value=2**32),
    company_count=st.integers(min_value=1, max_value=3),
)
def test_generated_data_always_passes_validation(borrowers: int, seed: int, company_count: int) -> None:
    companies = default_companies()[:company_count]
    tables = generate(borrowers, seed, companies)
    result = validate_sources(tables)
    assert result.rejected.height == 0
    frames = collect(tables)
    assert frames["borrowers"].height == borrowers
    for spec in TABLES:
        assert frames[spec.name].schema == pl.Schema(spec.schema), spec.name
    assert set(frames["borrowers"].get_column("companyId")) <= {c.id for c in companies}


def test_generated_data_passes_both_engines() -> None:
    tables = generate(300, 9, default_companies())
    assert validate_sources(tables, engine="pandera").rejected.height == 0


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    first = collect(generate(200, 42, default_companies()))
    again = collect(generate(200, 42, default_companies()))
    other = collect(generate(200, 43, default_companies()))
    for spec in TABLES:
        assert_frame_equal(first[spec.name], again[spec.name])
    assert not first["contacts"].equals(other["contacts"])


def test_progress_reports_each_table() -> None:
    seen: list[str] = []
    generate(20, 1, default_companies(), progress=seen.append)
    assert [m.split(":")[0] for m in seen] == [spec.name for spec in TABLES]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="borrowers"):
        generate(-1, 1, default_companies())
    with pytest.raises(InvalidInputError, match="company"):
        generate(10, 1, [])


def test_borrowers_spread_over_companies_and_mostly_have_a_zone() -> None:
    borrowers = world()["borrowers"]
    shares = borrowers.group_by("companyId").len().get_column("len")
    assert shares.len() == 3
    assert shares.min() > 500  # type: ignore[operator]
    missing_zone = borrowers.get_column("timezone").is_null().mean()
    assert 0.05 < missing_zone < 0.25  # type: ignore[operator]
    assert borrowers.get_column("id").is_unique().all()


def test_one_to_six_contacts_of_every_kind() -> None:
    contacts = world()["contacts"]
    per_person = contacts.group_by("personId").len().get_column("len")
    assert per_person.min() == 1
    assert per_person.max() == 6
    assert world()["borrowers"].height == per_person.len()
    assert set(contacts.get_column("contactType")) == {"phone", "email", "address"}
    assert set(contacts.get_column("status")) == {"primary", "secondary", "additional", "archived"}
    affiliation = contacts.get_column("affiliation")
    assert (affiliation == "self").mean() > 0.7  # type: ignore[operator]
    third = contacts.filter(pl.col("affiliation") != "self")
    assert third.get_column("authorizedThirdParty").any()
    assert not third.get_column("authorizedThirdParty").all()
    assert third.get_column("powerOfAttorney").any()
    assert not contacts.get_column("valid").all()


def test_addresses_use_real_zip_codes_with_matching_states() -> None:
    addresses = world()["contacts"].filter(pl.col("contactType") == "address")
    with_zip = addresses.filter(pl.col("postalCode").is_not_null())
    assert addresses.get_column("postalCode").is_null().any()  # sometimes no ZIP
    assert addresses.get_column("state").is_not_null().all()
    for zip_code, state, city in with_zip.select("postalCode", "state", "city").head(200).iter_rows():
        found = zipcodes.matching(zip_code)
        assert found, zip_code
        assert found[0]["state"] == state
        assert found[0]["city"] == city
    assert with_zip.get_column("postalCode").str.starts_with("0").any()  # leading zeros are real


def test_phone_area_codes_mostly_match_the_home_address() -> None:
    frames = world()
    contacts = frames["contacts"]
    homes = (
        contacts.filter(
            (pl.col("contactType") == "address")
            & (pl.col("affiliation") == "self")
            & pl.col("postalCode").is_not_null()
        )
        .group_by("personId", maintain_order=True)
        .agg(pl.col("postalCode").first().alias("homeZip"))
    )
    phones = contacts.filter((pl.col("contactType") == "phone") & (pl.col("affiliation") == "self")).join(
        homes, on="personId"
    )
    assert phones.get_column("value").str.contains(r"^\+1[2-9]\d{9}$").all()
    matches = [
        value[2:5] in zipcodes.matching(zip_code)[0]["area_codes"]
        for value, zip_code in phones.select("value", "homeZip").head(400).iter_rows()
    ]
    share = sum(matches) / len(matches)
    assert 0.5 < share < 0.98  # most match; movers and mailing addresses elsewhere do not


def test_interaction_history_is_realistic() -> None:
    interactions = world()["interactions"]
    started = interactions.get_column("startedAt").dt.date()
    first_day = DEFAULT_END - timedelta(days=HISTORY_DAYS - 1)
    assert started.min() >= first_day  # type: ignore[operator]
    assert started.max() <= DEFAULT_END + timedelta(days=1)  # type: ignore[operator]
    voice = interactions.filter(pl.col("channel") == "voice")
    details = voice.get_column("statusDetails")
    assert set(details.drop_nulls()) <= set(STATUS_DETAILS)
    assert set(details.drop_nulls()) == set(STATUS_DETAILS)
    # some voice rows have no details but a status that still counts as an attempt
    assert voice.filter(pl.col("statusDetails").is_null() & (pl.col("status") == "attempted")).height > 0
    assert voice.filter(pl.col("direction") == "inbound").height > 0
    assert {"text", "email"} <= set(interactions.get_column("channel"))
    # some borrowers had 7+ outbound call attempts within 7 days
    attempts = voice.filter(pl.col("direction") == "outbound").with_columns(
        pl.col("startedAt").dt.date().alias("day")
    )
    heavy = (
        attempts.sort("personId", "day")
        .rolling("day", period="7d", group_by="personId")
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") >= 7)
    )
    assert heavy.get_column("personId").n_unique() > 20
    assert interactions.get_column("id").is_unique().all()


def test_interactions_point_at_the_borrowers_own_contacts() -> None:
    frames = world()
    owners = frames["contacts"].select(pl.col("id").alias("contactId"), pl.col("personId").alias("owner"))
    linked = (
        frames["interactions"]
        .filter(pl.col("contactId").is_not_null())
        .join(owners, on="contactId", how="left")
    )
    assert (linked.get_column("owner") == linked.get_column("personId")).all()


def test_dni_and_consent_shapes() -> None:
    frames = world()
    dni = frames["do_not_interact"]
    assert dni.height > 0
    assert dni.get_column("deletedAt").is_not_null().any()
    assert dni.get_column("endDate").is_not_null().any()
    assert dni.get_column("endDate").is_null().any()
    assert dni.get_column("daysOfWeek").is_not_null().any()
    assert dni.get_column("timesOfDay").is_not_null().any()
    assert dni.get_column("contactLabels").is_not_null().any()
    assert ["all"] in dni.get_column("channels").to_list()
    assert ["all"] in dni.get_column("themes").to_list()
    valid_deletions = dni.filter(pl.col("deletedAt").is_not_null())
    assert (valid_deletions.get_column("deletedAt") > valid_deletions.get_column("createdAt")).all()
    consents = frames["consents"]
    assert set(consents.get_column("name")) >= {"electronicComms", "autodialedColl"}
    assert set(consents.get_column("status")) == {"consented", "revoked"}
    # revocations after an earlier consent: the same person and name twice
    assert consents.group_by("personId", "name").len().filter(pl.col("len") > 1).height > 0


def test_end_date_moves_the_history() -> None:
    end = date(2026, 6, 30)
    started = generate(50, 1, default_companies(), end=end).interactions.collect().get_column("startedAt")
    assert started.dt.date().max() <= end + timedelta(days=1)  # type: ignore[operator]
    assert started.dt.date().min() >= end - timedelta(days=HISTORY_DAYS - 1)  # type: ignore[operator]


def test_write_sample_companies(tmp_path: Path) -> None:
    home = Home(tmp_path)
    written = write_sample_companies(home)
    assert [c.id for c in written] == ["CP-ACME", "CP-PACIFIC", "CP-ISLAND"]
    assert home.company_ids() == ["CP-ACME", "CP-ISLAND", "CP-PACIFIC"]
    assert home.company("CP-ISLAND").timezone == "Pacific/Honolulu"
    assert home.company("CP-ACME") == written[0]
    # a home that has companies keeps them
    (home.configs / "companies" / "CP-PACIFIC.yaml").unlink()
    again = write_sample_companies(home)
    assert [c.id for c in again] == ["CP-ACME", "CP-ISLAND"]
    assert not (home.configs / "companies" / "CP-PACIFIC.yaml").exists()


def repo_companies() -> list[Company]:
    home = Home(REPO)
    return [home.company(c) for c in home.company_ids()] or default_companies()


def test_committed_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    """data/sample is `contact-exporter --home . generate --out data/sample --borrowers 300 --seed 7 --format csv`."""
    write_source(generate(300, 7, repo_companies()), tmp_path, "csv")
    for spec in TABLES:
        name = f"{spec.name}.csv"
        assert (SAMPLE / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"data/sample/{name} is stale: regenerate it with the command in this test's docstring"
        )


def test_data_do_not_depend_on_the_chunking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 40 borrowers (each its own stream, ids numbered on), written 40, 120 or all at once."""
    monkeypatch.setattr(synth, "BLOCK_BORROWERS", 40)
    companies = repo_companies()
    whole = generate(250, 5, companies)
    for name in ("borrowers", "contacts", "interactions", "do_not_interact"):
        ids = whole.get(name).collect().get_column("id")
        assert ids.n_unique() == ids.len(), f"{name} ids repeat across blocks"
    assert whole.borrowers.collect().height == 250
    validated = validate_sources(whole)
    assert validated.rejected.height == 0  # references hold across blocks
    for chunk, fmt in ((40, "duckdb"), (120, "parquet"), (1000, "csv")):
        target = tmp_path / f"out-{chunk}.{fmt}" if fmt == "duckdb" else tmp_path / f"out-{chunk}"
        counts = write_source_chunks(synth.generate_blocks(250, 5, companies, chunk=chunk), target, fmt)  # type: ignore[arg-type]
        back = open_source(target)
        for spec in TABLES:
            expected = whole.get(spec.name).collect()
            assert counts[spec.name] == expected.height
            assert_frame_equal(back.get(spec.name).collect(), expected, check_dtypes=False)


def test_small_data_sets_are_one_block_from_the_seed_itself() -> None:
    companies = repo_companies()
    assert synth.BLOCK_BORROWERS >= 300
    chunks = list(synth.generate_blocks(300, 7, companies, chunk=1))
    assert len(chunks) == 1
    for spec in TABLES:
        assert_frame_equal(
            chunks[0].get(spec.name).collect(), generate(300, 7, companies).get(spec.name).collect()
        )
