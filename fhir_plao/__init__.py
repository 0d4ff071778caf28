"""fhir-plao: a FHIR R4 adapter for pregnancy- and lactation-associated osteoporosis cases.

Import everything from here::

    from fhir_plao import load_case, to_fhir, from_fhir, FhirClient
"""

from fhir_plao.bulk import (
    PullOptions,
    PullSummary,
    PushOptions,
    PushSummary,
    open_cases,
    pull_cases,
    push_cases,
    split_transaction,
)
from fhir_plao.case import Case, case_from_json, case_to_json, load_case
from fhir_plao.client import (
    AsyncFhirClient,
    AsyncSearchResults,
    BasicAuth,
    BearerAuth,
    FhirClient,
    PushResult,
    RetryPolicy,
    SearchResults,
    ServerId,
    SmartBackendAuth,
    Timeout,
    WriteResult,
)
from fhir_plao.coded import CodedObservation, Concept, Value
from fhir_plao.compare import case_differences
from fhir_plao.errors import (
    Conflict,
    FhirError,
    Gone,
    InputError,
    MappingError,
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
    ValidationError,
    ValidatorUnavailable,
)
from fhir_plao.mapping import MappingResult, Unmapped, from_fhir, to_fhir, unmapped_report
from fhir_plao.synth import synth_cases
from fhir_plao.validation import Issue, Validator, ensure_valid, validate

__all__ = [
    "AsyncFhirClient",
    "AsyncSearchResults",
    "BasicAuth",
    "BearerAuth",
    "Case",
    "CodedObservation",
    "Concept",
    "Conflict",
    "FhirClient",
    "FhirError",
    "Gone",
    "InputError",
    "Issue",
    "MappingError",
    "MappingResult",
    "NotFound",
    "OutcomeIssue",
    "PreconditionFailed",
    "PullOptions",
    "PullSummary",
    "PushOptions",
    "PushResult",
    "PushSummary",
    "RateLimited",
    "RetryPolicy",
    "SearchResults",
    "ServerError",
    "ServerId",
    "SmartBackendAuth",
    "StaleVersion",
    "Timeout",
    "TimeoutError_",
    "TransportError",
    "UnexpectedResponse",
    "Unmapped",
    "Unprocessable",
    "ValidationError",
    "Validator",
    "ValidatorUnavailable",
    "Value",
    "WriteResult",
    "case_differences",
    "case_from_json",
    "case_to_json",
    "ensure_valid",
    "from_fhir",
    "load_case",
    "open_cases",
    "pull_cases",
    "push_cases",
    "split_transaction",
    "synth_cases",
    "to_fhir",
    "unmapped_report",
    "validate",
]
