"""DiagnosticReports <-> lab panels, DXA visits and imaging studies."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import DxaScan, ImagingStudy, LabPanel
from fhir_plao.mapping._fhir import (
    DIAGNOSTIC_SERVICE,
    JSON,
    Reader,
    codeable,
    codeable_many,
    fixed_category,
    read_fixed_code,
)
from fhir_plao.mapping.bundle import BundleWriter
from fhir_plao.mapping.observations import dxa_score_local, imaging_finding_local

SERVICE_DISPLAY = {"LAB": "Laboratory", "RAD": "Radiology"}


def _report(
    w: BundleWriter,
    service: str,
    code: JSON,
    date: str,
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


def lab_panel_to_report(w: BundleWriter, panel: LabPanel) -> None:
    results = [w.ref("Observation", lab.id) for lab in w.case.labs if lab.panel == panel.id]
    body = _report(w, "LAB", codeable(panel.concept), panel.date, results, panel.conclusion)
    w.add("DiagnosticReport", panel.id, body)


def dxa_scan_to_report(w: BundleWriter, scan: DxaScan) -> None:
    results = [w.ref("Observation", dxa_score_local(scan, s)) for s in scan.scores]
    body = _report(w, "RAD", codeable("dxa-panel"), scan.date, results, scan.conclusion)
    w.add("DiagnosticReport", scan.id, body, profile="plao-dxa-report")


def imaging_to_report(w: BundleWriter, study: ImagingStudy) -> None:
    results = [
        w.ref("Observation", imaging_finding_local(study, n)) for n in range(len(study.findings))
    ]
    body = _report(w, "RAD", codeable_many(study.concepts), study.date, results, study.conclusion)
    w.add("DiagnosticReport", study.id, body)


def read_report_common(r: Reader) -> dict[str, Any]:
    """status, category, subject and effective time: the parts every report shares."""
    r.get("status")
    for i, _ in enumerate(r.items("category")):
        read_fixed_code(r, ("category", i), DIAGNOSTIC_SERVICE)
    date = r.str_("effectiveDateTime")
    if date is None:
        date = r.str_("effectivePeriod", "start")
    if date is None:
        date = r.str_("issued")
    return {"date": date, "conclusion": r.str_("conclusion")}
