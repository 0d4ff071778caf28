"""Case <-> FHIR R4.

``to_fhir(case)`` gives a transaction Bundle (a JSON-ready dict; decimals as ``Decimal``);
``from_fhir(resources)`` gives the case back with a report of every element it could not map.
``from_fhir(to_fhir(case)).case == case`` for every valid case.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args
from urllib.parse import parse_qs

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fhir_plao import jsonio
from fhir_plao.case import SECTIONS, Case, DxaScan, DxaScore, _describe
from fhir_plao.coded import DIAGNOSTIC_SERVICE
from fhir_plao.errors import MappingError
from fhir_plao.mapping import (
    coded_observations,
    conditions,
    encounters,
    medications,
    observations,
    procedures,
    reports,
)
from fhir_plao.mapping._coded import read_own_or_source, read_source_concept
from fhir_plao.mapping._fhir import (
    JSON,
    Reader,
    Unmapped,
    codeable,
    codeable_many,
    read_concept,
    read_concepts,
)
from fhir_plao.mapping.bundle import (
    ID_NAMESPACE,
    BundleWriter,
    Parsed,
    ResourceIndex,
    index_resources,
    patient_namespace,
    written_alone,
)
from fhir_plao.mapping.patient import patient_from_fhir, patient_to_fhir
from fhir_plao.terminology import TERMINOLOGY

M = TypeVar("M", bound=BaseModel)

__all__ = ["MappingResult", "Unmapped", "from_fhir", "to_fhir", "unmapped_report"]


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
    for o in case.observations:
        coded_observations.coded_observation_to_fhir(w, o)
    for fracture in case.fractures:
        conditions.fracture_to_condition(w, fracture)
    for d in case.diagnoses:
        conditions.diagnosis_to_condition(w, d)
    for m in case.medications:
        medications.medication_to_fhir(w, m)
    for c in case.care:
        if c.kind == "procedure":
            procedures.care_to_procedure(w, c)
        else:
            procedures.care_to_care_plan(w, c)
    for e in case.encounters:
        encounters.encounter_to_fhir(w, e)
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


def unmapped_report(unmapped: list[Unmapped]) -> JSON:
    """The unmapped elements as a JSON document a script can count: every element (path and
    reason), and the count per resource type."""
    by_type: dict[str, int] = {}
    for item in unmapped:
        head = item.path.split("/", 1)[0].split(".", 1)[0].split("[", 1)[0]
        by_type[head] = by_type.get(head, 0) + 1
    return {
        "count": len(unmapped),
        "byResourceType": dict(sorted(by_type.items())),
        "items": [{"path": u.path, "reason": u.reason} for u in unmapped],
    }


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
        self.dxa_pending: set[int] = set()  # DXA score Observations not read yet
        self.report_of: dict[int, Parsed] = {}  # Observation reader -> the report listing it
        self.namespace = ID_NAMESPACE  # the patient's id namespace, once she is known

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
    or a list of resources. Raises :class:`MappingError` when there is no single patient, or
    when an element holds a JSON type R4 does not allow there that the readers trip over."""
    try:
        return _from_fhir(data)
    except (TypeError, AttributeError, KeyError, IndexError) as exc:
        # the readers check what they use; this is the net under them, never a traceback
        raise MappingError(
            f"an element holds a JSON type that FHIR R4 does not allow there "
            f"({type(exc).__name__}: {exc}); validate the input to find it",
            location="input",
        ) from None


