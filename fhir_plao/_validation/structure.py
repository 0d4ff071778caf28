"""Base R4 structure of one resource: the fhir.resources models, plus what they leave out.

``fhir.resources`` (8.3, its R4B models; for the resource kinds this package writes the R4B and
R4 4.0.1 element trees are the same) rejects unknown elements, wrong JSON types, malformed
primitives (ids, codes, decimals, URIs), dates that are not on the calendar (``2023-02-29``), times
without an offset, missing required elements and more than one ``value[x]``. It does not reject
empty objects, arrays or strings, or ``null`` in an array: :func:`empty_elements` does (ele-1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from fhir_plao._validation.issues import Issue

__all__ = ["R4_RESOURCE_TYPES", "check_structure", "empty_elements"]

R4_RESOURCE_TYPES = frozenset(
    [
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    ]
)

_REGEX_KIND = re.compile(r"(\w+) value string does not match spec regex")


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def check_structure(resource: Mapping[str, Any], path: str) -> list[Issue]:
    """Base R4 structure of ``resource`` (contained resources included), paths under ``path``."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return [Issue("error", path, "not a FHIR resource: no resourceType", "structure")]
    if rtype not in R4_RESOURCE_TYPES:
        return [
            Issue(
                "error",
                f"{path}.resourceType",
                f"{rtype!r} is not a FHIR R4 resource type",
                "structure",
            )
        ]
    model = _model(rtype)
    if model is None:
        return [
            Issue(
                "information",
                path,
                f"{rtype} is an R4 resource kind that the structural checker (fhir.resources R4B "
                "models) does not cover: its base structure was not checked",
                "structure",
            )
        ]
    from pydantic import ValidationError as PydanticError

    try:
        model.model_validate(resource)
    except PydanticError as exc:
        return [_issue(err, path) for err in exc.errors()]
    except Exception as exc:  # fhir.resources raises plain errors for some malformed input
        return [Issue("error", path, f"not a valid R4 {rtype}: {exc}", "structure")]
    return []


def _issue(err: Any, root: str) -> Issue:
    loc: tuple[Any, ...] = err.get("loc", ())
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-"):
            path += f".{part}"
    kind: str = err.get("type", "")
    msg: str = err.get("msg", "")
    value = err.get("input")
    name = str(loc[-1]) if loc and isinstance(loc[-1], str) else "element"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    rule = "structure"
    if kind.endswith("missing"):
        rule = "cardinality"
        text = "required element is missing (base R4 requires it)"
    elif kind == "extra_forbidden":
        text = f"unknown element '{name}': not part of this R4 type (misspelled, or misplaced?)"
    elif kind == "list_type":
        text = f"must be a JSON array: '{name}' repeats in R4; wrap the value in [ ]"
    elif "date" in kind and "parsing" in kind:
        text = f"{value!r} is not a real calendar date or time ({msg.split(', ', 1)[-1]})"
    elif (m := _REGEX_KIND.search(msg)) is not None:
        kind_name = m.group(1)
        fhir_type = kind_name[0].lower() + kind_name[1:]
        hint = {
            "dateTime": " (YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss with Z or +hh:mm)",
            "date": " (YYYY, YYYY-MM or YYYY-MM-DD)",
            "instant": " (YYYY-MM-DDThh:mm:ss with Z or +hh:mm)",
        }.get(fhir_type, "")
        text = f"{value!r} is not a valid FHIR {fhir_type}{hint}"
    elif msg.startswith("Any of one field value is expected from this list"):
        choices = msg.split("[", 1)[-1].split("]", 1)[0].replace("'", "")
        text = f"only one of these may be present: {choices}"
    elif kind == "string_pattern_mismatch":
        text = f"{value!r} is not allowed here ({msg})"
    else:
        text = (
            f"{msg} (found {value!r})"
            if value is not None and not isinstance(value, Mapping | list)
            else msg
        )
    return Issue("error", path, text, rule)


_VALUE_SET_BASE = "http://hl7.org/fhir/ValueSet/"


def empty_elements(value: Any, path: str) -> Iterator[Issue]:
    """Empty objects, arrays and strings, and nulls not paired with a ``_name`` array (ele-1).

    The same walk also finds a coded value whose ``system`` is a FHIR ValueSet URL: a value set
    is not a code system (``Coding.system`` names the system the code is defined in).
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key == "resourceType":
                continue
            if (
                key == "system"
                and isinstance(item, str)
                and item.startswith(_VALUE_SET_BASE)
                and "code" in value
            ):
                yield Issue(
                    "error",
                    where,
                    f"{item} is a value set, not a code system: give the URL of the code "
                    "system the code comes from",
                    "structure",
                )
            if item is None:
                yield Issue(
                    "error", where, "null is not allowed: leave the element out", "structure"
                )
            elif isinstance(item, list):
                if not item:
                    yield Issue(
                        "error", where, "empty array: leave the element out (ele-1)", "structure"
                    )
                    continue
                paired = value.get("_" + key) if not key.startswith("_") else value.get(key[1:])
                for i, sub in enumerate(item):
                    if sub is None:
                        if not (
                            isinstance(paired, list) and i < len(paired) and paired[i] is not None
                        ):
                            yield Issue(
                                "error",
                                f"{where}[{i}]",
                                "null in an array is only allowed when the matching '_' array "
                                "holds that item's extensions",
                                "structure",
                            )
                        continue
                    yield from empty_elements_item(sub, f"{where}[{i}]")
            else:
                yield from empty_elements_item(item, where)


def empty_elements_item(item: Any, where: str) -> Iterator[Issue]:
    if isinstance(item, Mapping):
        if not item:
            yield Issue(
                "error", where, "empty object: give it content or leave it out (ele-1)", "structure"
            )
        else:
            yield from empty_elements(item, where)
    elif item == "":
        yield Issue("error", where, "empty string: leave the element out (ele-1)", "structure")
