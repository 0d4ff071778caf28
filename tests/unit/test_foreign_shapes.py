"""Shapes the R4 specification allows and other systems write, read into the case and written
back: codes and values as the source wrote them, nothing dropped without a report.

Each test builds a small input in the shape it pins (patterned on the US Core, QI-Core and
Synthea examples in ``tests/data/foreign``), reads it with ``from_fhir`` and writes the case
back with ``to_fhir``.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from fhir_plao.errors import MappingError
from fhir_plao.mapping import MappingResult, from_fhir, to_fhir

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://hospital.example.org/mrn", "value": "4711"}],
    "gender": "female",
}
SUBJECT = {"reference": "Patient/p1"}


def bundle(*resources: dict[str, Any], patient: dict[str, Any] | None = PATIENT) -> dict[str, Any]:
    entries = [{"resource": copy.deepcopy(r)} for r in ((patient,) if patient else ()) + resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def written(result: MappingResult, rtype: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in to_fhir(result.case)["entry"]
        if e["resource"]["resourceType"] == rtype
    ]


def obs(rid: str, code: str, **rest: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": SUBJECT,
        **rest,
    }


KEPT = ("status", "category", "code", "effectiveDateTime", "effectivePeriod", "issued")


def assert_kept(source: dict[str, Any], out: dict[str, Any], *names: str) -> None:
    for name in (*KEPT, *names):
        assert out.get(name) == source.get(name), name


# --------------------------------------------------------------------------- Bundle shapes


def test_an_entry_without_a_resource_is_reported_not_lost() -> None:
    data = bundle(obs("o1", "8480-6", valueQuantity={"value": 120}))
    data["entry"].append({"request": {"method": "DELETE", "url": "Observation/old"}})
    data["entry"].append({"response": {"status": "201 Created", "location": "Observation/9"}})
    result = from_fhir(data)
    reasons = {u.path: u.reason for u in result.unmapped}
    assert (
        reasons["Bundle.entry[2]"] == "no resource to read (only a request: DELETE Observation/old)"
    )
    assert (
        reasons["Bundle.entry[3]"] == "no resource to read (only a response: status '201 Created')"
    )


def test_a_single_identifier_object_where_r4_allows_one() -> None:
    composition = {
        "resourceType": "Composition",
        "id": "c1",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"},
        "status": "final",
        "subject": SUBJECT,
    }
    result = from_fhir(bundle(composition))
    assert any(u.reason == "a Composition is not part of the case model" for u in result.unmapped)


def test_a_patient_without_identifier_system_keeps_the_value() -> None:
    patient = {**PATIENT, "identifier": [{"value": "4711"}]}
    result = from_fhir(bundle(patient=patient))
    assert (result.case.patient.identifier_system, result.case.patient.identifier) == (None, "4711")
    (out,) = written(result, "Patient")
    assert out["identifier"] == [{"value": "4711"}]


def test_a_patient_without_identifier_is_named_by_its_id_and_that_is_reported() -> None:
    patient = {k: v for k, v in PATIENT.items() if k != "identifier"}
    result = from_fhir(bundle(patient=patient))
    assert result.case.patient.identifier == "Patient/p1"
    assert any("no identifier" in u.reason for u in result.unmapped)


def test_a_contained_patient_is_the_patient() -> None:
    observation = obs("o1", "2339-0", valueQuantity={"value": 5, "unit": "mg/dL"})
    observation["contained"] = [{**PATIENT, "id": "pat"}]
    observation["subject"] = {"reference": "#pat"}
    result = from_fhir(bundle(observation, patient=None))
    assert result.case.patient.identifier == "4711"
    (kept,) = result.case.observations
    assert kept.code.codings[0].code == "2339-0"


def test_a_conditional_reference_names_the_patient() -> None:
    ref = {"reference": "Patient?identifier=https://hospital.example.org/mrn|4711"}
    observation = obs("o1", "2339-0", subject=ref, valueString="normal")
    result = from_fhir(bundle(observation))
    assert len(result.case.observations) == 1
    # no Patient at all: the reference's identifier is the case's
    alone = from_fhir(bundle(observation, patient=None))
    patient = alone.case.patient
    assert (patient.identifier_system, patient.identifier) == (
        "https://hospital.example.org/mrn",
        "4711",
    )


def test_several_patients_and_no_patient_are_one_line_refusals() -> None:
    other = {**PATIENT, "id": "p2", "identifier": [{"system": "urn:x", "value": "2"}]}
    with pytest.raises(MappingError, match="several Patients"):
        from_fhir(bundle(other))
    with pytest.raises(MappingError, match="no Patient resource"):
        from_fhir(bundle(patient=None))


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    "category", ["problem-list-item", "encounter-diagnosis", "health-concern", None]
)
@pytest.mark.parametrize("clinical", ["active", None])
def test_conditions_of_every_category_with_or_without_clinical_status(
    category: str | None, clinical: str | None
) -> None:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": SNOMED, "code": "44054006", "display": "Diabetes type 2"}]},
        "subject": SUBJECT,
        "onsetDateTime": "2020-01-02",
    }
    if category:
        condition["category"] = [{"coding": [{"system": COND_CAT, "code": category}]}]
    if clinical:
        condition["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    result = from_fhir(bundle(condition))
    (out,) = written(result, "Condition")
    for name in ("code", "category", "onsetDateTime", "verificationStatus"):
        assert out.get(name) == condition.get(name), name
    assert [c["code"] for c in (out.get("clinicalStatus") or {}).get("coding", [])] == (
        [clinical] if clinical else []
    )


def test_fractures_are_recognised_by_code_and_by_body_site() -> None:
    synthea = {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "resolved"}]},
        "code": {
            "coding": [
                {
                    "system": SNOMED,
                    "code": "443165006",
                    "display": "Pathological fracture due to osteoporosis (disorder)",
                }
            ],
            "text": "Pathological fracture due to osteoporosis (disorder)",
        },
        "subject": SUBJECT,
        "onsetDateTime": "2015-03-01T10:00:00+00:00",
        "abatementDateTime": "2015-06-01T10:00:00+00:00",
    }
    vertebral = {
        "resourceType": "Condition",
        "id": "c2",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": {"text": "Compression fracture"},
        "bodySite": [{"coding": [{"system": SNOMED, "code": "23215003", "display": "T12"}]}],
        "subject": SUBJECT,
        "onsetDateTime": "2023-03",
    }
    result = from_fhir(bundle(synthea, vertebral))
    fractures = {f.id: f for f in result.case.fractures}
    assert fractures["condition-c1"].concept == "pathological-fracture-osteoporosis"
    assert fractures["condition-c1"].healed == "2015-06-01T10:00:00+00:00"
    assert fractures["condition-c2"].site == "vertebra-t12"
    out = {c["code"].get("text"): c for c in written(result, "Condition")}
    assert out["Pathological fracture due to osteoporosis (disorder)"]["code"] == synthea["code"]
    assert out["Compression fracture"]["bodySite"] == vertebral["bodySite"]


# --------------------------------------------------------------------------- observations


def test_a_lab_dated_only_on_its_report_keeps_its_panel() -> None:
    lab = obs("o1", "2339-0", category=[{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}])
    lab["valueQuantity"] = {
        "value": Decimal("5.60"),
        "unit": "mg/dL",
        "system": UCUM,
        "code": "mg/dL",
    }
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
        "subject": SUBJECT,
        "effectiveDateTime": "2023-05-10",
        "result": [{"reference": "Observation/o1"}],
    }
    result = from_fhir(bundle(lab, report))
    (kept,) = result.case.labs
    assert kept.date is None and kept.panel == "diagnosticreport-r1"
    assert kept.value == Decimal("5.60")
    (out_report,) = written(result, "DiagnosticReport")
    assert out_report["effectiveDateTime"] == "2023-05-10"
    assert len(out_report["result"]) == 1
    (out_lab,) = written(result, "Observation")
    assert_kept(lab, out_lab, "valueQuantity")


def test_a_panel_keeps_its_members_and_components() -> None:
    systolic = {"coding": [{"system": LOINC, "code": "8480-6"}]}
    bp = obs(
        "bp",
        "85354-9",
        category=[{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
        effectiveDateTime="2023-05-10T09:00:00Z",
        component=[
            {"code": systolic, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "dataAbsentReason": {"text": "not measured"},
            },
        ],
    )
    panel = obs("panel", "55284-4", hasMember=[{"reference": "Observation/bp"}])
    result = from_fhir(bundle(bp, panel))
    by_code = {o.code.codings[0].code: o for o in result.case.observations}
    assert by_code["55284-4"].members == ("observation-bp",)
    outs = {o["code"]["coding"][0]["code"]: o for o in written(result, "Observation")}
    assert outs["85354-9"]["component"] == bp["component"]
    assert len(outs["55284-4"]["hasMember"]) == 1


VALUES: list[tuple[str, Any]] = [
    ("valueQuantity", {"value": Decimal("43.0"), "unit": "wk", "system": UCUM, "code": "wk"}),
    ("valueCodeableConcept", {"coding": [{"system": SNOMED, "code": "77386006"}], "text": "yes"}),
    ("valueString", "Negative"),
    ("valueBoolean", False),
    ("valueInteger", 0),
    ("valueRange", {"low": {"value": 1}, "high": {"value": 2, "unit": "d"}}),
    ("valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 128}}),
    ("valuePeriod", {"start": "2023-01-01", "end": "2023-02-01"}),
    ("valueDateTime", "2026-06-08T20:00:00+00:00"),
    ("valueTime", "08:30:00"),
]


@pytest.mark.parametrize(("element", "value"), VALUES, ids=[v[0] for v in VALUES])
def test_every_r4_value_type_comes_back_unchanged(element: str, value: Any) -> None:
    source = obs(
        "o1",
        "11884-4",
        category=[{"coding": [{"system": OBS_CAT, "code": "survey", "display": "Survey"}]}],
        effectiveDateTime="2023",
        interpretation=[{"coding": [{"system": "urn:x", "code": "Z"}]}],
        **{element: value},
    )
    result = from_fhir(bundle(source))
    (out,) = written(result, "Observation")
    assert_kept(source, out, element, "interpretation")
    assert not [u for u in result.unmapped if u.path.startswith("Observation/o1")]


def test_data_absent_reason_is_kept() -> None:
    source = obs(
        "o1",
        "11884-4",
        dataAbsentReason={"coding": [{"system": "urn:dar", "code": "asked-unknown"}]},
    )
    (out,) = written(from_fhir(bundle(source)), "Observation")
    assert out["dataAbsentReason"] == source["dataAbsentReason"]


# --------------------------------------------------------------------------- medications


def test_medication_requests_with_contained_or_referenced_medication_and_dosage() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313782"}]
        },
    }
    referenced = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/m1"},
        "subject": SUBJECT,
        "authoredOn": "2023-05-15",
        "dosageInstruction": [
            {
                "text": "1 tablet daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {
                    "coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]
                },
                "doseAndRate": [{"doseQuantity": {"value": 1}}],
            }
        ],
    }
    contained = {
        "resourceType": "MedicationRequest",
        "id": "r2",
        "status": "completed",
        "intent": "plan",
        "contained": [{"resourceType": "Medication", "id": "med", "code": {"text": "Tylenol PM"}}],
        "medicationReference": {"reference": "#med"},
        "subject": SUBJECT,
    }
    result = from_fhir(bundle(medication, referenced, contained))
    meds = {m.id: m for m in result.case.medications}
    first = meds["medicationrequest-r1"]
    assert (first.record, first.intent, first.authored) == ("request", "order", "2023-05-15")
    assert (first.frequency, first.period_unit, first.dose, first.dosage_text) == (
        1,
        "d",
        Decimal(1),
        "1 tablet daily",
    )
    assert first.code is not None and first.code.codings[0].code == "313782"
    assert meds["medicationrequest-r2"].code is not None
    assert meds["medicationrequest-r2"].code.text == "Tylenol PM"
    outs = {o["id"]: o for o in written(result, "MedicationRequest")}
    assert len(outs) == 2
    out = next(o for o in outs.values() if o["intent"] == "order")
    assert out["dosageInstruction"] == referenced["dosageInstruction"]
    assert out["medicationCodeableConcept"] == medication["code"]


# --------------------------------------------------------------------------- pregnancy facts


def test_pregnancy_facts_as_qi_core_and_synthea_write_them() -> None:
    gestational_age = obs(
        "ga",
        "11884-4",
        valueQuantity={"value": 37, "unit": "wk", "system": UCUM, "code": "wk"},
    )
    gravida = obs("g", "11996-6", valueInteger=1)
    parity = obs("pa", "11977-6", valueInteger=0)
    edd = obs("edd", "11778-8", valueDateTime="2025-02-01")
    status = obs(
        "ps",
        "82810-3",
        valueCodeableConcept={
            "coding": [{"system": SNOMED, "code": "77386006", "display": "Pregnant"}]
        },
    )
    cesarean = {
        "resourceType": "Procedure",
        "id": "cs",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "11466000", "display": "Cesarean section"}]},
        "subject": SUBJECT,
        "performedPeriod": {
            "start": "2025-02-01T08:00:00+00:00",
            "end": "2025-02-01T09:00:00+00:00",
        },
    }
    result = from_fhir(bundle(gestational_age, gravida, parity, edd, status, cesarean))
    sent = {o["code"]["coding"][0]["code"]: o for o in written(result, "Observation")}
    for source in (gestational_age, gravida, parity, edd, status):
        code = source["code"]["coding"][0]["code"]
        value = next(k for k in source if k.startswith("value"))
        assert sent[code][value] == source[value], code
    (procedure,) = written(result, "Procedure")
    assert procedure["code"] == cesarean["code"]
    assert procedure["performedPeriod"] == cesarean["performedPeriod"]
    (care,) = result.case.care
    assert care.concept == "cesarean-section"  # recognised, coded as the source coded it
