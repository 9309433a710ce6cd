"""Synthetic source data (CONTRACT.md §4 `generate`, §5): realistic, deterministic per seed, vectorised.

Shapes: borrowers spread over the given companies (a share of each company's borrowers live in its
own time zone), mostly with a time zone; 1–6 contacts each (mostly `self`, some third parties with or
without authorisation, some archived or invalid); US addresses with real ZIP codes, cities and states
from the `zipcodes` package (sometimes without ZIP); E.164 phone numbers whose area code belongs to
the home ZIP most of the time (movers keep an old one); interactions over the `HISTORY_DAYS` days up
to `end` (voice outcomes from the vocabulary, some borrowers with bursts of 7+ call attempts in a
week, conversations, texts, emails, inbound calls); do-not-interact records with channel, theme,
weekday, time-of-day and label scopes, end dates and deletions; consents with revocations.

Randomness comes from one `random.Random(seed)` stream (stable across Python versions), drawn in
bulk and turned into Polars columns, so there is no Python loop per row (draws.py); borrowers and
contacts are drawn in people.py, interactions, do-not-interact records and consents in history.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Final

import polars as pl
import yaml

from pipelines.io.files import atomic_write
from pipelines.model.config import Company, Home
from pipelines.model.errors import ErrorItem, InvalidInputError
from pipelines.model.progress import Progress
from pipelines.model.tables import (
    BORROWERS,
    CONSENTS,
    CONTACTS,
    DO_NOT_INTERACT,
    INTERACTIONS,
    TABLES,
    SourceTables,
    TableSpec,
)
from pipelines.synth.draws import Draws
from pipelines.synth.history import HISTORY_DAYS, draw_consents, draw_do_not_interact, draw_interactions
from pipelines.synth.people import draw_borrowers, draw_contacts

log = logging.getLogger(__name__)

DEFAULT_END: Final = date(2026, 12, 31)


def default_companies() -> list[Company]:
    """A small sample set of companies in three time zones, with the default policy."""
    return [
        Company(id="CP-ACME", name="Acme Lending", timezone="America/New_York"),
        Company(id="CP-PACIFIC", name="Pacific Servicing", timezone="America/Los_Angeles"),
        Company(id="CP-ISLAND", name="Island Credit Union", timezone="Pacific/Honolulu"),
    ]


def write_sample_companies(home: Home) -> list[Company]:
    """The home's companies; when it has none, write `default_companies()` there first."""
    existing = home.company_ids()
    if existing:
        return [home.company(company_id) for company_id in existing]
    folder = home.configs / "companies"
    folder.mkdir(parents=True, exist_ok=True)
    companies = default_companies()
    for company in companies:
        body = {"id": company.id, "name": company.name, "timezone": company.timezone}
        text = yaml.safe_dump(body, sort_keys=False)

        def write(tmp: Path, text: str = text) -> None:
            tmp.write_text(text, encoding="utf-8")

        atomic_write(folder / f"{company.id}.yaml", write)
    log.info("wrote %d sample companies under %s", len(companies), folder)
    return companies


# ---------------------------------------------------------------- generation


def generate(
    borrowers: int,
    seed: int,
    companies: list[Company],
    *,
    end: date = DEFAULT_END,
    progress: Progress | None = None,
) -> SourceTables:
    """Generate the five source tables; the same arguments give identical frames."""
    # One chunk of all the borrowers: `generate_blocks` checks the arguments and yields it.
    blocks = list(
        generate_blocks(borrowers, seed, companies, end=end, progress=progress, chunk=max(borrowers, 1))
    )
    if len(blocks) == 1:
        return blocks[0]
    return SourceTables(**{spec.name: pl.concat([b.get(spec.name) for b in blocks]) for spec in TABLES})


