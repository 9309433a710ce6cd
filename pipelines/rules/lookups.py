"""Lookup tables built from maintained packages (`zipcodes`, `us`, `phonenumbers`), and the zone
names this process knows.

Tables are built once per package version and kept as small Parquet files in the lookup cache
(`$CONTACT_EXPORTER_CACHE`, else `$XDG_CACHE_HOME/contact-exporter`, else
`~/.cache/contact-exporter`), named by a fingerprint of the package versions and the zone database,
so an upgrade starts a fresh table; a cache that cannot be read or written is rebuilt in memory.
Zone names a package gives that the IANA database here does not know count as unknown."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Final

import polars as pl

from pipelines.io.files import atomic_write
from pipelines.model.vocab import iana_zones

log = logging.getLogger(__name__)

known_zones = iana_zones  # IANA zone names this process can compute local times for


def usable_zones(zones: Iterable[str]) -> list[str]:
    """The given zones that are real IANA names (drops `Etc/Unknown`, blanks and typos), sorted."""
    known = known_zones()
    return sorted({z for z in zones if z in known})


CACHE_ENV: Final = "CONTACT_EXPORTER_CACHE"


_CACHE_FORMAT: Final = "1"  # bump when the way a cached table is built changes


def cache_dir() -> Path:
    """Where lookup tables are cached (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "contact-exporter"


@functools.cache
def _fingerprint() -> str:
    parts = [_CACHE_FORMAT, *(version(p) for p in ("zipcodes", "us", "phonenumbers")), *sorted(known_zones())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cached(name: str, schema: pl.Schema, build: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """A lookup table from the cache, else built and cached (best effort)."""
    path = cache_dir() / f"{name}-{_fingerprint()}.parquet"
    try:
        frame = pl.read_parquet(path)
        if frame.schema == schema:
            return frame
        log.warning("lookup cache %s has an unexpected layout; building it again", path)
    except FileNotFoundError:
        pass
    except (OSError, pl.exceptions.PolarsError) as exc:
        log.warning("lookup cache %s unreadable (%s); building it again", path, type(exc).__name__)
    frame = build().cast(schema)
    try:
        atomic_write(path, lambda tmp: frame.write_parquet(tmp))
    except OSError as exc:
        log.warning("lookup cache %s not written (%s); it is built again next run", path, exc)
    return frame
