"""Patient <-> :class:`~fhir_plao.case.Patient`."""

from __future__ import annotations

from typing import Any

from fhir_plao.case import Patient
from fhir_plao.mapping._fhir import Reader
from fhir_plao.mapping.bundle import BundleWriter


def patient_to_fhir(w: BundleWriter) -> None:
    p = w.case.patient
    w.add(
        "Patient",
        "patient",
        {
            "identifier": [{"system": p.identifier_system, "value": p.identifier}],
            "gender": p.sex,
            "birthDate": p.birth_date,
        },
        profile="plao-patient",
    )


def patient_from_fhir(r: Reader) -> dict[str, Any]:
    """The case's ``patient`` fields from a Patient (its first full identifier is the case's)."""
    identifiers = r.items("identifier")
    chosen = None
    for i, ident in enumerate(identifiers):
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            chosen = i
            break
    if chosen is None:
        for i, ident in enumerate(identifiers):
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                chosen = i  # a value without its system: kept as given
                break
    if chosen is None:
        rid = r.peek("id")
        if not isinstance(rid, str):
            raise r.error(("identifier",), "the Patient has neither an identifier nor an id")
        # no identifier at all: the case names the patient by her resource id (reported)
        return {
            "identifier": f"Patient/{rid}",
            "sex": r.str_("gender") or "unknown",
            "birth_date": r.str_("birthDate"),
        }
    return {
        "identifier_system": r.str_("identifier", chosen, "system"),
        "identifier": r.str_("identifier", chosen, "value"),
        "sex": r.str_("gender") or "unknown",
        "birth_date": r.str_("birthDate"),
    }


__all__ = ["Patient", "patient_from_fhir", "patient_to_fhir"]
