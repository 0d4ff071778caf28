"""fhir-plao: a FHIR R4 adapter for pregnancy- and lactation-associated osteoporosis cases."""

from fhir_plao.errors import (
    Conflict,
    FhirError,
    Gone,
    InputError,
    MappingError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    ServerError,
    TimeoutError_,
    TransportError,
    Unprocessable,
    ValidationError,
)

__all__ = [
    "Conflict",
    "FhirError",
    "Gone",
    "InputError",
    "MappingError",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "ServerError",
    "TimeoutError_",
    "TransportError",
    "Unprocessable",
    "ValidationError",
]
