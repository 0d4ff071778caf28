"""Observations <-> vitals, labs, DXA scores, pregnancy and breastfeeding status, the pregnancy
itself, exam / history findings and imaging findings."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import (
    DxaScan,
    DxaScore,
    Finding,
    ImagingStudy,
    LabResult,
    Lactation,
    Outcome,
    Pregnancy,
    StatusObservation,
    Vital,
)
from fhir_plao.coded import (
    OBSERVATION_CATEGORY,
    OBSERVATION_CATEGORY_DISPLAY,
    SCORE_UNIT_TEXT,
    shown_unit,
)
from fhir_plao.mapping._coded import concept_json, concepts_json, read_own_or_source
from fhir_plao.mapping._fhir import (
    INTERPRETATION,
    INTERPRETATION_DISPLAY,
    JSON,
    Reader,
    annotation,
    codeable,
    coding_json,
    fixed_category,
    quantity,
    read_concept,
    read_fixed_code,
    read_note,
    read_quantity,
)
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex
from fhir_plao.terminology import TERMINOLOGY

#: code.text of the Observations that carry one finding of an imaging report
IMAGING_FINDING = "Imaging finding"
#: code.text of the Observation that records a pregnancy (and its number: gravida)
PREGNANCY = "Pregnancy"

#: code.text of the Observations that record an outcome of the follow-up (no verified code)
FOLLOW_UP_OUTCOME = "Follow-up outcome"
#: code.text of each finding behind an outcome, as a component
OUTCOME_FINDING = "Finding"


def category(code: str) -> list[JSON]:
    if code in OBSERVATION_CATEGORY_DISPLAY:
        return [fixed_category(OBSERVATION_CATEGORY, code, OBSERVATION_CATEGORY_DISPLAY[code])]
    return [{"text": code}]


def peek_categories(r: Reader) -> set[str]:
    """The Observation's categories as read by :func:`read_category`, without marking them."""
    found: set[str] = set()
    for cat in r.items("category"):
        if not isinstance(cat, dict):
            continue
        codings = cat.get("coding")
        if not isinstance(codings, list):
            codings = []
        for coding in codings:
            if isinstance(coding, dict) and coding.get("system") == OBSERVATION_CATEGORY:
                found.add(str(coding.get("code")))
        if not codings and isinstance(cat.get("text"), str):
            found.add(cat["text"])
    return found


def read_category(r: Reader) -> str | None:
    """Our observation category: a code of the HL7 system, or the text of a text-only one."""
    for i, _ in enumerate(r.items("category")):
        code = read_fixed_code(r, ("category", i), OBSERVATION_CATEGORY)
        if code is not None:
            return code
        text = r.peek("category", i, "text")
        if isinstance(text, str) and not r.peek("category", i, "coding"):
            r.mark("category", i)
            return text
    return None


def _observation(
    w: BundleWriter, local: str, cat: str, code: JSON, effective: str | None, **rest: Any
) -> JSON:
    body: JSON = {
        "status": "final",
        "category": category(cat),
        "code": code,
        "subject": w.subject,
    }
    if effective is not None:
        body["effectiveDateTime"] = effective
    body.update(rest)
    return body


# --------------------------------------------------------------------------- vitals


def vital_to_observation(w: BundleWriter, v: Vital) -> None:
    body = _observation(
        w, v.id, "vital-signs", codeable(v.kind), v.date, valueQuantity=quantity(v.value, v.unit)
    )
    w.add("Observation", v.id, body, profile="plao-vital-signs")


def observation_to_vital(r: Reader, local: str, key: str) -> dict[str, Any]:
    _code_is(r, key)
    read_category(r)
    r.get("status")
    value, unit = read_quantity(r, ("valueQuantity",))
    return {"id": local, "kind": key, "value": value, "unit": unit, "date": _effective(r)}


# --------------------------------------------------------------------------- labs


