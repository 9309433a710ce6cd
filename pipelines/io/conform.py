"""Source rows typed as CONTRACT.md §5 says (`conform`), whatever the reader handed over.

Every column is converted to its spec type, absent optional columns are added (nulls, or the
boolean default), nulls in booleans take their default, and columns not in the spec are kept as they
come (after the spec's columns). A value that cannot be converted (a timestamp `yesterday`, a boolean
`maybe`, a list that is not a JSON array) is not silently turned into null: the row gets the name of
the failed type check in the `CAST_ERRORS` column, which validation reports (`startedAt_is_timestamp`).
That column is only present when some value failed.

Text (CSV files, or text columns of any source): list columns are JSON arrays
(`["voice","text"]`, `[{"fromHour":9,"toHour":17}]`), booleans `true`/`false`, timestamps
ISO-8601 in UTC (`2026-11-03T14:00:00Z`; an offset is converted, no offset means UTC), dates
`YYYY-MM-DD`. `text_frame` writes frames back that way.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import polars as pl
from polars.datatypes import DataTypeClass

from pipelines.model.errors import ErrorItem, SourceDataError
from pipelines.model.tables import CAST_ERRORS, FIELDS_CHECK, Column, TableSpec, type_check_name

log = logging.getLogger(__name__)

PolarsType = pl.DataType | DataTypeClass
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.fZ"
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
# ISO-8601 variants accepted in text; the first two carry a zone (Z or an offset), the others are UTC.
_ZONED_FORMATS: Final = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS: Final = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")


def conform(frame: pl.DataFrame, spec: TableSpec, source: str) -> pl.DataFrame:
    """Convert a raw table to the spec's types (see the module docstring); spec columns first."""
    _require_columns(frame, spec, source)
    converted: list[pl.Series] = []
    failed: list[pl.Series] = []
    for column in spec.columns:
        value, bad = _column(frame, column)
        converted.append(value)
        if bad is not None:
            failed.append(bad)
    extras = [frame.get_column(c) for c in frame.columns if c not in spec.names and c != CAST_ERRORS]
    out = pl.DataFrame(_aligned(converted + extras))
    if CAST_ERRORS in frame.columns:  # marks the reader made (a CSV row without the header's fields)
        failed.insert(0, frame.get_column(CAST_ERRORS).list.first().alias(FIELDS_CHECK))
    if not failed:
        return out
    names = pl.DataFrame(failed).select(pl.concat_list(pl.all()).list.drop_nulls().alias(CAST_ERRORS))
    out = pl.concat([out, names], how="horizontal").with_columns(
        pl.when(pl.col(CAST_ERRORS).list.len() > 0).then(pl.col(CAST_ERRORS)).alias(CAST_ERRORS)
    )
    bad_rows = out.get_column(CAST_ERRORS).is_not_null().sum()
    log.warning(
        "source %s: table %s has %d rows with values not of their column type", source, spec.name, bad_rows
    )
    return out


def _require_columns(frame: pl.DataFrame, spec: TableSpec, source: str) -> None:
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise SourceDataError(
            source,
            [ErrorItem(f"/{spec.name}/{name}", "required column is missing") for name in missing],
            message=f"source {source}: table {spec.name} has no column {missing[0]} (required); add it"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""),
        )


def _column(frame: pl.DataFrame, column: Column) -> tuple[pl.Series, pl.Series | None]:
    """One spec column of the raw table, converted (its default where absent or null), and the mark
    of the rows whose value did not convert (None when every value did)."""
    if column.name not in frame.columns:
        return pl.repeat(column.default, frame.height, dtype=column.dtype, eager=True).alias(
            column.name
        ), None
    raw = frame.get_column(column.name)
    bad = None
    value = raw
    if raw.dtype != column.dtype:
        value, failed = _convert(raw, column.dtype)
        bad = _mark(failed, type_check_name(column.name, column.dtype)) if failed.any() else None
    if column.default is not None:
        value = value.fill_null(column.default)
    return value.alias(column.name), bad


def _aligned(series: list[pl.Series]) -> list[pl.Series]:
    """The columns cut into the same chunks (zero-copy slices).

    DuckDB hands an all-null column over as one chunk and the others in several; a frame whose
    columns are chunked differently is copied whole (rechunked) by the next `with_columns`, which
    cost 200 MB at 250,000 borrowers when `createdAt`/`archivedAt` arrived empty.
    """
    layouts = [s.chunk_lengths() for s in series]
    target = max(layouts, key=len, default=[])
    if len(target) <= 1 or all(layout == target for layout in layouts):
        return series
    starts = [0, *itertools.accumulate(target)][:-1]
    out = []
    for s, layout in zip(series, layouts, strict=True):
        if layout == target or len(layout) != 1:
            out.append(s)
            continue
        out.append(pl.concat([s.slice(o, n) for o, n in zip(starts, target, strict=True)], rechunk=False))
    return out


def _mark(bad: pl.Series, name: str) -> pl.Series:
    """`name` where `bad`, else null."""
    return bad.to_frame("bad").select(pl.when(pl.col("bad")).then(pl.lit(name)).alias(name)).to_series()


