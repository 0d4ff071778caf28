"""JSON reading and writing that keeps FHIR decimals exact.

FHIR ``decimal`` values carry their precision in their text: ``1.50`` is not ``1.5``. Python's
float cannot hold that, so every JSON number with a fraction or exponent is read as
:class:`decimal.Decimal` and written back from it digit for digit. Integers stay ``int``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson

__all__ = ["JsonError", "dumps", "dumps_bytes", "loads"]


class JsonError(ValueError):
    """A document is not well-formed JSON; the message names line and column."""


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number (FHIR decimals must be finite)")


def _int(text: str) -> int | Decimal:
    # "-0" is a decimal negative zero (an int has no sign for zero): keep it
    return Decimal(text) if text == "-0" else int(text)


def loads(data: str | bytes) -> Any:
    """Parse JSON, reading every non-integer number as an exact :class:`Decimal`."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonError(f"not UTF-8 text: {exc}") from exc
    try:
        return json.loads(
            data, parse_float=Decimal, parse_int=_int, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise JsonError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Serialise to JSON text; a :class:`Decimal` is written exactly as its digits."""
    for_nan = _find_non_finite(obj)
    if for_nan is not None:
        raise JsonError(f"{for_nan} is not a JSON number (FHIR decimals must be finite)")
    return simplejson.dumps(
        obj,
        use_decimal=True,
        indent=indent,
        sort_keys=sort_keys,
        ensure_ascii=False,
        separators=(",", ": ") if indent is not None else (",", ":"),
        allow_nan=False,
    )


def dumps_bytes(obj: Any, *, indent: int | None = None) -> bytes:
    """Like :func:`dumps`, encoded as UTF-8 (the body of an ``application/fhir+json`` request)."""
    return dumps(obj, indent=indent).encode("utf-8")


def _find_non_finite(obj: Any) -> str | None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, Decimal):
            if not item.is_finite():
                return str(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None
