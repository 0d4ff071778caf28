"""Procedures, CarePlans and ClinicalImpressions <-> delivery, care and follow-up.

* delivery: a Procedure ``partOf`` the pregnancy Observation; its anaesthesia a Procedure
  ``partOf`` the delivery;
* care of kind ``procedure`` (lactation stopped, orthosis worn): a Procedure with its period;
* care of kind ``plan`` (diet, exercise, walking): a CarePlan of one activity each; the follow-up
  schedule: a CarePlan with an activity per phase. (Outcomes are Observations; a
  ClinicalImpression from another system is read as an outcome.)
"""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Care, Pregnancy
from fhir_plao.mapping._coded import (
    concept_json,
    concepts_json,
    read_coded,
    read_source_concepts,
)
from fhir_plao.mapping._fhir import JSON, Reader, annotation, codeable, read_concept, read_note
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex

#: Care.status -> Procedure.status (a procedure is never "scheduled")
PROCEDURE_STATUS = {
    "not-started": "preparation",
    "in-progress": "in-progress",
    "on-hold": "on-hold",
    "completed": "completed",
    "stopped": "stopped",
    "not-done": "not-done",
    "unknown": "unknown",
    "entered-in-error": "entered-in-error",
}
CARE_STATUS = {v: k for k, v in PROCEDURE_STATUS.items()}
FOLLOW_UP_LOCAL = "#follow-up"
FOLLOW_UP = "follow-up-visit"


def delivery_to_procedures(w: BundleWriter, p: Pregnancy) -> None:
    d = p.delivery
    if d is None:
        return
    w.add(
        "Procedure",
        f"{p.id}#delivery",
        {
            "status": "completed",
            "code": codeable(d.mode),
            "subject": w.subject,
            "performedDateTime": d.date,
            "partOf": [w.ref("Observation", p.id)],
            "note": annotation(d.note),
        },
    )
    if d.anaesthesia is not None:
        w.add(
            "Procedure",
            f"{p.id}#anaesthesia",
            {
                "status": "completed",
                "code": codeable(d.anaesthesia),
                "subject": w.subject,
                "performedDateTime": d.date,
                "partOf": [w.ref("Procedure", f"{p.id}#delivery")],
            },
        )


def _code(c: Care) -> JSON:
    return concept_json(c.code) if c.code is not None else codeable(c.concept, c.text)


def care_to_procedure(w: BundleWriter, c: Care) -> None:
    w.add(
        "Procedure",
        c.id,
        {
            "status": PROCEDURE_STATUS[c.status],
            "code": _code(c),
            "subject": w.subject,
            "performedDateTime": c.date,
            "performedPeriod": {"start": c.start, "end": c.end},
            "reasonCode": concepts_json(c.reason_code),
            "reasonReference": [w.ref("Condition", r) for r in c.reason] or None,
            "bodySite": concepts_json(c.body_site),
            "note": annotation(c.detail),
        },
    )


#: an activity's status -> the status of the CarePlan that holds it
PLAN_STATUS = {
    "not-started": "active",
    "scheduled": "active",
    "in-progress": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "stopped": "revoked",
}


def _plan(w: BundleWriter, local: str, statuses: set[str], activities: list[JSON]) -> None:
    plan_statuses = {PLAN_STATUS[s] for s in statuses}
    for status in ("active", "on-hold", "revoked", "completed"):
        if status in plan_statuses:
            break
    w.add(
        "CarePlan",
        local,
        {"status": status, "intent": "plan", "subject": w.subject, "activity": activities},
    )


def care_to_care_plan(w: BundleWriter, c: Care) -> None:
    """Planned care (diet, exercise, walking): a CarePlan of one activity, keeping its id."""
    detail = {
        "code": _code(c),
        "status": c.status,
        "scheduledPeriod": {"start": c.start, "end": c.end},
        "description": c.detail,
    }
    _plan(w, c.id, {c.status}, [{"detail": detail}])


def follow_up_to_care_plan(w: BundleWriter) -> None:
    """The follow-up schedule: a CarePlan with one activity per phase."""
    phases = w.case.follow_up.phases if w.case.follow_up else ()
    if not phases:
        return
    activities: list[JSON] = [
        {
            "detail": {
                "code": codeable(FOLLOW_UP),
                "status": ph.status,
                "scheduledTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": ph.start, "end": ph.end},
                        "frequency": 1,
                        "period": ph.every,
                        "periodUnit": ph.unit,
                    }
                },
                "description": ph.description,
            }
        }
        for ph in phases
    ]
    _plan(w, FOLLOW_UP_LOCAL, {ph.status for ph in phases}, activities)


