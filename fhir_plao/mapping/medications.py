"""MedicationStatement <-> :class:`~fhir_plao.case.Medication`; MedicationRequest is read too,
since other systems record what was prescribed rather than what was taken."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Medication
from fhir_plao.mapping._fhir import (
    JSON,
    Reader,
    annotation,
    codeable,
    concept_name,
    quantity,
    read_concept,
    read_note,
    read_quantity,
)
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex

#: MedicationRequest.status -> MedicationStatement.status
REQUEST_STATUS = {
    "active": "active",
    "completed": "completed",
    "stopped": "stopped",
    "on-hold": "on-hold",
    "draft": "intended",
    "cancelled": "stopped",
}


def medication_to_statement(w: BundleWriter, m: Medication) -> None:
    dosage: JSON = {}
    if m.frequency is not None or m.period is not None:
        dosage["timing"] = {
            "repeat": {"frequency": m.frequency, "period": m.period, "periodUnit": m.period_unit}
        }
    if m.route is not None:
        dosage["route"] = codeable(m.route)
    if m.dose is not None:
        assert m.dose_unit is not None
        dosage["doseAndRate"] = [{"doseQuantity": quantity(m.dose, m.dose_unit)}]
    body: JSON = {
        "status": m.status,
        "medicationCodeableConcept": codeable(m.drug),
        "subject": w.subject,
        "effectivePeriod": {"start": m.start, "end": m.end},
        "reasonReference": [w.ref("Condition", r) for r in m.reason],
        "note": annotation(m.note),
        "dosage": [dosage],
    }
    # the profile asks for a coded drug with dose and timing; an unspecified drug given
    # without them (the report's "NSAID") is still a MedicationStatement, under base R4 only
    complete = m.dose is not None and m.frequency is not None
    profile = "plao-medication-statement" if complete else None
    w.add("MedicationStatement", m.id, body, profile=profile)


def _dosage(r: Reader, path: tuple[str | int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.peek(*path) is None:
        return out
    out["frequency"] = r.int_(*path, "timing", "repeat", "frequency")
    out["period"] = r.decimal(*path, "timing", "repeat", "period")
    out["period_unit"] = r.str_(*path, "timing", "repeat", "periodUnit")
    route, _ = read_concept(r, (*path, "route"), "route")
    out["route"] = route
    rates = r.items(*path, "doseAndRate")
    if rates:
        dose, unit = read_quantity(r, (*path, "doseAndRate", 0, "doseQuantity"))
        out["dose"], out["dose_unit"] = dose, unit
        r.mark(*path, "doseAndRate", 0, "type")
    return out


def _reasons(r: Reader, index: ResourceIndex, name: str) -> list[str]:
    ids = []
    for i, ref in enumerate(r.items(name)):
        target = index.resolve((ref or {}).get("reference"))
        if target is not None and target.reader.type == "Condition":
            ids.append(target.local_id)
            r.mark(name, i)
    return ids


def _drug(r: Reader, index: ResourceIndex) -> str:
    if r.peek("medicationCodeableConcept") is not None:
        drug, _ = read_concept(r, ("medicationCodeableConcept",), "medication")
        if drug is None:
            name = concept_name(r, ("medicationCodeableConcept",))
            raise r.error(
                ("medicationCodeableConcept",), f"medication {name!r} is not in the code table"
            )
        return drug
    ref = r.peek("medicationReference", "reference")
    if not isinstance(ref, str):
        raise r.error(("medication[x]",), "no medication given")
    if ref.startswith("#"):
        for i, contained in enumerate(r.items("contained")):
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                drug, _ = read_concept(r, ("contained", i, "code"), "medication")
                if drug is not None:
                    r.mark("medicationReference")
                    r.mark("contained", i, "id")
                    r.mark("contained", i, "resourceType")
                    return drug
                name = concept_name(r, ("contained", i, "code"))
                raise r.error(
                    ("contained", i, "code"), f"medication {name!r} is not in the code table"
                )
        raise r.error(("medicationReference",), f"no contained Medication {ref!r}")
    target = index.resolve(ref)
    if target is None or target.reader.type != "Medication":
        raise r.error(("medicationReference",), f"the Medication {ref!r} is not in the input")
    drug, _ = read_concept(target.reader, ("code",), "medication")
    if drug is None:
        name = concept_name(target.reader, ("code",))
        raise r.error(("medicationReference",), f"medication {name!r} is not in the code table")
    r.mark("medicationReference")
    return drug


def statement_to_medication(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    r.get("subject")
    out: dict[str, Any] = {
        "id": local,
        "drug": _drug(r, index),
        "status": r.str_("status"),
        "start": r.str_("effectivePeriod", "start") or r.str_("effectiveDateTime"),
        "end": r.str_("effectivePeriod", "end"),
        "reason": _reasons(r, index, "reasonReference"),
        "note": read_note(r),
    }
    out.update(_dosage(r, ("dosage", 0)))
    return out


def request_to_medication(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    """A MedicationRequest read as the medication it prescribes."""
    r.get("subject")
    r.get("intent")
    status = r.str_("status")
    timing = ("dosageInstruction", 0, "timing", "repeat", "boundsPeriod")
    start = r.str_(*timing, "start") or r.str_("authoredOn")
    out: dict[str, Any] = {
        "id": local,
        "drug": _drug(r, index),
        "status": REQUEST_STATUS.get(status or "", "active"),
        "start": start,
        "end": r.str_(*timing, "end"),
        "reason": _reasons(r, index, "reasonReference"),
        "note": read_note(r),
    }
    out.update(_dosage(r, ("dosageInstruction", 0)))
    return out
