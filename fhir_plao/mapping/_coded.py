"""Source-coded parts both ways: CodeableConcept <-> :class:`~fhir_plao.coded.Concept`,
Quantity, Range, Ratio, Period and ``value[x]`` <-> :class:`~fhir_plao.coded.Value`.

Reading marks exactly what it carries, so whatever else the source put there (an extension on
a coding, say) is still reported by the reader's leftovers.
"""

from __future__ import annotations

from typing import Any, overload

from fhir_plao.coded import Concept, ObservedRange, Period, Quantity, Range, Ratio, Value
from fhir_plao.mapping._fhir import JSON, Path, Reader, codeable, read_concept

_CODING_FIELDS = (
    ("system", "system"),
    ("version", "version"),
    ("code", "code"),
    ("display", "display"),
    ("userSelected", "user_selected"),
)
_QUANTITY_FIELDS = ("value", "comparator", "unit", "system", "code")

#: value[x] element name -> Value field
VALUE_TYPES = {
    "valueQuantity": "quantity",
    "valueCodeableConcept": "concept",
    "valueString": "string",
    "valueBoolean": "boolean",
    "valueInteger": "integer",
    "valueRange": "range",
    "valueRatio": "ratio",
    "valuePeriod": "period",
    "valueDateTime": "date_time",
    "valueTime": "time",
}
VALUE_ELEMENT = {v: k for k, v in VALUE_TYPES.items()}


# --------------------------------------------------------------------------- writing


@overload
def concept_json(c: Concept) -> JSON: ...
@overload
def concept_json(c: None) -> None: ...
@overload
def concept_json(c: Concept | None) -> JSON | None: ...
def concept_json(c: Concept | None) -> JSON | None:
    if c is None:
        return None
    out: JSON = {}
    if c.codings:
        out["coding"] = [
            {
                fhir: getattr(coding, ours)
                for fhir, ours in _CODING_FIELDS
                if getattr(coding, ours) is not None
            }
            for coding in c.codings
        ]
    if c.text is not None:
        out["text"] = c.text
    return out


def concepts_json(cs: tuple[Concept, ...] | None) -> list[JSON] | None:
    return [j for c in cs or () if (j := concept_json(c))] or None


def categories_json(cs: tuple[Concept, ...] | None, ours: list[JSON]) -> list[JSON] | None:
    """The source's categories, or ours when the item has none of its own (None)."""
    return ours if cs is None else concepts_json(cs)


def quantity_json(q: Quantity | None) -> JSON | None:
    if q is None:
        return None
    return {k: getattr(q, k) for k in _QUANTITY_FIELDS if getattr(q, k) is not None}


def range_json(r: Range | None) -> JSON | None:
    if r is None:
        return None
    return {"low": quantity_json(r.low), "high": quantity_json(r.high)}


def period_json(p: Period | None) -> JSON | None:
    if p is None:
        return None
    return {"start": p.start, "end": p.end}


def value_json(v: Value | None) -> JSON:
    """``{"valueX": ...}`` for a value (empty for None)."""
    if v is None:
        return {}
    kind = v.kind
    raw: Any = getattr(v, kind)
    if isinstance(raw, Concept):
        raw = concept_json(raw)
    elif isinstance(raw, Quantity):
        raw = quantity_json(raw)
    elif isinstance(raw, Range):
        raw = range_json(raw)
    elif isinstance(raw, Ratio):
        raw = {
            "numerator": quantity_json(raw.numerator),
            "denominator": quantity_json(raw.denominator),
        }
    elif isinstance(raw, Period):
        raw = period_json(raw)
    return {VALUE_ELEMENT[kind]: raw}


def ranges_json(ranges: tuple[ObservedRange, ...]) -> list[JSON] | None:
    out = []
    for rr in ranges:
        out.append(
            {
                "low": quantity_json(rr.low),
                "high": quantity_json(rr.high),
                "type": concept_json(rr.type),
                "appliesTo": concepts_json(rr.applies_to),
                "age": range_json(rr.age),
                "text": rr.text,
            }
        )
    return out or None


# --------------------------------------------------------------------------- reading


