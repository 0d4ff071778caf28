"""Building blocks shared by the mappers: codeable concepts, quantities, and the tracking reader
that lets ``from_fhir`` report every element it did not use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_plao.coded import UNIT_DISPLAY
from fhir_plao.errors import MappingError
from fhir_plao.terminology import TERMINOLOGY

JSON = dict[str, Any]

BASE = "http://fhir-plao.example.org/fhir"
PROFILE = BASE + "/StructureDefinition/"
ITEM_SYSTEM = BASE + "/item-id"
UCUM = "http://unitsofmeasure.org"

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


INTERPRETATION_DISPLAY = {
    "H": "High",
    "L": "Low",
    "N": "Normal",
    "A": "Abnormal",
    "HH": "Critical high",
    "LL": "Critical low",
}


# --------------------------------------------------------------------------- writing


def codeable(key: str | None, text: str | None = None) -> JSON:
    """A CodeableConcept for a code-table key; ``text`` overrides the table's text."""
    if key is None:
        if not text:
            raise ValueError("a concept needs a key or a text")
        return {"text": text}
    concept = TERMINOLOGY.concept(key)
    out: JSON = {}
    if concept.codings:
        out["coding"] = [coding_json(c.system, c.code, c.display) for c in concept.codings]
    out["text"] = text if text is not None else concept.text
    return out


def codeable_many(keys: tuple[str, ...]) -> JSON:
    """One CodeableConcept holding the codings of several keys (an imaging study of two regions)."""
    codings = [
        coding_json(c.system, c.code, c.display)
        for k in keys
        for c in TERMINOLOGY.concept(k).codings
    ]
    out: JSON = {}
    if codings:
        out["coding"] = codings
    out["text"] = "; ".join(TERMINOLOGY.concept(k).text for k in keys)
    return out


def coding_json(system: str, code: str, display: str | None) -> JSON:
    out: JSON = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def fixed_category(system: str, code: str, display: str) -> JSON:
    return {"coding": [coding_json(system, code, display)]}


def quantity(value: Decimal, code: str, unit: str | None = None) -> JSON:
    return {
        "value": value,
        "unit": unit if unit is not None else UNIT_DISPLAY.get(code, code),
        "system": UCUM,
        "code": code,
    }


def annotation(text: str | None) -> list[JSON] | None:
    return [{"text": text}] if text else None


