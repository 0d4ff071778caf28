"""The corruptions of the example Bundle that validation must catch, one per rule kind.

Shared by the validation tests (ours must report each at its element) and by the agreement with
HAPI's validator (``tests/profiles/test_hapi_engine.py``, ``scripts/validation_agreement.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_plao import jsonio

from .conftest import entry_index

SNOMED = "http://snomed.info/sct"


def has_rxnorm(resource: dict[str, Any]) -> bool:
    return "rxnorm" in jsonio.dumps(resource.get("medicationCodeableConcept", {}))


@dataclass(frozen=True)
class Corruption:
    name: str
    profile: str | None  # the profile of the entry to corrupt (None: by rtype)
    change: Callable[[dict[str, Any], dict[str, Any]], None]  # (entry, bundle)
    path: str  # expected error path below Bundle.entry[i]
    rule: str  # expected rule (prefix)
    rtype: str | None = None
    where: Callable[[dict[str, Any]], bool] = lambda r: True


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(entry: dict[str, Any], _bundle: dict[str, Any]) -> None:
        node: Any = entry["resource"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


def _drop(path: list[str | int]) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(entry: dict[str, Any], _bundle: dict[str, Any]) -> None:
        node: Any = entry["resource"]
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


def _point_evidence_at_an_observation(entry: dict[str, Any], bundle: dict[str, Any]) -> None:
    dxa = bundle["entry"][entry_index(bundle, "plao-dxa-score")]
    entry["resource"]["evidence"][0]["detail"][0]["reference"] = dxa["fullUrl"]


def duplicate_full_url(entry: dict[str, Any], bundle: dict[str, Any]) -> None:
    entry["fullUrl"] = bundle["entry"][0]["fullUrl"]


def mismatch_request_url(entry: dict[str, Any], _bundle: dict[str, Any]) -> None:
    entry["request"]["url"] = "Observation/plao-somebody-else"


def _atc_only(entry: dict[str, Any], _bundle: dict[str, Any]) -> None:
    cc = entry["resource"]["medicationCodeableConcept"]
    cc["coding"] = [c for c in cc["coding"] if "rxnorm" not in c["system"]]
    cc["coding"].append({"system": SNOMED, "code": "108537001"})


def _is_t_score(resource: dict[str, Any]) -> bool:
    return resource["code"]["coding"][0]["code"] == "38267-1"


def _has_value(resource: dict[str, Any]) -> bool:
    return "valueQuantity" in resource


NOT_A_VERTEBRA = "122496007"  # lumbar vertebral column: in the code table, not a single vertebra

CORRUPTIONS = [
    Corruption(
        "dxa score without value",
        "plao-dxa-score",
        _drop(["valueQuantity"]),
        "valueQuantity",
        "cardinality",
    ),
    Corruption(
        "dxa score without effective date",
        "plao-dxa-score",
        _drop(["effectiveDateTime"]),
        "effectiveDateTime",
        "cardinality",
    ),
    Corruption(
        "fracture without bodySite",
        "plao-vertebral-fracture",
        _drop(["bodySite"]),
        "bodySite",
        "cardinality",
    ),
    Corruption(
        "fracture bodySite outside the vertebra value set",
        "plao-vertebral-fracture",
        _set(["bodySite", 0, "coding", 0, "code"], NOT_A_VERTEBRA),
        "bodySite[0]",
        "binding",
    ),
    Corruption(
        "lab result without unit",
        "plao-lab-result",
        _drop(["valueQuantity", "unit"]),
        "valueQuantity.unit",
        "cardinality",
        where=_has_value,
    ),
    Corruption(
        "lab result with a non-UCUM unit system",
        "plao-lab-result",
        _set(["valueQuantity", "system"], "http://example.org/units"),
        "valueQuantity.system",
        "pattern",
        where=_has_value,
    ),
    Corruption(
        "wrong LOINC for a T-score (serum phosphate)",
        "plao-dxa-score",
        _set(["code", "coding", 0, "code"], "2777-1"),
        "code",
        "binding",
        where=_is_t_score,
    ),
    Corruption(
        "T-score given in g/cm2",
        "plao-dxa-score",
        _set(["valueQuantity", "code"], "g/cm2"),
        "",
        "invariant:plao-dxa-2",
        where=_is_t_score,
    ),
    Corruption(
        "medication statement without timing",
        "plao-medication-statement",
        _drop(["dosage", 0, "timing"]),
        "dosage[0].timing",
        "cardinality",
        where=has_rxnorm,
    ),
    Corruption(
        "medication statement without dose",
        "plao-medication-statement",
        _drop(["dosage", 0, "doseAndRate"]),
        "dosage[0].doseAndRate",
        "cardinality",
        where=has_rxnorm,
    ),
    Corruption(
        "medication coded without RxNorm",
        "plao-medication-statement",
        _atc_only,
        "medicationCodeableConcept",
        "invariant:plao-med-1",
        where=has_rxnorm,
    ),
    Corruption(
        "broken reference",
        "plao-dxa-score",
        _set(["subject", "reference"], "urn:uuid:6f1c1a0e-0000-4000-8000-000000000000"),
        "subject.reference",
        "reference",
    ),
    Corruption(
        "invalid calendar date",
        "plao-dxa-score",
        _set(["effectiveDateTime"], "2023-02-30"),
        "effectiveDateTime",
        "structure",
    ),
    Corruption(
        "missing status",
        "plao-lab-result",
        _drop(["status"]),
        "status",
        "cardinality",
    ),
    Corruption(
        "missing status on a resource without profile",
        None,
        _drop(["status"]),
        "status",
        "cardinality",
        rtype="Procedure",
    ),
    Corruption(
        "status code that R4 does not define",
        None,
        _set(["status"], "done"),
        "status",
        "binding",
        rtype="Procedure",
    ),
    Corruption(
        "condition clinical status outside its value set",
        "plao-vertebral-fracture",
        _set(["clinicalStatus", "coding", 0, "code"], "healed"),
        "clinicalStatus",
        "binding",
    ),
    Corruption(
        "period that ends before it starts",
        "plao-medication-statement",
        _set(["effectivePeriod"], {"start": "2025-05-13", "end": "2023-05-15"}),
        "effectivePeriod",
        "invariant:per-1",
        where=has_rxnorm,
    ),
    Corruption(
        "reference range without bounds or text",
        "plao-lab-result",
        _set(["referenceRange"], [{"appliesTo": [{"text": "adults"}]}]),
        "referenceRange[0]",
        "invariant:obs-3",
        where=_has_value,
    ),
    Corruption(
        "wrong fixed category",
        "plao-dxa-score",
        _set(["category", 0, "coding", 0, "code"], "laboratory"),
        "category",
        "slice",
    ),
    Corruption(
        "dxa report with another code",
        "plao-dxa-report",
        _set(["code", "coding", 0, "code"], "24701-5"),
        "code",
        "pattern",
    ),
    Corruption(
        "dxa report without results",
        "plao-dxa-report",
        _drop(["result"]),
        "result",
        "cardinality",
    ),
    Corruption(
        "fracture evidence that is not a report",
        "plao-vertebral-fracture",
        _point_evidence_at_an_observation,
        "evidence[0].detail[0].reference",
        "reference",
    ),
    Corruption(
        "diagnosis without verification status",
        "plao-diagnosis",
        _drop(["verificationStatus"]),
        "verificationStatus",
        "cardinality",
    ),
    Corruption(
        "patient without gender",
        "plao-patient",
        _drop(["gender"]),
        "gender",
        "cardinality",
    ),
    Corruption(
        "vital sign as a string",
        "plao-vital-signs",
        lambda e, _b: e["resource"].update(valueString=str(e["resource"].pop("valueQuantity"))),
        "valueString",
        "type",
    ),
    Corruption(
        "misspelled element",
        "plao-dxa-score",
        lambda e, _b: e["resource"]["valueQuantity"].update(unitt="1"),
        "valueQuantity.unitt",
        "structure",
    ),
    Corruption(
        "empty array",
        "plao-dxa-score",
        _set(["identifier"], []),
        "identifier",
        "structure",
    ),
]


def corrupt(bundle: dict[str, Any], corruption: Corruption) -> int:
    """Apply ``corruption`` to the first entry it fits; the entry's index."""
    i = entry_index(bundle, corruption.profile, rtype=corruption.rtype, where=corruption.where)
    corruption.change(bundle["entry"][i], bundle)
    return i


def expected_path(index: int, corruption: Corruption) -> str:
    """The element the corruption's error is expected at."""
    return f"Bundle.entry[{index}].resource" + (f".{corruption.path}" if corruption.path else "")
