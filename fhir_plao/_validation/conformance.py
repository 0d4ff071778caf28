"""The conformance resources the validator knows: our profiles (as element trees) and value sets.

They are read once from ``fhir_plao/data/plao-profiles.json``, a collection Bundle that
``scripts/profiles/build.py`` writes from the SUSHI output in ``profiles/`` (the same resources,
element documentation left out). Each StructureDefinition snapshot becomes a tree of
:class:`Element` (children and slices under their element), each invariant is compiled once with
fhirpathpy, and each ValueSet becomes a set of (system, code) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhir_plao import jsonio

__all__ = [
    "CORE_PREFIX",
    "Conformance",
    "Constraint",
    "Discriminator",
    "Element",
    "Profile",
    "TypeRef",
    "ValueSet",
    "compile_constraint",
    "load_conformance",
]

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
#: the profiles as shipped in the package (package data: ``fhir_plao/data/*.json``)
DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "plao-profiles.json"

#: invariants checked natively (or deliberately not at all) instead of with FHIRPath:
#: ele-1 (no empty elements) and ext-1 (extension: value or sub-extensions) by the structural
#: pass; dom-3 (contained resources referenced) natively; dom-6 (narrative) is a best-practice
#: hint that would flag every resource we write, which carries no narrative by design.
SKIPPED_INVARIANTS = frozenset({"ele-1", "ext-1", "dom-3", "dom-6"})

Evaluator = Callable[[Any, Mapping[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str
    evaluate: Evaluator | None  # None: skipped, or did not compile (then ``problem`` says why)
    problem: str | None = None
    source: str | None = None  # the definition that declared it (snapshot ``constraint.source``)


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Discriminator:
    type: str
    path: str


@dataclass(eq=False, slots=True)
class Element:
    """One element definition of a snapshot, with its children and slices."""

    id: str
    path: str
    name: str
    slice_name: str | None
    min: int
    max: int | None  # None: unbounded
    types: tuple[TypeRef, ...]
    short: str | None = None
    fixed: Any = None
    has_fixed: bool = False
    pattern: Any = None
    has_pattern: bool = False
    binding_strength: str | None = None
    binding_value_set: str | None = None
    constraints: tuple[Constraint, ...] = ()
    discriminators: tuple[Discriminator, ...] = ()
    slicing_rules: str | None = None
    slices: list[Element] = field(default_factory=list)
    children: list[Element] = field(default_factory=list)
    content_reference: str | None = None

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def is_sliced(self) -> bool:
        return bool(self.slices) and not self.is_choice

    def child(self, name: str) -> Element | None:
        for c in self.children:
            if c.name == name:
                return c
        return None

    def type_slice(self, json_name: str) -> Element | None:
        """For a choice element, the type slice named by its JSON name (``valueQuantity``)."""
        for s in self.slices:
            if s.slice_name == json_name:
                return s
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    url: str
    id: str
    name: str
    title: str
    type: str
    base_definition: str
    root: Element

    @property
    def label(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class ValueSet:
    url: str
    title: str
    codes: frozenset[tuple[str, str]]
    whole_systems: frozenset[str]  # systems included without a concept list: any code of them

    def contains(self, system: str | None, code: str | None) -> bool:
        if not isinstance(code, str) or not isinstance(system, str | None):
            return False  # not the strings FHIR has there: the structure check says so
        if system is None:
            return any(c == code for _, c in self.codes)
        return (system, code) in self.codes or system in self.whole_systems

    def sample(self, limit: int = 6) -> str:
        shown = sorted(f"{_system_name(s)}#{c}" for s, c in self.codes)
        more = f", ... ({len(shown)} codes)" if len(shown) > limit else ""
        return ", ".join(shown[:limit]) + more


_SYSTEM_NAMES = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://unitsofmeasure.org": "UCUM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
}


def _system_name(system: str) -> str:
    return _SYSTEM_NAMES.get(system, system)


@dataclass(frozen=True, slots=True)
class Conformance:
    profiles: Mapping[str, Profile]
    value_sets: Mapping[str, ValueSet]

    def profile(self, url: str) -> Profile | None:
        return self.profiles.get(url.split("|", 1)[0])

    def value_set(self, url: str) -> ValueSet | None:
        return self.value_sets.get(url.split("|", 1)[0])


# --------------------------------------------------------------------------- loading


@cache
def _compiled(expression: str) -> tuple[Evaluator | None, str | None]:
    """A FHIRPath expression compiled once per process (many elements share ``dom-*`` and the
    like); (None, why) when it does not compile."""
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    compile_: Callable[..., Evaluator] = fp_compile
    # fhirpathpy has no hasValue(); in JSON a primitive that exists has a value unless it is
    # given by extensions only, so exists() is the close (and here sufficient) stand-in
    runnable = expression.replace("hasValue()", "exists()")
    try:
        return compile_(runnable, models["r4"], {"traceFn": _ignore_trace}), None
    except Exception as exc:  # a malformed expression in a definition
        return None, f"does not compile: {exc}"


def compile_constraint(
    key: str, severity: str, human: str, expression: str | None, source: str | None = None
) -> Constraint:
    if key in SKIPPED_INVARIANTS or not expression:
        return Constraint(key, severity, human, expression or "", None, None, source)
    fn, problem = _compiled(expression)
    return Constraint(key, severity, human, expression, fn, problem, source)


class _Compiler:
    def constraint(self, raw: Mapping[str, Any]) -> Constraint:
        key = str(raw.get("key", "?"))
        expression = raw.get("expression")
        return compile_constraint(
            key,
            str(raw.get("severity", "error")),
            str(raw.get("human", key)),
            expression if isinstance(expression, str) else None,
            raw.get("source"),
        )


def _ignore_trace(*_args: Any) -> None:
    return None


_FIXED = re.compile(r"^(fixed|pattern)([A-Z][A-Za-z]*)$")


def _element(raw: Mapping[str, Any], compiler: _Compiler) -> Element:
    eid = str(raw["id"])
    path = str(raw["path"])
    slice_name = raw.get("sliceName")
    max_raw = raw.get("max", "*")
    types = tuple(
        TypeRef(
            str(t["code"]),
            tuple(t.get("profile", ())),
            tuple(t.get("targetProfile", ())),
        )
        for t in raw.get("type", ())
    )
    el = Element(
        id=eid,
        path=path,
        name=path.rsplit(".", 1)[-1],
        slice_name=str(slice_name) if slice_name is not None else None,
        min=int(raw.get("min", 0)),
        max=None if max_raw == "*" else int(max_raw),
        types=types,
        short=raw.get("short"),
        content_reference=raw.get("contentReference"),
    )
    for key, value in raw.items():
        m = _FIXED.match(key)
        if m:
            if m.group(1) == "fixed":
                el.fixed, el.has_fixed = value, True
            else:
                el.pattern, el.has_pattern = value, True
    binding = raw.get("binding")
    if isinstance(binding, Mapping):
        el.binding_strength = binding.get("strength")
        el.binding_value_set = binding.get("valueSet")
    el.constraints = tuple(compiler.constraint(c) for c in raw.get("constraint", ()))
    slicing = raw.get("slicing")
    if isinstance(slicing, Mapping):
        el.discriminators = tuple(
            Discriminator(str(d["type"]), str(d["path"])) for d in slicing.get("discriminator", ())
        )
        el.slicing_rules = slicing.get("rules", "open")
    return el


def _split_id(eid: str) -> tuple[str, str]:
    """``Observation.category:imaging.coding`` -> (``Observation.category:imaging``, ``coding``).

    Slice names cannot hold a dot (ElementDefinition eld-16), so the last dot splits."""
    parent, _, last = eid.rpartition(".")
    return parent, last


def build_tree(elements: Iterable[Mapping[str, Any]], compiler: _Compiler) -> Element:
    root: Element | None = None
    by_id: dict[str, Element] = {}
    for raw in elements:
        el = _element(raw, compiler)
        if root is None:
            root = el
            by_id[el.id] = el
            continue
        parent_id, last = _split_id(el.id)
        name, _, slice_name = last.partition(":")
        if slice_name:
            if "/" in slice_name:  # a re-slice: not supported, keep it out of the tree
                by_id[el.id] = el
                continue
            sliced = by_id.get(f"{parent_id}.{name}")
            if sliced is not None:
                sliced.slices.append(el)
        else:
            parent = by_id.get(parent_id)
            if parent is not None:
                parent.children.append(el)
        by_id[el.id] = el
    if root is None:
        raise ValueError("a StructureDefinition without snapshot elements")
    return root


def _value_set(raw: Mapping[str, Any]) -> ValueSet:
    codes: set[tuple[str, str]] = set()
    whole: set[str] = set()
    compose = raw.get("compose", {})
    for include in compose.get("include", ()):
        system = include.get("system")
        if not system:
            continue
        concepts = include.get("concept")
        if concepts:
            codes.update((system, str(c["code"])) for c in concepts)
        elif not include.get("filter"):
            whole.add(system)
    for exclude in compose.get("exclude", ()):
        system = exclude.get("system")
        for c in exclude.get("concept", ()):
            codes.discard((system, str(c["code"])))
    for contains in raw.get("expansion", {}).get("contains", ()):
        if contains.get("system") and contains.get("code"):
            codes.add((contains["system"], str(contains["code"])))
    return ValueSet(
        url=str(raw["url"]),
        title=str(raw.get("title") or raw.get("name") or raw["url"]),
        codes=frozenset(codes),
        whole_systems=frozenset(whole),
    )


def conformance_from_resources(items: Iterable[Mapping[str, Any]]) -> Conformance:
    """Compile StructureDefinitions (with snapshots) and ValueSets."""
    compiler = _Compiler()
    profiles: dict[str, Profile] = {}
    value_sets: dict[str, ValueSet] = {}
    for resource in items:
        kind = resource.get("resourceType")
        if kind == "StructureDefinition":
            snapshot = resource.get("snapshot", {}).get("element")
            if not snapshot:
                raise ValueError(f"{resource.get('url')}: no snapshot (build with sushi -s)")
            profiles[str(resource["url"])] = Profile(
                url=str(resource["url"]),
                id=str(resource["id"]),
                name=str(resource.get("name", resource["id"])),
                title=str(resource.get("title") or resource.get("name") or resource["id"]),
                type=str(resource["type"]),
                base_definition=str(resource.get("baseDefinition", "")),
                root=build_tree(snapshot, compiler),
            )
        elif kind == "ValueSet":
            value_sets[str(resource["url"])] = _value_set(resource)
    return Conformance(profiles, value_sets)


@cache
def load_conformance() -> Conformance:
    """The package's own profiles and value sets (read and compiled once per process)."""
    text = DATA_FILE.read_bytes()
    bundle = jsonio.loads(text)
    return conformance_from_resources(e["resource"] for e in bundle.get("entry", ()))
