"""The example case as a transaction Bundle: what the issue's acceptance list names, checked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from fhir_plao.mapping._fhir import PROFILE

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def resources(
    bundle: dict[str, Any], rtype: str, profile: str | None = None
) -> list[dict[str, Any]]:
    out = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]
    if profile is not None:
        out = [r for r in out if PROFILE + profile in r.get("meta", {}).get("profile", [])]
    return out


def codes(cc: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in cc.get("coding", []) if c["system"] == system]


def test_fhir_resources_parses_the_bundle(example_bundle_text: str) -> None:
    bundle = Bundle.model_validate_json(example_bundle_text)
    assert bundle.type == "transaction"
    assert len(bundle.entry) == 124


def test_entries_are_puts_with_urn_uuid_full_urls_and_non_numeric_ids(
    example_bundle: dict[str, Any],
) -> None:
    for entry in example_bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
        assert not resource["id"].isdigit()
        assert entry["fullUrl"].removeprefix("urn:uuid:") in resource["id"]


def test_eight_fracture_conditions_with_distinct_vertebra_body_sites(
    example_bundle: dict[str, Any],
) -> None:
    fractures = resources(example_bundle, "Condition", "plao-vertebral-fracture")
    sites = {codes(f["bodySite"][0], SNOMED)[0] for f in fractures}
    texts = sorted(f["bodySite"][0]["text"] for f in fractures)
    assert len(fractures) == 8
    # T5 T7 T9 T11 T12 L1 L2 L3, SNOMED CT "bone structure of ..." (DICOM CID 7603)
    assert sites == {
        "56401006",
        "62487009",
        "82687006",
        "12989004",
        "23215003",
        "66794005",
        "14293000",
        "36470004",
    }
    assert len(texts) == 8
    for f in fractures:
        assert f["clinicalStatus"]["coding"][0]["code"] == "resolved"
        assert f["abatementDateTime"] == "2025-05-13"
        assert f["onsetDateTime"] == "2023-03"
        evidence = f["evidence"][0]["detail"]
        assert all(ref["reference"].startswith("urn:uuid:") for ref in evidence)


def test_twelve_dxa_scores_with_exactly_the_printed_values(
    example_bundle: dict[str, Any], example_bundle_text: str
) -> None:
    scores = resources(example_bundle, "Observation", "plao-dxa-score")
    table = {
        (o["effectiveDateTime"], codes(o["code"], LOINC)[0], codes(o["bodySite"], SNOMED)[0]): str(
            o["valueQuantity"]["value"]
        )
        for o in scores
    }
    lumbar_t, lumbar_z, femur_t, femur_z = "38267-1", "85394-5", "38263-0", "80934-3"
    spine, neck = "122496007", "29627003"
    expected = {}
    for date, values in {
        "2023-05-12": ("-1.8", "-2.8", "-1.5", "-1.8"),
        "2024-05-14": ("-1.5", "-2.8", "-1.5", "-1.8"),
        "2025-05-13": ("-1.4", "-1.1", "1.1", "-1.6"),
    }.items():
        for (code, site), value in zip(
            [(lumbar_t, spine), (lumbar_z, spine), (femur_t, neck), (femur_z, neck)],
            values,
            strict=True,
        ):
            expected[(date, code, site)] = value
    assert len(scores) == 12
    assert table == expected
    # the 2-year femoral-neck T-score is written 1.1, as printed
    assert '"value": 1.1,' in example_bundle_text
    for o in scores:
        assert o["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert o["valueQuantity"]["code"] == "1"
        assert o["category"][0]["coding"][0]["code"] == "imaging"


def test_three_dxa_reports_group_four_scores_each(example_bundle: dict[str, Any]) -> None:
    reports = resources(example_bundle, "DiagnosticReport", "plao-dxa-report")
    assert [r["effectiveDateTime"] for r in reports] == ["2023-05-12", "2024-05-14", "2025-05-13"]
    assert all(codes(r["code"], LOINC) == ["83311-1"] for r in reports)
    assert [len(r["result"]) for r in reports] == [4, 4, 4]


def lab(bundle: dict[str, Any], loinc: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in resources(bundle, "Observation", "plao-lab-result")
        if loinc in codes(o["code"], LOINC)
    ]
    return found


def test_phosphorus_is_high_with_its_reference_range(example_bundle: dict[str, Any]) -> None:
    obs = lab(example_bundle, "2777-1")
    assert obs["valueQuantity"] == {
        "value": 5,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    rr = obs["referenceRange"][0]
    assert (str(rr["low"]["value"]), str(rr["high"]["value"])) == ("2.3", "4.7")
    assert rr["low"]["code"] == rr["high"]["code"] == "mg/dL"


def test_vitamin_d_is_low_with_its_lower_limit(example_bundle: dict[str, Any]) -> None:
    obs = lab(example_bundle, "62292-8")
    assert str(obs["valueQuantity"]["value"]) == "23.2"
    assert obs["valueQuantity"]["code"] == "ng/mL"
    assert obs["interpretation"][0]["coding"][0]["code"] == "L"
    rr = obs["referenceRange"][0]
    assert rr["low"]["value"] == Decimal("30")
    assert "high" not in rr
    assert rr["text"] == ">30 ng/mL"


def test_normal_labs_are_flagged_normal(example_bundle: dict[str, Any]) -> None:
    labs = resources(example_bundle, "Observation", "plao-lab-result")
    normal = [o for o in labs if o["interpretation"][0]["coding"][0]["code"] == "N"]
    assert len(labs) == 13
    assert len(normal) == 11
    assert all("valueQuantity" not in o for o in normal)


def dosage(statement: dict[str, Any]) -> tuple[str | None, str | None, Any, Any, Any]:
    d = statement["dosage"][0]
    dose = d.get("doseAndRate", [{}])[0].get("doseQuantity", {})
    rep = d.get("timing", {}).get("repeat", {})
    return (
        str(dose["value"]) if dose else None,
        dose.get("code"),
        rep.get("frequency"),
        rep.get("period"),
        rep.get("periodUnit"),
    )


def test_medication_statements(example_bundle: dict[str, Any]) -> None:
    statements = {
        s["medicationCodeableConcept"]["text"]: s
        for s in resources(example_bundle, "MedicationStatement")
    }
    profiled = resources(example_bundle, "MedicationStatement", "plao-medication-statement")
    assert len(statements) == 5
    # the NSAID and the analgesic prescribed elsewhere have neither dose nor timing in the report
    assert len(profiled) == 3
    by_dose = {dosage(s): name for name, s in statements.items() if "dosage" in s}
    assert ("1200", "mg", 1, 1, "d") in by_dose  # calcium 1200 mg daily
    assert ("2000", "[IU]", 1, 1, "d") in by_dose  # vitamin D3 2000 IU daily
    assert ("70", "mg", 1, 1, "wk") in by_dose  # alendronate 70 mg once weekly
    alendronate = statements[by_dose[("70", "mg", 1, 1, "wk")]]
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert codes(alendronate["medicationCodeableConcept"], rxnorm) == ["904431"]
    assert any(
        "anti-inflammatory" in name.lower() or "nsaid" in name.lower() for name in statements
    )
    for name, s in statements.items():
        if name.startswith("Analgesic"):  # prescribed elsewhere, before she came to hospital
            assert s["effectivePeriod"] == {"start": "2023-04", "end": "2023-05-10"}
            assert s["status"] == "stopped" and "dosage" not in s
            continue
        assert s["effectivePeriod"]["start"] == "2023-05-15"
        assert s["dosage"][0]["route"]["coding"][0]["code"] == "26643006"


def test_vital_signs(example_bundle: dict[str, Any]) -> None:
    vitals = {
        codes(o["code"], LOINC)[0]: (str(o["valueQuantity"]["value"]), o["valueQuantity"]["code"])
        for o in resources(example_bundle, "Observation", "plao-vital-signs")
    }
    assert vitals == {
        "8302-2": ("165", "cm"),
        "29463-7": ("59", "kg"),
        "39156-5": ("21.6", "kg/m2"),
    }


def test_every_reference_points_into_the_bundle(example_bundle: dict[str, Any]) -> None:
    full_urls = {e["fullUrl"] for e in example_bundle["entry"]}

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["reference"]] if isinstance(node.get("reference"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    all_refs = refs([e["resource"] for e in example_bundle["entry"]])
    assert len(all_refs) > 100
    assert set(all_refs) <= full_urls
