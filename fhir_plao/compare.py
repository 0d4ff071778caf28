"""Differences between two cases, as lines a person can read.

Items of the case's lists are named by their id, not their position: ``labs[lab-tsh].value:
1.2 != 1.3``, ``labs[lab-tumour-markers]: only in the original`` -- so one missing item does not
shift every item after it into a difference. Lists without ids (the scores of a scan, the
phases of a follow-up) are compared by position.

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
    a: Case,
    b: Case,
    *,
    ignore_order: bool = False,
    exact_decimals: bool = True,
    names: tuple[str, str] = ("first", "second"),
) -> list[str]:
    """Every difference between ``a`` and ``b`` (empty when they hold the same facts).

    With ``exact_decimals`` (the default) ``1.50`` and ``1.5`` differ, as they do in FHIR.
    Without it decimals compare by value: for a case that went through a server which
    re-serialises decimals as floats (SEKMET does; HAPI keeps the digits). ``names`` say what
    ``a`` and ``b`` are in "only in the ..." lines (``("original", "round trip")``).
    """
    da = a.model_dump(mode="python", exclude=set(NOT_COMPARED))
    db = b.model_dump(mode="python", exclude=set(NOT_COMPARED))
    if not exact_decimals:
        da, db = _by_value(da), _by_value(db)
    if ignore_order:
        da, db = _sorted_top(da), _sorted_top(db)
    out: list[str] = []
    _Differ(out, exact_decimals, names).diff(da, db, "")
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


def _ids(items: list[Any] | tuple[Any, ...]) -> list[str] | None:
    """The items' ids when every item has a distinct one, else None (compare by position)."""
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    if all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids):
        return [str(i) for i in ids]
    return None


class _Differ:
    def __init__(self, out: list[str], exact: bool, names: tuple[str, str]) -> None:
        self.out = out
        self.exact = exact
        self.names = names

    def diff(self, a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                self.diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            ids_a, ids_b = _ids(a), _ids(b)
            if ids_a is not None and ids_b is not None:
                self._by_id(a, b, ids_a, ids_b, path)
            else:
                self._by_position(a, b, path)
        elif a != b or (self.exact and str(a) != str(b)):
            # str() too: Decimal('1.50') == Decimal('1.5') numerically, but FHIR keeps the digits
            self.out.append(f"{path}: {_show(a)} != {_show(b)}")

    def _by_id(
        self,
        a: list[Any] | tuple[Any, ...],
        b: list[Any] | tuple[Any, ...],
        ids_a: list[str],
        ids_b: list[str],
        path: str,
    ) -> None:
        in_b = dict(zip(ids_b, b, strict=True))
        in_a = set(ids_a)
        for item_id, item in zip(ids_a, a, strict=True):
            where = f"{path}[{item_id}]"
            if item_id in in_b:
                self.diff(item, in_b[item_id], where)
            else:
                self.out.append(f"{where}: only in the {self.names[0]}: {_show(item)}")
        for item_id, item in zip(ids_b, b, strict=True):
            if item_id not in in_a:
                self.out.append(f"{path}[{item_id}]: only in the {self.names[1]}: {_show(item)}")

    def _by_position(
        self, a: list[Any] | tuple[Any, ...], b: list[Any] | tuple[Any, ...], path: str
    ) -> None:
        for i in range(max(len(a), len(b))):
            if i >= len(a):
                self.out.append(f"{path}[{i}]: only in the {self.names[1]}: {_show(b[i])}")
            elif i >= len(b):
                self.out.append(f"{path}[{i}]: only in the {self.names[0]}: {_show(a[i])}")
            else:
                self.diff(a[i], b[i], f"{path}[{i}]")
