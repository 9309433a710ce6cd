"""What decides a +1 number's time zones in `phonenumbers`' metadata.

The package's answer for a North American number depends only on which patterns of its metadata
the number matches and on the longest time-zone prefix it starts with; every such pattern is a set
of digit prefixes followed by free digits. `nanp_prefix_sets` enumerates those prefixes once (by
walking the parsed regular expressions), which gives each number the shortest prefix that decides
its answer: its key (pipelines/rules/phone_numbers.py)."""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
from typing import Any, Final

import phonenumbers
from phonenumbers.tzdata import TIMEZONE_DATA

log = logging.getLogger(__name__)

NANP_LENGTH: Final = 10  # national digits of a +1 number
# The kinds of number a region's metadata describes, each with its own national number pattern.
_NUMBER_KINDS: Final = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


class _UnsupportedPatternError(Exception):
    """A metadata pattern this analysis does not understand: fall back to one lookup per number."""


DIGITS: Final = "0123456789"


_MAX_STATES: Final = 500_000


def _charset(items: list[tuple[Any, Any]], sre: Any) -> str | None:
    """The digits a character class accepts; None when it accepts every digit."""
    chars: set[str] = set()
    for op, av in items:
        if op == sre.LITERAL:
            chars.add(chr(av))
        elif op == sre.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        elif op == sre.CATEGORY and av == sre.CATEGORY_DIGIT:
            chars.update(DIGITS)
        else:
            raise _UnsupportedPatternError(f"character class item {op}")
    digits = "".join(sorted(chars & set(DIGITS)))
    return None if digits == DIGITS else digits


def _extend(states: set[tuple[str, int]], chars: str) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for head, free in states:
        if free > 4:
            raise _UnsupportedPatternError("too many free digits before a fixed one")
        for fill in itertools.product(DIGITS, repeat=free):
            base = head + "".join(fill)
            out.update((base + c, 0) for c in chars)
    return out


def _walk(items: list[tuple[Any, Any]], states: set[tuple[str, int]], sre: Any) -> set[tuple[str, int]]:
    """Advance (fixed prefix, free digits after it) pairs over a parsed pattern sequence."""
    for op, av in items:
        if op == sre.LITERAL:
            states = _extend(states, chr(av) if chr(av) in DIGITS else "")
        elif op == sre.IN:
            chars = _charset(list(av), sre)
            states = {(h, f + 1) for h, f in states} if chars is None else _extend(states, chars)
        elif op == sre.SUBPATTERN:
            states = _walk(list(av[-1]), states, sre)
        elif op == sre.BRANCH:
            out: set[tuple[str, int]] = set()
            for branch in av[1]:
                out |= _walk(list(branch), states, sre)
            states = out
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)):
            low, high, body = av
            if high == sre.MAXREPEAT or high > NANP_LENGTH:
                raise _UnsupportedPatternError("unbounded repeat")
            out = set()
            current = states
            for count in range(high + 1):
                if count >= low:
                    out |= current
                if count < high:
                    current = _walk(list(body), current, sre)
            states = out
        else:
            raise _UnsupportedPatternError(f"pattern operation {op}")
        if len(states) > _MAX_STATES:
            raise _UnsupportedPatternError("pattern expands too far")
    return states


def _pattern_heads(pattern: str) -> set[tuple[str, int]]:
    """Every (fixed digit prefix, number of free digits after it) a pattern is made of."""
    sre = importlib.import_module("re._parser")
    return _walk(list(sre.parse(pattern)), {("", 0)}, sre)


@functools.cache
def nanp_prefix_sets() -> tuple[frozenset[str], ...] | None:
    """For d = 0..10, the d-digit national prefixes that some deciding prefix longer than d extends.

    A 10-digit national number n is decided by n[:d] for the smallest d with n[:d] not in set d:
    every deciding prefix longer than d differs from n there, so no number sharing n[:d] has it.
    None when the metadata holds a pattern this analysis cannot read.
    """
    heads: set[str] = set()
    try:
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if meta is None:
                continue
            if meta.leading_digits:  # matched as a prefix
                heads |= {h for h, _ in _pattern_heads(meta.leading_digits)}
            for name in _NUMBER_KINDS:
                desc = getattr(meta, name)
                if desc is None or not desc.national_number_pattern:
                    continue
                if desc.possible_length and NANP_LENGTH not in desc.possible_length:
                    continue
                heads |= {
                    h
                    for h, free in _pattern_heads(desc.national_number_pattern)
                    if len(h) + free == NANP_LENGTH
                }
    except _UnsupportedPatternError as exc:
        log.warning("phone metadata not analysable (%s): one time-zone lookup per number", exc)
        return None
    heads |= {key[1:] for key in TIMEZONE_DATA if key.startswith("1")}
    return tuple(frozenset(h[:d] for h in heads if len(h) > d) for d in range(NANP_LENGTH + 1))
