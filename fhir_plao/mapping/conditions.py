"""Conditions <-> fractures (one per site), diagnoses (and excluded causes), symptoms.

* a fracture: a Condition with a bodySite that is a vertebra or another fracture site, evidence
  pointing at the imaging reports, clinicalStatus resolved and abatement once healed;
* a symptom: category ``problem-list-item`` with severity, onset and resolution;
* a diagnosis: category ``encounter-diagnosis``; an excluded cause has verificationStatus
  ``refuted`` and no clinicalStatus.
"""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Diagnosis, Fracture, Symptom
from fhir_plao.mapping._fhir import (
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    JSON,
    Reader,
    annotation,
    codeable,
    fixed_category,
    read_concept,
    read_fixed_code,
    read_note,
)
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex
from fhir_plao.terminology import TERMINOLOGY

CATEGORY_DISPLAY = {
    "encounter-diagnosis": "Encounter Diagnosis",
    "problem-list-item": "Problem List Item",
}
CLINICAL_DISPLAY = {
    "active": "Active",
    "recurrence": "Recurrence",
    "relapse": "Relapse",
    "inactive": "Inactive",
    "remission": "Remission",
    "resolved": "Resolved",
}
VERIFICATION_DISPLAY = {
    "confirmed": "Confirmed",
    "provisional": "Provisional",
    "differential": "Differential",
    "refuted": "Refuted",
    "unconfirmed": "Unconfirmed",
}


def _status(system: str, code: str, displays: dict[str, str]) -> JSON:
    return fixed_category(system, code, displays[code])


def _condition(
    w: BundleWriter,
    category: str,
    code: JSON,
    clinical: str | None,
    verification: str,
    **rest: Any,
) -> JSON:
    body: JSON = {
        "clinicalStatus": _status(CONDITION_CLINICAL, clinical, CLINICAL_DISPLAY)
        if clinical
        else None,
        "verificationStatus": _status(CONDITION_VERIFICATION, verification, VERIFICATION_DISPLAY),
        "category": [fixed_category(CONDITION_CATEGORY, category, CATEGORY_DISPLAY[category])],
        "code": code,
        "subject": w.subject,
    }
    body.update(rest)
    return body


def _evidence(w: BundleWriter, study_ids: tuple[str, ...]) -> list[JSON] | None:
    if not study_ids:
        return None
    return [{"detail": [w.ref("DiagnosticReport", s) for s in study_ids]}]


def fracture_to_condition(w: BundleWriter, f: Fracture) -> None:
    body = _condition(
        w,
        "encounter-diagnosis",
        codeable(f.concept),
        "resolved" if f.healed else "active",
        "confirmed",
        bodySite=[codeable(f.site)],
        onsetDateTime=f.onset,
        abatementDateTime=f.healed,
        recordedDate=f.recorded,
        evidence=_evidence(w, f.evidence),
        note=annotation(f.note),
    )
    vertebral = TERMINOLOGY.concept(f.site).kind == "vertebra"
    w.add("Condition", f.id, body, profile="plao-vertebral-fracture" if vertebral else None)


def diagnosis_to_condition(w: BundleWriter, d: Diagnosis) -> None:
    body = _condition(
        w,
        "encounter-diagnosis",
        codeable(d.concept, d.text),
        d.clinical_status,
        d.verification,
        onsetDateTime=d.onset,
        abatementDateTime=d.abatement,
        recordedDate=d.recorded,
        evidence=_evidence(w, d.evidence),
        note=annotation(d.note),
    )
    w.add("Condition", d.id, body, profile="plao-diagnosis")


def symptom_to_condition(w: BundleWriter, s: Symptom) -> None:
    severity = None
    if s.severity is not None:
        key = f"severity-{s.severity}"
        severity = codeable(key) if key in TERMINOLOGY else {"text": s.severity}
    body = _condition(
        w,
        "problem-list-item",
        codeable(s.concept),
        "resolved" if s.resolved else "active",
        "confirmed",
        severity=severity,
        onsetDateTime=s.onset,
        abatementDateTime=s.resolved,
        note=annotation(s.note),
    )
    w.add("Condition", s.id, body)


