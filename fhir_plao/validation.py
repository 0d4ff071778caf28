"""Validation of FHIR R4 resources and Bundles against base R4 and the fhir-plao profiles.

:func:`validate` takes one resource or a Bundle (a JSON-ready ``dict``, decimals as
:class:`~decimal.Decimal`) and returns every finding as an :class:`Issue` with a severity, the
element path (``Bundle.entry[3].resource.valueQuantity.unit``) and a message that says what to fix.
Nothing is raised for invalid content; :func:`ensure_valid` raises
:class:`~fhir_plao.errors.ValidationError` when there is an error (for ``push``).

Layers, each done by the tool best suited to it:

* **base R4 structure** — ``fhir.resources`` models (unknown elements, JSON types, primitive
  formats, real calendar dates, required elements), plus a pass for empty elements (ele-1);
* **base R4 rules** that those models leave out — required bindings (``status`` codes,
  ``Quantity.comparator``, ``Condition.clinicalStatus``, ...) and the invariants of every resource
  and data type (``obs-3``, ``per-1``, ``bdl-*``, ...), from ``fhir_plao/data/r4-core-rules.json``
  (extracted from the R4 4.0.1 definitions by ``scripts/profiles/build_core_rules.py``);
* **profiles** named in ``meta.profile`` — a walker over the SUSHI-built snapshots in
  ``profiles/`` (shipped as ``fhir_plao/data/plao-profiles.json``): cardinality, choice types,
  fixed / pattern values, slices, required bindings to our ValueSets, reference targets, and
  invariants evaluated with ``fhirpathpy`` (each expression compiled once per process);
* **Bundle** — fullUrls, request lines, and references that must resolve inside the Bundle.

An unknown profile URL gives a warning (the resource is still checked against base R4). Profiles,
value sets and invariants are loaded and compiled on first use and kept, so validating many
Bundles in one process pays that once (``Validator()`` is cheap after the first). FHIRPath is
evaluated with fhirpathpy; an invariant it cannot evaluate on some data gives a warning naming the
rule to check by hand, never a crash; ``hasValue()``, which fhirpathpy lacks, is read as
``exists()``, and ``rng-2`` (Quantity comparison) is checked natively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao._validation.conformance import CORE_PREFIX, Conformance, load_conformance
from fhir_plao._validation.core import load_core_rules
from fhir_plao._validation.issues import Issue, Severity
from fhir_plao._validation.references import BundleIndex, check_bundle, check_references
from fhir_plao._validation.structure import check_structure, empty_elements
from fhir_plao._validation.walker import ProfileWalker
from fhir_plao.errors import InputError, ValidationError

__all__ = [
    "Issue",
    "Severity",
    "Validator",
    "count_resources",
    "ensure_valid",
    "errors_in",
    "issues_to_operation_outcome",
    "read_documents",
    "validate",
    "validate_documents",
    "validate_file",
    "validate_ndjson",
    "validate_parsed",
    "validate_text",
]

PROFILE_BASE = "http://fhir-plao.example.org/fhir/StructureDefinition/"


class Validator:
    """Validates resources and Bundles; holds the compiled profiles (build once, reuse).

    ``Validator()`` uses the package's own profiles; pass a :class:`Conformance` to use others.
    """

    def __init__(self, conformance: Conformance | None = None) -> None:
        self.conformance = conformance if conformance is not None else load_conformance()
        self._core = load_core_rules()
        skip = self._core.invariant_keys if self._core is not None else frozenset()
        self._walker = ProfileWalker(self.conformance, skip)

    @property
    def profile_urls(self) -> list[str]:
        return sorted(self.conformance.profiles)

    def validate(self, resource: Mapping[str, Any], path: str | None = None) -> list[Issue]:
        """Every issue in a resource or a Bundle (its entries and their references included)."""
        if not isinstance(resource, Mapping):
            return [Issue("error", path or "$", "not a FHIR resource: expected a JSON object")]
        rtype = resource.get("resourceType")
        root = path or (rtype if isinstance(rtype, str) else "Resource")
        issues: list[Issue] = []
        if rtype == "Bundle":
            self._bundle(resource, root, issues, None)
        else:
            self._resource(resource, root, issues, None)
        return _dedupe(issues)

    # -- parts

    def _bundle(
        self,
        bundle: Mapping[str, Any],
        root: str,
        issues: list[Issue],
        outer: BundleIndex | None,
    ) -> None:
        entries = bundle.get("entry")
        shell = dict(bundle)
        if isinstance(entries, list):
            shell["entry"] = [
                {k: v for k, v in e.items() if k != "resource"} if isinstance(e, Mapping) else e
                for e in entries
            ]
        # the Bundle itself (entries without their resources: those are checked one by one)
        self._resource(shell, root, issues, outer, references=False, core=False)
        if self._core is not None:
            issues.extend(self._core.check(bundle, root, nested_resources=False))
        issues.extend(check_bundle(bundle, root))
        index = BundleIndex.of(bundle)
        if not isinstance(entries, list):
            return
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            resource = entry.get("resource")
            where = f"{root}.entry[{i}].resource"
            if resource is None:
                continue
            if not isinstance(resource, Mapping):
                issues.append(
                    Issue("error", where, "must be a JSON object (a resource)", "structure")
                )
            elif resource.get("resourceType") == "Bundle":
                self._bundle(resource, where, issues, index)
            else:
                self._resource(resource, where, issues, index)

    def _resource(
        self,
        resource: Mapping[str, Any],
        root: str,
        issues: list[Issue],
        index: BundleIndex | None,
        *,
        references: bool = True,
        core: bool = True,
    ) -> None:
        structure = check_structure(resource, root)
        issues.extend(structure)
        try:
            self._rules(resource, root, issues, index, references=references, core=core)
        except (TypeError, AttributeError, KeyError, IndexError) as exc:
            # an element of a JSON type R4 does not allow where a rule looked: the structural
            # pass names it; this is the net under the rules, so validation never crashes
            if not any(i.is_error for i in structure):
                issues.append(
                    Issue(
                        "error",
                        root,
                        f"an element has a JSON type R4 does not allow there "
                        f"({type(exc).__name__}: {exc})",
                        "structure",
                    )
                )

    def _rules(
        self,
        resource: Mapping[str, Any],
        root: str,
        issues: list[Issue],
        index: BundleIndex | None,
        *,
        references: bool,
        core: bool,
    ) -> None:
        issues.extend(empty_elements(resource, root))
        if core and self._core is not None:
            issues.extend(self._core.check(resource, root))
        if references:
            issues.extend(check_references(resource, root, index))
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, Mapping) else None
        if not isinstance(claimed, list):
            return
        rtype = resource.get("resourceType")
        for i, url in enumerate(claimed):
            if not isinstance(url, str):
                continue
            where = f"{root}.meta.profile[{i}]"
            profile = self.conformance.profile(url)
            if profile is None:
                if url.split("|", 1)[0] == f"{CORE_PREFIX}{rtype}":
                    continue  # the base definition itself: checked by the structural pass
                known = ", ".join(p.rsplit("/", 1)[-1] for p in self.profile_urls)
                issues.append(
                    Issue(
                        "warning",
                        where,
                        f"unknown profile {url}: not validated against it (this validator knows "
                        f"{known})",
                        "profile",
                    )
                )
                continue
            if profile.type != rtype:
                issues.append(
                    Issue(
                        "error",
                        where,
                        f"profile {profile.id} is for {profile.type} resources, not {rtype}",
                        "profile",
                    )
                )
                continue
            resolve = index.resolve if index is not None else None
            issues.extend(self._walker.validate(resource, profile, root, resolve))


def _dedupe(issues: list[Issue]) -> list[Issue]:
    """Drop repeats: the same finding from two layers (e.g. a missing required element that
    both base R4 and the profile require) is reported once, the first (more specific) kept."""
    seen: set[tuple[str, str, str]] = set()
    missing: set[str] = set()
    out: list[Issue] = []
    for issue in issues:
        key = (issue.severity, issue.path, issue.message)
        if key in seen:
            continue
        seen.add(key)
        if issue.rule == "cardinality" and issue.message.startswith("required element"):
            if issue.path in missing:
                continue
            missing.add(issue.path)
        out.append(issue)
    return out


_DEFAULT: Validator | None = None


def _default() -> Validator:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Validator()
    return _DEFAULT


def validate(resource_or_bundle: Mapping[str, Any]) -> list[Issue]:
    """Validate one resource or Bundle against base R4 and the profiles in ``meta.profile``."""
    return _default().validate(resource_or_bundle)


def errors_in(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def ensure_valid(resource_or_bundle: Mapping[str, Any]) -> list[Issue]:
    """Validate; raise :class:`~fhir_plao.errors.ValidationError` (carrying every issue) when there
    is an error, else return the warnings and information issues."""
    issues = validate(resource_or_bundle)
    errors = errors_in(issues)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(f"invalid FHIR: {first.path}: {first.message}{more}", issues)
    return issues


# --------------------------------------------------------------------------- documents & NDJSON


def validate_documents(documents: Sequence[tuple[str | None, Any]]) -> list[Issue]:
    """Validate (source, document) pairs; ``source`` (e.g. ``line 3``) is set on their issues."""
    validator = _default()
    out: list[Issue] = []
    for source, doc in documents:
        for issue in validator.validate(doc):
            out.append(
                Issue(issue.severity, issue.path, issue.message, issue.rule, source)
                if source
                else issue
            )
    return out


def validate_ndjson(lines: Iterable[str | bytes]) -> list[Issue]:
    """Validate NDJSON, one resource a line (blank lines skipped). A line that is not JSON is an
    error at ``$`` with source ``line N``; issues of line N carry ``source="line N"``."""
    docs: list[tuple[str | None, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            docs.append((f"line {n}", jsonio.loads(line)))
        except jsonio.JsonError as exc:
            docs.append((f"line {n}", _Unparsed(str(exc))))
    return validate_parsed(docs)


def read_documents(data: str | bytes, *, source: str = "input") -> list[tuple[str | None, Any]]:
    """Parse a resource, a Bundle, or NDJSON into (source, document) pairs.

    Raises :class:`~fhir_plao.errors.InputError` when the input is none of them (not UTF-8, not
    JSON and no line of it JSON, or JSON that is not a FHIR resource).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text: {exc}", location=source) from None
    try:
        doc = jsonio.loads(data)
    except jsonio.JsonError as exc:
        raw_lines = data.splitlines()
        lines = [ln for ln in raw_lines if ln.strip()]
        if len(lines) < 2:
            raise InputError(str(exc), location=source) from None
        docs: list[tuple[str | None, Any]] = []
        for n, line in enumerate(raw_lines, start=1):
            if not line.strip():
                continue
            try:
                docs.append((f"line {n}", jsonio.loads(line)))
            except jsonio.JsonError as line_exc:
                docs.append((f"line {n}", _Unparsed(str(line_exc))))
        if not any(isinstance(d, dict) and isinstance(d.get("resourceType"), str) for _, d in docs):
            # not one line is a resource: this is no NDJSON of FHIR, whatever some lines parse as
            raise InputError(
                f"neither FHIR JSON nor NDJSON of it: {exc}", location=source
            ) from None
        return docs
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise InputError(
            "not a FHIR resource (a JSON object with resourceType), a Bundle, or NDJSON",
            location=source,
        )
    return [(None, doc)]