def lab_to_observation(w: BundleWriter, lab: LabResult) -> None:
    rest: JSON = {}
    if lab.value is not None:
        assert lab.unit is not None
        rest["valueQuantity"] = quantity(lab.value, lab.unit, lab.unit_text)
    elif lab.value_text is not None:
        rest["valueString"] = lab.value_text
    if lab.interpretation is not None:
        rest["interpretation"] = [
            {
                "coding": [
                    coding_json(
                        INTERPRETATION,
                        lab.interpretation,
                        INTERPRETATION_DISPLAY[lab.interpretation],
                    )
                ]
            }
        ]
    rest["note"] = annotation(lab.note)
    rr = lab.reference_range
    if rr is not None:
        range_: JSON = {"text": rr.text}
        if rr.low is not None:
            assert lab.unit is not None
            range_["low"] = quantity(rr.low, lab.unit, lab.unit_text)
        if rr.high is not None:
            assert lab.unit is not None
            range_["high"] = quantity(rr.high, lab.unit, lab.unit_text)
        rest["referenceRange"] = [range_]
    code = concept_json(lab.code) if lab.code is not None else codeable(lab.test)
    body = _observation(w, lab.id, "laboratory", code, lab.date, **rest)
    body["status"] = lab.status
    body["issued"] = lab.issued
    if lab.category is not None:
        body["category"] = concepts_json(lab.category)
    # our profile fixes the table's codes: a lab coded otherwise is written under base R4
    w.add("Observation", lab.id, body, profile="plao-lab-result" if lab.code is None else None)


def observation_to_lab(r: Reader, local: str, key: str | None, panel: str | None) -> dict[str, Any]:
    categories = read_own_or_source(r, ("category",), category("laboratory"), many=True)
    value, unit = read_quantity(r, ("valueQuantity",))
    unit_text = r.peek("valueQuantity", "unit")
    if unit is not None and isinstance(unit_text, str):
        r.mark("valueQuantity", "unit")
    if unit is None or unit_text == shown_unit(unit):
        unit_text = None
    out: dict[str, Any] = {
        "id": local,
        "test": key,
        "code": read_own_or_source(r, ("code",), codeable(key) if key else None),
        "status": r.str_("status"),
        "category": categories,
        "panel": panel,
        "date": _effective(r),
        "issued": r.str_("issued"),
        "value": value,
        "value_text": r.str_("valueString"),
        "unit": unit,
        "unit_text": unit_text,
        "note": read_note(r),
    }
    interp = r.items("interpretation")
    if interp:
        out["interpretation"] = read_fixed_code(r, ("interpretation", 0), INTERPRETATION)
    ranges = r.items("referenceRange")
    if ranges:
        low, low_unit = read_quantity(r, ("referenceRange", 0, "low"))
        high, high_unit = read_quantity(r, ("referenceRange", 0, "high"))
        for bound in ("low", "high"):
            if r.peek("referenceRange", 0, bound, "unit") is not None:
                r.mark("referenceRange", 0, bound, "unit")
        range_unit = low_unit or high_unit
        if out["unit"] is None and range_unit is not None:
            out["unit"] = range_unit
            for bound in ("low", "high"):
                shown = r.peek("referenceRange", 0, bound, "unit")
                if isinstance(shown, str) and shown != shown_unit(range_unit):
                    out["unit_text"] = shown  # the fit check sees whether both bounds agree
        elif range_unit is not None and range_unit != out["unit"]:
            raise r.error(
                ("referenceRange", 0), f"range unit {range_unit!r} differs from value unit {unit!r}"
            )
        out["reference_range"] = {
            "low": low,
            "high": high,
            "text": r.str_("referenceRange", 0, "text"),
        }
    return out


# --------------------------------------------------------------------------- DXA scores


def dxa_score_local(scan: DxaScan, score: DxaScore) -> str:
    return f"{scan.id}#{score.site}#{score.kind}"


def dxa_score_to_observation(w: BundleWriter, scan: DxaScan, score: DxaScore) -> None:
    key = TERMINOLOGY.dxa_score_key(score.site, score.kind)
    code = score.unit if score.unit is not None else "1"
    unit_text = score.unit_text
    if unit_text is None:
        unit_text = SCORE_UNIT_TEXT.get(score.kind) if code == "1" else None
    body = _observation(
        w,
        dxa_score_local(scan, score),
        "imaging",
        concept_json(score.code) if score.code is not None else codeable(key),
        scan.date,
        bodySite=None
        if score.site_from_code
        else concept_json(score.body_site)
        if score.body_site is not None
        else codeable(score.site),
        valueQuantity=quantity(score.value, code, unit_text),
    )
    body["status"] = score.status
    body["issued"] = score.issued
    if score.category is not None:
        body["category"] = concepts_json(score.category)
    w.add("Observation", dxa_score_local(scan, score), body, profile="plao-dxa-score")