def prune(resource: JSON) -> JSON:
    """Drop keys whose value is None or empty, recursively (FHIR forbids empty elements)."""
    out: JSON = {}
    for key, value in resource.items():
        if isinstance(value, dict):
            value = prune(value)
        elif isinstance(value, list):
            value = [prune(v) if isinstance(v, dict) else v for v in value]
            value = [v for v in value if v not in (None, {}, [])]
        if value is None or value == {} or value == [] or value == "":
            continue
        out[key] = value
    return out


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Unmapped:
    """An element ``from_fhir`` could not carry into the case, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


Path = tuple[str | int, ...]


def path_text(root: str, path: Path) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class Reader:
    """Reads one resource and remembers which elements were used.

    ``get`` returns an element and marks it (and everything under it) used; ``peek`` only looks.
    :meth:`leftovers` then lists every leaf that no ``get`` covered, so nothing is dropped
    silently.
    """

    #: elements that carry no case data: server bookkeeping and generated narrative
    IGNORED: frozenset[str] = frozenset(
        {
            "resourceType",
            "id",
            "meta.versionId",
            "meta.lastUpdated",
            "meta.profile",
            "meta.source",
            "text",
            "implicitRules",
            "language",
        }
    )

    def __init__(self, resource: JSON, where: str) -> None:
        self.resource = resource
        self.where = where  # e.g. "Observation/abc" or "Bundle.entry[3].resource"
        self.type: str = resource.get("resourceType", "?")
        self._used: set[Path] = set()

    # -- access

    def peek(self, *path: str | int) -> Any:
        node: Any = self.resource
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return None
                node = node[part]
            else:
                if not isinstance(node, dict):
                    return None
                node = node.get(part)
            if node is None:
                return None
        return node

    def get(self, *path: str | int) -> Any:
        value = self.peek(*path)
        if value is not None:
            self._used.add(path)
        return value

    def mark(self, *path: str | int) -> None:
        self._used.add(path)

    def adopt(self, other: Reader) -> None:
        """Take over what a trial reader of the same resource used."""
        self._used |= other._used

    def items(self, *path: str | int) -> list[Any]:
        """The list at ``path`` (empty when absent), without marking it."""
        value = self.peek(*path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "expected a list")
        return value

    def path(self, *path: str | int) -> str:
        return path_text(self.where, path)

    def error(self, path: Path, message: str) -> MappingError:
        return MappingError(message, location=path_text(self.where, path))

    # -- typed getters that raise MappingError naming the element

    def str_(self, *path: str | int) -> str | None:
        value = self.get(*path)
        if value is not None and not isinstance(value, str):
            raise self.error(path, f"expected a string, got {type(value).__name__}")
        return value

    def decimal(self, *path: str | int) -> Decimal | None:
        value = self.get(*path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self.error(path, f"expected a number, got {value!r}")
        return Decimal(value)

    def int_(self, *path: str | int) -> int | None:
        value = self.get(*path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {value!r}")
        return value

    # -- the report

    def leftovers(self, reason: str = "no place for it in the case model") -> list[Unmapped]:
        out: list[Unmapped] = []
        for path, value in _leaves(self.resource, ()):
            if self._covered(path):
                continue
            dotted = ".".join(p for p in path if isinstance(p, str))
            if dotted in self.IGNORED or any(dotted.startswith(i + ".") for i in self.IGNORED):
                continue
            out.append(Unmapped(path_text(self.where, path), f"{reason} (value {_short(value)})"))
        return out

    def _covered(self, path: Path) -> bool:
        return any(path[:n] in self._used for n in range(1, len(path) + 1))


def _leaves(node: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path, node


def _short(value: Any) -> str:
    text = repr(str(value)) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def read_concept(
    r: Reader, path: Path, *kinds: str, keep_text: bool = False
) -> tuple[str | None, str | None]:
    """Read a CodeableConcept as (key, text).

    The first coding that is in the code table as one of ``kinds`` gives the key; the concept's
    other codings are used with it; codings of other concepts are left for the unmapped report.
    With ``keep_text`` the caller has a place for a text of its own: the text is returned when
    it differs from the table's wording for the key (or when no key matched). Without it, a text
    is used only when it is the table's own wording; any other is left for the report.
    """
    cc = r.peek(*path)
    if cc is None:
        return None, None
    if not isinstance(cc, dict):
        raise r.error(path, "expected a CodeableConcept")
    codings = r.items(*path, "coding")
    key = _key_of_codings(codings, kinds)
    text = r.peek(*path, "text")
    if text is not None and not isinstance(text, str):
        raise r.error((*path, "text"), "expected a string")
    if key is None:
        text_key = TERMINOLOGY.key_for_text(text, *kinds)
        if text_key is not None and not TERMINOLOGY.concept(text_key).codings and not codings:
            r.mark(*path, "text")
            return text_key, None
        if not keep_text:
            return None, None
        if text is None:
            # no text and no known code: the first display names it; the codings are reported
            for coding in codings:
                if isinstance(coding, dict) and coding.get("display"):
                    return None, str(coding["display"])
            return None, None
        r.mark(*path, "text")
        return None, text
    own = {(c.system, c.code) for c in TERMINOLOGY.concept(key).codings}
    for i, coding in enumerate(codings):
        pair = (coding.get("system"), coding.get("code")) if isinstance(coding, dict) else None
        if pair is not None and all(isinstance(v, str) for v in pair) and pair in own:
            r.mark(*path, "coding", i)
    if text is None or text == TERMINOLOGY.concept(key).text:
        r.mark(*path, "text")
        return key, None
    if keep_text:
        r.mark(*path, "text")
        return key, text
    return key, None


def _key_of_codings(codings: list[Any], kinds: tuple[str, ...]) -> str | None:
    pairs = [(c.get("system"), c.get("code")) for c in codings if isinstance(c, dict)]
    return TERMINOLOGY.key_for_codings(pairs, kinds)


def concept_name(r: Reader, path: Path) -> str:
    """A CodeableConcept's name for a message: its text, else its first coding."""
    text = r.peek(*path, "text")
    if isinstance(text, str):
        return text
    for coding in r.items(*path, "coding"):
        if isinstance(coding, dict):
            return str(coding.get("display") or f"{coding.get('system')}|{coding.get('code')}")
    return "?"


