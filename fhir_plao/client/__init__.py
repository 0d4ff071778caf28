"""FHIR R4 REST client: ``FhirClient`` (blocking) and ``AsyncFhirClient`` (async).

Both are thin shells over one sans-IO core, so they behave the same in every respect::

    from fhir_plao.client import FhirClient, SmartBackendAuth, Timeout, RetryPolicy

    with FhirClient("http://127.0.0.1:8080/fhir", timeout=Timeout(connect=5, read=30)) as fhir:
        fhir.capabilities()                      # raises unless the server speaks FHIR 4.0.x
        for obs in fhir.search("Observation", {"patient": "plao-1"}, max_pages=10):
            ...
"""

from fhir_plao.client._case import PushSettings
from fhir_plao.client._core import (
    Limits,
    PendingRequest,
    Prefer,
    PushedEntry,
    PushResult,
    Response,
    RetryPolicy,
    SearchParams,
    ServerId,
    Timeout,
    WriteResult,
)
from fhir_plao.client.aio import AsyncFhirClient, AsyncSearchResults
from fhir_plao.client.auth import Auth, AuthFlow, BasicAuth, BearerAuth, SmartBackendAuth
from fhir_plao.client.errors import (
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
from fhir_plao.client.sync import FhirClient, SearchResults

__all__ = [
    "AsyncFhirClient",
    "AsyncSearchResults",
    "Auth",
    "AuthFlow",
    "BasicAuth",
    "BearerAuth",
    "Conflict",
    "FhirClient",
    "FhirError",
    "Gone",
    "InputError",
    "Limits",
    "NotFound",
    "OutcomeIssue",
    "PendingRequest",
    "PreconditionFailed",
    "Prefer",
    "PushResult",
    "PushSettings",
    "PushedEntry",
    "RateLimited",
    "Response",
    "RetryPolicy",
    "SearchParams",
    "SearchResults",
    "ServerError",
    "ServerId",
    "SmartBackendAuth",
    "StaleVersion",
    "Timeout",
    "TimeoutError_",
    "TransportError",
    "UnexpectedResponse",
    "Unprocessable",
    "WriteResult",
]
