"""Reading FHIR written by others (tests/data/foreign): map the case's facts, report the
rest, never crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.errors import MappingError
from fhir_plao.mapping import from_fhir

from ..conftest import FOREIGN_EXAMPLES

ALL = sorted(FOREIGN_EXAMPLES.glob("*/*.json"))


def load(relative: str) -> Any:
    return jsonio.loads((FOREIGN_EXAMPLES / relative).read_bytes())


def test_the_foreign_examples_are_there() -> None:
    assert len(ALL) >= 40


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_every_example_maps_or_is_refused_clearly(path: Path) -> None:
    data = jsonio.loads(path.read_bytes())
    try:
        result = from_fhir(data)
    except MappingError as exc:
        # only documents that hold no single patient are refused
        assert "Patient" in str(exc)
        return
    # nothing dropped silently: every leaf is either in the case or in the report
    for item in result.unmapped:
        assert item.path and item.reason


def test_synthea_osteoporosis_dxa_and_alendronate() -> None:
    result = from_fhir(load("synthea/Wendell_Lesch_853767e6-14a5-400e-8b95-636f87701943.json"))
    case = result.case
    assert any(d.concept == "osteoporosis" for d in case.diagnoses)
    (scan,) = case.dxa_scans
    (score,) = scan.scores
    # Synthea codes its T-score 38265-5, which LOINC defines for radius and ulna
    assert (score.site, score.kind, str(score.value)) == ("radius-33", "T", "-3.7203722204883998")
    (alendronate,) = [m for m in case.medications if m.drug == "alendronate-10mg-tablet"]
    # a prescription stays a prescription, with its date as written
    assert (alendronate.record, alendronate.status, alendronate.intent) == (
        "request",
        "active",
        "order",
    )
    assert alendronate.authored == "2008-09-27T07:44:08+00:00"
    # every other prescription is kept too, coded as Synthea coded it
    assert all(m.code is not None or m.drug is not None for m in case.medications)
    assert len(case.medications) > 1
    reasons = {u.reason for u in result.unmapped}
    assert "a Claim is not part of the case model" in reasons


def test_us_core_dxa_scores_without_body_site_get_the_site_from_their_code() -> None:
    result = from_fhir(load("ig-examples/dxa-femur-l-t-score-bmd.json"))
    (scan,) = result.case.dxa_scans
    (score,) = scan.scores
    assert (score.site, score.kind, str(score.value)) == ("femur-left", "T", "-1.48")
    assert scan.date == "2021-11-10T19:14:41.088720-08:00"
    # the patient is only a reference there: the case says so
    assert result.case.patient.identifier == "Patient/example"
    assert any("no Patient resource" in u.reason for u in result.unmapped)
    # performer and encounter have no place in the case: reported by path
    paths = {u.path for u in result.unmapped}
    assert "Observation/dxa-femur-l-t-score-bmd.performer[0].reference" in paths


def test_a_lab_our_section_cannot_write_back_unchanged_is_kept_whole() -> None:
    result = from_fhir(load("ig-examples/observation-serum-calcium.json"))
    source = load("ig-examples/observation-serum-calcium.json")
    assert result.case.labs == ()
    (obs,) = result.case.observations
    assert obs.concept == "calcium"  # recognised ...
    code = obs.code.codings[0]  # ... and coded as the source coded it
    assert (code.system, code.code, code.display) == tuple(
        source["code"]["coding"][0][k] for k in ("system", "code", "display")
    )
    assert obs.value is not None and obs.value.quantity is not None
    assert obs.value.quantity.unit == "mg/dL"
    assert len(obs.reference_ranges) == len(source["referenceRange"])
    assert obs.interpretation


def test_a_medication_the_table_does_not_know_is_kept_with_its_code() -> None:
    result = from_fhir(load("spec-examples/MedicationStatement-example001.json"))
    (med,) = result.case.medications
    assert med.drug is None and med.code is not None
    assert any("Tylenol PM" in (c.display or "") for c in med.code.codings) or (
        med.code.text is not None and "Tylenol" in med.code.text
    )
    assert not [u for u in result.unmapped if "not in the code table" in u.reason]


def test_extra_codings_are_kept_with_the_fact(example_bundle: dict[str, Any]) -> None:
    """Another system adds its own coding to ours: the fact maps and keeps both codings."""
    lab = next(
        e["resource"]
        for e in example_bundle["entry"]
        if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "2777-1"
    )
    lab["code"]["coding"].append({"system": "http://acme.example/labs", "code": "PHOS"})
    lab["id"] = "12345-from-another-server"
    result = from_fhir(example_bundle)
    (phosphate,) = [x for x in result.case.labs if x.test == "phosphate"]
    assert phosphate.code is not None
    assert [c.code for c in phosphate.code.codings] == ["2777-1", "PHOS"]
    assert not [u for u in result.unmapped if "acme" in u.reason]


def test_medication_request_is_read_as_a_medication(example_bundle: dict[str, Any]) -> None:
    for entry in example_bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "MedicationStatement":
            res["resourceType"] = "MedicationRequest"
            res["intent"] = "order"
            res["dosageInstruction"] = res.pop("dosage", [{}])
            period = res.pop("effectivePeriod")
            res["dosageInstruction"][0].setdefault("timing", {}).setdefault("repeat", {})[
                "boundsPeriod"
            ] = period
    result = from_fhir(example_bundle)
    doses = {(m.drug, str(m.dose), m.period_unit) for m in result.case.medications}
    assert ("alendronate-70mg-tablet", "70", "wk") in doses
    assert len(result.case.medications) == 5
    assert {m.record for m in result.case.medications} == {"request"}  # they stay prescriptions


def test_an_atc_code_alone_names_the_substance_not_a_product(
    example_bundle: dict[str, Any],
) -> None:
    for entry in example_bundle["entry"]:
        concept = entry["resource"].get("medicationCodeableConcept")
        if concept and "904431" in str(concept):
            concept["coding"] = [c for c in concept["coding"] if c["code"] == "M05BA04"]
            concept["text"] = "alendronic acid"
    result = from_fhir(example_bundle)
    (med,) = [m for m in result.case.medications if m.drug == "alendronate"]
    assert med.code is not None and med.code.text == "alendronic acid"  # its own wording
