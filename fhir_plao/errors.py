"""The package's exception tree, in one place.

::

    FhirError
    ├── InputError            input we were given is unusable (file, JSON, case field, FHIR element)
    │   └── MappingError      FHIR content that cannot become a case (names the element path)
    ├── ValidationError       a resource breaks a profile (carries the issues)
    ├── ValidatorUnavailable  HAPI's validator cannot run here (no Java, no checkout to build)
    ├── ExtraMissing          an optional part is not installed (``pip install fhir-plao[plot]``)
    ├── TransportError        no usable response: connect / read timeouts, resets
    │   └── TimeoutError_     the request timed out
    ├── UnexpectedResponse    a response we cannot use: not FHIR R4, a next link off the server,
    │                         HTML or the wrong resource where FHIR JSON was due
    └── ServerError           the server answered with an error status
        ├── NotFound 404, Gone 410, Conflict 409, PreconditionFailed 412,
        ├── Unprocessable 422, RateLimited 429
        └── StaleVersion          an If-Match named an old version: 412 by R4, 409 by HAPI;
                                  both a Conflict and a PreconditionFailed

Any of them may carry ``locations``: what the failure traces back to (the case field, the resource,
the FHIR element). The push pipeline (:mod:`fhir_plao.outbound`) fills them in, so a refusal of
one Observation of 49 names that lab, on every push path; ``str(exc)`` leads with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

__all__ = [
    "Conflict",
    "ExtraMissing",
    "FhirError",
    "Gone",
    "InputError",
    "Location",
    "MappingError",
    "NotFound",
    "OutcomeIssue",
    "PreconditionFailed",
    "RateLimited",
    "ServerError",
    "StaleData",
    "StaleVersion",
    "TimeoutError_",
    "TransportError",
    "UnexpectedResponse",
    "Unprocessable",
    "ValidationError",
    "ValidatorUnavailable",
]


@dataclass(frozen=True)
class Location:
    """What a failure traces back to: a case field (``labs[3].value``), the case item's id, the
    resource (``Observation/plao-...``), the FHIR element, and the message about it."""

    field: str | None = None
    element: str | None = None
    message: str | None = None
    resource: str | None = None
    item: str | None = None

    def as_json(self) -> dict[str, str]:
        out = {
            "field": self.field,
            "item": self.item,
            "resource": self.resource,
            "element": self.element,
            "message": self.message,
        }
        return {k: v for k, v in out.items() if v is not None}

    def where(self) -> str:
        """``labs[3].value (item lab-p, Observation/plao-..., Observation.valueQuantity)``."""
        detail = [
            f"item {self.item}" if self.item and self.field else self.item,
            self.resource,
            self.element,
        ]
        shown = ", ".join(d for d in detail if d)
        if self.field:
            return f"{self.field} ({shown})" if shown else self.field
        return shown

    def __str__(self) -> str:
        where = self.where()
        if self.message:
            return f"{where}: {self.message}" if where else self.message
        return where


class FhirError(Exception):
    """Base of every error this package raises on purpose.

    ``locations`` (empty unless traced): where in the case and the FHIR it came from.
    """

    locations: tuple[Location, ...] = ()
    #: for a case sent in several transactions: how many there were, and how many were applied
    #: before the one that failed (they stay applied; pushing the case again completes it)
    parts: int | None = None
    parts_applied: int | None = None
    #: a write whose fate is unknown (a timeout, a lost answer, a gateway's 502/504) came before
    #: this error: the server may still apply it later
    uncertain: bool = False

    def traced(self, locations: Iterable[Location]) -> Self:
        """This error with ``locations`` attached (returned, to ``raise exc.traced(...)``)."""
        self.locations = tuple(locations)
        return self

    def __str__(self) -> str:
        text = super().__str__()
        if self.parts is not None and self.parts_applied is not None:
            text += f" ({self.parts_applied} of {self.parts} transactions applied before it)"
        places = [loc.where() for loc in self.locations if loc.where()]
        if not places:
            return text
        unique = list(dict.fromkeys(places))
        shown = "; ".join(unique[:3])
        more = f" and {len(unique) - 3} more" if len(unique) > 3 else ""
        return f"{shown}{more}: {text}"


class InputError(FhirError):
    """Input is unusable. ``location`` names the file, field or element at fault."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class MappingError(InputError):
    """FHIR content that cannot be turned into a case."""


