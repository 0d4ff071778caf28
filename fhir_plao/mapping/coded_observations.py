"""Observations <-> :class:`~fhir_plao.coded.CodedObservation`: every Observation the case has
no dedicated section for (or that a dedicated section could not write back unchanged), kept
with its codes, value of any R4 type, ranges, interpretations, components and members."""

from __future__ import annotations

from typing import Any

from fhir_plao.coded import CodedObservation
from fhir_plao.mapping._coded import (
    VALUE_TYPES,
    concept_json,
    concepts_json,
    period_json,
    ranges_json,
    read_period,
    read_ranges,
    read_source_concept,
    read_source_concepts,
    read_value,
    value_json,
)
from fhir_plao.mapping._fhir import JSON, Reader, annotation, read_note
from fhir_plao.mapping.bundle import BundleWriter, ResourceIndex

#: every value[x] element an Observation may carry in R4
VALUE_ELEMENTS = (*VALUE_TYPES, "valueSampledData")


def coded_observation_to_fhir(w: BundleWriter, o: CodedObservation) -> None:
    body: JSON = {
        "status": o.status,
        "category": concepts_json(o.category),
        "code": concept_json(o.code),
        "subject": w.subject,
        "effectiveDateTime": o.date,
        "effectivePeriod": period_json(o.period),
        "issued": o.issued,
        **value_json(o.value),
        "dataAbsentReason": concept_json(o.data_absent),
        "interpretation": concepts_json(o.interpretation),
        "note": annotation(o.note),
        "bodySite": concept_json(o.body_site),
        "method": concept_json(o.method),
        "referenceRange": ranges_json(o.reference_ranges),
        "hasMember": [w.ref("Observation", m) for m in o.members] or None,
        "component": [
            {
                "code": concept_json(c.code),
                **value_json(c.value),
                "dataAbsentReason": concept_json(c.data_absent),
                "interpretation": concepts_json(c.interpretation),
                "referenceRange": ranges_json(c.reference_ranges),
            }
            for c in o.components
        ]
        or None,
    }
    w.add("Observation", o.id, body)


def observation_to_coded(
    r: Reader, local: str, index: ResourceIndex, report: str | None
) -> dict[str, Any]:
    """An Observation's fields as a :class:`CodedObservation` (``report``: the local id of the
    DiagnosticReport whose ``result`` lists it)."""
    code = read_source_concept(r, ("code",))
    if code is None:
        raise r.error(("code",), "an Observation without a code")
    members = []
    for i, ref in enumerate(r.items("hasMember")):
        target = index.resolve((ref or {}).get("reference") if isinstance(ref, dict) else None)
        if target is not None and target.reader.type == "Observation":
            members.append(target.local_id)
            r.mark("hasMember", i)
    components = []
    for i, _ in enumerate(r.items("component")):
        p = ("component", i)
        components.append(
            {
                "code": read_source_concept(r, (*p, "code")),
                "value": read_value(r, p),
                "data_absent": read_source_concept(r, (*p, "dataAbsentReason")),
                "interpretation": read_source_concepts(r, (*p, "interpretation")),
                "reference_ranges": read_ranges(r, (*p, "referenceRange")),
            }
        )
    return {
        "id": local,
        "code": code,
        "status": r.str_("status"),
        "category": read_source_concepts(r, ("category",)),
        "date": r.str_("effectiveDateTime"),
        "period": read_period(r, ("effectivePeriod",)),
        "issued": r.str_("issued"),
        "value": read_value(r),
        "data_absent": read_source_concept(r, ("dataAbsentReason",)),
        "interpretation": read_source_concepts(r, ("interpretation",)),
        "reference_ranges": read_ranges(r, ("referenceRange",)),
        "body_site": read_source_concept(r, ("bodySite",)),
        "method": read_source_concept(r, ("method",)),
        "components": components,
        "members": members,
        "report": report,
        "note": read_note(r),
    }