def read_concepts(r: Reader, path: Path, *kinds: str) -> tuple[str, ...]:
    """Every key of ``kinds`` in a CodeableConcept written by :func:`codeable_many`, in order.

    The text (the concepts' texts joined by "; ") gives the order and names the text-only
    concepts; the codings must be exactly those of the named coded concepts. Anything else
    yields the coded keys alone, in coding order, and leaves the text to the report.
    """
    coded: list[str] = []
    coding_index: dict[str, list[int]] = {}
    for i, coding in enumerate(r.items(*path, "coding")):
        if not isinstance(coding, dict):
            continue
        for candidate in TERMINOLOGY.keys_for(coding.get("system"), coding.get("code")):
            if TERMINOLOGY.concept(candidate).kind in kinds:
                if candidate not in coded:
                    coded.append(candidate)
                coding_index.setdefault(candidate, []).append(i)
                break
    text = r.peek(*path, "text")
    from_text: list[str] = []
    if isinstance(text, str):
        for part in text.split("; "):
            key = next(
                (k for k in coded if TERMINOLOGY.concept(k).text == part),
                TERMINOLOGY.key_for_text(part, *kinds),
            )
            if key is None or key in from_text:
                from_text = []
                break
            from_text.append(key)
    if from_text and {k for k in from_text if TERMINOLOGY.concept(k).codings} == set(coded):
        r.mark(*path, "text")
        keys = from_text
    else:
        keys = coded
    for key in keys:
        for i in coding_index.get(key, ()):
            r.mark(*path, "coding", i)
    return tuple(keys)


def read_fixed_code(r: Reader, path: Path, system: str) -> str | None:
    """The code of the first coding from ``system`` in a CodeableConcept (marked used)."""
    for i, coding in enumerate(r.items(*path, "coding")):
        if isinstance(coding, dict) and coding.get("system") == system:
            r.mark(*path, "coding", i, "system")
            r.mark(*path, "coding", i, "code")
            r.mark(*path, "coding", i, "display")
            code = coding.get("code")
            return str(code) if code is not None else None
    return None


def read_quantity(r: Reader, path: Path) -> tuple[Decimal | None, str | None]:
    """(value, UCUM code) of a Quantity; the code falls back to ``unit`` when no code is given."""
    if r.peek(*path) is None:
        return None, None
    value = r.decimal(*path, "value")
    code = r.str_(*path, "code")
    system = r.peek(*path, "system")
    if system is not None:
        if system != UCUM:
            raise r.error((*path, "system"), f"unit system {system!r} is not UCUM")
        r.mark(*path, "system")
    unit = r.peek(*path, "unit")
    if code is None:
        code = r.str_(*path, "unit")
    elif unit is not None and unit in (code, UNIT_DISPLAY.get(code)):
        r.mark(*path, "unit")
    return value, code


def read_note(r: Reader, path: Path = ("note",)) -> str | None:
    notes = r.items(*path)
    if not notes:
        return None
    texts = []
    for i, _ in enumerate(notes):
        text = r.str_(*path, i, "text")
        if text:
            texts.append(text)
    return "\n\n".join(texts) if texts else None