# Borrowers are generated in blocks of this many, block b from its own random stream (block 0 from
# `seed` itself, so small data sets are what a single stream gives), ids numbered on from the
# blocks before. The data depend on the seed and the number of borrowers only; `chunk` only sets
# how many borrowers are held (and handed to the writer) at once.
BLOCK_BORROWERS: Final = 50_000
DEFAULT_CHUNK_BORROWERS: Final = 200_000


def generate_blocks(
    borrowers: int,
    seed: int,
    companies: list[Company],
    *,
    end: date = DEFAULT_END,
    progress: Progress | None = None,
    chunk: int = DEFAULT_CHUNK_BORROWERS,
) -> Iterator[SourceTables]:
    """The same tables as `generate`, as consecutive chunks of about `chunk` borrowers (whole blocks):
    memory is bounded by a chunk whatever the total."""
    if borrowers < 0:
        raise InvalidInputError("arguments", [ErrorItem("/borrowers", "must be 0 or more")])
    if not companies:
        raise InvalidInputError(
            "arguments", [ErrorItem("/companies", "give at least one company to spread borrowers over")]
        )
    say = progress or (lambda _message: None)
    if borrowers == 0:
        for spec in TABLES:
            say(f"{spec.name}: 0 rows")
        yield SourceTables(**{spec.name: pl.LazyFrame(schema=spec.schema) for spec in TABLES})
        return
    companies = sorted(companies, key=lambda c: c.id)  # the same data whatever order they came in
    per_chunk = max(1, -(-max(chunk, 1) // BLOCK_BORROWERS))  # whole blocks per chunk
    firsts = dict.fromkeys(("borrowers", "contacts", "interactions", "do_not_interact"), 0)
    totals = dict.fromkeys((spec.name for spec in TABLES), 0)
    starts = list(range(0, borrowers, BLOCK_BORROWERS))
    for at in range(0, len(starts), per_chunk):
        frames: dict[str, list[pl.DataFrame]] = {spec.name: [] for spec in TABLES}
        for start in starts[at : at + per_chunk]:
            block = start // BLOCK_BORROWERS
            n = min(BLOCK_BORROWERS, borrowers - start)
            for name, frame in _block(block, n, seed, companies, end, firsts).items():
                frames[name].append(frame)
                totals[name] += frame.height
        yield SourceTables(**{name: pl.concat(parts).lazy() for name, parts in frames.items()})
    for spec in TABLES:
        say(f"{spec.name}: {totals[spec.name]:,} rows")


def _block(
    block: int, n: int, seed: int, companies: list[Company], end: date, firsts: dict[str, int]
) -> dict[str, pl.DataFrame]:
    """Borrowers block `block` (n of them) and their rows; `firsts` (ids used so far) moves on."""
    rng = Draws(seed if block == 0 else f"{seed}/block/{block}")
    people = draw_borrowers(rng, n, companies, firsts["borrowers"])
    contacts = draw_contacts(rng, people, firsts["contacts"])
    interactions = draw_interactions(rng, people, contacts, end, firsts["interactions"], firsts["borrowers"])
    dni = draw_do_not_interact(rng, people, end, firsts["do_not_interact"])
    consents = draw_consents(rng, people, end)
    firsts["borrowers"] += people.height
    firsts["contacts"] += contacts.height
    firsts["interactions"] += interactions.height
    firsts["do_not_interact"] += dni.height
    return {
        "borrowers": _finish(people, BORROWERS),
        "contacts": _finish(contacts, CONTACTS),
        "interactions": _finish(interactions, INTERACTIONS),
        "do_not_interact": _finish(dni, DO_NOT_INTERACT),
        "consents": _finish(consents, CONSENTS),
    }


def _finish(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    return frame.select(
        pl.col(c.name).cast(c.dtype) if c.name in frame.columns else pl.lit(c.default, c.dtype).alias(c.name)
        for c in spec.columns
    )


__all__ = ["DEFAULT_END", "HISTORY_DAYS", "default_companies", "generate", "write_sample_companies"]