def _convert(raw: pl.Series, dtype: pl.DataType) -> tuple[pl.Series, pl.Series]:
    """Convert a column to `dtype`; return it with a mask of values that could not be converted."""
    if raw.dtype == pl.Null:
        return pl.Series(raw.name, [None] * raw.len(), dtype), pl.Series([False] * raw.len())
    if isinstance(dtype, pl.List) and raw.dtype == pl.String:
        return _decode_json_lists(raw, dtype)
    if raw.dtype == pl.String:
        value = _parse_text(raw, dtype)
    elif isinstance(dtype, pl.Datetime) and isinstance(raw.dtype, pl.Datetime):
        value = (
            raw.dt.convert_time_zone("UTC") if raw.dtype.time_zone else raw.dt.replace_time_zone("UTC")
        ).cast(dtype)
    elif isinstance(dtype, pl.Datetime) and raw.dtype == pl.Date:
        value = raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Date) and isinstance(raw.dtype, pl.Datetime):
        utc = raw.dt.convert_time_zone("UTC") if raw.dtype.time_zone else raw
        value = utc.dt.date()
    else:
        value = raw.cast(dtype, strict=False)
    return value.alias(raw.name), raw.is_not_null() & value.is_null()


TextParser = Callable[[pl.Series], pl.Series]


def _boolean(text: pl.Series) -> pl.Series:
    return text.replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)


def _zoned(fmt: str) -> TextParser:
    return lambda text: text.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)


def _naive(fmt: str) -> TextParser:
    return lambda text: text.str.to_datetime(fmt, time_unit="us", strict=False).dt.replace_time_zone("UTC")


def _parsers(dtype: pl.DataType) -> list[TextParser]:
    """Ways to read text as `dtype`, most common (and fastest) first."""
    if isinstance(dtype, pl.Boolean):
        return [_boolean, lambda text: _boolean(text.str.to_lowercase())]
    if isinstance(dtype, pl.Datetime):
        # whole seconds with Z (what write_source writes) has a fast fixed-width path
        return (
            [_zoned("%Y-%m-%dT%H:%M:%SZ")]
            + [_zoned(f) for f in _ZONED_FORMATS]
            + [_naive(f) for f in _NAIVE_FORMATS]
        )
    if isinstance(dtype, pl.Date):
        return [lambda text: text.str.to_date("%Y-%m-%d", strict=False)]
    return [lambda text: text.cast(dtype, strict=False)]


def _parse_text(raw: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Try each parser in turn; later ones only see the (stripped) values still unparsed."""
    parsers = _parsers(dtype)
    value = parsers[0](raw)
    for parse in [*parsers, None]:
        pending = (raw.is_not_null() & value.is_null()).arg_true()
        if pending.len() == 0 or parse is None:
            break
        retry = parse(raw.gather(pending).str.strip_chars())
        value = value.scatter(pending, retry)
    return value.cast(dtype)


def _decode_json_lists(raw: pl.Series, dtype: pl.List) -> tuple[pl.Series, pl.Series]:
    """Decode JSON arrays, one distinct text at a time (list columns repeat a few values)."""
    distinct = raw.drop_nulls().unique(maintain_order=True)
    decoded: list[list[Any] | None] = []
    ok: list[bool] = []
    for text in distinct.to_list():
        value = _json_list(text, dtype.inner)
        decoded.append(value)
        ok.append(value is not None or text.strip() == "null")
    table = pl.DataFrame(
        [distinct.alias("__raw"), pl.Series("__value", decoded, dtype), pl.Series("__ok", ok, pl.Boolean)]
    )
    joined = raw.alias("__raw").to_frame().join(table, on="__raw", how="left", maintain_order="left")
    return joined.get_column("__value").alias(raw.name), ~joined.get_column("__ok").fill_null(True)


def _json_list(text: str, inner: PolarsType) -> list[Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if all(_fits(item, inner) for item in value):
        return value
    return None


def _fits(item: object, dtype: PolarsType) -> bool:
    if isinstance(dtype, pl.Struct):
        if not isinstance(item, dict) or set(item) != {f.name for f in dtype.fields}:
            return False
        return all(_fits(item[f.name], f.dtype) for f in dtype.fields)
    if dtype.is_integer():
        return isinstance(item, int) and not isinstance(item, bool)
    if dtype == pl.String:
        return isinstance(item, str)
    if isinstance(dtype, pl.Boolean):
        return isinstance(item, bool)
    return False


def text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists as JSON arrays, timestamps as ISO-8601 UTC with `Z`, everything else as polars writes it."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            encoded = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")
            exprs.append(pl.when(col.is_not_null()).then(encoded).alias(name))
        elif isinstance(dtype, pl.Datetime):
            utc = col.dt.convert_time_zone("UTC") if dtype.time_zone else col
            exprs.append(utc.dt.to_string(TIMESTAMP_FORMAT if dtype.time_zone else "%Y-%m-%dT%H:%M:%S%.f"))
        else:
            exprs.append(col)
    return frame.select(exprs)
