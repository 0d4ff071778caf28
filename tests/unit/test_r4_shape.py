"""We build with fhir.resources' R4B models but emit R4 (4.0.1): every element we write must
exist, with a fitting type, in R4 itself (tests/data/r4-elements.json, generated from the
official R4 definitions by scripts/profiles/build_r4_elements.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_plao.mapping import to_fhir
from fhir_plao.synth import synth_cases

R4: dict[str, dict[str, list[str]]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "r4-elements.json").read_text("utf-8")
)["types"]
PRIMITIVE_JSON = (str, int, bool, float)


def not_in_r4(value: Any, rtype: str, base: str, where: str) -> list[str]:
    """Every element under ``value`` (of type ``rtype`` at element path ``base``) unknown to R4."""
    problems: list[str] = []
    items = value if isinstance(value, list) else [value]
    for n, item in enumerate(items):
        here = f"{where}[{n}]" if isinstance(value, list) else where
        if not isinstance(item, dict):
            continue
        for key, child in item.items():
            if key == "resourceType" and not base:
                continue
            path = f"{base}.{key}" if base else key
            types = R4[rtype].get(path)
            if types is None:
                problems.append(f"{here}.{key}: no element {rtype}.{path} in R4")
                continue
            if types[0].startswith("#"):
                problems += not_in_r4(child, rtype, types[0][1:], f"{here}.{key}")
            elif types in (["BackboneElement"], ["Element"]):
                problems += not_in_r4(child, rtype, path, f"{here}.{key}")
            elif types == ["Resource"]:
                problems += not_in_r4(child, child["resourceType"], "", f"{here}.{key}")
            elif types[0] in R4:
                problems += not_in_r4(child, types[0], "", f"{here}.{key}")
            elif isinstance(child, dict):
                problems.append(f"{here}.{key}: an object where R4 has a {types[0]}")
    return problems


def test_the_walker_finds_what_r4_lacks() -> None:
    r4b_only = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 1, "unknown": 2}, "nope": True}  # fmt: skip
    assert not_in_r4(r4b_only, "Observation", "", "Observation") == [
        "Observation.valueQuantity.unknown: no element Quantity.unknown in R4",
        "Observation.nope: no element Observation.nope in R4",
    ]


def test_the_example_bundle_is_r4(example_bundle: dict[str, Any]) -> None:
    assert not_in_r4(example_bundle, "Bundle", "", "Bundle") == []


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_bundles_are_r4(seed: int) -> None:
    for case in synth_cases(15, seed):
        bundle = to_fhir(case)
        assert not_in_r4(bundle, "Bundle", "", "Bundle") == []