def observation_to_dxa_score(r: Reader, score_key: str) -> tuple[str | None, dict[str, Any]]:
    """(date, score fields). The site comes from bodySite, else from the score code's site."""
    kind = TERMINOLOGY.concept(score_key).extra["score"]
    categories = read_own_or_source(r, ("category",), category("imaging"), many=True)
    status = r.str_("status")
    code = read_own_or_source(r, ("code",), codeable(score_key))
    probe = Reader(r.resource, r.where)
    site, _ = read_concept(probe, ("bodySite",), "dxa-site")
    body_site = None
    if site is not None:
        body_site = read_own_or_source(r, ("bodySite",), codeable(site))
    elif r.peek("bodySite") is not None:
        raise r.error(("bodySite",), "a DXA site the code table does not know")
    if site is None:
        # no (known) bodySite: the one site whose scores use this code, when there is one
        sites = [
            c.key
            for c in TERMINOLOGY
            if c.kind == "dxa-site" and c.extra.get("scores", {}).get(kind) == score_key
        ]
        if len(sites) != 1:
            raise r.error(("bodySite",), f"cannot tell the DXA site of {score_key}")
        site = sites[0]
    if TERMINOLOGY.dxa_score_key(site, kind) != score_key:
        raise r.error(("code",), f"code {score_key} does not fit site {site}")
    value, unit = read_quantity(r, ("valueQuantity",))
    if value is None:
        raise r.error(("valueQuantity",), "a DXA score without a value")
    shown = r.peek("valueQuantity", "unit")
    unit_text = None
    if unit is not None and isinstance(shown, str):
        r.mark("valueQuantity", "unit")
        ours = SCORE_UNIT_TEXT.get(kind) if unit == "1" else shown_unit(unit)
        unit_text = None if shown == ours else shown
    if kind in ("T", "Z") and unit in ("1", None) and unit_text is None:
        unit = None
    return _effective(r), {
        "site": site,
        "kind": kind,
        "value": value,
        "unit": unit,
        "unit_text": unit_text,
        "status": status,
        "category": categories,
        "issued": r.str_("issued"),
        "code": code,
        "body_site": body_site,
        "site_from_code": r.peek("bodySite") is None,
    }


# --------------------------------------------------------------------------- status observations


def status_to_observation(w: BundleWriter, s: StatusObservation) -> None:
    body = _observation(
        w,
        s.id,
        "social-history",
        codeable(s.question),
        s.date,
        valueCodeableConcept=codeable(s.answer),
        note=annotation(s.note),
    )
    w.add("Observation", s.id, body)


def observation_to_status(r: Reader, local: str, question: str) -> dict[str, Any]:
    _code_is(r, question)
    read_category(r)
    r.get("status")
    answer, _ = read_concept(r, ("valueCodeableConcept",), "status-answer")
    if answer is None:
        raise r.error(("valueCodeableConcept",), f"no known answer to {question}")
    return {
        "id": local,
        "question": question,
        "answer": answer,
        "date": _effective(r),
        "note": read_note(r),
    }


def lactation_to_observation(w: BundleWriter, n: int, lac: Lactation) -> None:
    local = f"{lac.pregnancy}#lactation-{n + 1}"
    body = _observation(
        w,
        local,
        "social-history",
        codeable("breastfeeding-status"),
        None,
        effectivePeriod={"start": lac.start, "end": lac.stopped},
        valueCodeableConcept=codeable("breastfeeding"),
        focus=[w.ref("Observation", lac.pregnancy)],
        note=annotation(lac.stop_reason),
    )
    w.add("Observation", local, body)