# --------------------------------------------------------------------------- reading


def condition_kind(r: Reader) -> str:
    """'fracture', 'symptom' or 'diagnosis' for a Condition."""
    for i, _ in enumerate(r.items("bodySite")):
        codings = r.items("bodySite", i, "coding")
        if not codings:
            text = r.peek("bodySite", i, "text")
            if TERMINOLOGY.key_for_text(text, "vertebra", "fracture-site") is not None:
                return "fracture"
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            for key in TERMINOLOGY.keys_for(coding.get("system"), coding.get("code")):
                if TERMINOLOGY.concept(key).kind in ("vertebra", "fracture-site"):
                    return "fracture"
    for cat in r.items("category"):
        for coding in (cat or {}).get("coding") or []:
            if (
                coding.get("system") == CONDITION_CATEGORY
                and coding.get("code") == "problem-list-item"
            ):
                return "symptom"
    return "diagnosis"


def _common(r: Reader) -> tuple[str | None, str | None]:
    r.get("subject")
    for i, _ in enumerate(r.items("category")):
        read_fixed_code(r, ("category", i), CONDITION_CATEGORY)
    clinical = read_fixed_code(r, ("clinicalStatus",), CONDITION_CLINICAL)
    verification = read_fixed_code(r, ("verificationStatus",), CONDITION_VERIFICATION)
    return clinical, verification


def _onset(r: Reader, name: str) -> str | None:
    value = r.str_(f"{name}DateTime")
    if value is None and r.peek(f"{name}Period") is not None:
        value = r.str_(f"{name}Period", "start")
    return value


def _evidence_ids(r: Reader, index: ResourceIndex) -> list[str]:
    ids = []
    for i, ev in enumerate(r.items("evidence")):
        for j, detail in enumerate((ev or {}).get("detail") or []):
            target = index.resolve((detail or {}).get("reference"))
            if target is not None and target.reader.type == "DiagnosticReport":
                ids.append(target.local_id)
                r.mark("evidence", i, "detail", j)
    return ids


def condition_to_fracture(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    clinical, _ = _common(r)
    site = None
    for i, _ in enumerate(r.items("bodySite")):
        site, _text = read_concept(r, ("bodySite", i), "vertebra", "fracture-site")
        if site is not None:
            break
    concept, _ = read_concept(r, ("code",), "condition")
    out: dict[str, Any] = {
        "id": local,
        "site": site,
        "onset": _onset(r, "onset"),
        "recorded": r.str_("recordedDate"),
        "healed": _onset(r, "abatement"),
        "evidence": _evidence_ids(r, index),
        "note": read_note(r),
    }
    if concept is not None:
        out["concept"] = concept
    if clinical == "resolved" and out["healed"] is None:
        raise r.error(("abatementDateTime",), "a resolved fracture needs the date it healed")
    return out


def condition_to_diagnosis(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    clinical, verification = _common(r)
    concept, text = read_concept(r, ("code",), "condition", keep_text=True)
    return {
        "id": local,
        "concept": concept,
        "text": text,
        "verification": verification or "confirmed",
        "clinical_status": clinical,
        "onset": _onset(r, "onset"),
        "recorded": r.str_("recordedDate"),
        "abatement": _onset(r, "abatement"),
        "evidence": _evidence_ids(r, index),
        "note": read_note(r),
    }


def condition_to_symptom(r: Reader, local: str) -> dict[str, Any]:
    _common(r)
    concept, _ = read_concept(r, ("code",), "condition")
    severity = None
    if r.peek("severity") is not None:
        key, text = read_concept(r, ("severity",), "severity", keep_text=True)
        severity = key.removeprefix("severity-") if key else text
    return {
        "id": local,
        "concept": concept,
        "severity": severity,
        "onset": _onset(r, "onset"),
        "resolved": _onset(r, "abatement"),
        "note": read_note(r),
    }
