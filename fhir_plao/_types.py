"""The primitive types every part of the case model shares: FHIR dates with their precision,
local ids, exact finite numbers, and the frozen, closed base model."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "DateOnly",
    "LocalId",
    "Number",
    "When",
    "before",
    "check_when",
    "in_order",
]

_DATE_RE = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2}))?)?$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def check_when(value: str) -> str:
    """A FHIR date or dateTime with its precision kept; calendar checked."""
    m = _DATE_RE.match(value)
    if m:
        year, month, day = m.group(1), m.group(3), m.group(5)
        try:
            date(int(year), int(month or 1), int(day or 1))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a calendar date ({exc})") from None
        if int(year) < 1:
            raise ValueError(f"{value!r}: year must be 0001 or later")
        return value
    m = _DATETIME_RE.match(value)
    if m:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a real date and time ({exc})") from None
        offset = m.group(8)
        if offset != "Z" and offset[1:] > "14:00":
            raise ValueError(f"{value!r}: offset {offset} is out of range (-14:00 to +14:00)")
        return value
    raise ValueError(
        f"{value!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime with seconds "
        "and an offset (YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm))"
    )


def _check_date_only(value: str) -> str:
    if not _DATE_RE.match(value):
        raise ValueError(f"{value!r} is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    return check_when(value)


When = Annotated[str, AfterValidator(check_when)]
"""A FHIR date or dateTime string; its precision is part of the value."""

DateOnly = Annotated[str, AfterValidator(_check_date_only)]
"""A FHIR date (no time): year, year-month or full date."""


def _check_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        raise ValueError(f"{value!r} is not a usable id (letters, digits, '-' and '.', 1-64)")
    return value


LocalId = Annotated[str, AfterValidator(_check_id)]


def _check_finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    return value


Number = Annotated[Decimal, AfterValidator(_check_finite)]


def before(a: str, b: str) -> bool:
    """True when date ``a`` is surely before date ``b`` (compared at their common precision)."""
    n = min(len(a), len(b), 10)
    return a[:n] < b[:n]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_blank_text(cls, value: object) -> object:
        # FHIR has no empty strings: an empty or blank text would vanish on the way out
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str) and not text.strip():
                raise ValueError("must not be empty or blank (FHIR strings carry content)")
        return value


#: FHIR ``integer`` is a 32-bit signed integer
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def in_order(
    start: str | None, end: str | None, end_name: str = "end", start_name: str = "start"
) -> None:
    """Raise when ``end`` is before ``start`` (FHIR per-1: a Period's start is not after its
    end); either may be missing."""
    if start and end and before(end, start):
        raise ValueError(f"{end_name} {end} is before {start_name} {start}")
