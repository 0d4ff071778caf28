"""MedicationStatement <-> :class:`~fhir_plao.case.Medication`; MedicationRequest is read too,
since other systems record what was prescribed rather than what was taken."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Medication
from fhir_plao.coded import shown_unit
from fhir_plao.mapping._coded import (
    concept_json,
    concepts_json,
    read_source_concept,
    read_source_concepts,
)
from fhir_plao.mapping._fhir import (
    JSON,
    Reader,
    annotation,
    codeable,
    quantity,
    read_concept,
    read_note,
    read_quantity,
)
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex


def _dosage_json(m: Medication) -> JSON:
    dosage: JSON = {"text": m.dosage_text, "asNeededBoolean": m.as_needed}
    bounded = m.record == "request" and (m.start or m.end)
    if m.frequency is not None or m.period is not None or bounded:
        repeat: JSON = {"frequency": m.frequency, "period": m.period, "periodUnit": m.period_unit}
        if bounded:
            repeat["boundsPeriod"] = {"start": m.start, "end": m.end}
        dosage["timing"] = {"repeat": repeat}
    if m.route is not None:
        dosage["route"] = codeable(m.route)
    elif m.route_code is not None:
        dosage["route"] = concept_json(m.route_code)
    if m.dose is not None:
        dose = (
            quantity(m.dose, m.dose_unit, m.dose_unit_text)
            if m.dose_unit is not None
            else {"value": m.dose}  # a count of units (tablets), as the source gave it
        )
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return dosage


def medication_to_fhir(w: BundleWriter, m: Medication) -> None:
    """A MedicationStatement (taken) or a MedicationRequest (prescribed)."""
    drug = concept_json(m.code) if m.code is not None else codeable(m.drug)
    common: JSON = {
        "status": m.status,
        "medicationCodeableConcept": drug,
        "subject": w.subject,
        "reasonCode": concepts_json(m.reason_code),
        "reasonReference": [w.ref("Condition", r) for r in m.reason],
        "note": annotation(m.note),
    }
    if m.record == "request":
        body = {
            "status": m.status,
            "intent": m.intent,
            **common,
            "authoredOn": m.authored,
            "dosageInstruction": [_dosage_json(m)],
        }
        w.add("MedicationRequest", m.id, body)
        return
    body = {
        "status": m.status,
        "medicationCodeableConcept": drug,
        "subject": w.subject,
        "effectivePeriod": {"start": m.start, "end": m.end},
        "reasonCode": common["reasonCode"],
        "reasonReference": common["reasonReference"],
        "note": common["note"],
        "dosage": [_dosage_json(m)],
    }
    # the profile asks for a coded drug with dose and timing; an unspecified drug given
    # without them (the report's "NSAID") is still a MedicationStatement, under base R4 only
    complete = m.dose is not None and m.frequency is not None and m.code is None
    profile = "plao-medication-statement" if complete else None
    w.add("MedicationStatement", m.id, body, profile=profile)


def _dosage(r: Reader, path: tuple[str | int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.peek(*path) is None:
        return out
    rep = (*path, "timing", "repeat")
    out["frequency"] = r.int_(*rep, "frequency")
    out["period"] = r.decimal(*rep, "period")
    out["period_unit"] = r.str_(*rep, "periodUnit")
    out["dosage_text"] = r.str_(*path, "text")
    as_needed = r.get(*path, "asNeededBoolean")
    if as_needed is not None and not isinstance(as_needed, bool):
        raise r.error((*path, "asNeededBoolean"), "expected true or false")
    out["as_needed"] = as_needed
    if r.peek(*path, "route") is not None:
        probe = Reader(r.resource, r.where)
        route, _ = read_concept(probe, (*path, "route"), "route")
        if route is not None and r.peek(*path, "route") == codeable(route):
            r.adopt(probe)
            out["route"] = route
        else:
            out["route_code"] = read_source_concept(r, (*path, "route"))
    rates = r.items(*path, "doseAndRate")
    if rates:
        dose, unit = read_quantity(r, (*path, "doseAndRate", 0, "doseQuantity"))
        shown = r.peek(*path, "doseAndRate", 0, "doseQuantity", "unit")
        if unit is not None and isinstance(shown, str):
            r.mark(*path, "doseAndRate", 0, "doseQuantity", "unit")
            if shown != shown_unit(unit):
                out["dose_unit_text"] = shown
        out["dose"], out["dose_unit"] = dose, unit
    return out


def _reasons(r: Reader, index: ResourceIndex, name: str) -> list[str]:
    ids = []
    for i, ref in enumerate(r.items(name)):
        target = index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.type == "Condition":
            ids.append(target.local_id)
            r.mark(name, i)
    return ids


def _drug(r: Reader, index: ResourceIndex) -> tuple[str | None, Any]:
    """(key, source code) of the medication: medicationCodeableConcept, or the code of a
    contained or referenced Medication (its other elements are left for the report)."""
    if r.peek("medicationCodeableConcept") is not None:
        return _drug_code(r, r, ("medicationCodeableConcept",))
    ref = r.peek("medicationReference", "reference")
    if not isinstance(ref, str):
        raise r.error(("medication[x]",), "no medication given")
    if ref.startswith("#"):
        for i, contained in enumerate(r.items("contained")):
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                if r.peek("contained", i, "code") is None:
                    raise r.error(("contained", i, "code"), "the contained Medication has no code")
                r.mark("medicationReference")
                r.mark("contained", i, "id")
                r.mark("contained", i, "resourceType")
                return _drug_code(r, r, ("contained", i, "code"))
        raise r.error(("medicationReference",), f"no contained Medication {ref!r}")
    target = index.resolve(ref)
    if target is None or target.reader.type != "Medication":
        raise r.error(("medicationReference",), f"the Medication {ref!r} is not in the input")
    if target.reader.peek("code") is None:
        raise r.error(("medicationReference",), f"the Medication {ref!r} has no code")
    r.mark("medicationReference")
    return _drug_code(r, target.reader, ("code",))


def _drug_code(r: Reader, holder: Reader, path: tuple[str | int, ...]) -> tuple[str | None, Any]:
    probe = Reader(holder.resource, holder.where)
    key, _ = read_concept(probe, path, "medication")
    if key is not None and holder.peek(*path) == codeable(key):
        holder.adopt(probe)
        return key, None
    return key, read_source_concept(holder, path)


def statement_to_medication(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    r.get("subject")
    drug, code = _drug(r, index)
    start = r.str_("effectivePeriod", "start")
    if start is None and r.peek("effectiveDateTime") is not None:
        start = r.str_("effectiveDateTime")
    out: dict[str, Any] = {
        "id": local,
        "drug": drug,
        "code": code,
        "status": r.str_("status"),
        "start": start,
        "end": r.str_("effectivePeriod", "end"),
        "reason": _reasons(r, index, "reasonReference"),
        "reason_code": read_source_concepts(r, ("reasonCode",)),
        "note": read_note(r),
    }
    if len(r.items("dosage")) <= 1:
        out.update(_dosage(r, ("dosage", 0)))
    return out


def request_to_medication(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    """A MedicationRequest: the medication prescribed, kept a prescription (record 'request')."""
    r.get("subject")
    drug, code = _drug(r, index)
    timing = ("dosageInstruction", 0, "timing", "repeat", "boundsPeriod")
    out: dict[str, Any] = {
        "id": local,
        "record": "request",
        "drug": drug,
        "code": code,
        "status": r.str_("status"),
        "intent": r.str_("intent"),
        "authored": r.str_("authoredOn"),
        "start": r.str_(*timing, "start"),
        "end": r.str_(*timing, "end"),
        "reason": _reasons(r, index, "reasonReference"),
        "reason_code": read_source_concepts(r, ("reasonCode",)),
        "note": read_note(r),
    }
    if len(r.items("dosageInstruction")) <= 1:
        out.update(_dosage(r, ("dosageInstruction", 0)))
    return out
