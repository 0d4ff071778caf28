"""UCUM unit codes: valid or not, and their dimension, through a maintained UCUM library.

``ucumvert`` parses the full UCUM grammar (generated from the official ``ucum-essence.xml``) and
maps units to ``pint`` for their dimension. It is loaded on first use (about half a second) and
every answer is cached, so a run over many cases pays the load once.

* :func:`dimension`: ``"[mass]"``, ``"[mass] / [length] ** 3"``, ``"dimensionless"``, ... or
  :class:`UcumError` for a code that is not UCUM (``mg/dLx``).
* :func:`is_dose_unit`: a unit a dose of a drug can be given in: a mass (``mg``), an amount of
  substance (``mmol``), a volume (``mL``), or a count or arbitrary unit (``[iU]``, ``{tablet}``,
  ``1``) -- not a length (``cm``) or a concentration.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

__all__ = ["DOSE_DIMENSIONS", "UcumError", "dimension", "is_dose_unit"]

#: what a dose may measure
DOSE_DIMENSIONS = frozenset({"[mass]", "[substance]", "[length] ** 3", "dimensionless"})

_ANNOTATION = re.compile(r"^\{[^{}]*\}$")


class UcumError(ValueError):
    """Not a valid UCUM code; the message says what the parser found."""


@cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry  # type: ignore[import-untyped]

    return PintUcumRegistry()


@cache
def dimension(code: str) -> str:
    """The dimension of a UCUM code, as pint writes it; :class:`UcumError` when not UCUM."""
    if _ANNOTATION.match(code):  # an annotation alone is the unit 1 (UCUM §3.2.5)
        return "dimensionless"
    try:
        quantity = _registry().from_ucum(code)
        return str(quantity.dimensionality)
    except Exception as exc:  # the library's own errors differ by kind of mistake
        reason = str(exc).split(":", 1)[-1].strip().splitlines()[0] if str(exc) else ""
        raise UcumError(
            f"{code!r} is not a valid UCUM unit" + (f" ({reason})" if reason else "")
        ) from None


def is_dose_unit(code: str) -> bool:
    """True for a UCUM code a dose can be given in (see the module docstring)."""
    return dimension(code) in DOSE_DIMENSIONS