class _Unparsed:
    """A line of NDJSON that is not JSON (reported as an issue, not as unusable input)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def validate_parsed(
    docs: Sequence[tuple[str | None, Any]],
    *,
    check: Callable[[Sequence[tuple[str | None, Any]]], list[Issue]] = validate_documents,
) -> list[Issue]:
    """Validate what :func:`read_documents` gave: NDJSON lines that are not JSON are errors at
    ``$``; the documents go to ``check`` (ours by default; HAPI's for ``--engine hapi``)."""
    issues: list[Issue] = []
    good: list[tuple[str | None, Any]] = []
    for source, doc in docs:
        if isinstance(doc, _Unparsed):
            issues.append(Issue("error", "$", f"not JSON: {doc.problem}", "structure", source))
        else:
            good.append((source, doc))
    return issues + check(good)


def validate_text(data: str | bytes, *, source: str = "input") -> list[Issue]:
    """Validate JSON text holding a resource, a Bundle, or NDJSON (see :func:`read_documents`)."""
    return validate_parsed(read_documents(data, source=source))


def validate_file(path: str | Path) -> list[Issue]:
    """Validate a file: a resource, a Bundle, or NDJSON. Unreadable input raises InputError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(p)) from None
    return validate_text(raw, source=str(p))


def issues_to_operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """The issues as a FHIR OperationOutcome (``expression`` holds the path)."""
    codes = {
        "structure": "structure",
        "cardinality": "required",
        "binding": "code-invalid",
        "reference": "not-found",
        "profile": "not-supported",
    }
    out: list[dict[str, Any]] = []
    for issue in issues:
        code = codes.get(
            issue.rule.split(":", 1)[0], "invariant" if "invariant" in issue.rule else "value"
        )
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": code,
            "diagnostics": f"{issue.source}: {issue.message}" if issue.source else issue.message,
            "expression": [issue.path],
        }
        out.append(entry)
    if not out:
        out.append({"severity": "information", "code": "informational", "diagnostics": "no issues"})
    return {"resourceType": "OperationOutcome", "issue": out}


# --------------------------------------------------------------------------- command line


def count_resources(docs: Sequence[tuple[str | None, Any]]) -> int:
    """How many resources the documents hold (a Bundle counts as its entries' resources)."""
    total = 0
    for _, doc in docs:
        if not isinstance(doc, Mapping):
            continue
        entries = doc.get("entry") if doc.get("resourceType") == "Bundle" else None
        if isinstance(entries, list):
            total += sum(1 for e in entries if isinstance(e, Mapping) and "resource" in e)
        else:
            total += 1
    return total
