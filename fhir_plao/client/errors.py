"""The client's exceptions: the one tree drawn in :mod:`fhir_plao.errors`, re-exported."""

from fhir_plao.errors import (
    Conflict,
    FhirError,
    Gone,
    InputError,
    NotFound,
    OutcomeIssue,
    PreconditionFailed,
    RateLimited,
    ServerError,
    StaleVersion,
    TimeoutError_,
    TransportError,
    UnexpectedResponse,
    Unprocessable,
)

__all__ = [
    "Conflict",
    "FhirError",
    "Gone",
    "InputError",
    "NotFound",
    "OutcomeIssue",
    "PreconditionFailed",
    "RateLimited",
    "ServerError",
    "StaleVersion",
    "TimeoutError_",
    "TransportError",
    "UnexpectedResponse",
    "Unprocessable",
]
