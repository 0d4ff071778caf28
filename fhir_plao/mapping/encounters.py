"""Encounter <-> :class:`~fhir_plao.case.Encounter`: the hospital stay and the visits."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Encounter
from fhir_plao.mapping._coded import (
    concept_json,
    concepts_json,
    period_json,
    read_period,
    read_source_concept,
    read_source_concepts,
)
from fhir_plao.mapping._fhir import JSON, Reader, codeable
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex

#: Coding elements -> Coding fields
_CODING = {
    "system": "system",
    "version": "version",
    "code": "code",
    "display": "display",
    "userSelected": "user_selected",
}


def encounter_to_fhir(w: BundleWriter, e: Encounter) -> None:
    if e.kind is not None:
        cls = codeable(e.kind)["coding"][0]
    else:
        assert e.class_code is not None
        cls = {
            fhir: getattr(e.class_code, ours)
            for fhir, ours in _CODING.items()
            if getattr(e.class_code, ours) is not None
        }
    body: JSON = {
        "status": e.status,
        "class": cls,
        "type": concepts_json(e.type),
        "subject": w.subject,
        "period": period_json(e.period),
        "reasonCode": concepts_json(e.reason_code),
        "reasonReference": [w.ref("Condition", r) for r in e.reason] or None,
        "hospitalization": {"dischargeDisposition": concept_json(e.discharge)},
    }
    w.add("Encounter", e.id, body)


def encounter_from_fhir(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    cls: dict[str, Any] = {}
    for fhir, ours in _CODING.items():
        value = r.get("class", fhir) if fhir == "userSelected" else r.str_("class", fhir)
        if value is not None:
            cls[ours] = value
    if not cls:
        raise r.error(("class",), "an Encounter needs its class")
    types = read_source_concepts(r, ("type",))
    reasons = []
    for i, ref in enumerate(r.items("reasonReference")):
        target = index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.type == "Condition":
            reasons.append(target.local_id)
            r.mark("reasonReference", i)
    return {
        "id": local,
        "status": r.str_("status"),
        "class_code": cls,
        "type": types,
        "period": read_period(r, ("period",)),
        "reason": reasons,
        "reason_code": read_source_concepts(r, ("reasonCode",)),
        "discharge": read_source_concept(r, ("hospitalization", "dischargeDisposition")),
    }
