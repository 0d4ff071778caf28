"""Base R4 rules that the structural pass (fhir.resources) does not check: required bindings
(``Observation.status``, ``Quantity.comparator``, ``Condition.clinicalStatus``, ...) and the
invariants of every resource and data type (``obs-3``, ``con-4``, ``qty-3``, ``per-1``, ...).

The rules come from ``fhir_plao/data/r4-core-rules.json``, which
``scripts/profiles/build_core_rules.py`` extracts from the R4 4.0.1 core definitions; they are
compiled once (fhirpathpy) on first use. The walk follows the JSON, looking each element up by its
path in its type (backbone elements stay in the type, data types switch to theirs, choice elements
``value[x]`` by the JSON name's type suffix, contained resources by their resourceType).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao._validation.conformance import Constraint, compile_constraint
from fhir_plao._validation.issues import Issue, Severity

__all__ = ["CoreRules", "load_core_rules"]

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "r4-core-rules.json"
_INLINE = frozenset({"BackboneElement", "Element"})
_RESOURCE = frozenset({"Resource", "DomainResource"})


@dataclass(frozen=True, slots=True)
class _ElementRule:
    types: tuple[str, ...]
    value_set: str | None
    content_reference: str | None


@dataclass(frozen=True, slots=True)
class _TypeRules:
    name: str
    elements: Mapping[str, _ElementRule]
    constraints: Mapping[str, tuple[Constraint, ...]]
    choices: Mapping[str, tuple[tuple[str, str], ...]]  # parent rel -> ((base, choice rel), ...)


def _suffix(code: str) -> str:
    """The JSON name suffix of a choice type: ``valueString``; a Quantity profile
    (SimpleQuantity, MoneyQuantity) is written as its base type, ``doseQuantity``."""
    if code in ("SimpleQuantity", "MoneyQuantity"):
        return "Quantity"
    return code[0].upper() + code[1:]


#: invariants that hold when an element they test is absent (skipping the FHIRPath evaluation
#: then saves most of the time the invariants take; the rules are the same)
def _has_choice(obj: Mapping[str, Any], base: str) -> bool:
    return any(k.startswith(base) and k[len(base) : len(base) + 1].isupper() for k in obj)


TRIVIAL: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "dom-2": lambda r: "contained" not in r,
    "dom-4": lambda r: "contained" not in r,
    "dom-5": lambda r: "contained" not in r,
    "obs-6": lambda r: "dataAbsentReason" not in r or not _has_choice(r, "value"),
    "obs-7": lambda r: "component" not in r or not _has_choice(r, "value"),
    "con-2": lambda r: "code" in r or "detail" in r,
    "con-3": lambda r: "clinicalStatus" in r,
    "con-4": lambda r: not _has_choice(r, "abatement"),
    "con-5": lambda r: "clinicalStatus" not in r or "verificationStatus" not in r,
    "ref-1": lambda r: not str(r.get("reference", "")).startswith("#"),
    "qty-3": lambda r: "code" not in r or "system" in r,
    "per-1": lambda r: "start" not in r or "end" not in r,
    "sqty-1": lambda r: "comparator" not in r,
    "obs-3": lambda r: "low" in r or "high" in r or "text" in r,
    "cpl-3": lambda r: "detail" not in r or "reference" not in r,
    "tim-1": lambda r: "duration" not in r,
    "tim-2": lambda r: "period" not in r or "periodUnit" in r,
    "tim-4": lambda r: "duration" not in r,
    "tim-6": lambda r: "periodMax" not in r,
    "tim-7": lambda r: "durationMax" not in r,
    "tim-8": lambda r: "countMax" not in r,
    "tim-9": lambda r: "offset" not in r,
    "tim-10": lambda r: "timeOfDay" not in r or "when" not in r,
}


def _range_ordered(r: Mapping[str, Any]) -> bool:
    """rng-2 (low <= high), which fhirpathpy cannot evaluate on Quantities: compared here when
    both bounds have a value in the same unit (else left to a person, as FHIRPath would)."""
    low, high = r.get("low"), r.get("high")
    if not isinstance(low, Mapping) or not isinstance(high, Mapping):
        return True
    a, b = low.get("value"), high.get("value")
    if not isinstance(a, int | Decimal) or not isinstance(b, int | Decimal):
        return True
    if (low.get("code"), low.get("system")) != (high.get("code"), high.get("system")):
        return True
    return Decimal(a) <= Decimal(b)


#: Bundle invariants checked natively, per entry (better paths): see references.check_bundle
HANDLED_ELSEWHERE = frozenset({"bdl-3", "bdl-5", "bdl-7", "bdl-8"})

_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def _has_code(cc: Any, system: str, *codes: str) -> bool:
    """Does the CodeableConcept (or list of them) hold a coding system|code among ``codes``?"""
    for concept in cc if isinstance(cc, list) else [cc]:
        if not isinstance(concept, Mapping):
            continue
        for coding in concept.get("coding") or []:
            if (
                isinstance(coding, Mapping)
                and coding.get("system") == system
                and coding.get("code") in codes
            ):
                return True
    return False


def _bundle_responses(r: Mapping[str, Any]) -> bool:
    """bdl-4: an entry has a response exactly when the Bundle is a response (or history)."""
    answers = r.get("type") in ("batch-response", "transaction-response", "history")
    return all(("response" in e) == answers for e in r.get("entry") or [] if isinstance(e, Mapping))


def _problem_has_status(r: Mapping[str, Any]) -> bool:
    """con-3 as its text says: clinicalStatus SHALL be present if verificationStatus is not
    entered-in-error and category is problem-list-item. (R4's FHIRPath compares each category,
    a CodeableConcept, with a string, so as written it fails for every Condition without a
    clinicalStatus; validators apply the text.)"""
    return (
        "clinicalStatus" in r
        or _has_code(r.get("verificationStatus"), _VER_STATUS, "entered-in-error")
        or not _has_code(r.get("category"), _CATEGORY, "problem-list-item")
    )


def _abated_not_active(r: Mapping[str, Any]) -> bool:
    """con-4: an abated Condition has clinicalStatus resolved, remission or inactive."""
    return not _has_choice(r, "abatement") or _has_code(
        r.get("clinicalStatus"), _CLINICAL, "resolved", "remission", "inactive"
    )


def _error_without_status(r: Mapping[str, Any]) -> bool:
    """con-5: an entered-in-error Condition has no clinicalStatus."""
    return "clinicalStatus" not in r or not _has_code(
        r.get("verificationStatus"), _VER_STATUS, "entered-in-error"
    )


def _period_ordered(r: Mapping[str, Any]) -> bool | None:
    """per-1 for dates: start <= end compared at their common precision (FHIRPath leaves an
    uncertain comparison empty, which passes). Times are left to FHIRPath (offsets)."""
    start, end = r.get("start"), r.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    if len(start) > 10 or len(end) > 10:
        return None  # times: FHIRPath compares them with their offsets
    n = min(len(start), len(end))
    return start[:n] <= end[:n]


#: invariants checked here instead of with FHIRPath: where fhirpathpy cannot evaluate them
#: (rng-2), where R4's expression says less than its text (con-3), and the hot ones of our
#: Bundles (fhirpathpy takes ~0.1-1 ms each); tests/profiles check each against FHIRPath
NATIVE: dict[str, Callable[[Mapping[str, Any]], bool | None]] = {
    "rng-2": _range_ordered,
    "bdl-4": _bundle_responses,
    "con-3": _problem_has_status,
    "con-4": _abated_not_active,
    "con-5": _error_without_status,
    "per-1": _period_ordered,
}


#: data types whose system + code name a code of a code system
_CODED = frozenset(
    {
        "Coding",
        "Quantity",
        "SimpleQuantity",
        "MoneyQuantity",
        "Age",
        "Count",
        "Distance",
        "Duration",
    }
)


class CoreRules:
    """The compiled base R4 rules, by type."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.value_sets: dict[str, dict[str, frozenset[str]]] = {
            url: {system: frozenset(codes) for system, codes in systems.items()}
            for url, systems in data.get("valueSets", {}).items()
        }
        #: code system URL -> its codes, for every code system R4 defines completely
        self.code_systems: dict[str, frozenset[str]] = {
            url: frozenset(codes) for url, codes in data.get("codeSystems", {}).items()
        }
        self.case_insensitive: frozenset[str] = frozenset(
            data.get("caseInsensitiveCodeSystems", ())
        )
        self.types: dict[str, _TypeRules] = {}
        for name, raw in data.get("types", {}).items():
            elements = {
                rel: _ElementRule(tuple(rule[0]), rule[1], rule[2] if len(rule) > 2 else None)
                for rel, rule in raw.get("elements", {}).items()
            }
            constraints = {
                rel: tuple(
                    compile_constraint(key, severity, human, expression)
                    for key, severity, human, expression in items
                )
                for rel, items in raw.get("constraints", {}).items()
            }
            choices: dict[str, list[tuple[str, str]]] = {}
            for rel in elements:
                if rel.endswith("[x]"):
                    parent, _, last = rel.rpartition(".")
                    choices.setdefault(parent, []).append((last[:-3], rel))
            self.types[name] = _TypeRules(
                name, elements, constraints, {k: tuple(v) for k, v in choices.items()}
            )

    @property
    def invariant_keys(self) -> frozenset[str]:
        return frozenset(
            c.key for t in self.types.values() for cs in t.constraints.values() for c in cs
        )

    def check(
        self, resource: Mapping[str, Any], path: str, *, nested_resources: bool = True
    ) -> list[Issue]:
        """Required bindings and invariants of base R4 in ``resource`` (paths under ``path``).

        ``nested_resources=False`` leaves out resources inside it (a Bundle's entries, checked
        one by one by the caller) but still evaluates the invariants that look into them."""
        run = _Run(self, resource, nested_resources)
        rtype = resource.get("resourceType")
        rules = self.types.get(rtype) if isinstance(rtype, str) else None
        if rules is not None:
            run.walk(resource, rules, "", path)
        return run.issues


