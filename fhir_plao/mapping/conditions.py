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
from fhir_plao.coded import CONDITION_CATEGORY, CONDITION_CATEGORY_DISPLAY
from fhir_plao.mapping._coded import (
    concept_json,
    concepts_json,
    read_coded,
    read_own_or_source,
    read_source_concept,
)
from fhir_plao.mapping._fhir import (
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

CATEGORY_DISPLAY = CONDITION_CATEGORY_DISPLAY
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
    "entered-in-error": "Entered in Error",
}


def _status(system: str, code: str, displays: dict[str, str]) -> JSON:
    return fixed_category(system, code, displays[code])


def _condition(
    w: BundleWriter,
    category: str,
    code: JSON,
    clinical: str | None,
    verification: str | None,
    **rest: Any,
) -> JSON:
    body: JSON = {
        "clinicalStatus": _status(CONDITION_CLINICAL, clinical, CLINICAL_DISPLAY)
        if clinical
        else None,
        "verificationStatus": _status(CONDITION_VERIFICATION, verification, VERIFICATION_DISPLAY)
        if verification
        else None,
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
    site = concept_json(f.body_site) if f.body_site else codeable(f.site) if f.site else None
    body = _condition(
        w,
        "encounter-diagnosis",
        concept_json(f.code) if f.code is not None else codeable(f.concept),
        "resolved" if f.healed else "active",
        f.verification,
        bodySite=[site] if site else None,
        onsetDateTime=f.onset,
        abatementDateTime=f.healed,
        recordedDate=f.recorded,
        evidence=_evidence(w, f.evidence),
        note=annotation(f.note),
    )
    if f.category is not None:
        body["category"] = concepts_json(f.category)
    vertebral = f.site is not None and TERMINOLOGY.concept(f.site).kind == "vertebra"
    ours = vertebral and f.code is None and f.body_site is None and f.category is None
    w.add("Condition", f.id, body, profile="plao-vertebral-fracture" if ours else None)


def diagnosis_to_condition(w: BundleWriter, d: Diagnosis) -> None:
    body = _condition(
        w,
        "encounter-diagnosis",
        concept_json(d.code) if d.code is not None else codeable(d.concept, d.text),
        d.clinical_status,
        d.verification,
        severity=concept_json(d.severity),
        onsetDateTime=d.onset,
        abatementDateTime=d.abatement,
        recordedDate=d.recorded,
        evidence=_evidence(w, d.evidence),
        note=annotation(d.note),
    )
    if d.category is not None:
        body["category"] = concepts_json(d.category)
    ours = d.code is None and d.category is None and d.verification is not None
    w.add("Condition", d.id, body, profile="plao-diagnosis" if ours else None)


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


def condition_kinds(r: Reader) -> list[str]:
    """The dedicated sections a Condition may belong to, to try in order: 'fracture' (by its
    bodySite, a vertebra or another fracture site, or by a code the table knows as a fracture),
    then 'symptom' (a problem-list item). What neither takes is a diagnosis."""
    kinds = []
    if _fracture_site(r) or _fracture_code(r):
        kinds.append("fracture")
    for cat in r.items("category"):
        codings = cat.get("coding") if isinstance(cat, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if (
                isinstance(coding, dict)
                and coding.get("system") == CONDITION_CATEGORY
                and coding.get("code") == "problem-list-item"
            ):
                kinds.append("symptom")
    return kinds


def _fracture_site(r: Reader) -> bool:
    for i, _ in enumerate(r.items("bodySite")):
        codings = r.items("bodySite", i, "coding")
        if not codings:
            text = r.peek("bodySite", i, "text")
            if TERMINOLOGY.key_for_text(text, "vertebra", "fracture-site") is not None:
                return True
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            for key in TERMINOLOGY.keys_for(coding.get("system"), coding.get("code")):
                if TERMINOLOGY.concept(key).kind in ("vertebra", "fracture-site"):
                    return True
    return False


def _fracture_code(r: Reader) -> bool:
    for coding in r.items("code", "coding"):
        if not isinstance(coding, dict):
            continue
        for key in TERMINOLOGY.keys_for(coding.get("system"), coding.get("code")):
            if TERMINOLOGY.concept(key).extra.get("fracture"):
                return True
    return False


def _statuses(r: Reader) -> tuple[str | None, str | None]:
    r.get("subject")
    clinical = read_fixed_code(r, ("clinicalStatus",), CONDITION_CLINICAL)
    verification = read_fixed_code(r, ("verificationStatus",), CONDITION_VERIFICATION)
    return clinical, verification


def _common(r: Reader) -> tuple[str | None, str | None]:
    for i, _ in enumerate(r.items("category")):
        read_fixed_code(r, ("category", i), CONDITION_CATEGORY)
    return _statuses(r)


def _onset(r: Reader, name: str) -> str | None:
    value = r.str_(f"{name}DateTime")
    period = r.peek(f"{name}Period")
    if value is None and period is not None and r.peek(f"{name}Period", "end") is None:
        value = r.str_(f"{name}Period", "start")
    return value


def _evidence_ids(r: Reader, index: ResourceIndex) -> list[str]:
    ids = []
    for i, ev in enumerate(r.items("evidence")):
        for j, detail in enumerate((ev or {}).get("detail") or [] if isinstance(ev, dict) else []):
            target = index.resolve(
                (detail or {}).get("reference") if isinstance(detail, dict) else None
            )
            if target is not None and target.reader.type == "DiagnosticReport":
                ids.append(target.local_id)
                r.mark("evidence", i, "detail", j)
    return ids


def _category(r: Reader) -> Any:
    ours = [
        fixed_category(
            CONDITION_CATEGORY, "encounter-diagnosis", CATEGORY_DISPLAY["encounter-diagnosis"]
        )
    ]
    return read_own_or_source(r, ("category",), ours, many=True)


def condition_to_fracture(r: Reader, local: str, index: ResourceIndex) -> dict[str, Any]:
    clinical, verification = _statuses(r)
    site = None
    body_site = None
    for i, _ in enumerate(r.items("bodySite")):
        probe = Reader(r.resource, r.where)
        site, _text = read_concept(probe, ("bodySite", i), "vertebra", "fracture-site")
        if site is not None:
            if i == 0 and len(r.items("bodySite")) == 1 and r.peek("bodySite", 0) == codeable(site):
                r.mark("bodySite", 0)
            else:
                body_site = read_source_concept(r, ("bodySite", i))
            break
    if site is None and r.items("bodySite"):
        body_site = read_source_concept(r, ("bodySite", 0))
    concept, _, code = read_coded(r, ("code",), "condition")
    out: dict[str, Any] = {
        "id": local,
        "site": site,
        "body_site": body_site,
        "code": code,
        "category": _category(r),
        "verification": verification,
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
    clinical, verification = _statuses(r)
    concept, text, code = read_coded(r, ("code",), "condition", keep_text=True)
    return {
        "id": local,
        "concept": concept,
        "text": text,
        "code": code,
        "category": _category(r),
        "verification": verification,
        "clinical_status": clinical,
        "severity": read_source_concept(r, ("severity",)),
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
