"""The client's exceptions: the package's one tree (:mod:`fhir_plao.errors`), re-exported.

::

    FhirError
    ├── InputError            bad arguments (a resource without resourceType, an id with '/')
    ├── TransportError        no usable response: connect errors, broken connections, cut bodies
    │   └── TimeoutError_     connect or read timeout
    ├── UnexpectedResponse    not FHIR R4, a paging link off the server, HTML instead of JSON
    └── ServerError           an error status: .status, .issues, .hapi_code, .outcome,
        │                     .body_excerpt, .retry_after
        ├── NotFound 404, Gone 410, Conflict 409, PreconditionFailed 412
        └── Unprocessable 422, RateLimited 429
"""

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
    "TimeoutError_",
    "TransportError",
    "UnexpectedResponse",
    "Unprocessable",
]
