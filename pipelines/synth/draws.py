"""What the synthetic tables are drawn from: one Mersenne Twister stream drawn in bulk as Polars
Series (stable across Python versions, no Python loop per row), US places with real ZIP codes, and
the id and epoch helpers every table uses."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

import polars as pl
import pyarrow as pa
import zipcodes

DAY_US: Final = 86_400_000_000
SECOND_US: Final = 1_000_000


class Draws:
    """Bulk draws from one Mersenne Twister stream, as Polars Series."""

    def __init__(self, seed: int | str) -> None:
        self._random = random.Random(seed)

    def uniform(self, n: int) -> pl.Series:
        """n floats in [0, 1)."""
        if n == 0:
            return pl.Series([], dtype=pl.Float64)
        raw = self._random.randbytes(4 * n)
        words = pa.Array.from_buffers(pa.uint32(), n, [None, pa.py_buffer(raw)])
        series = pl.from_arrow(words)
        assert isinstance(series, pl.Series)
        return series.cast(pl.Float64) * (1.0 / 2**32)

    def below(self, n: int, high: int | pl.Series) -> pl.Series:
        """n integers in [0, high) (high may vary per row)."""
        return (self.uniform(n) * high).floor().cast(pl.Int64)

    def choice(self, n: int, weights: Sequence[float]) -> pl.Series:
        """n indexes into `weights`, drawn with those relative weights."""
        total = float(sum(weights))
        cumulative, running = [], 0.0
        for w in weights[:-1]:
            running += w / total
            cumulative.append(running)
        edges = pl.Series(cumulative, dtype=pl.Float64)
        return edges.search_sorted(self.uniform(n), side="right").cast(pl.Int64)


def take(
    options: Sequence[object] | pl.Series, index: pl.Series, dtype: pl.DataType | None = None
) -> pl.Series:
    values = options if isinstance(options, pl.Series) else pl.Series(list(options), dtype=dtype)
    return values.gather(index)


@dataclass(frozen=True)
class Places:
    zips: pl.DataFrame  # zip, city, state, timezone, areaCodes (list)
    area_codes: pl.Series  # every area code seen, sorted


@functools.cache
def places() -> Places:
    columns: dict[str, list[object]] = {"zip": [], "city": [], "state": [], "timezone": [], "areaCodes": []}
    for z in sorted(zipcodes.list_all(), key=lambda z: str(z["zip_code"])):  # type: ignore[no-untyped-call]
        if z["active"] and z["zip_code_type"] == "STANDARD" and z["timezone"] and z["area_codes"]:
            columns["zip"].append(z["zip_code"])
            columns["city"].append(z["city"])
            columns["state"].append(z["state"])
            columns["timezone"].append(z["timezone"])
            columns["areaCodes"].append(z["area_codes"])
    zips = pl.DataFrame(
        columns,
        schema={
            "zip": pl.String,
            "city": pl.String,
            "state": pl.String,
            "timezone": pl.String,
            "areaCodes": pl.List(pl.String),
        },
    ).filter(pl.col("state").str.contains(r"^[A-Z]{2}$"))
    codes = zips.get_column("areaCodes").explode().unique().sort()
    return Places(zips, codes)


def zip_rows(rng: Draws, n: int, pool: pl.Series | None = None) -> pl.Series:
    """n row numbers into `places().zips`, uniform, or uniform within `pool` (row numbers)."""
    if pool is None:
        return rng.below(n, places().zips.height)
    return pool.gather(rng.below(n, pool.len()))


def ids(prefix: str, n: int, width: int, first: int = 0) -> pl.Expr:
    """`prefix` + first+1..first+n zero-padded to `width` digits (wider when needed), sorted as text."""
    width = max(width, len(str(first + n)))
    padded = (pl.int_range(first + 1, first + n + 1, dtype=pl.Int64) + 10**width).cast(pl.String).str.slice(1)
    return pl.concat_str(pl.lit(prefix), padded)


def epoch_days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def epoch_us(day: date) -> int:
    return (
        int(
            (
                datetime(day.year, day.month, day.day, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
            ).total_seconds()
        )
        * SECOND_US
    )
