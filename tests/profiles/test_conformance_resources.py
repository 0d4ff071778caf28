"""The files in profiles/: R4 conformance resources, in agreement with the code table and with
the copy shipped in the package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet

from fhir_plao import jsonio
from fhir_plao._validation.conformance import DATA_FILE, load_conformance
from fhir_plao.terminology import TERMINOLOGY

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"
BASE = "http://fhir-plao.example.org/fhir"
CORE = "http://hl7.org/fhir/StructureDefinition/"

EXPECTED_PROFILES = {
    "plao-patient": ("Patient", CORE + "Patient"),
    "plao-vital-signs": ("Observation", CORE + "vitalsigns"),
    "plao-lab-result": ("Observation", CORE + "Observation"),
    "plao-dxa-score": ("Observation", CORE + "Observation"),
    "plao-dxa-report": ("DiagnosticReport", CORE + "DiagnosticReport"),
    "plao-vertebral-fracture": ("Condition", CORE + "Condition"),
    "plao-diagnosis": ("Condition", CORE + "Condition"),
    "plao-medication-statement": ("MedicationStatement", CORE + "MedicationStatement"),
}
EXPECTED_VALUE_SETS = {"plao-vertebrae", "plao-dxa-sites", "plao-dxa-score-codes"}

JSON_FILES = sorted(PROFILES.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = jsonio.loads(path.read_bytes())
    return data


def gen_valuesets() -> ModuleType:
    """scripts/profiles/gen_valuesets.py, which derives the value sets from the code table."""
    path = REPO / "scripts" / "profiles" / "gen_valuesets.py"
    spec = importlib.util.spec_from_file_location("plao_gen_valuesets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_profiles_folder_holds_every_expected_resource_one_a_file() -> None:
    names = {p.name for p in JSON_FILES}
    expected = {f"StructureDefinition-{i}.json" for i in EXPECTED_PROFILES} | {
        f"ValueSet-{i}.json" for i in EXPECTED_VALUE_SETS
    }
    assert names == expected


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_each_file_is_an_r4_conformance_resource(path: Path) -> None:
    resource = load(path)
    kind = resource["resourceType"]
    assert path.name == f"{kind}-{resource['id']}.json"
    assert resource["url"] == f"{BASE}/{kind}/{resource['id']}"
    assert resource["status"] in ("draft", "active")
    if kind == "StructureDefinition":
        StructureDefinition.model_validate(resource)  # base R4(B) structure of the definition
        assert resource["fhirVersion"] == "4.0.1"
        assert resource["derivation"] == "constraint"
        assert resource["kind"] == "resource"
        rtype, base = EXPECTED_PROFILES[resource["id"]]
        assert resource["type"] == rtype
        assert resource["baseDefinition"] == base
        assert resource["baseDefinition"].startswith(CORE)
        differential = resource["differential"]["element"]
        snapshot = resource["snapshot"]["element"]
        assert differential, "a profile says what it changes"
        assert snapshot[0]["path"] == rtype
        snapshot_ids = {e["id"] for e in snapshot}
        assert {e["id"] for e in differential} <= snapshot_ids
    else:
        assert kind == "ValueSet"
        ValueSet.model_validate(resource)
        assert resource["id"] in EXPECTED_VALUE_SETS
        includes = resource["compose"]["include"]
        assert includes and all(inc["system"] and inc["concept"] for inc in includes)


def test_bindings_point_at_value_sets_in_this_folder() -> None:
    ours = {load(p)["url"] for p in JSON_FILES if p.name.startswith("ValueSet-")}
    for path in JSON_FILES:
        resource = load(path)
        if resource["resourceType"] != "StructureDefinition":
            continue
        for element in resource["differential"]["element"]:
            vs = element.get("binding", {}).get("valueSet", "")
            if vs.startswith(BASE):
                assert vs in ours, f"{path.name} {element['id']} binds to unknown {vs}"


def test_value_sets_agree_with_the_code_table() -> None:
    """Each ValueSet holds exactly the codes the code table gives it, each a known coding."""
    gen = gen_valuesets()
    for spec in gen.value_sets():
        resource = load(PROFILES / f"ValueSet-{spec.id}.json")
        built = {
            (inc["system"], c["code"])
            for inc in resource["compose"]["include"]
            for c in inc["concept"]
        }
        expected = {(system, code) for system, code, _display, _key in spec.codes}
        assert built == expected, spec.id
        for system, code in built:
            assert TERMINOLOGY.keys_for(system, code), f"{system}#{code} is not in the code table"


def test_value_sets_hold_the_issue_s_codes() -> None:
    """The codes the issue names are in: DXA T/Z/BMD of lumbar spine and femur, the fractured
    vertebrae of the case (T5, T7, T9, T11, T12, L1-L3)."""
    scores = load(PROFILES / "ValueSet-plao-dxa-score-codes.json")
    score_codes = {c["code"] for inc in scores["compose"]["include"] for c in inc["concept"]}
    assert {"38267-1", "85394-5", "24966-4", "38263-0", "80934-3", "24701-5"} <= score_codes
    vertebrae = load(PROFILES / "ValueSet-plao-vertebrae.json")
    vertebra_codes = {c["code"] for inc in vertebrae["compose"]["include"] for c in inc["concept"]}
    case_vertebrae = {"t5", "t7", "t9", "t11", "t12", "l1", "l2", "l3"}
    for label in case_vertebrae:
        concept = TERMINOLOGY.concept(f"vertebra-{label}")
        assert {c.code for c in concept.codings} <= vertebra_codes


def test_dxa_unit_invariants_agree_with_the_code_table() -> None:
    gen = gen_valuesets()
    sd = load(PROFILES / "StructureDefinition-plao-dxa-score.json")
    root = sd["snapshot"]["element"][0]
    expressions = {c["key"]: c["expression"] for c in root["constraint"]}
    for rule in gen.dxa_unit_rules():
        expression = expressions[rule.key]
        for code in rule.codes:
            assert f"'{code}'" in expression
        for unit in rule.units:
            assert f"'{unit}'" in expression


def test_generated_fsh_is_up_to_date_with_the_code_table() -> None:
    gen = gen_valuesets()
    assert gen.generate(check=True), "run python scripts/profiles/build.py"


def test_package_copy_holds_the_same_resources() -> None:
    """fhir_plao/data/plao-profiles.json (what the installed package validates against) is the
    profiles/ folder, element documentation left out."""
    bundle = jsonio.loads(DATA_FILE.read_bytes())
    shipped = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}
    for path in JSON_FILES:
        resource = load(path)
        copy = shipped.pop(resource["url"])
        if resource["resourceType"] == "StructureDefinition":
            for part in ("snapshot", "differential"):
                full = resource[part]["element"]
                compact = copy[part]["element"]
                assert [e["id"] for e in full] == [e["id"] for e in compact]
                for a, b in zip(full, compact, strict=True):
                    for key in ("min", "max", "type", "binding", "constraint", "slicing"):
                        assert a.get(key) == b.get(key), (path.name, a["id"], key)
        else:
            assert copy == resource
    assert not shipped, f"shipped but not in profiles/: {sorted(shipped)}"


def test_the_validator_loads_every_profile_and_value_set() -> None:
    conformance = load_conformance()
    assert {p.id for p in conformance.profiles.values()} == set(EXPECTED_PROFILES)
    assert {u.rsplit("/", 1)[-1] for u in conformance.value_sets} == EXPECTED_VALUE_SETS
    for profile in conformance.profiles.values():
        for constraint in _constraints(profile.root):
            assert constraint.problem is None, (
                f"{profile.id} {constraint.key}: {constraint.problem}"
            )


def _constraints(element: Any) -> list[Any]:
    out = list(element.constraints)
    for child in [*element.children, *element.slices]:
        out.extend(_constraints(child))
    return out
