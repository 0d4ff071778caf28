"""The building blocks of the case strategies: code-table keys, texts, decimals with their
digits, FHIR dates with their precision, and ids unique within a case."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from hypothesis import strategies as st

from fhir_plao.terminology import TERMINOLOGY

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]

# --------------------------------------------------------------------------- code table


@cache
def keys(*kinds: str) -> tuple[str, ...]:
    found = tuple(sorted(TERMINOLOGY.keys_of(*kinds)))
    assert found, f"no code-table keys of kind {kinds}"
    return found


def coded(key: str) -> bool:
    return bool(TERMINOLOGY.concept(key).codings)


#: texts of the concepts that have no code (as a free name, such a text *is* the concept)
TEXT_ONLY_TEXTS = tuple(sorted({c.text for c in TERMINOLOGY if not c.codings}))
#: code.text values of the Observations the mapping codes by text only
MAPPING_TEXTS = ("Pregnancy", "Imaging finding", "Follow-up outcome", "Finding")

# --------------------------------------------------------------------------- text

_CHARS = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"))

SAMPLE_TEXTS = (
    "Bel ağrısı, göğüs kafesi",  # noqa: RUF001 (Turkish dotless i, on purpose)
    "Knochendichte ↓, öfter Schmerzen",
    "naïve café — ½ dose",
    "Doğumdan 20 gün sonra şiddetli sırt ağrısı",  # noqa: RUF001
    "日本語のメモ",
    "emoji 🦴 ok",
    "1.50",
    "-0.0",
    "a; b",
    " leading and trailing ",
    "tab\there",
    "two\nlines",
    "Body height",  # a coded concept's text
    *MAPPING_TEXTS,
)


@cache
def texts(max_size: int = 16) -> st.SearchStrategy[str]:
    """Printable text that is not blank (no surrogates; no control characters but in samples)."""
    return st.one_of(
        st.sampled_from(SAMPLE_TEXTS), st.text(_CHARS, min_size=1, max_size=max_size)
    ).filter(lambda t: t.strip() != "")


def opt(s: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), s)


@cache
def free_names() -> st.SearchStrategy[str]:
    """Free text naming a concept (Finding / Diagnosis / Care without a key)."""
    return st.one_of(texts(), st.sampled_from(TEXT_ONLY_TEXTS))


# --------------------------------------------------------------------------- decimals

SPECIAL_DECIMALS = tuple(
    Decimal(s)
    for s in (
        "1.50",
        "-0.0",
        "0.000",
        "0",
        "0.0",
        "-0.00",
        "-2.5",
        "-1.00",
        "100",
        "1E+2",
        "1.5E-7",
        "0E-5",
        "-0",
        "-0E+2",
        "2.50E+3",
        "0.1",
        "12345678901234567890.0123456789",
    )
)


def _decimal(sign: int, digits: Sequence[int], exponent: int) -> Decimal:
    return Decimal((sign, tuple(digits), exponent))


@cache
def decimals(*, positive: bool = False) -> st.SearchStrategy[Decimal]:
    """Finite decimals with their digits: trailing zeros, signed zeros, exponents -12..+8."""
    raw = st.builds(
        _decimal,
        st.just(0) if positive else st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=12),
        st.integers(-12, 8),
    )
    s = st.one_of(st.sampled_from(SPECIAL_DECIMALS), raw)
    return s.filter(lambda d: d > 0) if positive else s


# --------------------------------------------------------------------------- dates


@cache
def whens(*, date_only: bool = False) -> st.SearchStrategy[str]:
    """A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime (seconds and an offset), as text."""
    return _whens(date_only=date_only)


@st.composite
def _whens(draw: Draw[Any], *, date_only: bool = False) -> str:
    year = draw(st.one_of(st.integers(1990, 2030), st.integers(1, 9999)))
    shape = draw(st.sampled_from(("Y", "YM", "YMD") if date_only else ("Y", "YM", "YMD", "DT")))
    if shape == "Y":
        return f"{year:04d}"
    month = draw(st.integers(1, 12))
    if shape == "YM":
        return f"{year:04d}-{month:02d}"
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if shape == "YMD":
        return date
    h, m, sec = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    time = f"{h:02d}:{m:02d}:{sec:02d}"
    if draw(st.booleans()):
        digits = draw(st.lists(st.integers(0, 9), min_size=1, max_size=9))
        time += "." + "".join(map(str, digits))
    if draw(st.booleans()):
        offset = "Z"
    else:
        hours = draw(st.integers(0, 14))
        minutes = 0 if hours == 14 else draw(st.sampled_from((0, 30, 45, 59)))
        offset = f"{draw(st.sampled_from('+-'))}{hours:02d}:{minutes:02d}"
    return f"{date}T{time}{offset}"


# --------------------------------------------------------------------------- ids

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."
#: includes ids shaped like those the mapping derives from items (they must not collide)
SAMPLE_IDS = (
    "p1",
    "p1-delivery",
    "p1-anaesthesia",
    "p1-lactation",
    "p1-lactation-1",
    "follow-up",
    "outcome-1",
    "s1-total-hip-T",
    "i1-finding-1",
    "c1-activity-2",
    "dxa-2023-06-14",
    "a",
    "0",
    "-",
    ".",
    "1.50",
    "x" * 64,
)
ids = st.one_of(
    st.sampled_from(SAMPLE_IDS),
    st.text(_ID_CHARS, min_size=1, max_size=10),
    st.text(_ID_CHARS, min_size=60, max_size=64),
)


class Ids:
    """Hands out ids unique within one case."""

    def __init__(self, draw: Draw[Any]) -> None:
        self.draw = draw
        self.used: set[str] = set()

    def new(self) -> str:
        value: str = self.draw(ids)
        n = 2
        while value in self.used:  # cheaper than a fresh filtered strategy per id
            value = f"{value[:58]}.{n}"
            n += 1
        self.used.add(value)
        return value


def not_in(taken: set[str]) -> Callable[[str], bool]:
    return lambda value: value not in taken


def some(draw: Draw[Any], pool: Sequence[str], max_size: int = 2) -> tuple[str, ...]:
    """Some of ``pool``, maybe one twice (the model allows a reference to repeat)."""
    if not pool:
        return ()
    return tuple(draw(st.lists(st.sampled_from(list(pool)), max_size=max_size)))
