"""Invariants evaluated in Python instead of FHIRPath (for speed) give FHIRPath's answers.

Each native rule is run beside fhirpathpy on every resource (or CodeableConcept) of the example
and of synthetic Bundles, and on variants made to break the rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy.engine.nodes import ResourceNode

from fhir_plao import jsonio
from fhir_plao._validation.conformance import _compiled
from fhir_plao._validation.core import NATIVE
from fhir_plao._validation.walker import native_rule
from fhir_plao.mapping import to_fhir
from fhir_plao.synth import synth_cases

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
CORE = json.loads(
    (Path(__file__).resolve().parents[2] / "fhir_plao" / "data" / "r4-core-rules.json").read_text()
)["types"]


def resources(example_bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    bundles = [example_bundle] + [to_fhir(c) for c in synth_cases(8, seed=9)]
    for bundle in bundles:
        for entry in jsonio.loads(jsonio.dumps(bundle))["entry"]:
            yield entry["resource"]


def variants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The resource, and copies changed where our invariants look."""
    yield resource
    if "valueQuantity" in resource:
        for unit in ("1", "g/cm2", "{T-score}", "kg"):
            changed = copy.deepcopy(resource)
            changed["valueQuantity"]["code"] = unit
            yield changed
    if resource["resourceType"] == "Condition":
        for status in ("active", "resolved"):
            changed = copy.deepcopy(resource)
            clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
            changed["clinicalStatus"] = {"coding": [{"system": clinical, "code": status}]}
            changed["abatementDateTime"] = "2024"
            yield changed
        changed = copy.deepcopy(resource)
        changed["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "entered-in-error"}]}  # fmt: skip
        yield changed
    for key in ("effectivePeriod", "performedPeriod"):
        if key in resource:
            changed = copy.deepcopy(resource)
            changed[key] = {"start": "2024-02", "end": "2023-12-31"}
            yield changed


def profile_expressions() -> list[str]:
    found = []
    for path in sorted(PROFILES.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text())
        for el in sd["snapshot"]["element"]:
            for c in el.get("constraint", []):
                if c["key"].startswith("plao-") and native_rule(c["expression"]) is not None:
                    found.append(c["expression"])
    return sorted(set(found))


def fhirpath_verdict(node: Any, expression: str, type_name: str = "CodeableConcept") -> bool:
    """The verdict of the validator's own FHIRPath evaluation (R4 model, choice types known)."""
    evaluate, problem = _compiled(expression)
    assert evaluate is not None, problem
    root = node
    if "resourceType" not in node:
        root = ResourceNode.create_node(node, type_name)
    result = evaluate(root, {"resource": node, "rootResource": node})
    return not any(r is False for r in result)


def test_every_plao_invariant_has_a_native_rule() -> None:
    expressions = profile_expressions()
    assert len(expressions) >= 5


@pytest.mark.parametrize("expression", profile_expressions())
def test_profile_rules_agree_with_fhirpath(expression: str, example_bundle: dict[str, Any]) -> None:
    rule = native_rule(expression)
    assert rule is not None
    checked = 0
    for resource in resources(example_bundle):
        for variant in variants(resource):
            # the rule applies where its profile puts it: the resource, or a CodeableConcept
            nodes = [variant] + [v for v in variant.values() if isinstance(v, dict)]
            for node in nodes:
                assert rule(node) == fhirpath_verdict(node, expression), (expression, node)
                checked += 1
    assert checked > 500


@pytest.mark.parametrize("key", ["bdl-4", "con-4", "con-5", "per-1"])
def test_core_rules_agree_with_fhirpath(key: str, example_bundle: dict[str, Any]) -> None:
    rtype = {"bdl-4": "Bundle", "con-4": "Condition", "con-5": "Condition", "per-1": "Period"}[key]
    (expression,) = [
        c[3] for cons in CORE[rtype]["constraints"].values() for c in cons if c[0] == key
    ]
    nodes: list[dict[str, Any]] = []
    if rtype == "Bundle":
        nodes = [example_bundle, {**example_bundle, "type": "transaction-response"}]
    for resource in resources(example_bundle):
        for variant in variants(resource):
            if rtype == "Condition" and variant["resourceType"] == "Condition":
                nodes.append(variant)
            if rtype == "Period":
                nodes += [v for v in variant.values() if isinstance(v, dict) and "start" in v]
    assert nodes
    for node in nodes:
        verdict = NATIVE[key](node)
        if verdict is None:
            continue  # handed back to FHIRPath
        assert verdict == fhirpath_verdict(node, expression, rtype), (key, node)


def test_con_3_follows_its_text_not_its_broken_expression() -> None:
    refuted = {
        "resourceType": "Condition",
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "refuted"}]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "encounter-diagnosis"}]}],
    }  # fmt: skip
    assert NATIVE["con-3"](refuted) is True
    problem = copy.deepcopy(refuted)
    problem["category"][0]["coding"][0]["code"] = "problem-list-item"
    assert NATIVE["con-3"](problem) is False
