"""DiagnosticReports <-> lab panels, DXA visits and imaging studies."""

from __future__ import annotations

import uuid
from typing import Any

from fhir_plao.case import DxaScan, ImagingStudy, LabPanel
from fhir_plao.coded import DIAGNOSTIC_SERVICE, DIAGNOSTIC_SERVICE_DISPLAY, Concept
from fhir_plao.mapping._coded import concept_json, concepts_json, read_own_or_source
from fhir_plao.mapping._fhir import (
    JSON,
    Reader,
    codeable,
    codeable_many,
    fixed_category,
)
from fhir_plao.mapping.bundle import BundleWriter, series_uid
from fhir_plao.mapping.observations import dxa_score_local, imaging_finding_local
from fhir_plao.terminology import TERMINOLOGY

SERVICE_DISPLAY = DIAGNOSTIC_SERVICE_DISPLAY


def _report(
    w: BundleWriter,
    service: str,
    code: JSON,
    date: str | None,
    results: list[JSON],
    conclusion: str | None,
) -> JSON:
    return {
        "status": "final",
        "category": [fixed_category(DIAGNOSTIC_SERVICE, service, SERVICE_DISPLAY[service])],
        "code": code,
        "subject": w.subject,
        "effectiveDateTime": date,
        "result": results,
        "conclusion": conclusion,
    }


def _members(w: BundleWriter, report_id: str) -> list[JSON]:
    """The ``result`` references of a report: its labs, then its other observations."""
    labs = [w.ref("Observation", lab.id) for lab in w.case.labs if lab.panel == report_id]
    return labs + [w.ref("Observation", o.id) for o in w.case.observations if o.report == report_id]


def _source_parts(
    body: JSON, status: str, category: tuple[Concept, ...] | None, issued: str | None
) -> None:
    body["status"] = status
    body["issued"] = issued
    if category is not None:
        body["category"] = concepts_json(category)


def lab_panel_to_report(w: BundleWriter, panel: LabPanel) -> None:
    code = concept_json(panel.code) if panel.code is not None else codeable(panel.concept)
    body = _report(w, "LAB", code, panel.date, _members(w, panel.id), panel.conclusion)
    _source_parts(body, panel.status, panel.category, panel.issued)
    w.add("DiagnosticReport", panel.id, body)


def dxa_scan_to_report(w: BundleWriter, scan: DxaScan) -> None:
    results = [w.ref("Observation", dxa_score_local(scan, s)) for s in scan.scores]
    results += _members(w, scan.id)
    body = _report(w, "RAD", codeable("dxa-panel"), scan.date, results, scan.conclusion)
    w.add("DiagnosticReport", scan.id, body, profile="plao-dxa-report")


def imaging_to_report(w: BundleWriter, study: ImagingStudy) -> None:
    results = [
        w.ref("Observation", imaging_finding_local(study, n)) for n in range(len(study.findings))
    ] + _members(w, study.id)
    code = concept_json(study.code) if study.code is not None else codeable_many(study.concepts)
    body = _report(w, "RAD", code, study.date, results, study.conclusion)
    _source_parts(body, study.status, study.category, study.issued)
    if study.series:
        body["imagingStudy"] = [w.ref("ImagingStudy", images_local(study.id))]
    w.add("DiagnosticReport", study.id, body)
    if study.series:
        series_to_imaging_study(w, study)


def images_local(study_id: str) -> str:
    return f"{study_id}#images"


def series_to_imaging_study(w: BundleWriter, study: ImagingStudy) -> None:
    """The sequences or views of a study as the ImagingStudy its report names."""
    w.add(
        "ImagingStudy",
        images_local(study.id),
        {
            "status": "available",
            "subject": w.subject,
            "started": study.date,
            "numberOfSeries": len(study.series),
            "series": [
                {
                    "uid": w.series_uid(study.id, n),
                    "number": n + 1,
                    "modality": codeable(s.modality)["coding"][0],
                    "description": s.description,
                }
                for n, s in enumerate(study.series)
            ],
        },
    )


def imaging_study_to_series(
    r: Reader, study_id: str, date: str | None, namespace: uuid.UUID
) -> list[dict[str, Any]] | None:
    """The series of one of our imaging reports from the ImagingStudy it names; None when the
    ImagingStudy is not one this mapping writes (another system's: it is reported whole)."""
    trial = Reader(r.resource, r.where)
    series = trial.items("series")
    if (
        not series
        or trial.get("status") != "available"
        or trial.get("started") != date
        or trial.get("numberOfSeries") != len(series)
    ):
        return None
    trial.mark("subject")
    out = []
    for n, _ in enumerate(series):
        p: tuple[str | int, ...] = ("series", n)
        coding = trial.peek(*p, "modality")
        keys = (
            [
                k
                for k in TERMINOLOGY.keys_for(*(coding.get(x) for x in ("system", "code")))
                if TERMINOLOGY.concept(k).kind == "modality"
            ]
            if isinstance(coding, dict)
            else []
        )
        description = trial.peek(*p, "description")
        if (
            len(keys) != 1
            or coding != codeable(keys[0])["coding"][0]
            or trial.get(*p, "uid") != series_uid(namespace, study_id, n)
            or trial.get(*p, "number") != n + 1
            or not isinstance(description, str)
        ):
            return None
        trial.mark(*p, "modality")
        trial.mark(*p, "description")
        out.append({"modality": keys[0], "description": description})
    r.adopt(trial)
    return out


def read_report_common(r: Reader, service: str) -> dict[str, Any]:
    """status, category, effective time, issued and conclusion: the parts every report shares
    (``service``: the v2-0074 category we write for this kind of report)."""
    ours = [fixed_category(DIAGNOSTIC_SERVICE, service, SERVICE_DISPLAY[service])]
    date = r.str_("effectiveDateTime")
    if date is None and r.peek("effectivePeriod", "end") in (
        None,
        r.peek("effectivePeriod", "start"),
    ):
        date = r.str_("effectivePeriod", "start")
        r.mark("effectivePeriod")
    return {
        "status": r.str_("status"),
        "category": read_own_or_source(r, ("category",), ours, many=True),
        "date": date,
        "issued": r.str_("issued"),
        "conclusion": r.str_("conclusion"),
    }


def read_dxa_report_common(r: Reader) -> dict[str, Any]:
    """A DXA report's date and conclusion; its status and category are used only when they are
    ours (final, RAD), else left for the report."""
    if r.peek("status") == "final":
        r.mark("status")
    if r.peek("category") == [fixed_category(DIAGNOSTIC_SERVICE, "RAD", SERVICE_DISPLAY["RAD"])]:
        r.mark("category")
    date = r.str_("effectiveDateTime")
    if date is None:
        date = r.str_("effectivePeriod", "start")
    return {"date": date, "conclusion": r.str_("conclusion")}