def observation_to_lactation(r: Reader, index: ResourceIndex) -> dict[str, Any]:
    read_category(r)
    r.get("status")
    answer, _ = read_concept(r, ("valueCodeableConcept",), "status-answer")
    if answer != "breastfeeding":
        raise r.error(("valueCodeableConcept",), "a breastfeeding period must say 'breastfeeding'")
    pregnancy = None
    for i, ref in enumerate(r.items("focus")):
        target = index.resolve(ref.get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.peek("code", "text") == PREGNANCY:
            pregnancy = target.local_id
            r.mark("focus", i)
            break
    return {
        "pregnancy": pregnancy,
        "start": r.str_("effectivePeriod", "start"),
        "stopped": r.str_("effectivePeriod", "end"),
        "stop_reason": read_note(r),
    }


def pregnancy_to_observation(w: BundleWriter, p: Pregnancy) -> None:
    effective = p.delivery.date if p.delivery is not None else None
    body = _observation(
        w,
        p.id,
        "social-history",
        {"text": PREGNANCY},
        effective,
        valueInteger=p.gravida,
        note=annotation(p.note),
    )
    w.add("Observation", p.id, body)


def observation_to_pregnancy(r: Reader, local: str) -> dict[str, Any]:
    read_category(r)
    r.get("status")
    r.get("code")
    r.get("effectiveDateTime")  # the delivery date, carried by the delivery Procedure
    return {"id": local, "gravida": r.int_("valueInteger"), "note": read_note(r)}


# --------------------------------------------------------------------------- findings


def finding_to_observation(w: BundleWriter, f: Finding) -> None:
    body = _observation(
        w, f.id, f.category, codeable(f.concept, f.text), f.date, valueString=f.value
    )
    w.add("Observation", f.id, body)


def observation_to_finding(r: Reader, local: str) -> dict[str, Any]:
    cat = read_category(r)
    r.get("status")
    concept, text = read_concept(r, ("code",), "condition", "finding", keep_text=True)
    value = r.str_("valueString")
    if value is None:
        raise r.error(("valueString",), "a finding needs its value as text")
    return {
        "id": local,
        "category": cat,
        "concept": concept,
        "text": text,
        "value": value,
        "date": _effective(r),
    }


def imaging_finding_local(study: ImagingStudy, n: int) -> str:
    return f"{study.id}#finding-{n + 1}"


def imaging_finding_to_observation(w: BundleWriter, study: ImagingStudy, n: int) -> None:
    local = imaging_finding_local(study, n)
    body = _observation(
        w,
        local,
        "imaging",
        {"text": IMAGING_FINDING},
        study.date,
        valueString=study.findings[n],
    )
    w.add("Observation", local, body)


def is_imaging_finding(r: Reader) -> bool:
    """One of our imaging findings: coded by our text alone, in category imaging."""
    return bool(
        r.peek("code") == {"text": IMAGING_FINDING} and r.peek("category") == category("imaging")
    )


def observation_to_imaging_finding(r: Reader) -> str:
    read_category(r)
    r.get("status")
    r.get("code")
    r.get("effectiveDateTime")
    value = r.str_("valueString")
    if value is None:
        raise r.error(("valueString",), "an imaging finding needs its text")
    return value


# --------------------------------------------------------------------------- follow-up outcomes


def outcome_to_observation(w: BundleWriter, n: int, o: Outcome) -> None:
    """An outcome of the follow-up: its summary as the value, each finding a component.

    (An Observation rather than a ClinicalImpression: every server can search Observations by
    patient; some, SEKMET among them, cannot search ClinicalImpressions at all.)
    """
    local = f"#outcome-{n + 1}"
    body: JSON = {
        "status": "final",
        "code": {"text": FOLLOW_UP_OUTCOME},
        "subject": w.subject,
        "effectiveDateTime": o.date,
        "valueString": o.summary,
        "component": [{"code": {"text": OUTCOME_FINDING}, "valueString": f} for f in o.findings],
    }
    w.add("Observation", local, body)


def observation_to_outcome(r: Reader) -> dict[str, Any]:
    r.get("status")
    r.get("code")
    findings = []
    for i, _ in enumerate(r.items("component")):
        if r.peek("component", i, "code", "text") == OUTCOME_FINDING:
            r.mark("component", i, "code")
            text = r.str_("component", i, "valueString")
            if text is not None:
                findings.append(text)
    return {"date": _effective(r), "summary": r.str_("valueString"), "findings": findings}


# --------------------------------------------------------------------------- shared


def _code_is(r: Reader, key: str) -> None:
    """The code must be exactly the table's for ``key`` (a dedicated section writes that)."""
    if r.peek("code") != codeable(key):
        raise r.error(("code",), f"not coded exactly as {key} is")
    r.mark("code")


def _effective(r: Reader) -> str | None:
    value = r.str_("effectiveDateTime")
    if value is None and r.peek("effectivePeriod") is not None:
        value = r.str_("effectivePeriod", "start")
        if r.peek("effectivePeriod", "end") in (None, value):
            r.mark("effectivePeriod")
    if value is None:
        value = r.str_("effectiveInstant")
    return value