# --------------------------------------------------------------------------- reading


def procedure_role(r: Reader, index: ResourceIndex) -> tuple[str, str | None]:
    """('delivery', pregnancy local id) / ('anaesthesia', delivery local id) / ('care', None)."""
    for ref in r.items("partOf"):
        target = index.resolve((ref or {}).get("reference"))
        if target is None:
            continue
        if target.reader.type == "Observation":
            return "delivery", target.local_id
        if target.reader.type == "Procedure":
            return "anaesthesia", target.local_id
    return "care", None


def _performed(r: Reader) -> tuple[str | None, str | None]:
    if r.peek("performedDateTime") is not None:
        return r.str_("performedDateTime"), None
    return r.str_("performedPeriod", "start"), r.str_("performedPeriod", "end")


def procedure_to_delivery(r: Reader) -> dict[str, Any]:
    r.get("status")
    r.get("subject")
    r.get("partOf")
    mode, _ = read_concept(r, ("code",), "procedure")
    if mode is None:
        raise r.error(("code",), "the delivery's procedure is not in the code table")
    date, _ = _performed(r)
    return {"date": date, "mode": mode, "note": read_note(r)}


def procedure_to_anaesthesia(r: Reader) -> str:
    r.get("status")
    r.get("subject")
    r.get("partOf")
    r.get("performedDateTime")
    key, _ = read_concept(r, ("code",), "procedure")
    if key is None:
        raise r.error(("code",), "the anaesthesia is not in the code table")
    return key


def procedure_to_care(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    r.get("subject")
    status = r.str_("status")
    if status is not None and status not in CARE_STATUS:
        raise r.error(("status",), f"{status!r} is not a Procedure status")
    concept, text, code = read_coded(r, ("code",), "procedure", keep_text=True)
    reasons = []
    for i, ref in enumerate(r.items("reasonReference")):
        target = index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.type == "Condition":
            reasons.append(target.local_id)
            r.mark("reasonReference", i)
    return {
        "id": local,
        "kind": "procedure",
        "concept": concept,
        "text": text,
        "code": code,
        "status": CARE_STATUS[status] if status else "completed",
        "date": r.str_("performedDateTime"),
        "start": r.str_("performedPeriod", "start"),
        "end": r.str_("performedPeriod", "end"),
        "reason": reasons,
        "reason_code": read_source_concepts(r, ("reasonCode",)),
        "body_site": read_source_concepts(r, ("bodySite",)),
        "detail": read_note(r),
    }


def care_plan_to_care(r: Reader, local: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(care items, follow-up phases) from a CarePlan's activities. The first care activity
    takes the CarePlan's own local id."""
    r.get("status")
    r.get("intent")
    r.get("subject")
    care: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    for i, _ in enumerate(r.items("activity")):
        d = ("activity", i, "detail")
        concept, text, code = read_coded(r, (*d, "code"), "procedure", keep_text=True)
        status = r.str_(*d, "status")
        if concept == FOLLOW_UP and r.peek(*d, "scheduledTiming") is not None:
            rep = (*d, "scheduledTiming", "repeat")
            if r.peek(*rep, "frequency") == 1:
                r.mark(*rep, "frequency")
            phases.append(
                {
                    "every": r.int_(*rep, "period"),
                    "unit": r.str_(*rep, "periodUnit"),
                    "start": r.str_(*rep, "boundsPeriod", "start"),
                    "end": r.str_(*rep, "boundsPeriod", "end"),
                    "status": status,
                    "description": r.str_(*d, "description"),
                }
            )
            continue
        care.append(
            {
                "id": local if not care else f"{local}-activity-{i + 1}"[:64],
                "kind": "plan",
                "concept": concept,
                "text": text,
                "code": code,
                "status": status,
                "start": r.str_(*d, "scheduledPeriod", "start"),
                "end": r.str_(*d, "scheduledPeriod", "end"),
                "detail": r.str_(*d, "description"),
            }
        )
    return care, phases


def impression_to_outcome(r: Reader) -> dict[str, Any]:
    r.get("status")
    r.get("subject")
    findings = []
    for i, _ in enumerate(r.items("finding")):
        text = r.str_("finding", i, "itemCodeableConcept", "text")
        if text:
            findings.append(text)
    return {"date": r.str_("effectiveDateTime"), "summary": r.str_("summary"), "findings": findings}