class ValidationError(FhirError):
    """A resource or Bundle breaks a profile; ``issues`` lists every finding."""

    def __init__(self, message: str, issues: Sequence[Any] = ()) -> None:
        self.issues = list(issues)
        super().__init__(message)


class ValidatorUnavailable(FhirError):
    """HAPI's validator cannot run here (no Java, no build, or it died): the job could not run."""


class ExtraMissing(FhirError):
    """An optional part of the package is not installed; the message says how to install it."""


class StaleData(FhirError):
    """The server may hold older data than a push confirmed: resources changed after the push
    was confirmed (a write of unknown fate landing late) and pushing again did not settle them.
    ``patient`` is the Patient's ``Type/id`` on the server; ``moved`` the resources that moved."""

    def __init__(self, message: str, *, patient: str | None, moved: Sequence[str]) -> None:
        self.patient = patient
        self.moved = tuple(moved)
        super().__init__(message)


class TransportError(FhirError):
    """The request got no usable response (connect error, reset, timeout, broken body)."""


class TimeoutError_(TransportError):
    """The request timed out (connect or read)."""


class UnexpectedResponse(FhirError):
    """The server answered, but with something this client cannot use.

    A server that is not FHIR R4, a paging link that leaves the server, HTML or another resource
    where FHIR JSON was due. The message says what was expected and what came.
    """


class OutcomeIssue:
    """One ``OperationOutcome.issue``: severity, code, diagnostics, expression."""

    __slots__ = ("code", "diagnostics", "expression", "severity")

    def __init__(
        self,
        severity: str,
        code: str,
        diagnostics: str | None = None,
        expression: Sequence[str] = (),
    ) -> None:
        self.severity = severity
        self.code = code
        self.diagnostics = diagnostics
        self.expression = list(expression)

    def __repr__(self) -> str:
        return (
            f"OutcomeIssue(severity={self.severity!r}, code={self.code!r}, "
            f"diagnostics={self.diagnostics!r}, expression={self.expression!r})"
        )

    def __str__(self) -> str:
        where = f" at {', '.join(self.expression)}" if self.expression else ""
        return f"{self.severity}/{self.code}{where}: {self.diagnostics or ''}".rstrip(": ")


class ServerError(FhirError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``issues`` the OperationOutcome's issues (empty when the body
    was not one), ``hapi_code`` the ``HAPI-NNNN`` code from the diagnostics when present,
    ``outcome`` the raw OperationOutcome dict, ``body_excerpt`` the start of a non-FHIR body.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        issues: Sequence[OutcomeIssue] = (),
        hapi_code: str | None = None,
        outcome: dict[str, Any] | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.issues = list(issues)
        self.hapi_code = hapi_code
        self.outcome = outcome
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        super().__init__(message)


class NotFound(ServerError):
    """404: no such resource or endpoint."""


class Gone(ServerError):
    """410: the resource was deleted (or a paging id expired)."""


class Conflict(ServerError):
    """409: version conflict or duplicate (HAPI answers a stale If-Match with 409)."""


class PreconditionFailed(ServerError):
    """412: a precondition failed, or a conditional operation matched several resources."""


class StaleVersion(Conflict, PreconditionFailed):
    """An ``If-Match`` named a version that is no longer the current one.

    R4 answers 412; HAPI FHIR answers 409 (``HAPI-0989`` update, ``0961`` delete, ``0974``
    patch). Either way the write was not applied: read the resource again and retry. Caught as
    ``PreconditionFailed`` and as ``Conflict`` alike; ``status`` says which the server sent.
    """


class Unprocessable(ServerError):
    """422: the server rejected the content (validation)."""


class RateLimited(ServerError):
    """429: too many requests; ``retry_after`` holds the server's advice in seconds."""
