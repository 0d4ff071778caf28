"""Differences between two cases, as lines a person can read.

``ignore_order`` compares the case's top-level lists as multisets: a FHIR server returns
resources in its own order, so a case pulled back from a server has the same items as the one
pushed, not necessarily in the same order. Order *inside* an item (the scores of a DXA scan,
the findings of a study) is kept by the resources themselves and always compared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_plao import jsonio
from fhir_plao.case import Case

__all__ = ["case_differences"]

#: fields that describe the file, not the patient: never sent to FHIR
NOT_COMPARED = frozenset({"comment"})


def case_differences(
    a: Case, b: Case, *, ignore_order: bool = False, exact_decimals: bool = True
) -> list[str]:
    """Every difference between ``a`` and ``b`` (empty when they hold the same facts).

    With ``exact_decimals`` (the default) ``1.50`` and ``1.5`` differ, as they do in FHIR.
    Without it decimals compare by value: for a case that went through a server which
    re-serialises decimals as floats (SEKMET does; HAPI keeps the digits).
    """
    da = a.model_dump(mode="python", exclude=set(NOT_COMPARED))
    db = b.model_dump(mode="python", exclude=set(NOT_COMPARED))
    if not exact_decimals:
        da, db = _by_value(da), _by_value(db)
    if ignore_order:
        da, db = _sorted_top(da), _sorted_top(db)
    out: list[str] = []
    _diff(da, db, "", out, exact_decimals)
    return out


def _sorted_top(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in data.items():
        if isinstance(value, list | tuple):
            out[key] = sorted(value, key=_canonical)
        elif key == "follow_up" and isinstance(value, dict):
            out[key] = {k: sorted(v, key=_canonical) for k, v in value.items()}
    return out


def _by_value(value: Any) -> Any:
    """Decimals in one spelling per value (1.50 -> 1.5, 165.0 -> 165)."""
    if isinstance(value, Decimal):
        return value.normalize() if value != 0 else Decimal(0)
    if isinstance(value, dict):
        return {k: _by_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_value(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return jsonio.dumps(value, sort_keys=True)


def _show(value: Any) -> str:
    text = jsonio.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _diff(a: Any, b: Any, path: str, out: list[str], exact: bool) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            _diff(a.get(key), b.get(key), f"{path}.{key}" if path else key, out, exact)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for i in range(max(len(a), len(b))):
            if i >= len(a):
                out.append(f"{path}[{i}]: only in the second: {_show(b[i])}")
            elif i >= len(b):
                out.append(f"{path}[{i}]: only in the first: {_show(a[i])}")
            else:
                _diff(a[i], b[i], f"{path}[{i}]", out, exact)
    elif a != b or (exact and str(a) != str(b)):
        # str() too: Decimal('1.50') == Decimal('1.5') numerically, but FHIR keeps the digits
        out.append(f"{path}: {_show(a)} != {_show(b)}")
