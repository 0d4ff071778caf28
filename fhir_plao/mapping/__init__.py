"""Case <-> FHIR R4.

``to_fhir(case)`` gives a transaction Bundle (a JSON-ready dict; decimals as ``Decimal``);
``from_fhir(resources)`` gives the case back with a report of every element it could not map.
``from_fhir(to_fhir(case)).case == case`` for every valid case.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from fhir_plao.case import SECTIONS, Case, _describe
from fhir_plao.errors import MappingError
from fhir_plao.mapping import conditions, medications, observations, procedures, reports
from fhir_plao.mapping._fhir import JSON, Reader, Unmapped, read_concept, read_concepts
from fhir_plao.mapping.bundle import BundleWriter, Parsed, ResourceIndex, index_resources
from fhir_plao.mapping.patient import patient_from_fhir, patient_to_fhir
from fhir_plao.terminology import TERMINOLOGY

__all__ = ["MappingResult", "Unmapped", "from_fhir", "to_fhir"]


def to_fhir(case: Case) -> JSON:
    """The case as a FHIR R4 transaction Bundle with deterministic ids (PUT entries)."""
    w = BundleWriter(case)
    patient_to_fhir(w)
    for p in case.pregnancies:
        observations.pregnancy_to_observation(w, p)
        procedures.delivery_to_procedures(w, p)
    for n, lac in enumerate(case.lactations):
        observations.lactation_to_observation(w, n, lac)
    for s in case.status_observations:
        observations.status_to_observation(w, s)
    for sym in case.symptoms:
        conditions.symptom_to_condition(w, sym)
    for f in case.findings:
        observations.finding_to_observation(w, f)
    for v in case.vitals:
        observations.vital_to_observation(w, v)
    for lab in case.labs:
        observations.lab_to_observation(w, lab)
    for panel in case.lab_panels:
        reports.lab_panel_to_report(w, panel)
    for scan in case.dxa_scans:
        for score in scan.scores:
            observations.dxa_score_to_observation(w, scan, score)
        reports.dxa_scan_to_report(w, scan)
    for study in case.imaging:
        for n in range(len(study.findings)):
            observations.imaging_finding_to_observation(w, study, n)
        reports.imaging_to_report(w, study)
    for fracture in case.fractures:
        conditions.fracture_to_condition(w, fracture)
    for d in case.diagnoses:
        conditions.diagnosis_to_condition(w, d)
    for m in case.medications:
        medications.medication_to_statement(w, m)
    for c in case.care:
        if c.kind == "procedure":
            procedures.care_to_procedure(w, c)
        else:
            procedures.care_to_care_plan(w, c)
    procedures.follow_up_to_care_plan(w)
    if case.follow_up is not None:
        for n, outcome in enumerate(case.follow_up.outcomes):
            observations.outcome_to_observation(w, n, outcome)
    return w.bundle()


@dataclass
class MappingResult:
    """What ``from_fhir`` made of its input: the case, and what it could not map."""

    case: Case
    unmapped: list[Unmapped] = field(default_factory=list)


class _CaseBuilder:
    def __init__(self, index: ResourceIndex) -> None:
        self.index = index
        self.sections: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.unmapped = index.unmapped
        self.phases: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.deliveries: dict[str, dict[str, Any]] = {}  # delivery procedure local -> delivery
        self.delivery_of: dict[str, str] = {}  # pregnancy local -> delivery procedure local
        self.anaesthesia_of: dict[str, tuple[Reader, str]] = {}  # delivery local -> its anaesthesia
        self.consumed: set[int] = set()  # readers reported whole: no leftovers to list
        self.dxa_read: set[int] = set()  # DXA score Observations read with their report

    def add(self, section: str, where: str, item: dict[str, Any]) -> None:
        self.sections[section].append((where, item))

    def skip(self, r: Reader, reason: str) -> None:
        self.unmapped.append(Unmapped(r.where, reason))

    def not_mapped(self, r: Reader, exc: MappingError) -> None:
        """The whole resource is reported (once), with the element that stopped it."""
        self.unmapped.append(
            Unmapped(exc.location or r.where, f"resource not mapped: {exc.message}")
        )
        self.consumed.add(id(r))


def from_fhir(data: Any) -> MappingResult:
    """Read a case from FHIR: a Bundle (transaction, searchset, collection, ...), a resource,
    or a list of resources. Raises :class:`MappingError` when there is no single patient."""
    index = index_resources(data)
    patients = index.of_type("Patient")
    if len(patients) > 1:
        names = ", ".join(p.reader.where for p in patients)
        raise MappingError(
            f"several Patients ({names}): give one patient's resources", location="input"
        )
    b = _CaseBuilder(index)
    if patients:
        patient: Parsed | None = patients[0]
        patient_fields = patient_from_fhir(patients[0].reader)
        patient_where = patients[0].reader.where
        subject_ref = None
    else:
        patient, subject_ref = None, _only_subject(index)
        patient_fields = {
            "identifier_system": "urn:ietf:rfc:3986",
            "identifier": subject_ref,
            "sex": "unknown",
        }
        patient_where = subject_ref
        b.unmapped.append(
            Unmapped(
                "input",
                f"no Patient resource: the patient is known only as {subject_ref!r} "
                "(sex unknown, no birth date)",
            )
        )

    # which report holds which observation (lab panels, DXA visits, imaging findings)
    report_of: dict[int, Parsed] = {}
    for rep in index.of_type("DiagnosticReport"):
        for ref in rep.reader.items("result"):
            target = index.resolve((ref or {}).get("reference"))
            if target is not None:
                report_of.setdefault(id(target.reader), rep)

    for parsed in index.items:
        r = parsed.reader
        if parsed is patient or r.type == "Medication":
            continue  # a Medication is read through the statements that refer to it
        if not _about_patient(r, patient, subject_ref, index):
            b.skip(r, "refers to another patient (or to none): not part of this case")
            continue
        try:
            _read_one(b, parsed, report_of)
        except MappingError as exc:
            b.not_mapped(r, exc)
    _group_loose_dxa_scores(b)

    # anaesthesias join their deliveries, deliveries their pregnancies (in any input order)
    for parent, (anaesthesia, key) in b.anaesthesia_of.items():
        if parent in b.deliveries:
            b.deliveries[parent]["anaesthesia"] = key
        else:
            b.not_mapped(
                anaesthesia,
                anaesthesia.error(("partOf",), "an anaesthesia whose delivery was not mapped"),
            )
    for _, preg in b.sections["pregnancies"]:
        delivery_local = b.delivery_of.get(preg["id"])
        if delivery_local is not None and delivery_local in b.deliveries:
            preg["delivery"] = b.deliveries.pop(delivery_local)
    for delivery_local, _ in b.deliveries.items():
        b.unmapped.append(
            Unmapped(f"Procedure {delivery_local}", "a delivery without its pregnancy")
        )

    for parsed in index.items:
        if id(parsed.reader) not in b.consumed:
            b.unmapped.extend(parsed.reader.leftovers())

    case = _assemble(b, patient_where, patient_fields)
    return MappingResult(case, b.unmapped)


def _only_subject(index: ResourceIndex) -> str:
    """The one patient reference that every resource names, when there is no Patient."""
    refs = set()
    for parsed in index.items:
        for name in ("subject", "patient"):
            ref = parsed.reader.peek(name, "reference")
            if isinstance(ref, str) and "Patient/" in ref:
                refs.add(ref)
    if len(refs) != 1:
        found = ", ".join(sorted(refs)) if refs else "none"
        raise MappingError(
            f"no Patient resource, and not one patient reference to stand for it (found: {found})",
            location="input",
        )
    return refs.pop()


def _about_patient(
    r: Reader, patient: Parsed | None, subject_ref: str | None, index: ResourceIndex
) -> bool:
    for name in ("subject", "patient"):
        ref = r.peek(name, "reference")
        if ref is not None:
            r.mark(name)
            if patient is None:
                return bool(ref == subject_ref)
            return index.resolve(ref) is patient
    return False


def _read_one(b: _CaseBuilder, parsed: Parsed, report_of: dict[int, Parsed]) -> None:
    r, local, index = parsed.reader, parsed.local_id, b.index
    rtype = r.type
    if rtype == "Observation":
        _read_observation(b, parsed, report_of)
    elif rtype == "DiagnosticReport":
        _read_report(b, parsed)
    elif rtype == "Condition":
        kind = conditions.condition_kind(r)
        if kind == "fracture":
            b.add("fractures", r.where, conditions.condition_to_fracture(r, local, index))
        elif kind == "symptom":
            b.add("symptoms", r.where, conditions.condition_to_symptom(r, local))
        else:
            b.add("diagnoses", r.where, conditions.condition_to_diagnosis(r, local, index))
    elif rtype == "MedicationStatement":
        b.add("medications", r.where, medications.statement_to_medication(r, local, index))
    elif rtype == "MedicationRequest":
        b.add("medications", r.where, medications.request_to_medication(r, local, index))
    elif rtype == "Procedure":
        role, parent = procedures.procedure_role(r, index)
        if role == "delivery":
            assert parent is not None
            b.deliveries[local] = procedures.procedure_to_delivery(r)
            b.delivery_of[parent] = local
        elif role == "anaesthesia":
            assert parent is not None
            b.anaesthesia_of[parent] = (r, procedures.procedure_to_anaesthesia(r))
        else:
            b.add("care", r.where, procedures.procedure_to_care(r, local))
    elif rtype == "CarePlan":
        care, phases = procedures.care_plan_to_care(r, local)
        for item in care:
            b.add("care", r.where, item)
        b.phases.extend(phases)
    elif rtype == "ClinicalImpression":
        b.outcomes.append(procedures.impression_to_outcome(r))
    else:
        b.skip(r, f"a {rtype} is not part of the case model")
        b.consumed.add(id(r))


def _read_observation(b: _CaseBuilder, parsed: Parsed, report_of: dict[int, Parsed]) -> None:
    r, local = parsed.reader, parsed.local_id
    report = report_of.get(id(r))
    categories = observations.peek_categories(r)
    has_text_value = r.peek("valueString") is not None
    if not r.peek("code", "coding"):
        # our text-coded Observations, told apart by category and value as well as by text
        code_text = r.peek("code", "text")
        pregnancy = code_text == observations.PREGNANCY and categories == {"social-history"}
        if pregnancy and not has_text_value:
            b.add("pregnancies", r.where, observations.observation_to_pregnancy(r, local))
            return
        if code_text == observations.FOLLOW_UP_OUTCOME and not categories:
            b.outcomes.append(observations.observation_to_outcome(r))
            return
        if code_text == observations.IMAGING_FINDING and categories == {"imaging"}:
            if report is None:
                raise r.error(("code",), "an imaging finding outside any imaging report")
            return  # read with its report
    if categories & {"exam", "social-history", "history"} and has_text_value:
        cat = observations.read_category(r)
        assert cat is not None
        b.add("findings", r.where, observations.observation_to_finding(r, local, cat))
        return
    key, _ = read_concept(r, ("code",), "vital", "lab", "dxa-score", "status-question")
    kind = TERMINOLOGY.concept(key).kind if key else None
    if kind == "vital":
        assert key is not None
        b.add("vitals", r.where, observations.observation_to_vital(r, local, key))
    elif kind == "lab":
        assert key is not None
        panel = report.local_id if report is not None else None
        b.add("labs", r.where, observations.observation_to_lab(r, local, key, panel))
    elif kind == "dxa-score":
        return  # read with its DXA report (or grouped by date when it has none)
    elif kind == "status-question":
        assert key is not None
        if key == "breastfeeding-status" and r.peek("focus") is not None:
            b.add("lactations", r.where, observations.observation_to_lactation(r, b.index))
        else:
            b.add("status_observations", r.where, observations.observation_to_status(r, local, key))
    else:
        code = r.peek("code")
        raise r.error(("code",), f"no case field for an Observation coded {_show(code)}")


def _read_report(b: _CaseBuilder, parsed: Parsed) -> None:
    r, local, index = parsed.reader, parsed.local_id, b.index
    common = reports.read_report_common(r)
    dxa, _ = read_concept(r, ("code",), "dxa-panel")
    if dxa is not None:
        b.add("dxa_scans", r.where, {"id": local, **common, "scores": _dxa_scores(b, r)})
        return
    panel, _ = read_concept(r, ("code",), "lab-panel", "lab")
    if panel is not None:
        for i, _ in enumerate(r.items("result")):
            r.mark("result", i)
        b.add("lab_panels", r.where, {"id": local, "concept": panel, **common})
        return
    studies = read_concepts(r, ("code",), "imaging")
    if studies:
        findings = []
        for i, ref in enumerate(r.items("result")):
            target = index.resolve((ref or {}).get("reference"))
            if (
                target is not None
                and target.reader.peek("code", "text") == observations.IMAGING_FINDING
            ):
                findings.append(observations.observation_to_imaging_finding(target.reader))
                r.mark("result", i)
        b.add(
            "imaging", r.where, {"id": local, "concepts": studies, **common, "findings": findings}
        )
        return
    raise r.error(("code",), f"no case field for a DiagnosticReport coded {_show(r.peek('code'))}")


def _dxa_scores(b: _CaseBuilder, r: Reader) -> list[dict[str, Any]]:
    scores = []
    for i, ref in enumerate(r.items("result")):
        target = b.index.resolve((ref or {}).get("reference"))
        if target is None:
            continue
        tr = target.reader
        key, _ = read_concept(tr, ("code",), "dxa-score")
        if key is None:
            continue
        try:
            _, score = observations.observation_to_dxa_score(tr, key)
        except MappingError as exc:
            b.not_mapped(tr, exc)
            continue
        scores.append(score)
        r.mark("result", i)
        b.dxa_read.add(id(tr))
    return scores


def _show(cc: Any) -> str:
    if not isinstance(cc, dict):
        return "nothing"
    codings = [
        f"{c.get('system')}|{c.get('code')}" for c in cc.get("coding") or [] if isinstance(c, dict)
    ]
    text = cc.get("text")
    return ", ".join(codings) + (f" ({text!r})" if text else "") if codings else repr(text)


def _assemble(b: _CaseBuilder, patient_where: str, patient_fields: dict[str, Any]) -> Case:
    """Build the Case item by item: an item that does not validate is reported, not fatal."""
    from fhir_plao import case as m

    try:
        patient_model = m.Patient.model_validate(_clean(patient_fields))
    except PydanticValidationError as exc:
        raise MappingError(_describe(exc), location=patient_where) from None
    built: dict[str, list[Any]] = {}
    for section, model in SECTIONS.items():
        built[section] = []
        for where, raw in b.sections.get(section, []):
            try:
                built[section].append(model.model_validate(_clean(raw)))
            except PydanticValidationError as exc:
                b.unmapped.append(Unmapped(where, f"not mapped: {_describe(exc)}"))
    _drop_dangling(built, b)
    follow_up = None
    if b.phases or b.outcomes:
        try:
            follow_up = m.FollowUp.model_validate(
                _clean({"phases": b.phases, "outcomes": b.outcomes})
            )
        except PydanticValidationError as exc:
            b.unmapped.append(
                Unmapped("CarePlan/ClinicalImpression", f"not mapped: {_describe(exc)}")
            )
    try:
        return Case.model_validate(
            {
                "patient": patient_model,
                **{k: tuple(v) for k, v in built.items()},
                "follow_up": follow_up,
            }
        )
    except PydanticValidationError as exc:
        raise MappingError(_describe(exc), location="input") from None


def _group_loose_dxa_scores(b: _CaseBuilder) -> None:
    """DXA score Observations that no DXA report holds become scans grouped by date."""
    by_date: dict[str, list[dict[str, Any]]] = {}
    for parsed in b.index.of_type("Observation"):
        r = parsed.reader
        if id(r) in b.consumed or id(r) in b.dxa_read:
            continue
        key, _ = read_concept(r, ("code",), "dxa-score")
        if key is None:
            continue
        try:
            date, score = observations.observation_to_dxa_score(r, key)
        except MappingError as exc:
            b.not_mapped(r, exc)
            continue
        if date is None:
            b.not_mapped(r, r.error(("effectiveDateTime",), "a DXA score without a date"))
            continue
        by_date.setdefault(date, []).append(score)
    for date, scores in by_date.items():
        b.add(
            "dxa_scans",
            f"Observation (DXA, {date})",
            {"id": f"dxa-{date[:10]}", "date": date, "scores": scores},
        )


def _drop_dangling(built: dict[str, list[Any]], b: _CaseBuilder) -> None:
    """References to items that could not be built are reported and removed."""
    studies = {s.id for s in built["imaging"]}
    conditions_ = {d.id for d in built["diagnoses"]} | {f.id for f in built["fractures"]}
    panels = {p.id for p in built["lab_panels"]}
    pregnancies = {p.id for p in built["pregnancies"]}
    for section in ("fractures", "diagnoses"):
        built[section] = [
            _without(item, "evidence", studies, section, b) for item in built[section]
        ]
    built["medications"] = [
        _without(item, "reason", conditions_, "medications", b) for item in built["medications"]
    ]
    kept = []
    for lab in built["labs"]:
        if lab.panel is not None and lab.panel not in panels:
            b.unmapped.append(Unmapped(f"labs {lab.id}", f"its report {lab.panel} was not mapped"))
            lab = lab.model_copy(update={"panel": None})
        kept.append(lab)
    built["labs"] = kept
    lactations = []
    for lac in built["lactations"]:
        if lac.pregnancy in pregnancies:
            lactations.append(lac)
        else:
            b.unmapped.append(
                Unmapped("Observation (breastfeeding period)", "no pregnancy to attach it to")
            )
    built["lactations"] = lactations


def _without(item: Any, field_name: str, known: set[str], section: str, b: _CaseBuilder) -> Any:
    refs = getattr(item, field_name)
    missing = [x for x in refs if x not in known]
    if not missing:
        return item
    for x in missing:
        b.unmapped.append(Unmapped(f"{section} {item.id}.{field_name}", f"{x} was not mapped"))
    return item.model_copy(update={field_name: tuple(x for x in refs if x in known)})


def _clean(raw: Any) -> Any:
    """Drop None values and empty lists so that model defaults apply."""
    if isinstance(raw, dict):
        return {k: _clean(v) for k, v in raw.items() if v is not None and v != []}
    if isinstance(raw, list):
        return [_clean(v) for v in raw]
    return raw
