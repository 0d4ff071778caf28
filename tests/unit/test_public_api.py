"""The package's public face: __all__ names exactly what the root module exports."""

from __future__ import annotations

import fhir_plao


def test_all_names_every_public_export_and_nothing_else() -> None:
    public = {
        name
        for name, value in vars(fhir_plao).items()
        if not name.startswith("_") and not isinstance(value, type(fhir_plao))
    }
    assert set(fhir_plao.__all__) == public
    assert sorted(fhir_plao.__all__) == fhir_plao.__all__


def test_every_error_is_a_fhir_error() -> None:
    for name in fhir_plao.__all__:
        value = getattr(fhir_plao, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, fhir_plao.FhirError), name
