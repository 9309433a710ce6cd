"""Chunk alignment: columns added to a frame read in chunks are cut like it, values unchanged."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal, assert_series_equal

from pipelines.io.chunks import aligned, placed, realigned


def chunked(values: list[int], sizes: list[int], name: str = "a") -> pl.Series:
    parts, start = [], 0
    for size in sizes:
        parts.append(pl.Series(name, values[start : start + size]))
        start += size
    return pl.concat(parts, rechunk=False)


def lengths(column: pl.Series) -> list[int]:
    return [len(chunk) for chunk in column.get_chunks()]


def test_a_one_chunk_column_is_cut_like_the_other() -> None:
    like = chunked(list(range(10)), [3, 3, 4])
    column = pl.Series("b", list(range(100, 110)))
    out = aligned(column, like)
    assert lengths(out) == [3, 3, 4]
    assert_series_equal(out, column)


def test_a_column_chunked_otherwise_is_recut() -> None:
    like = chunked(list(range(10)), [3, 3, 4])
    column = chunked(list(range(100, 110)), [5, 5], name="b")
    out = aligned(column, like)
    assert lengths(out) == [3, 3, 4]
    assert_series_equal(out, column)


def test_realigned_cuts_every_column_like_the_first_and_keeps_the_values() -> None:
    frame = pl.DataFrame(
        [
            chunked(list(range(10)), [3, 3, 4]),
            pl.Series("b", list("abcdefghij")),
            chunked([1] * 10, [9, 1], "c"),
        ]
    )
    out = realigned(frame)
    assert [lengths(c) for c in out.get_columns()] == [[3, 3, 4]] * 3
    assert_frame_equal(out, frame)


def test_added_columns_are_cut_like_the_frame() -> None:
    frame = pl.DataFrame([chunked(list(range(6)), [2, 4])])
    out = realigned(frame.with_columns(pl.Series("k", [5, 4, 3, 2, 1, 0])))
    assert lengths(out.get_column("k")) == [2, 4]
    assert out.get_column("k").to_list() == [5, 4, 3, 2, 1, 0]
    assert out.columns == ["a", "k"]


def test_placed_puts_each_value_at_its_row_and_null_elsewhere() -> None:
    values = pl.Series("d", [True, False, None], dtype=pl.Boolean)
    column = placed(values, pl.Series([4, 0, 2], dtype=pl.UInt32), 6)
    assert column.name == "d"
    assert column.dtype == pl.Boolean
    assert column.to_list() == [False, None, None, None, True, None]
    assert placed(values.head(0), pl.Series([], dtype=pl.UInt32), 3).to_list() == [None, None, None]