class _Run:
    def __init__(
        self, core: CoreRules, resource: Mapping[str, Any], nested_resources: bool = True
    ) -> None:
        self.core = core
        self.nested_resources = nested_resources
        self.root = resource
        self.context = {"resource": resource, "rootResource": resource}
        self.issues: list[Issue] = []

    def walk(self, obj: Mapping[str, Any], rules: _TypeRules, rel: str, path: str) -> None:
        for constraint in rules.constraints.get(rel, ()):
            self.invariant(obj, constraint, path, f"{rules.name}.{rel}" if rel else rules.name)
        choices = rules.choices.get(rel, ())
        for key, value in obj.items():
            if key.startswith("_") or key in ("resourceType", "id"):
                continue
            child_rel = f"{rel}.{key}" if rel else key
            rule = rules.elements.get(child_rel)
            type_code: str | None = None
            if rule is None:
                for base, choice_rel in choices:
                    if not key.startswith(base):
                        continue
                    candidate = rules.elements[choice_rel]
                    type_code = next((t for t in candidate.types if base + _suffix(t) == key), None)
                    if type_code is not None:
                        rule, child_rel = candidate, choice_rel
                        break
            if rule is None:
                continue  # unknown elements are the structural pass's to report
            if type_code is None and len(rule.types) == 1:
                type_code = rule.types[0]
            target_rel = child_rel
            if rule.content_reference is not None:
                target_rel = rule.content_reference
                type_code = "BackboneElement"
            items = value if isinstance(value, list) else [value]
            listed = isinstance(value, list)
            for i, item in enumerate(items):
                where = f"{path}.{key}[{i}]" if listed else f"{path}.{key}"
                if rule.value_set is not None:
                    self.binding(item, rule.value_set, type_code, where)
                if not isinstance(item, Mapping) or type_code is None:
                    continue
                if type_code in _INLINE:
                    self.walk(item, rules, target_rel, where)
                elif type_code in _RESOURCE:
                    if not self.nested_resources:
                        continue
                    inner = self.core.types.get(str(item.get("resourceType")))
                    if inner is not None:
                        self.walk(item, inner, "", where)
                else:
                    if type_code in _CODED:
                        self.defined_code(item, where)
                    datatype = self.core.types.get(type_code)
                    if datatype is not None:
                        self.walk(item, datatype, "", where)

    def defined_code(self, item: Mapping[str, Any], where: str) -> None:
        """A Coding or Quantity that names a code system R4 defines completely must use one of
        its codes (``v3-orderableDrugForm`` has ``TAB``, not ``Tab``)."""
        system, code = item.get("system"), item.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return
        codes = self.core.code_systems.get(system)
        if codes is None or code in codes:
            return
        if system in self.core.case_insensitive and code.lower() in {c.lower() for c in codes}:
            return
        near = sorted(c for c in codes if c.lower() == code.lower())
        hint = f" (did you mean {near[0]!r}? codes are case-sensitive)" if near else ""
        self.add(
            where,
            f"{code!r} is not a code of {system}{hint}",
            "binding",
        )

    def binding(self, item: Any, url: str, type_code: str | None, where: str) -> None:
        systems = self.core.value_sets.get(url)
        if systems is None:
            return  # a value set the core package cannot enumerate (mime types, currencies...)
        name = url.rsplit("/", 1)[-1]
        if isinstance(item, str):
            if not any(item in codes for codes in systems.values()):
                allowed = sorted({c for codes in systems.values() for c in codes})
                shown = ", ".join(allowed[:15]) + (", ..." if len(allowed) > 15 else "")
                self.add(
                    where,
                    f"{item!r} is not a valid code here (R4 requires one of value set {name}: "
                    f"{shown})",
                    "binding",
                )
            return
        if not isinstance(item, Mapping):
            return
        codings = item.get("coding") if type_code == "CodeableConcept" else [item]
        if not isinstance(codings, list):
            codings = []
        pairs = [(c.get("system"), c.get("code")) for c in codings if isinstance(c, Mapping)]
        if any(system in systems and code in systems[system] for system, code in pairs):
            return
        allowed_pairs = sorted(f"{s}#{c}" for s, codes in systems.items() for c in codes)
        shown = ", ".join(allowed_pairs[:8]) + (", ..." if len(allowed_pairs) > 8 else "")
        found = ", ".join(f"{s}#{c}" for s, c in pairs) or "no coding"
        self.add(
            where,
            f"{found}: R4 requires a code from value set {name} here ({shown})",
            "binding",
        )

    def invariant(
        self, item: Mapping[str, Any], constraint: Constraint, where: str, model_path: str
    ) -> None:
        trivial = TRIVIAL.get(constraint.key)
        if (trivial is not None and trivial(item)) or constraint.key in HANDLED_ELSEWHERE:
            return
        native = NATIVE.get(constraint.key)
        verdict = native(item) if native is not None else None
        if native is not None and verdict is not None:
            if not verdict:
                self.add(
                    where,
                    f"{constraint.human} (invariant {constraint.key})",
                    f"invariant:{constraint.key}",
                    "error" if constraint.severity == "error" else "warning",
                )
            return
        if constraint.evaluate is None:
            return
        node: Any = item
        if item is not self.root:
            from fhirpathpy.engine.nodes import ResourceNode

            node = ResourceNode.create_node(item, model_path)  # type: ignore[no-untyped-call]
        try:
            result = constraint.evaluate(node, self.context)
        except Exception as exc:  # fhirpathpy cannot evaluate some expressions on some data
            self.add(
                where,
                f"invariant {constraint.key} could not be evaluated ({type(exc).__name__}); "
                f"check by hand: {constraint.human}",
                f"invariant:{constraint.key}",
                "warning",
            )
            return
        if any(r is False for r in result):
            severity: Severity = "error" if constraint.severity == "error" else "warning"
            self.add(
                where,
                f"{constraint.human} (invariant {constraint.key})",
                f"invariant:{constraint.key}",
                severity,
            )

    def add(self, path: str, message: str, rule: str, severity: Severity = "error") -> None:
        self.issues.append(Issue(severity, path, message, rule))


@cache
def load_core_rules() -> CoreRules | None:
    """The base R4 rules shipped with the package (None if the data file is missing)."""
    if not DATA_FILE.is_file():
        return None
    return CoreRules(jsonio.loads(DATA_FILE.read_bytes()))
