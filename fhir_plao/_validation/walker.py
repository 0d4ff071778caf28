"""Checks one resource against one profile by walking the profile's snapshot tree.

What is checked, element by element: cardinality (min / max, of slices too), the types allowed for
a choice element (``value[x]``), fixed and pattern values, slices matched by their discriminators
(value / pattern / exists / type), required bindings to value sets we hold, reference targets
(when the reference resolves inside the Bundle), and the invariants (FHIRPath, compiled once).
Unknown elements and primitive formats are the structural pass's job (fhir.resources), not this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from fhir_plao._validation.conformance import (
    CORE_PREFIX,
    Conformance,
    Constraint,
    Element,
    Profile,
    ValueSet,
)
from fhir_plao._validation.core import TRIVIAL
from fhir_plao._validation.issues import Issue, Severity

__all__ = ["ProfileWalker", "Resolver"]

#: resolves a reference string to the resource it names (inside the Bundle), or None
Resolver = Callable[[str], Mapping[str, Any] | None]

#: every R4 data type, as it ends a choice element's JSON name (``valueQuantity``)
_TYPE_SUFFIXES = frozenset(
    [
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
        "Address",
        "Age",
        "Annotation",
        "Attachment",
        "CodeableConcept",
        "Coding",
        "ContactPoint",
        "Count",
        "Distance",
        "Duration",
        "HumanName",
        "Identifier",
        "Money",
        "Period",
        "Quantity",
        "Range",
        "Ratio",
        "Reference",
        "SampledData",
        "Signature",
        "Timing",
        "ContactDetail",
        "Contributor",
        "DataRequirement",
        "Expression",
        "ParameterDefinition",
        "RelatedArtifact",
        "TriggerDefinition",
        "UsageContext",
        "Dosage",
        "Meta",
    ]
)


def _type_suffix(code: str) -> str:
    return code[0].upper() + code[1:]


def _as_list(value: Any) -> tuple[list[Any], bool]:
    if isinstance(value, list):
        return value, True
    return [value], False


def _render(value: Any, limit: int = 120) -> str:
    if isinstance(value, Mapping):
        coding = value.get("coding")
        if isinstance(coding, list) and coding and isinstance(coding[0], Mapping):
            return " / ".join(_render(c) for c in coding)
        if "code" in value and ("system" in value or "value" not in value):
            system = value.get("system")
            return f"{system}#{value.get('code')}" if system else f"#{value.get('code')}"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, Mapping | list):
        from fhir_plao import jsonio

        text = jsonio.dumps(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return Decimal(a) == Decimal(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _matches(pattern: Any, value: Any) -> bool:
    """FHIR pattern semantics: every element of the pattern is in the value (lists: each
    pattern item matches some value item); primitives are equal."""
    if isinstance(pattern, Mapping):
        if not isinstance(value, Mapping):
            return False
        return all(_matches(p, value.get(k)) for k, p in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(_matches(p, v) for v in value) for p in pattern)
    if value is None:
        return False
    return _equal(pattern, value)


def _values_at(value: Any, path: str) -> list[Any]:
    """Every value at a dotted path under ``value`` (lists flattened)."""
    current = [value]
    if path in ("", "$this"):
        return current
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, Mapping) and part in item:
                got = item[part]
                nxt.extend(got if isinstance(got, list) else [got])
        current = nxt
    return current


def _describe_slice(element: Element, sliced: Element) -> str:
    """What makes a value belong to a slice, for messages (``...observation-category#imaging``)."""
    parts: list[str] = []
    for d in sliced.discriminators:
        target = element if d.path == "$this" else _descend(element, d.path)
        if target is None:
            continue
        if target.has_pattern or target.has_fixed:
            shown = _render(target.pattern if target.has_pattern else target.fixed)
            parts.append(shown if d.path == "$this" else f"{d.path} = {shown}")
    return "; ".join(parts) or (element.short or "")


def _descend(element: Element, path: str) -> Element | None:
    node: Element | None = element
    for part in path.split("."):
        if node is None:
            return None
        node = node.child(part)
    return node


class ProfileWalker:
    """Validates resources against the profiles of one :class:`Conformance`."""

    def __init__(
        self, conformance: Conformance, skip_invariants: frozenset[str] = frozenset()
    ) -> None:
        self.conformance = conformance
        #: invariants checked elsewhere (the base R4 ones, by the core rules): not again here
        self.skip_invariants = skip_invariants

    def validate(
        self,
        resource: Mapping[str, Any],
        profile: Profile,
        path: str,
        resolve: Resolver | None = None,
    ) -> list[Issue]:
        run = _Run(self.conformance, profile, resource, resolve, self.skip_invariants)
        run.check_value(resource, profile.root, path, profile.type)
        return run.issues


class _Run:
    def __init__(
        self,
        conformance: Conformance,
        profile: Profile,
        resource: Mapping[str, Any],
        resolve: Resolver | None,
        skip_invariants: frozenset[str] = frozenset(),
    ) -> None:
        self.skip_invariants = skip_invariants
        self.conformance = conformance
        self.profile = profile
        self.resource = resource
        self.resolve = resolve
        self.issues: list[Issue] = []
        self.context = {"resource": resource, "rootResource": resource}

    # -- reporting

    def issue(self, path: str, message: str, rule: str, severity: Severity = "error") -> None:
        self.issues.append(Issue(severity, path, f"{message} [{self.profile.id}]", rule))

    # -- elements

    def check_children(self, obj: Mapping[str, Any], parent: Element, path: str) -> None:
        for child in parent.children:
            if child.is_choice:
                self.check_choice(obj, child, path)
            else:
                self.check_element(obj, child, path)

    def check_element(self, obj: Mapping[str, Any], el: Element, path: str) -> None:
        value = obj.get(el.name)
        extension = obj.get("_" + el.name)
        where = f"{path}.{el.name}"
        if value is None and extension is None:
            count = 0
            items: list[Any] = []
            listed = False
        else:
            items, listed = _as_list(value if value is not None else extension)
            count = len(items)
            if value is None:
                items = []  # only extensions on a primitive: nothing to compare
        self.check_count(el, count, where)
        type_code = el.types[0].code if len(el.types) == 1 else None
        if el.is_sliced:
            self.check_slices(items, el, where, listed, type_code)
        for i, item in enumerate(items):
            self.check_value(item, el, f"{where}[{i}]" if listed else where, type_code)

    def check_choice(self, obj: Mapping[str, Any], el: Element, path: str) -> None:
        base = el.name[:-3]
        allowed = {_type_suffix(t.code): t.code for t in el.types}
        present: list[str] = []
        for key in obj:
            name = key[1:] if key.startswith("_") else key
            suffix = name[len(base) :]
            if name.startswith(base) and suffix in _TYPE_SUFFIXES and name not in present:
                present.append(name)
        shown = base + next(iter(allowed)) if len(allowed) == 1 else el.name
        if len(present) > 1:
            self.issue(
                f"{path}.{el.name}",
                f"only one {el.name} may be present, found {', '.join(present)}",
                "cardinality",
            )
        else:
            self.check_count(el, len(present), f"{path}.{shown}")
        for name in present:
            suffix = name[len(base) :]
            where = f"{path}.{name}"
            code = allowed.get(suffix)
            if code is None:
                kinds = ", ".join(base + s for s in allowed)
                self.issue(
                    where,
                    f"{name} is not allowed here: {el.name} may only be {kinds}",
                    "type",
                )
                continue
            value = obj.get(name)
            if value is None:
                continue
            target = el.type_slice(name)
            self.check_value(value, el, where, code)
            if target is not None:
                self.check_value(value, target, where, code)

    def check_count(self, el: Element, count: int, where: str) -> None:
        if count < el.min:
            what = f"'{el.short}'" if el.short else "it"
            self.issue(
                where,
                f"required element is missing: the profile needs at least {el.min} ({what}), "
                f"found {count}",
                "cardinality",
            )
        elif el.max is not None and count > el.max:
            if el.max == 0:
                message = "not allowed by the profile (max 0): remove it"
            else:
                message = f"at most {el.max} allowed by the profile, found {count}"
            self.issue(where, message, "cardinality")

    def check_value(self, item: Any, el: Element, where: str, type_code: str | None) -> None:
        if item is None:
            return
        if el.has_fixed and not _equal(el.fixed, item):
            self.issue(
                where,
                f"must be exactly {_render(el.fixed)} (fixed by the profile), "
                f"found {_render(item)}",
                "fixed",
            )
        if el.has_pattern and not _matches(el.pattern, item):
            self.issue(
                where,
                f"must match {_render(el.pattern)} (pattern of the profile), found {_render(item)}",
                "pattern",
            )
        if el.binding_strength in ("required", "extensible") and el.binding_value_set:
            self.check_binding(item, el, where, type_code)
        if type_code == "Reference" and isinstance(item, Mapping):
            self.check_reference(item, el, where)
        for constraint in el.constraints:
            if constraint.key not in self.skip_invariants:
                self.check_invariant(item, el, constraint, where, type_code)
        if isinstance(item, Mapping) and el.children:
            self.check_children(item, el, where)

    # -- slices

    def check_slices(
        self, items: list[Any], el: Element, where: str, listed: bool, type_code: str | None
    ) -> None:
        counts = {id(s): 0 for s in el.slices}
        for i, item in enumerate(items):
            item_path = f"{where}[{i}]" if listed else where
            match = next((s for s in el.slices if self.in_slice(item, s, el)), None)
            if match is None:
                if el.slicing_rules == "closed":
                    names = ", ".join(str(s.slice_name) for s in el.slices)
                    self.issue(
                        item_path,
                        f"matches none of the slices the profile allows ({names})",
                        "slice",
                    )
                continue
            counts[id(match)] += 1
            self.check_value(item, match, item_path, type_code)
        for s in el.slices:
            n = counts[id(s)]
            what = _describe_slice(s, el)
            if n < s.min:
                self.issue(
                    where,
                    f"needs {s.min} {el.name} of slice '{s.slice_name}' ({what}), found {n}",
                    "slice",
                )
            elif s.max is not None and n > s.max:
                self.issue(
                    where,
                    f"at most {s.max} {el.name} of slice '{s.slice_name}' ({what}) allowed, "
                    f"found {n}",
                    "slice",
                )

    def in_slice(self, item: Any, slice_: Element, sliced: Element) -> bool:
        for d in sliced.discriminators:
            if d.type in ("value", "pattern"):
                if d.path == "$this":
                    target: Element | None = slice_
                    actual = [item]
                else:
                    target = _descend(slice_, d.path)
                    actual = _values_at(item, d.path)
                expected: Any = None
                exact = False
                if target is not None and target.has_fixed:
                    expected, exact = target.fixed, True
                elif target is not None and target.has_pattern:
                    expected = target.pattern
                elif slice_.has_pattern or slice_.has_fixed:
                    # the value sits inside the slice's own pattern (e.g. coding.code of a
                    # patternCodeableConcept)
                    own = slice_.pattern if slice_.has_pattern else slice_.fixed
                    found = _values_at(own, d.path)
                    if not found:
                        return False
                    expected = found[0]
                else:
                    return False
                test = _equal if exact else _matches
                if not any(test(expected, a) for a in actual):
                    return False
            elif d.type == "exists":
                target = _descend(slice_, d.path)
                present = bool(_values_at(item, d.path))
                if target is not None and present != (target.min > 0):
                    return False
            elif d.type == "type":
                # type slicing outside choice elements is not used by our profiles
                continue
        return True

    # -- terminology

    def check_binding(self, item: Any, el: Element, where: str, type_code: str | None) -> None:
        url = str(el.binding_value_set)
        vs = self.conformance.value_set(url)
        if vs is None:
            return  # a value set we do not hold (core or external): not checked here
        found = self._codes(item, type_code)
        if found is None or any(vs.contains(system, code) for system, code in found):
            return
        if el.binding_strength == "required":
            self.issue(where, self._binding_message(item, vs, found), "binding")
        elif found:  # extensible: another code is allowed only when none of the set fits
            codes = ", ".join(f"{s}#{c}" if s else f"#{c}" for s, c in found)
            self.issue(
                where,
                f"{codes} is not in value set '{vs.title}' ({vs.url}); the binding is extensible: "
                f"use one of its codes when one fits ({vs.sample()})",
                "binding",
                "warning",
            )

    @staticmethod
    def _codes(item: Any, type_code: str | None) -> list[tuple[str | None, str | None]] | None:
        if isinstance(item, str):
            return [(None, item)]
        if not isinstance(item, Mapping):
            return None
        if type_code == "CodeableConcept" or "coding" in item or "text" in item:
            return [
                (c.get("system"), c.get("code"))
                for c in item.get("coding", ())
                if isinstance(c, Mapping)
            ]
        return [(item.get("system"), item.get("code"))]

    @staticmethod
    def _binding_message(
        item: Any, vs: ValueSet, found: list[tuple[str | None, str | None]]
    ) -> str:
        if not found:
            shown = f"text only ({_render(item.get('text'))})" if isinstance(item, Mapping) else ""
            return (
                f"needs a code from value set '{vs.title}' ({vs.url}), found {shown or 'none'}; "
                f"allowed: {vs.sample()}"
            )
        codes = ", ".join(f"{s}#{c}" if s else f"#{c}" for s, c in found)
        return (
            f"{codes} is not in value set '{vs.title}' ({vs.url}), which this profile requires; "
            f"allowed: {vs.sample()}"
        )

    # -- references

    def check_reference(self, item: Mapping[str, Any], el: Element, where: str) -> None:
        reference = item.get("reference")
        if not isinstance(reference, str) or self.resolve is None:
            return
        target = self.resolve(reference)
        if target is None:
            return  # unresolved references are reported by the Bundle pass
        allowed: dict[str, str | None] = {}  # resource type -> our profile URL (None: any)
        for t in el.types:
            for url in t.target_profiles:
                if url.startswith(CORE_PREFIX):
                    allowed.setdefault(url[len(CORE_PREFIX) :], None)
                else:
                    prof = self.conformance.profile(url)
                    if prof is not None:
                        allowed[prof.type] = url
        if not allowed or "Resource" in allowed:
            return
        rtype = target.get("resourceType")
        if rtype not in allowed:
            kinds = " or ".join(sorted(allowed))
            self.issue(
                f"{where}.reference",
                f"must refer to a {kinds}, but {reference} is a {rtype}",
                "reference",
            )
            return
        wanted = allowed[str(rtype)]
        if wanted is not None:
            meta = target.get("meta")
            claimed = meta.get("profile", ()) if isinstance(meta, Mapping) else ()
            if wanted not in claimed:
                self.issue(
                    f"{where}.reference",
                    f"the {rtype} it refers to ({reference}) does not claim profile {wanted} "
                    "in meta.profile",
                    "reference",
                    "warning",
                )
            self.check_target_conforms(target, wanted, reference, f"{where}.reference")

    def check_target_conforms(
        self, target: Mapping[str, Any], url: str, reference: str, where: str
    ) -> None:
        """A reference whose type names a target profile must point at a resource that meets it
        (as HAPI's validator checks): the target's own errors are reported where it stands; here
        only that this reference cannot be to it."""
        profile = self.conformance.profile(url)
        if profile is None:
            return
        run = _Run(self.conformance, profile, target, None, self.skip_invariants)
        run.check_value(target, profile.root, str(target.get("resourceType")), profile.type)
        failed = [i for i in run.issues if i.is_error]
        if failed:
            self.issue(
                where,
                f"{reference} does not conform to profile {profile.id}, which this reference "
                f"requires ({len(failed)} error(s), the first: {failed[0].path}: "
                f"{failed[0].message})",
                "reference",
            )

    # -- invariants

    def check_invariant(
        self, item: Any, el: Element, constraint: Constraint, where: str, type_code: str | None
    ) -> None:
        if constraint.evaluate is None:
            if constraint.problem:
                self.issue(
                    where,
                    f"invariant {constraint.key} {constraint.problem}: not checked",
                    f"invariant:{constraint.key}",
                    "warning",
                )
            return
        trivial = TRIVIAL.get(constraint.key)
        if trivial is not None and isinstance(item, Mapping) and trivial(item):
            return
        native = native_rule(constraint.expression)
        if native is not None and isinstance(item, Mapping):
            if not native(item):
                severity_: Severity = "error" if constraint.severity == "error" else "warning"
                self.issue(
                    where,
                    f"{constraint.human} (invariant {constraint.key})",
                    f"invariant:{constraint.key}",
                    severity_,
                )
            return
        node: Any = item
        if item is not self.resource:
            from fhirpathpy.engine.nodes import ResourceNode

            node = ResourceNode.create_node(item, _model_path(el, type_code))  # type: ignore[no-untyped-call]
        try:
            result = constraint.evaluate(node, self.context)
        except Exception as exc:  # fhirpathpy cannot evaluate some expressions on some data
            self.issue(
                where,
                f"invariant {constraint.key} could not be evaluated ({type(exc).__name__}: "
                f"{exc}); check by hand: {constraint.human}",
                f"invariant:{constraint.key}",
                "warning",
            )
            return
        if _failed(result):
            severity: Severity = "error" if constraint.severity == "error" else "warning"
            self.issue(
                where,
                f"{constraint.human} (invariant {constraint.key})",
                f"invariant:{constraint.key}",
                severity,
            )


# -- the shapes of our own profiles' invariants, evaluated natively (fhirpathpy takes ~0.1-1 ms
#    an evaluation, and these run on every resource; tests/profiles check both agree)

_Q = r"'([^']*)'"
_LIST = r"\(((?:'[^']*'(?: \| )?)+)\)"
_UNIT_RULE = re.compile(
    rf"^code\.coding\.where\(system = {_Q} and code in {_LIST}\)\.exists\(\) implies "
    rf"value\.ofType\(Quantity\)\.code in {_LIST}$"
)
_CODED_IN = re.compile(
    rf"^coding\.exists\(\) implies coding\.where\(system = {_Q} and code\.exists\(\)\)\.exists\(\)$"
)
_CODED_OR_ONLY = re.compile(
    rf"^coding\.where\(system = {_Q} and code\.exists\(\)\)\.exists\(\) or "
    rf"coding\.all\(system = {_Q}\)$"
)
_CODING_OR_TEXT = "coding.exists() or text.exists()"
_NATIVE: dict[str, Callable[[Mapping[str, Any]], bool] | None] = {}


def _strings(listed: str) -> frozenset[str]:
    return frozenset(re.findall(r"'([^']*)'", listed))


def _codings(cc: Any) -> list[Mapping[str, Any]]:
    codings = cc.get("coding") if isinstance(cc, Mapping) else None
    return [c for c in codings or [] if isinstance(c, Mapping)]


def native_rule(expression: str) -> Callable[[Mapping[str, Any]], bool] | None:
    """A Python function equal to ``expression`` when it has one of our profiles' shapes."""
    if expression in _NATIVE:
        return _NATIVE[expression]
    rule: Callable[[Mapping[str, Any]], bool] | None = None
    if m := _UNIT_RULE.match(expression):
        system, codes, units = m.group(1), _strings(m.group(2)), _strings(m.group(3))

        def rule(r: Mapping[str, Any]) -> bool:
            if not any(
                c.get("system") == system and c.get("code") in codes
                for c in _codings(r.get("code"))
            ):
                return True
            q = r.get("valueQuantity")
            return not isinstance(q, Mapping) or "code" not in q or q["code"] in units

    elif m := _CODED_IN.match(expression):
        system = m.group(1)

        def rule(r: Mapping[str, Any]) -> bool:
            codings = _codings(r)
            return not codings or any(c.get("system") == system and "code" in c for c in codings)

    elif m := _CODED_OR_ONLY.match(expression):
        system, only = m.group(1), m.group(2)

        def rule(r: Mapping[str, Any]) -> bool:
            codings = _codings(r)
            return any(c.get("system") == system and "code" in c for c in codings) or all(
                c.get("system") == only for c in codings
            )

    elif expression == _CODING_OR_TEXT:

        def rule(r: Mapping[str, Any]) -> bool:
            return bool(r.get("coding")) or "text" in r

    _NATIVE[expression] = rule
    return rule


def _model_path(el: Element, type_code: str | None) -> str:
    if el.is_choice and type_code:
        return el.path[:-3] + _type_suffix(type_code)
    return el.path


def _failed(result: list[Any]) -> bool:
    """An invariant fails when it evaluates to false; an empty result is not a failure."""
    return any(r is False for r in _flatten(result))


def _flatten(result: Any) -> Iterator[Any]:
    if isinstance(result, list):
        for r in result:
            yield from _flatten(r)
    else:
        yield result