def _from_fhir(data: Any) -> MappingResult:
    index = index_resources(data)
    patients, copies = _one_patient_each(index.of_type("Patient"))
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
        if "identifier_system" not in patient_fields:
            b.unmapped.append(
                Unmapped(
                    f"{patient_where}.identifier",
                    "the Patient has no identifier: the case names her by her resource id "
                    f"{patient_fields['identifier']!r}",
                )
            )
    else:
        patient, subject_ref = None, _only_subject(index)
        patient_fields = {
            **_identifier_of(subject_ref),
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

    b.namespace = patient_namespace(
        patient_fields.get("identifier_system"), patient_fields["identifier"]
    )
    # which report holds which observation (lab panels, DXA visits, imaging findings)
    report_of = b.report_of
    for rep in index.of_type("DiagnosticReport"):
        for ref in rep.reader.items("result"):
            target = index.resolve(ref.get("reference") if isinstance(ref, dict) else None)
            if target is not None:
                report_of.setdefault(id(target.reader), rep)

    for parsed in index.items:
        r = parsed.reader
        if parsed is patient or r.type == "Medication":
            continue  # a Medication is read through the statements that refer to it
        if id(r) in copies:
            b.consumed.add(id(r))  # another copy of the patient (contained in one more resource)
            continue
        if not _about_patient(r, patient, copies, subject_ref, index):
            b.skip(r, "refers to another patient (or to none): not part of this case")
            continue
        try:
            _read_one(b, parsed, report_of)
        except MappingError as exc:
            b.not_mapped(r, exc)
    _group_loose_dxa_scores(b)
    for parsed in index.of_type("ImagingStudy"):
        if id(parsed.reader) not in b.consumed:
            b.skip(
                parsed.reader,
                "an ImagingStudy is not part of the case model (only the series "
                "of an imaging report that names it)",
            )
            b.consumed.add(id(parsed.reader))

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
            if isinstance(ref, str) and ("Patient/" in ref or ref.startswith("Patient?")):
                refs.add(ref)
    if len(refs) != 1:
        found = ", ".join(sorted(refs)) if refs else "none"
        raise MappingError(
            f"no Patient resource, and not one patient reference to stand for it (found: {found})",
            location="input",
        )
    return refs.pop()


def _identifier_of(ref: str) -> dict[str, Any]:
    """The case's patient identifier when only a reference names her: the identifier of a
    conditional reference (``Patient?identifier=system|value``), else the reference itself."""
    wanted = _conditional_identifiers(ref)
    if len(wanted) == 1:
        system, value = wanted[0]
        if value and (system is None or system.startswith(("http", "urn:"))):
            return {"identifier_system": system, "identifier": value}
    return {"identifier_system": "urn:ietf:rfc:3986", "identifier": ref}


def _conditional_identifiers(ref: str) -> list[tuple[str | None, str]]:
    """(system, value) of each ``identifier`` of a conditional reference ``Patient?...``."""
    if not ref.startswith("Patient?"):
        return []
    out: list[tuple[str | None, str]] = []
    for token in parse_qs(ref.split("?", 1)[1]).get("identifier", []):
        for one in token.split(","):
            system, bar, value = one.rpartition("|")
            out.append((system or None, value) if bar else (None, one))
    return out


def _one_patient_each(patients: list[Parsed]) -> tuple[list[Parsed], set[int]]:
    """The distinct Patients (a Patient contained, the same, in several resources is one), and
    the copies beyond the first of each."""
    first: dict[str, Parsed] = {}
    copies: set[int] = set()  # ids of the copies' readers
    for p in patients:
        body = {k: v for k, v in p.reader.resource.items() if k not in ("id", "meta")}
        key = jsonio.dumps(body)
        if key in first:
            copies.add(id(p.reader))
        else:
            first[key] = p
    return list(first.values()), copies


def _about_patient(
    r: Reader,
    patient: Parsed | None,
    copies: set[int],
    subject_ref: str | None,
    index: ResourceIndex,
) -> bool:
    for name in ("subject", "patient"):
        ref = r.peek(name, "reference")
        if ref is not None:
            r.mark(name)
            if patient is None:
                return bool(ref == subject_ref)
            target = index.resolve(ref, within=r)
            if target is patient or (target is not None and id(target.reader) in copies):
                return True
            return isinstance(ref, str) and _names_patient(ref, patient.reader)
    return False


def _names_patient(ref: str, patient: Reader) -> bool:
    """A conditional reference ``Patient?identifier=...`` that names this Patient."""
    wanted = _conditional_identifiers(ref)
    if not wanted:
        return False
    held = [i for i in patient.items("identifier") if isinstance(i, dict)]
    return all(
        any(i.get("value") == value and system in (None, i.get("system")) for i in held)
        for system, value in wanted
    )


def _read_one(b: _CaseBuilder, parsed: Parsed, report_of: dict[int, Parsed]) -> None:
    r, local, index = parsed.reader, parsed.local_id, b.index
    rtype = r.type
    if rtype == "Observation":
        _read_observation(b, parsed, report_of)
    elif rtype == "DiagnosticReport":
        _read_report(b, parsed)
    elif rtype == "Condition":
        dedicated: dict[
            str, tuple[str, Callable[[Reader], dict[str, Any]], Callable[[BundleWriter, Any], None]]
        ] = {
            "fracture": (
                "fractures",
                lambda t: conditions.condition_to_fracture(t, local, index),
                conditions.fracture_to_condition,
            ),
            "symptom": (
                "symptoms",
                lambda t: conditions.condition_to_symptom(t, local),
                conditions.symptom_to_condition,
            ),
        }
        done = any(
            _dedicated(b, parsed, *dedicated[kind], _CONDITION_KEPT)
            for kind in conditions.condition_kinds(r)
        )
        if not done:
            b.add("diagnoses", r.where, conditions.condition_to_diagnosis(r, local, index))
    elif rtype == "Encounter":
        b.add("encounters", r.where, encounters.encounter_from_fhir(r, local, index))
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
            b.add("care", r.where, procedures.procedure_to_care(r, local, index))
    elif rtype == "CarePlan":
        care, phases = procedures.care_plan_to_care(r, local)
        for item in care:
            b.add("care", r.where, item)
        b.phases.extend(phases)
    elif rtype == "ClinicalImpression":
        b.outcomes.append(procedures.impression_to_outcome(r))
    elif rtype == "ImagingStudy":
        pass  # read with the imaging report that names it (or reported after the others)
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
    report_local = report.local_id if report is not None else None
    in_panel = report is not None and report_section(report.reader) == "lab_panels"
    finding = categories & {"exam", "social-history", "history"} and has_text_value
    if finding and _dedicated(
        b,
        parsed,
        "findings",
        lambda t: observations.observation_to_finding(t, local),
        observations.finding_to_observation,
    ):
        return
    probe = Reader(r.resource, r.where)
    key, _ = read_concept(probe, ("code",), "vital", "lab", "dxa-score", "status-question")
    kind = TERMINOLOGY.concept(key).kind if key else None
    if key is None and categories == {"laboratory"} and r.peek("component") is None:
        kind = "lab"  # a lab the code table does not know: a lab still, coded by its source
    if kind == "vital":
        assert key is not None
        done = _dedicated(
            b,
            parsed,
            "vitals",
            lambda t: observations.observation_to_vital(t, local, key),
            observations.vital_to_observation,
        )
    elif kind == "lab" and (report is None or in_panel):
        done = _dedicated(
            b,
            parsed,
            "labs",
            lambda t: observations.observation_to_lab(t, local, key, report_local),
            observations.lab_to_observation,
        )
    elif kind == "dxa-score":
        b.dxa_pending.add(id(r))
        return  # read with its DXA report (or grouped by date, or as a coded observation)
    elif kind == "status-question":
        assert key is not None
        if key == "breastfeeding-status" and r.peek("focus") is not None:
            r.adopt(probe)
            b.add("lactations", r.where, observations.observation_to_lactation(r, b.index))
            return
        done = _dedicated(
            b,
            parsed,
            "status_observations",
            lambda t: observations.observation_to_status(t, local, key),
            observations.status_to_observation,
        )
    else:
        done = False
    if not done:
        b.add(
            "observations",
            r.where,
            coded_observations.observation_to_coded(r, local, b.index, report_local),
        )


#: the Observation elements a dedicated section must write back unchanged to hold the resource
_OBSERVATION_KEPT = (
    "status",
    "category",
    "code",
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    *coded_observations.VALUE_ELEMENTS,
    "dataAbsentReason",
    "interpretation",
    "referenceRange",
    "bodySite",
    "method",
    "component",
    "note",
)
_CONDITION_KEPT = (
    "clinicalStatus",
    "verificationStatus",
    "category",
    "severity",
    "code",
    "bodySite",
    "onsetDateTime",
    "onsetPeriod",
    "abatementDateTime",
    "abatementPeriod",
    "recordedDate",
    "note",
)
_LINKS = ("hasMember", "derivedFrom", "focus", "partOf", "basedOn", "specimen", "evidence")
#: coded statuses: the same when their codes are, whatever the displays
_STATUS_ELEMENTS = ("clinicalStatus", "verificationStatus")


def _same(element: str, a: Any, b: Any) -> bool:
    if element in _STATUS_ELEMENTS and isinstance(a, dict) and isinstance(b, dict):
        return _codes(a) == _codes(b) and a.get("text") == b.get("text")
    return bool(a == b)


def _codes(cc: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(c.get("system"), c.get("code")) for c in cc.get("coding") or [] if isinstance(c, dict)]


def _dedicated(
    b: _CaseBuilder,
    parsed: Parsed,
    section: str,
    read: Callable[[Reader], dict[str, Any]],
    write: Callable[[BundleWriter, Any], None],
    kept: tuple[str, ...] = _OBSERVATION_KEPT,
) -> bool:
    """Read the resource into a dedicated section when that section writes it back with every
    kept element unchanged; False (nothing read) when it would not, or cannot hold it."""
    r = parsed.reader
    trial = Reader(r.resource, r.where)
    try:
        fields = read(trial)
        item = _build(SECTIONS[section], fields)
        written = written_alone(write, item)
    except (MappingError, PydanticValidationError, ValueError):
        return False
    source = r.resource
    if not all(_same(k, source.get(k), written.get(k)) for k in kept):
        return False
    if any((k in source) != (k in written) for k in _LINKS):
        return False
    r.adopt(trial)
    b.add(section, r.where, fields)
    return True


def report_section(r: Reader) -> str:
    """The case section a DiagnosticReport maps into: dxa_scans, lab_panels or imaging."""
    probe = Reader(r.resource, r.where)
    if read_concept(probe, ("code",), "dxa-panel")[0] is not None:
        return "dxa_scans"
    if read_concept(probe, ("code",), "lab-panel", "lab")[0] is not None:
        return "lab_panels"
    if read_concepts(probe, ("code",), "imaging"):
        return "imaging"
    services = set()
    for cat in r.items("category"):
        for coding in (cat or {}).get("coding") or [] if isinstance(cat, dict) else []:
            if isinstance(coding, dict) and coding.get("system") == DIAGNOSTIC_SERVICE:
                services.add(coding.get("code"))
    if services and not services & {"LAB", "CH", "HM", "SP", "MB", "BLB", "IMM", "SR"}:
        return "imaging"  # a radiology, cardiology or other non-laboratory report
    if not services and r.peek("category") is not None:
        return "imaging"
    return "lab_panels"


def _read_report(b: _CaseBuilder, parsed: Parsed) -> None:
    r, local, index = parsed.reader, parsed.local_id, b.index
    section = report_section(r)
    if section == "dxa_scans":
        read_concept(r, ("code",), "dxa-panel")
        common = reports.read_dxa_report_common(r)
        scores = _dxa_scores(b, r, local, common["date"])
        b.add("dxa_scans", r.where, {"id": local, **common, "scores": scores})
        _mark_results(b, r)
        return
    if section == "lab_panels":
        common = reports.read_report_common(r, "LAB")
        panel, _ = read_concept(Reader(r.resource, r.where), ("code",), "lab-panel", "lab")
        code = read_own_or_source(r, ("code",), codeable(panel) if panel else None)
        if panel is not None and code is None:
            r.mark("code")
        _mark_results(b, r)
        b.add("lab_panels", r.where, {"id": local, "concept": panel, "code": code, **common})
        return
    common = reports.read_report_common(r, "RAD")
    probe = Reader(r.resource, r.where)
    studies = read_concepts(probe, ("code",), "imaging")
    code = None
    if studies and probe.peek("code") == codeable_many(studies):
        r.adopt(probe)
    else:
        studies = ()
        code = read_source_concept(r, ("code",))
    findings = []
    for i, ref in enumerate(r.items("result")):
        target = index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and observations.is_imaging_finding(target.reader):
            findings.append(observations.observation_to_imaging_finding(target.reader))
            r.mark("result", i)
    _mark_results(b, r)
    b.add(
        "imaging",
        r.where,
        {
            "id": local,
            "concepts": studies,
            "code": code,
            **common,
            "series": _series(b, r, local, common["date"]),
            "findings": findings,
        },
    )


def _series(b: _CaseBuilder, r: Reader, local: str, date: Any) -> list[dict[str, Any]]:
    """The series of an imaging report, from the one ImagingStudy it names (when ours)."""
    refs = r.items("imagingStudy")
    if len(refs) != 1 or not isinstance(refs[0], dict):
        return []
    target = b.index.resolve(refs[0].get("reference"))
    if target is None or target.reader.type != "ImagingStudy":
        return []
    series = reports.imaging_study_to_series(target.reader, local, date, b.namespace)
    if series is None:
        return []
    r.mark("imagingStudy")
    b.consumed.add(id(target.reader))
    return series


def _mark_results(b: _CaseBuilder, r: Reader) -> None:
    """A report's results that are Observations of the input are written back from the case
    (each observation names its report); only the others are left for the report."""
    for i, ref in enumerate(r.items("result")):
        target = b.index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.type == "Observation":
            r.mark("result", i)


def _dxa_scores(b: _CaseBuilder, r: Reader, local: str, date: Any) -> list[dict[str, Any]]:
    scores = []
    for i, ref in enumerate(r.items("result")):
        target = b.index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is None:
            continue
        score = _dxa_score(target.reader, local, date)
        if score is not None:
            scores.append(score)
            r.mark("result", i)
            b.dxa_read.add(id(target.reader))
    return scores


def _dxa_score(r: Reader, scan_id: str, date: Any) -> dict[str, Any] | None:
    """A DXA score Observation as a score of the scan ``scan_id`` on ``date``, when the scan
    writes it back unchanged (else None: it is read as a coded observation)."""
    trial = Reader(r.resource, r.where)
    key, _ = read_concept(trial, ("code",), "dxa-score")
    if key is None:
        return None
    try:
        _, score = observations.observation_to_dxa_score(trial, key)
        item = _build(DxaScore, score)
        scan = DxaScan(id=scan_id, date=date, scores=(item,))
        written = written_alone(
            lambda w, s: observations.dxa_score_to_observation(w, scan, s), item
        )
    except (MappingError, PydanticValidationError, ValueError, TypeError):
        return None
    if not all(_same(k, r.resource.get(k), written.get(k)) for k in _OBSERVATION_KEPT):
        return None
    r.adopt(trial)
    return score


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
                built[section].append(_build(model, raw))
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
    """DXA score Observations that no DXA report holds become scans grouped by date; one that
    such a scan would not write back unchanged is kept as a coded observation."""
    by_date: dict[str, list[dict[str, Any]]] = {}
    for parsed in b.index.of_type("Observation"):
        r = parsed.reader
        if id(r) in b.consumed or id(r) in b.dxa_read or id(r) not in b.dxa_pending:
            continue
        date = r.peek("effectiveDateTime")
        score = None
        if isinstance(date, str) and id(r) not in b.report_of:
            score = _dxa_score(r, f"dxa-{date[:10]}", date)
        if score is None:
            report = b.report_of.get(id(r))
            try:
                b.add(
                    "observations",
                    r.where,
                    coded_observations.observation_to_coded(
                        r, parsed.local_id, b.index, report.local_id if report else None
                    ),
                )
            except MappingError as exc:
                b.not_mapped(r, exc)
            continue
        assert isinstance(date, str)
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
    conditions_ |= {s.id for s in built["symptoms"]}
    for section in ("medications", "care", "encounters"):
        built[section] = [
            _without(item, "reason", conditions_, section, b) for item in built[section]
        ]
    reports_ = studies | panels | {d.id for d in built["dxa_scans"]}
    observed = {o.id for o in built["observations"]}
    observed |= {x.id for x in built["labs"]} | {v.id for v in built["vitals"]}
    kept_obs = []
    for obs in built["observations"]:
        if obs.report is not None and obs.report not in reports_:
            b.unmapped.append(
                Unmapped(f"observations {obs.id}", f"its report {obs.report} was not mapped")
            )
            obs = obs.model_copy(update={"report": None})
        kept_obs.append(_without(obs, "members", observed - {obs.id}, "observations", b))
    built["observations"] = kept_obs
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
    """Drop None values so that model defaults apply. (An empty list stays: for a category it
    says the source gave none, which is not our default.)"""
    if isinstance(raw, dict):
        return {k: _clean(v) for k, v in raw.items() if v is not None}
    if isinstance(raw, list):
        return [_clean(v) for v in raw]
    return raw


def _build(model: type[M], raw: dict[str, Any]) -> M:
    """An item from the fields a reader found. A None the model allows but does not default to
    (a Condition without verificationStatus) is kept: the source said nothing there."""
    fields = model.model_fields
    kept = {
        k: None
        for k, v in raw.items()
        if v is None
        and k in fields
        and fields[k].default is not None
        and _allows_none(fields[k].annotation)
    }
    return model.model_validate({**_clean(raw), **kept})


def _allows_none(annotation: Any) -> bool:
    return type(None) in get_args(annotation)