def read_source_concept(r: Reader, path: Path) -> dict[str, Any] | None:
    """A CodeableConcept as a :class:`Concept`'s fields, every coding kept as written."""
    cc = r.peek(*path)
    if cc is None:
        return None
    if not isinstance(cc, dict):
        raise r.error(path, "expected a CodeableConcept (an object)")
    codings = []
    for i, coding in enumerate(r.items(*path, "coding")):
        if not isinstance(coding, dict):
            raise r.error((*path, "coding", i), "expected a Coding (an object)")
        fields: dict[str, Any] = {}
        for fhir, ours in _CODING_FIELDS:
            if fhir == "userSelected":
                value = r.get(*path, "coding", i, fhir)
                if value is not None and not isinstance(value, bool):
                    raise r.error((*path, "coding", i, fhir), "expected true or false")
            else:
                value = r.str_(*path, "coding", i, fhir)
            if value is not None:
                fields[ours] = value
        if fields:
            codings.append(fields)
    text = r.str_(*path, "text")
    if not codings and text is None:
        return None
    return {"codings": codings, "text": text}


def read_source_concepts(r: Reader, path: Path) -> list[dict[str, Any]]:
    out = []
    for i, _ in enumerate(r.items(*path)):
        c = read_source_concept(r, (*path, i))
        if c is not None:
            out.append(c)
    return out


def read_exact_quantity(r: Reader, path: Path) -> dict[str, Any] | None:
    if r.peek(*path) is None:
        return None
    out: dict[str, Any] = {"value": r.decimal(*path, "value")}
    for name in ("comparator", "unit", "system", "code"):
        out[name] = r.str_(*path, name)
    return out


def read_range(r: Reader, path: Path) -> dict[str, Any] | None:
    if r.peek(*path) is None:
        return None
    return {
        "low": read_exact_quantity(r, (*path, "low")),
        "high": read_exact_quantity(r, (*path, "high")),
    }


def read_period(r: Reader, path: Path) -> dict[str, Any] | None:
    if r.peek(*path) is None:
        return None
    return {"start": r.str_(*path, "start"), "end": r.str_(*path, "end")}


def read_value(r: Reader, path: Path = ()) -> dict[str, Any] | None:
    """The ``value[x]`` under ``path`` as a :class:`Value`'s fields (None when there is none)."""
    for element, kind in VALUE_TYPES.items():
        where = (*path, element)
        if r.peek(*where) is None:
            continue
        raw: Any
        if kind == "quantity":
            raw = read_exact_quantity(r, where)
        elif kind == "concept":
            raw = read_source_concept(r, where)
        elif kind == "range":
            raw = read_range(r, where)
        elif kind == "ratio":
            raw = {
                "numerator": read_exact_quantity(r, (*where, "numerator")),
                "denominator": read_exact_quantity(r, (*where, "denominator")),
            }
        elif kind == "period":
            raw = read_period(r, where)
        elif kind == "boolean":
            raw = r.get(*where)
            if not isinstance(raw, bool):
                raise r.error(where, f"expected true or false, got {raw!r}")
        elif kind == "integer":
            raw = r.int_(*where)
        else:
            raw = r.str_(*where)
        return {kind: raw}
    return None


def read_ranges(r: Reader, path: Path) -> list[dict[str, Any]]:
    out = []
    for i, _ in enumerate(r.items(*path)):
        p = (*path, i)
        out.append(
            {
                "low": read_exact_quantity(r, (*p, "low")),
                "high": read_exact_quantity(r, (*p, "high")),
                "type": read_source_concept(r, (*p, "type")),
                "applies_to": read_source_concepts(r, (*p, "appliesTo")),
                "age": read_range(r, (*p, "age")),
                "text": r.str_(*p, "text"),
            }
        )
    return out


def read_own_or_source(r: Reader, path: Path, ours: Any, *, many: bool = False) -> Any:
    """None when the element is exactly what we would write (``ours``), marking it used;
    otherwise the source's concept (or, with ``many``, list of concepts: empty when the source
    gave none), read as written."""
    found = r.peek(*path)
    if found == ours:
        if found is not None:
            r.mark(*path)
        return None
    if found is None:
        return [] if many else None
    return read_source_concepts(r, path) if many else read_source_concept(r, path)


def read_coded(
    r: Reader, path: Path, *kinds: str, keep_text: bool = False
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(key, text, source code) of a CodeableConcept: the key the code table knows it as, and
    (with ``keep_text``) a text of our own, when we would write it back unchanged from them;
    else the key with the source's own concept, read as written."""
    found = r.peek(*path)
    if found is None:
        return None, None, None
    probe = Reader(r.resource, r.where)
    key, text = read_concept(probe, path, *kinds, keep_text=keep_text)
    if (key or text) and found == codeable(key, text):
        r.adopt(probe)
        return key, text, None
    return key, None, read_source_concept(r, path)
