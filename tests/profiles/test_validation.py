"""fhir_plao.validation on the example Bundle, its corruptions, and other input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from fhir_plao import jsonio
from fhir_plao.errors import InputError, ValidationError
from fhir_plao.validation import (
    Issue,
    Validator,
    ensure_valid,
    issues_to_operation_outcome,
    validate,
    validate_ndjson,
    validate_text,
)

from ..conftest import FOREIGN_EXAMPLES
from .conftest import PROFILE, entry_index
from .corruptions import (
    CORRUPTIONS,
    NOT_A_VERTEBRA,
    Corruption,
    corrupt,
    duplicate_full_url,
    mismatch_request_url,
)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def has_rxnorm(resource: dict[str, Any]) -> bool:
    return "rxnorm" in jsonio.dumps(resource.get("medicationCodeableConcept", {}))


# --------------------------------------------------------------------------- valid input


def test_example_bundle_has_no_errors(example_bundle: dict[str, Any]) -> None:
    found = errors(validate(example_bundle))
    assert found == [], "\n".join(map(str, found))


def test_minimal_bundle_has_no_issues(minimal_bundle: dict[str, Any]) -> None:
    assert validate(minimal_bundle) == []


def test_every_profile_is_exercised_by_the_example(example_bundle: dict[str, Any]) -> None:
    validator = Validator()
    claimed = {
        url
        for e in example_bundle["entry"]
        for url in e["resource"].get("meta", {}).get("profile", [])
    }
    assert claimed == set(validator.profile_urls)


def test_validation_does_not_change_its_input(example_bundle: dict[str, Any]) -> None:
    before = copy.deepcopy(example_bundle)
    validate(example_bundle)
    assert example_bundle == before
    assert jsonio.dumps(example_bundle) == jsonio.dumps(before)  # decimals untouched


def test_a_single_resource_validates_outside_a_bundle(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    issues = validate(minimal_bundle["entry"][i]["resource"])
    assert errors(issues) == []
    # its urn:uuid subject cannot be resolved without the Bundle: said, not an error
    assert [(x.severity, x.path, x.rule) for x in issues] == [
        ("warning", "Observation.subject.reference", "reference")
    ]


# --------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=lambda c: c.name)
def test_each_corruption_gives_an_error_at_its_path(
    example_bundle: dict[str, Any], corruption: Corruption
) -> None:
    before = {(x.path, x.message) for x in errors(validate(example_bundle))}
    i = corrupt(example_bundle, corruption)
    after = errors(validate(example_bundle))
    new = [x for x in after if (x.path, x.message) not in before]
    expected = f"Bundle.entry[{i}].resource" + (f".{corruption.path}" if corruption.path else "")
    assert any(x.path == expected and x.rule.startswith(corruption.rule) for x in new), (
        f"expected a {corruption.rule} error at {expected}; new errors:\n"
        + "\n".join(f"{x} ({x.rule})" for x in new)
    )


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=lambda c: c.name)
def test_each_corruption_is_found_in_the_minimal_bundle_too(
    minimal_bundle: dict[str, Any], corruption: Corruption
) -> None:
    i = corrupt(minimal_bundle, corruption)
    expected = f"Bundle.entry[{i}].resource" + (f".{corruption.path}" if corruption.path else "")
    assert any(x.path == expected for x in errors(validate(minimal_bundle)))


def test_bundle_level_errors(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    duplicate_full_url(minimal_bundle["entry"][i], minimal_bundle)
    mismatch_request_url(minimal_bundle["entry"][i], minimal_bundle)
    del minimal_bundle["entry"][1]["request"]
    found = {(x.path, x.rule) for x in errors(validate(minimal_bundle))}
    assert (f"Bundle.entry[{i}].fullUrl", "invariant:bdl-7") in found
    assert (f"Bundle.entry[{i}].request.url", "bundle") in found
    assert ("Bundle.entry[1].request", "invariant:bdl-3") in found


def test_a_restful_full_url_must_name_its_own_resource(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    resource = minimal_bundle["entry"][i]["resource"]
    minimal_bundle["entry"][i]["fullUrl"] = "https://ehr.example.org/fhir/Observation/other-id"
    (found,) = [x for x in errors(validate(minimal_bundle)) if x.rule == "bundle"]
    assert found.path == f"Bundle.entry[{i}].fullUrl"
    assert f"Observation/{resource['id']}" in found.message
    minimal_bundle["entry"][i]["fullUrl"] = (
        f"https://ehr.example.org/fhir/Observation/{resource['id']}"
    )
    assert not [x for x in errors(validate(minimal_bundle)) if x.rule == "bundle"]


def test_a_code_must_exist_in_the_hl7_code_system_it_names(
    example_bundle: dict[str, Any],
) -> None:
    """Observation.interpretation is bound only extensibly, but a coding that names HL7's
    v3-ObservationInterpretation must use one of its codes (so must any coding, bound or not)."""
    (i,) = [
        n
        for n, e in enumerate(example_bundle["entry"])
        if e["resource"].get("interpretation")
        and e["resource"]["interpretation"][0]["coding"][0]["code"] == "H"
    ][:1]
    coding = example_bundle["entry"][i]["resource"]["interpretation"][0]["coding"][0]
    coding["code"] = "ZZ"
    (found,) = [x for x in errors(validate(example_bundle)) if "'ZZ'" in x.message]
    assert found.path == f"Bundle.entry[{i}].resource.interpretation[0].coding[0]"
    assert "v3-ObservationInterpretation" in found.message
    coding["code"] = "h"
    (found,) = [x for x in errors(validate(example_bundle)) if "'h'" in x.message]
    assert "did you mean 'H'?" in found.message


def test_a_value_set_url_is_not_a_code_system(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-patient")
    patient = minimal_bundle["entry"][i]["resource"]
    patient["communication"] = [
        {
            "language": {
                "coding": [{"system": "http://hl7.org/fhir/ValueSet/languages", "code": "en"}]
            }
        }
    ]
    found = [x for x in errors(validate(minimal_bundle)) if "not a code system" in x.message]
    assert [x.path for x in found] == [
        f"Bundle.entry[{i}].resource.communication[0].language.coding[0].system"
    ]


def test_relative_reference_outside_the_bundle_is_a_warning(
    minimal_bundle: dict[str, Any],
) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    minimal_bundle["entry"][i]["resource"]["subject"]["reference"] = "Patient/elsewhere"
    issues = validate(minimal_bundle)
    assert errors(issues) == []
    assert [(x.severity, x.path) for x in issues] == [
        ("warning", f"Bundle.entry[{i}].resource.subject.reference")
    ]


def test_relative_reference_inside_the_bundle_resolves(minimal_bundle: dict[str, Any]) -> None:
    patient = minimal_bundle["entry"][0]["resource"]
    i = entry_index(minimal_bundle, "plao-dxa-score")
    minimal_bundle["entry"][i]["resource"]["subject"]["reference"] = f"Patient/{patient['id']}"
    assert validate(minimal_bundle) == []


def test_reference_to_the_wrong_resource_type(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-report")
    fracture = minimal_bundle["entry"][entry_index(minimal_bundle, "plao-vertebral-fracture")]
    minimal_bundle["entry"][i]["resource"]["result"][0]["reference"] = fracture["fullUrl"]
    found = errors(validate(minimal_bundle))
    assert [x.path for x in found] == [f"Bundle.entry[{i}].resource.result[0].reference"]
    assert "must refer to a Observation" in found[0].message


def test_unknown_profile_is_a_warning_and_base_r4_still_applies(
    minimal_bundle: dict[str, Any],
) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    resource = minimal_bundle["entry"][i]["resource"]
    resource["meta"]["profile"] = ["http://example.org/StructureDefinition/unknown"]
    resource["status"] = 7
    issues = validate(minimal_bundle)
    assert (
        "warning",
        f"Bundle.entry[{i}].resource.meta.profile[0]",
    ) in {(x.severity, x.path) for x in issues}
    assert [x.path for x in errors(issues)] == [f"Bundle.entry[{i}].resource.status"]


def test_profile_of_another_resource_type_is_an_error(minimal_bundle: dict[str, Any]) -> None:
    i = entry_index(minimal_bundle, "plao-vertebral-fracture")
    resource = minimal_bundle["entry"][i]["resource"]
    resource["meta"]["profile"] = [PROFILE + "plao-dxa-score"]
    found = errors(validate(minimal_bundle))
    assert [(x.path, x.rule) for x in found] == [
        (f"Bundle.entry[{i}].resource.meta.profile[0]", "profile")
    ]


def test_text_only_lab_and_medication_fit_their_profiles(minimal_bundle: dict[str, Any]) -> None:
    lab = minimal_bundle["entry"][entry_index(minimal_bundle, "plao-lab-result")]["resource"]
    lab["code"] = {"text": "Tumour markers"}
    med = minimal_bundle["entry"][entry_index(minimal_bundle, "plao-medication-statement")]
    med["resource"]["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.whocc.no/atc", "code": "M01A"}],
        "text": "Non-steroidal anti-inflammatory drug",
    }
    assert validate(minimal_bundle) == []


def test_issue_messages_say_what_to_do(example_bundle: dict[str, Any]) -> None:
    i = entry_index(example_bundle, "plao-vertebral-fracture")
    example_bundle["entry"][i]["resource"]["bodySite"][0]["coding"][0]["code"] = NOT_A_VERTEBRA
    (issue,) = [x for x in errors(validate(example_bundle)) if x.rule == "binding"]
    assert NOT_A_VERTEBRA in issue.message
    assert "plao-vertebrae" in issue.message
    assert "allowed:" in issue.message
    assert str(issue).startswith(f"error Bundle.entry[{i}].resource.bodySite[0]: ")


# --------------------------------------------------------------------------- documents


def test_ndjson_issues_carry_their_line(minimal_bundle: dict[str, Any]) -> None:
    resources = [e["resource"] for e in minimal_bundle["entry"][:3]]
    resources[1] = dict(resources[1])
    resources[1].pop("status")
    lines = [jsonio.dumps(r) for r in resources] + ["", "{not json"]
    issues = validate_ndjson(lines)
    found = {(x.source, x.path, x.severity) for x in errors(issues)}
    assert ("line 2", "Procedure.status", "error") in found
    assert ("line 5", "$", "error") in found
    assert all(x.source for x in issues)


def test_validate_text_reads_resource_bundle_and_ndjson(minimal_bundle: dict[str, Any]) -> None:
    assert validate_text(jsonio.dumps(minimal_bundle)) == []
    text = "\n".join(jsonio.dumps(e["resource"]) for e in minimal_bundle["entry"])
    issues = validate_text(text.encode())
    assert errors(issues) == []
    with pytest.raises(InputError):
        validate_text(b"this is not json\nnor this\n")
    with pytest.raises(InputError):
        validate_text(b'{"no": "resourceType"}')
    with pytest.raises(InputError):
        validate_text(b"\xff\xfe\x00")


def test_ensure_valid_raises_with_every_issue(minimal_bundle: dict[str, Any]) -> None:
    assert ensure_valid(minimal_bundle) == []
    i = entry_index(minimal_bundle, "plao-dxa-score")
    del minimal_bundle["entry"][i]["resource"]["valueQuantity"]
    with pytest.raises(ValidationError) as caught:
        ensure_valid(minimal_bundle)
    assert f"Bundle.entry[{i}].resource.valueQuantity" in str(caught.value)
    assert any(isinstance(x, Issue) for x in caught.value.issues)


def test_issues_as_operation_outcome(example_bundle: dict[str, Any]) -> None:
    i = entry_index(example_bundle, "plao-dxa-score")
    del example_bundle["entry"][i]["resource"]["bodySite"]
    outcome = issues_to_operation_outcome(validate(example_bundle))
    OperationOutcome.model_validate(outcome)
    assert any(
        x["expression"] == [f"Bundle.entry[{i}].resource.bodySite"] for x in outcome["issue"]
    )
    OperationOutcome.model_validate(issues_to_operation_outcome([]))


def test_base_r4_rules_cover_what_fhir_resources_does_not(minimal_bundle: dict[str, Any]) -> None:
    """Required bindings and invariants of base R4 on resources without a profile."""
    i = entry_index(minimal_bundle, rtype="Procedure")
    procedure = minimal_bundle["entry"][i]["resource"]
    procedure["performedRange"] = {
        "low": {"value": 5, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
        "high": {"value": 2, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    }
    del procedure["performedDateTime"]
    procedure["note"] = [{"text": "x", "authorReference": {"reference": "#nobody"}}]
    minimal_bundle["entry"][i]["request"]["method"] = "PATCHED"
    found = {(x.path, x.rule) for x in errors(validate(minimal_bundle))}
    where = f"Bundle.entry[{i}]"
    assert (f"{where}.resource.performedRange", "invariant:rng-2") in found
    assert (f"{where}.resource.note[0].authorReference.reference", "reference") in found
    assert (f"{where}.request.method", "binding") in found


def test_profiles_and_invariants_are_compiled_once() -> None:
    from fhir_plao._validation.conformance import load_conformance

    assert load_conformance() is load_conformance()
    assert Validator().conformance is Validator().conformance


FOREIGN_FILES = sorted(FOREIGN_EXAMPLES.glob("**/*.json"))

#: errors in the official R4 examples themselves (HAPI's validator reports the same)
SPEC_EXAMPLE_ERRORS = {
    "MedicationStatement-example001.json": [
        "MedicationStatement.contained[0].ingredient[0].strength.denominator",
        "MedicationStatement.contained[0].ingredient[1].strength.denominator",
    ],  # 'Tab' where v3-orderableDrugForm defines 'TAB'
    "MedicationStatement-example003.json": [
        "MedicationStatement.dosage[0].doseAndRate[0].doseQuantity"
    ],  # 'tab', likewise
}


@pytest.mark.parametrize("path", FOREIGN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_foreign_fhir_is_validated_without_crashing(path: Path) -> None:
    """FHIR written by others (spec, IGs, Synthea, HAPI): issues, never an exception."""
    data = jsonio.loads(path.read_bytes())
    issues = validate(data)
    root = data["resourceType"]
    for issue in issues:
        assert issue.severity in ("error", "warning", "information")
        assert issue.path.startswith(root), issue
        assert issue.message
    if path.parent.name == "spec-examples" and root != "Bundle":
        expected = SPEC_EXAMPLE_ERRORS.get(path.name, [])
        assert [x.path for x in errors(issues)] == expected, "\n".join(map(str, issues))
