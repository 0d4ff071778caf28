"""JSON reading and writing that keeps FHIR decimals exact.

FHIR ``decimal`` values carry their precision in their text: ``1.50`` is not ``1.5``. Python's
float cannot hold that, so every JSON number with a fraction or exponent is read as
:class:`decimal.Decimal` and written back from it digit for digit. Integers stay ``int``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import simplejson

__all__ = ["JsonError", "dumps", "dumps_bytes", "loads"]


class JsonError(ValueError):
    """A document is not well-formed JSON; the message names line and column."""


#: deeper than this a document is refused: FHIR resources nest a few dozen levels at most, and
#: every reader after the parser (mapping, validation) walks the tree
MAX_DEPTH = 128

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _NonFinite(Exception):
    """Internal: NaN or Infinity met by the parser (located afterwards)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _int(text: str) -> int | Decimal:
    # "-0" is a decimal negative zero (an int has no sign for zero): keep it
    return Decimal(text) if text == "-0" else int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError(f"the key {key!r} appears twice in one object (which one counts?)")
            seen.add(key)
    return obj


def loads(data: str | bytes) -> Any:
    """Parse JSON, reading every non-integer number as an exact :class:`Decimal`.

    Refused, each with a one-line :class:`JsonError`: text that is not UTF-8; malformed JSON
    (line and column); ``NaN`` and ``Infinity`` (line and column: FHIR decimals are finite); a
    key twice in one object; a string with a lone UTF-16 surrogate (``"\\ud800"``, which no
    UTF-8 writer can write back); nesting deeper than :data:`MAX_DEPTH`.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonError(f"not UTF-8 text: {exc}") from exc
    try:
        value = json.loads(
            data,
            parse_float=Decimal,
            parse_int=_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise JsonError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except _NonFinite as exc:
        where = _position(data, _outside_strings(data, exc.name))
        raise JsonError(
            f"{exc.name} is not a JSON number{where} (FHIR decimals must be finite)"
        ) from None
    except RecursionError:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels{_deepest(data)}") from None
    _check_tree(value, data)
    return value


def _check_tree(value: Any, text: str) -> None:
    """Depth, and lone surrogates (looked for only when the text escapes one)."""
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if isinstance(value, str) and surrogates and _lone_surrogate(value):
        raise JsonError("the text holds a lone UTF-16 surrogate: not a character")
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JsonError(f"nested deeper than {MAX_DEPTH} levels{_deepest(text)}")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
            elif surrogates and isinstance(item, str) and _lone_surrogate(item):
                code = _lone_surrogate(item)
                raise JsonError(
                    f"the text at {key!r} holds a lone UTF-16 surrogate (\\u{code}): "
                    f"not a character"
                )
            if surrogates and isinstance(key, str) and _lone_surrogate(key):
                raise JsonError("an object key holds a lone UTF-16 surrogate, not a character")


def _lone_surrogate(text: str) -> str | None:
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            return f"{ord(char):04x}"
    return None


def _outside(text: str) -> Iterator[tuple[int, str]]:
    """Each character of ``text`` that is not inside a JSON string, with its index."""
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield i, char


def _outside_strings(text: str, token: str) -> int:
    """The index of ``token`` in ``text`` outside any JSON string (-1 when absent)."""
    for i, _ in _outside(text):
        if text.startswith(token, i):
            return i - 1 if token != "-Infinity" and i > 0 and text[i - 1] == "-" else i
    return -1


def _position(text: str, index: int) -> str:
    if index < 0:
        return ""
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f" at line {line}, column {column}"


def _deepest(text: str) -> str:
    """Where the nesting first passes the limit (`` at line L, column C``)."""
    depth = 0
    for i, char in _outside(text):
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _position(text, i)
        elif char in "]}":
            depth -= 1
    return ""


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
