"""The sans-IO core of the FHIR client: every rule, no I/O.

Each operation is a *flow*: a generator that yields what it needs done and receives the outcome.

* it yields a :class:`PendingRequest` and receives the :class:`Response` (or, thrown in at the
  ``yield``, the transport failure the shell met while sending it);
* it yields :class:`Sleep` before a retry and receives nothing useful;
* a lazy search yields :class:`Emit` for each resource or page the caller should see.

The flow's return value is the operation's result. :class:`FlowRunner` steps a flow; the shells
(``sync.py`` over ``httpx.Client``, ``aio.py`` over ``httpx.AsyncClient``) only perform the I/O and
the sleeping it asks for, so request building, response parsing, paging, retries, auth and error
mapping exist once, here (and the auth flows in ``auth.py``).

Rules kept here (the reasons are in the issue tracker and ``docs``):

* Bodies are read and written with :mod:`fhir_plao.jsonio`: decimals stay exact (1.50 is 1.50).
* Retries only for idempotent requests (GET, HEAD, PUT, DELETE, conditional create, and a
  transaction or batch whose entries are all of those): on connect errors, timeouts and broken
  connections, and on 429, 502, 503, 504. ``Retry-After`` (seconds or HTTP-date) is honoured;
  otherwise exponential backoff with jitter. A POST that may have reached the server is never
  sent twice.
* ``next`` links are followed exactly as the server wrote them (relative ones resolved against the
  base URL). A link is "on the server" when it has the base URL's origin (scheme, host, port) and
  its path is the base path or below it (segment by segment, never a substring test). A link off
  the server is refused with :class:`UnexpectedResponse`; with ``follow_foreign_links=True`` it is
  followed *without* credentials or the caller's extra headers.
* Caps on pages or resources stop a search early and say so (``SearchState.truncated`` and a
  warning); a server that stops sending pages before ``total`` is reached is reported the same way.
* URLs are logged and put in error messages sanitised: search parameter values (PHI) redacted.
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
import logging
import random
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, quote, urljoin, urlsplit, urlunsplit

import httpx  # exception classes and Response only: the core never sends anything

from fhir_plao import jsonio
from fhir_plao.errors import (
    Conflict,
    FhirError,
    Gone,
    InputError,
    Location,
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

log = logging.getLogger(__name__)

T = TypeVar("T")

FHIR_JSON = "application/fhir+json"
USER_AGENT = "fhir-plao"

# --------------------------------------------------------------------------- requests & responses


@dataclass(frozen=True, repr=False, eq=False)
class PendingRequest:
    """A request the core wants sent. The shells turn it into an ``httpx.Request`` as it is.

    ``idempotent`` says whether sending it twice is harmless (the retry rule reads it);
    ``authenticate`` is False for requests that must not carry credentials (token requests,
    paging links off the server). ``label`` names the operation in messages.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    idempotent: bool = False
    authenticate: bool = True
    label: str = ""
    #: a 2xx answer must carry a FHIR resource: an HTML page or a body cut short is retried
    #: like a broken connection (when the request is idempotent)
    expects_resource: bool = False

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None

    def with_header(self, name: str, value: str) -> PendingRequest:
        """A copy with header ``name`` set to ``value`` (replacing any spelling of it)."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        headers[name] = value
        return PendingRequest(
            self.method,
            self.url,
            headers,
            self.body,
            idempotent=self.idempotent,
            authenticate=self.authenticate,
            label=self.label,
        )

    def __repr__(self) -> str:  # never the body, never the Authorization header
        names = ", ".join(sorted(self.headers))
        return (
            f"PendingRequest({self.method} {sanitize_url(self.url)}, headers=[{names}], "
            f"body={len(self.body) if self.body is not None else 0} bytes, "
            f"idempotent={self.idempotent})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class Response:
    """A response as the core sees it: status, headers (names lower-cased), the decoded body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    reason: str = ""
    #: an earlier attempt of the same request may have been applied (its answer was lost, cut
    #: or timed out): a write that finds its resource at version 1 was created by that attempt
    after_unknown: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> Response:
        """Copy what the core needs from a fully read ``httpx.Response``."""
        return cls(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            content=response.content,
            url=str(response.request.url),
            reason=response.reason_phrase,
        )

    def __repr__(self) -> str:
        return f"Response({self.status} from {sanitize_url(self.url)}, {len(self.content)} bytes)"


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before going on (a retry delay)."""

    seconds: float


@dataclass(frozen=True)
class Emit:
    """Hand ``item`` (a resource or a page) to whoever iterates the search."""

    item: Any


Prefer: TypeAlias = Literal["representation", "minimal", "OperationOutcome"]
"""What a write asks the server to return (``Prefer: return=...``)."""

Action: TypeAlias = PendingRequest | Sleep | Emit
Flow: TypeAlias = Generator[Action, Response, T]
"""An operation: yields actions, receives the response to each request, returns its result."""


class FlowRunner(Generic[T]):
    """Steps a flow for a shell: ``next_action()``, perform it, ``reply()`` or ``fail()``, repeat.

    ``next_action()`` returns None when the flow is finished; its value is then in ``result``.
    Exceptions the flow raises pass straight out to the shell's caller.
    """

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._reply: Response | None = None
        self._error: BaseException | None = None
        self._sent: PendingRequest | None = None
        self.result: T

    def next_action(self) -> Action | None:
        reply, error = self._reply, self._error
        self._reply = self._error = None
        try:
            if error is not None:
                action = self._flow.throw(error)
            else:
                # The reply to a Sleep or an Emit carries nothing; flows ignore it.
                action = self._flow.send(cast(Response, reply))
        except StopIteration as stop:
            self.result = stop.value
            return None
        self._sent = action if isinstance(action, PendingRequest) else None
        return action

    def reply(self, response: Response | None) -> None:
        self._reply = response

    def fail(self, exc: BaseException) -> None:
        """Report that performing the last action raised ``exc`` (it is thrown into the flow)."""
        if isinstance(exc, httpx.HTTPError):
            self._error = TransportFailure.classify(exc, self._sent)
        else:
            self._error = exc

    def close(self) -> None:
        self._flow.close()


class TransportFailure(Exception):
    """Internal: a request got no response. Thrown into a flow; never reaches the caller."""

    def __init__(
        self,
        kind: Literal["not-sent", "timeout", "broken"],
        cause: BaseException,
        request: PendingRequest | None = None,
    ) -> None:
        self.kind = kind
        self.cause = cause
        self.request = request  # the request that failed (a token request, say)
        super().__init__(kind)

    @property
    def may_have_arrived(self) -> bool:
        """Whether the server may have received (and applied) the request."""
        return self.kind != "not-sent"

    @classmethod
    def classify(cls, exc: BaseException, request: PendingRequest | None) -> TransportFailure:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return cls("not-sent", exc, request)
        if isinstance(exc, httpx.TimeoutException):
            return cls("timeout", exc, request)
        return cls("broken", exc, request)

    def describe(self) -> str:
        what = {
            "not-sent": "could not connect",
            "timeout": "timed out waiting for the server",
            "broken": "the connection broke",
        }[self.kind]
        name = type(self.cause).__name__
        detail = str(self.cause).strip()
        return f"{what} ({name}: {detail})" if detail else f"{what} ({name})"

    def to_error(self, request: PendingRequest, attempts: int, policy: RetryPolicy) -> FhirError:
        failed = self.request or request
        message = f"{request.label or request.method}: "
        if failed.url != request.url:
            message += f"{failed.label or 'a preliminary request'}: "
        message += f"{failed.method} {sanitize_url(failed.url)}: {self.describe()}"
        if not request.idempotent:
            message += (
                f"; not retried: a {request.method} that is not idempotent may already have "
                "been applied"
                if self.kind != "not-sent"
                else f"; not retried: {request.method} is not idempotent"
            )
        elif attempts > 1:
            message += f"; gave up after {attempts} attempts"
        elif policy.attempts == 1:
            message += "; retries are off"
        timeout = isinstance(self.cause, httpx.TimeoutException)
        return (TimeoutError_ if timeout else TransportError)(message)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection and for each read (None: wait forever)."""

    connect: float | None = 10.0
    read: float | None = 60.0

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        if isinstance(value, Timeout):
            return value
        return cls(connect=value, read=value)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending an idempotent request again.

    ``attempts`` counts every send, the first included (1 switches retries off). The n-th retry
    waits ``min(max_delay, base_delay * 2**(n-1))``, shortened by up to ``jitter`` (a fraction) at
    random, unless the server sent ``Retry-After``: that wait is kept exactly, and a wait longer
    than ``max_retry_after`` is not waited for (the error is raised with ``retry_after`` set).
    Besides ``statuses``, a 409 to an idempotent write without ``If-Match`` is retried: it met a
    concurrent write of the same resources (see :func:`_collided`).
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InputError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise InputError(f"RetryPolicy.jitter must be between 0 and 1, not {self.jitter}")
        if min(self.base_delay, self.max_delay, self.max_retry_after) < 0:
            raise InputError("RetryPolicy delays must not be negative")

    @classmethod
    def off(cls) -> RetryPolicy:
        return cls(attempts=1)

    def backoff(self, retry: int, rng: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return float(delay * (1.0 - self.jitter * rng()))


#: a gateway's answers after which the request may still reach the server and be applied
_MAY_HAVE_APPLIED = frozenset({502, 504})


@dataclass
class _Fate:
    """Internal: whether an attempt of the request being sent may have been applied unseen."""

    unknown: bool = False


def _collided(response: Response, request: PendingRequest) -> bool:
    """A 409 to an idempotent write without ``If-Match``: it met a concurrent write of the same
    resources (HAPI: "client-assigned ID constraint failure ... at the same time", or a version
    constraint failure) -- often an earlier attempt of this very request still being applied.
    Sending it again is safe and, once the other write is done, succeeds."""
    return response.status == 409 and request.idempotent and not request.header("If-Match")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# --------------------------------------------------------------------------- URLs


_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_HAPI_CODE_RE = re.compile(r"\bHAPI-(\d{4})\b")
# Query parameters whose values carry no patient data: kept in logs and messages.
_PLAIN_PARAMS = frozenset(
    {
        "_count",
        "_getpagesoffset",
        "_summary",
        "_bundletype",
        "_include",
        "_revinclude",
        "_elements",
        "_sort",
        "_total",
        "_format",
        "_pretty",
        "_offset",
    }
)


def normalise_base_url(url: str) -> str:
    """The base URL without a trailing slash; refuses anything but an absolute http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"the FHIR base URL must be an absolute http(s) URL, not {url!r}")
    if parts.query or parts.fragment:
        raise InputError(f"the FHIR base URL must not carry a query or fragment: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def resolve_link(link: str, base_url: str) -> str:
    """A link as the server wrote it, made absolute against the base URL if it is relative."""
    return urljoin(base_url + "/", link.strip())


def is_on_server(url: str, base_url: str) -> bool:
    """Same origin as the base URL, and a path equal to the base path or below it."""
    if _origin(url) != _origin(base_url):
        return False
    base_path = urlsplit(base_url).path.rstrip("/")
    path = urlsplit(url).path.rstrip("/")
    return not base_path or path == base_path or path.startswith(base_path + "/")


def sanitize_url(url: str) -> str:
    """The URL for logs and messages: no user info, search parameter values redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}={value if name in _PLAIN_PARAMS else '***'}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


SearchParams: TypeAlias = (
    Mapping[str, str | int | Decimal | Sequence[str | int | Decimal]]
    | Sequence[tuple[str, str | int | Decimal]]
)
"""Search parameters: a mapping (a list value repeats the name, as ``_include`` often must) or
(name, value) pairs in order. A ready query string is accepted too."""


def encode_params(params: SearchParams | str | None) -> str:
    """A query string from a mapping (a list value repeats the name) or (name, value) pairs."""
    if params is None:
        return ""
    if isinstance(params, str):
        return params.lstrip("?")
    pairs: list[tuple[str, str]] = []
    items: Iterable[tuple[str, Any]] = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, str(v)) for v in values)
    return "&".join(f"{quote(n, safe=':_-.')}={quote(v, safe=':,/-._~')}" for n, v in pairs)


def check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _TYPE_RE.fullmatch(resource_type):
        raise InputError(f"{resource_type!r} is not a FHIR resource type name")
    return resource_type


def check_id(resource_id: str, what: str = "id") -> str:
    if not isinstance(resource_id, str) or not _ID_RE.fullmatch(resource_id):
        raise InputError(
            f"{resource_id!r} is not a FHIR {what} (letters, digits, '-' and '.', 1-64 chars)"
        )
    return resource_id


# --------------------------------------------------------------------------- reading responses


@dataclass(frozen=True)
class ServerId:
    """Where the server keeps a resource: type, id and (when known) version."""

    type: str
    id: str
    version: str | None = None

    def __str__(self) -> str:
        ref = f"{self.type}/{self.id}"
        return f"{ref}/_history/{self.version}" if self.version else ref


def parse_location(location: str | None) -> ServerId | None:
    """``[base]/Type/id/_history/n`` (absolute or relative) or ``Type/id`` as a ServerId."""
    if not location:
        return None
    segments = [s for s in urlsplit(location.strip()).path.split("/") if s]
    if "_history" in segments:
        at = len(segments) - 1 - segments[::-1].index("_history")
        if at >= 2 and at + 1 < len(segments) and _TYPE_RE.fullmatch(segments[at - 2]):
            return ServerId(segments[at - 2], segments[at - 1], segments[at + 1])
        return None
    if len(segments) >= 2 and _TYPE_RE.fullmatch(segments[-2]):
        return ServerId(segments[-2], segments[-1])
    return None


def parse_etag(etag: str | None) -> str | None:
    """The version in an ETag: ``W/"3"`` -> ``3`` (HAPI's transaction entries give a bare ``3``)."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def if_match_value(version: str) -> str:
    """``3`` -> ``W/"3"``; a value already written as an ETag is kept."""
    version = version.strip()
    if version.startswith(('W/"', '"')):
        return version
    return f'W/"{version}"'


# credentials a server's error page may echo back (the request's headers, a redirect URL)
_SECRET_PATTERNS = (
    (re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*[:=]\s*).+$"), r"\1[redacted]"),
    (re.compile(r"(?im)^(\s*(?:set-)?cookie\s*[:=]\s*).+$"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic|negotiate)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)([?&;\s\"']"
            r"(?:access_token|refresh_token|id_token|token|code|password|passwd|secret|"
            r"client_secret|client_assertion|api_?key|key|sig|signature)"
            r"[\"']?\s*[=:]\s*[\"']?)[^&\s\"'<>,;]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@"), r"\1[redacted]@"),
)


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without credentials: the values of Authorization and Cookie headers, bearer and
    basic tokens, token-like parameters and fields, user info in URLs, and each of ``secrets``
    (the values this request carried) wherever it appears."""
    for secret in secrets:
        if len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _request_secrets(request: PendingRequest | None) -> tuple[str, ...]:
    """The credentials a request carried (its Authorization header, whole and token alone)."""
    value = request.header("Authorization") if request is not None else None
    if not value:
        return ()
    return (value, value.split(" ", 1)[-1])


def _scrubbed_outcome(outcome: dict[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    def clean(node: Any) -> Any:
        if isinstance(node, str):
            return scrub(node, secrets)
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    cleaned: dict[str, Any] = clean(outcome)
    return cleaned


def _excerpt(content: bytes, limit: int = 300, secrets: Sequence[str] = ()) -> str:
    """The start of a body that is not FHIR, for a message: scrubbed of credentials (before its
    lines are joined, so header lines are still told apart), HTML reduced to its text."""
    text = scrub(content[:4000].decode("utf-8", errors="replace"), secrets)
    if _looks_like_html(content):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        text = re.sub(r"<(script|style|head)\b.*?</\1\s*>", " ", text, flags=re.I | re.S)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        if title:
            text = f"{html.unescape(title.group(1)).strip()} | {text}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_html(content: bytes) -> bool:
    start = content[:200].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        start.startswith(b"<") and b"<html" in content[:2000].lower()
    )


def _issues(outcome: Mapping[str, Any]) -> list[OutcomeIssue]:
    issues = []
    for item in outcome.get("issue") or []:
        if not isinstance(item, dict):
            continue
        details = item.get("details")
        text = item.get("diagnostics")
        if not text and isinstance(details, dict):
            text = details.get("text")
        where = item.get("expression") or item.get("location") or []
        issues.append(
            OutcomeIssue(
                str(item.get("severity", "error")),
                str(item.get("code", "unknown")),
                _cut(str(text)) if text else None,
                [str(w) for w in where] if isinstance(where, list) else [],
            )
        )
    return issues


#: a server's diagnostics longer than this are cut (some echo the whole request)
MAX_DIAGNOSTICS = 500


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DIAGNOSTICS else text[: MAX_DIAGNOSTICS - 1] + "…"


def _request_head(request: PendingRequest) -> str:
    head = f"{request.method} {sanitize_url(request.url)}"
    return f"{request.label}: {head}" if request.label else head


def error_for(
    response: Response,
    request: PendingRequest,
    *,
    attempts: int = 1,
    note: str | None = None,
    now: float | None = None,
    secrets: Sequence[str] = (),
) -> ServerError:
    """The exception for an error status: class by status, the OperationOutcome attached."""
    cls: type[ServerError] = {
        404: NotFound,
        409: Conflict,
        410: Gone,
        412: PreconditionFailed,
        422: Unprocessable,
        429: RateLimited,
    }.get(response.status, ServerError)
    if response.status in (409, 412) and request.header("If-Match"):
        cls = StaleVersion  # R4 says 412; HAPI answers a stale If-Match with 409
    outcome: dict[str, Any] | None = None
    issues: list[OutcomeIssue] = []
    excerpt: str | None = None
    content = response.content
    secrets = (*secrets, *_request_secrets(request))
    if not content.strip():
        detail = "no body"
    else:
        try:
            data = jsonio.loads(content)
        except jsonio.JsonError as exc:
            excerpt = _excerpt(content, secrets=secrets)
            if _looks_like_html(content):
                detail = f"an HTML page instead of an OperationOutcome: {excerpt}"
            else:
                detail = f"a body that is not valid JSON ({exc}; cut off?): {excerpt}"
        else:
            if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
                outcome = _scrubbed_outcome(data, secrets)
                issues = _issues(outcome)
                serious = [i for i in issues if i.severity in ("fatal", "error")] or issues
                detail = str(serious[0]) if serious else "an OperationOutcome without issues"
                if len(issues) > 1:
                    detail += f" (and {len(issues) - 1} more issue(s))"
            elif isinstance(data, dict) and isinstance(data.get("error"), str):  # OAuth2 errors
                detail = scrub(
                    data["error"]
                    + (f": {data['error_description']}" if data.get("error_description") else ""),
                    secrets,
                )
            else:
                excerpt = _excerpt(content, secrets=secrets)
                kind = data.get("resourceType") if isinstance(data, dict) else None
                detail = f"a {kind or 'JSON body'} instead of an OperationOutcome: {excerpt}"
    hapi_code = None
    for issue in issues:
        match = _HAPI_CODE_RE.search(issue.diagnostics or "")
        if match:
            hapi_code = match.group(0)
            break
    message = f"{_request_head(request)} -> {response.status} {response.reason}".rstrip()
    message += f": {detail}"
    if attempts > 1:
        message += f" (gave up after {attempts} attempts)"
    if note:
        message += f"; {note}"
    return cls(
        response.status,
        message,
        method=request.method,
        url=sanitize_url(request.url),
        issues=issues,
        hapi_code=hapi_code,
        outcome=outcome,
        body_excerpt=excerpt,
        retry_after=parse_retry_after(
            response.header("retry-after"), time.time() if now is None else now
        ),
    )


#: a key set on a transaction-response that followed an attempt of unknown outcome (read by
#: :func:`push_result`; never sent anywhere)
AFTER_UNKNOWN = "_fhir_plao_after_unknown_attempt"


def _check_complete(response: Response) -> None:
    """A 2xx answer that should hold a resource but is an HTML page or JSON cut short is a
    transport failure (a gateway's page; a body cut with a matching Content-Length)."""
    content = response.content.strip()
    if content[:1] in (b"{", b"[") and content[-1:] in (b"}", b"]"):
        return
    what = "an HTML page" if _looks_like_html(content) else "a body cut short"
    raise TransportFailure(
        "broken", ValueError(f"{response.status} with {what} instead of FHIR JSON")
    )


def parse_json_body(response: Response, request: PendingRequest) -> Any | None:
    """The body of a success response as JSON (decimals exact); None when there is none."""
    content = response.content
    if not content.strip():
        return None
    try:
        return jsonio.loads(content)
    except jsonio.JsonError as exc:
        head = f"{_request_head(request)} -> {response.status}"
        if _looks_like_html(content):
            raise UnexpectedResponse(
                f"{head}: an HTML page instead of FHIR JSON: "
                f"{_excerpt(content, secrets=_request_secrets(request))}"
            ) from None
        raise TransportError(
            f"{head}: the body is not valid JSON ({exc}); it was probably cut off in transit. "
            f"It starts: {_excerpt(content, secrets=_request_secrets(request))}"
        ) from None


def expect_resource(
    data: Any, response: Response, request: PendingRequest, resource_type: str | None = None
) -> dict[str, Any]:
    """``data`` if it is a resource (of ``resource_type`` when given), else a clear error."""
    head = f"{_request_head(request)} -> {response.status}"
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        got = "no body" if data is None else f"a JSON {type(data).__name__} without resourceType"
        raise UnexpectedResponse(f"{head}: expected a FHIR resource, got {got}")
    if resource_type is not None and data["resourceType"] != resource_type:
        raise UnexpectedResponse(
            f"{head}: expected a {resource_type}, got a {data['resourceType']}"
        )
    return data


_RELEASES = {
    "1.0": "DSTU2",
    "3.0": "STU3",
    "4.0": "R4",
    "4.3": "R4B",
    "5.0": "R5",
    "6.0": "R6",
}


def check_fhir_version(statement: Mapping[str, Any], base_url: str) -> None:
    """Accept a CapabilityStatement of FHIR 4.0.x; otherwise say what the server speaks."""
    version = statement.get("fhirVersion")
    if isinstance(version, str) and re.fullmatch(r"4\.0(\.\d+)?", version.strip()):
        return
    if not isinstance(version, str) or not version.strip():
        raise UnexpectedResponse(
            f"the server at {base_url} does not say which FHIR version it speaks "
            "(CapabilityStatement.fhirVersion is missing); this client needs FHIR R4 (4.0.x)"
        )
    release = _RELEASES.get(
        ".".join(version.strip().split(".")[:2]), "not a release this client knows"
    )
    raise UnexpectedResponse(
        f"the server at {base_url} speaks FHIR {version} ({release}), not R4 (4.0.x); "
        "this client needs a FHIR R4 server"
    )


def everything_advertised(statement: Mapping[str, Any]) -> bool | None:
    """Does the CapabilityStatement list ``Patient/$everything``? None when it does not say."""
    listed = False
    for rest in statement.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        for op in rest.get("operation") or []:
            if isinstance(op, dict) and _is_everything(op):
                return True
        for res in rest.get("resource") or []:
            if isinstance(res, dict) and res.get("type") == "Patient" and "operation" in res:
                listed = True
                if any(isinstance(op, dict) and _is_everything(op) for op in res["operation"]):
                    return True
    return False if listed else None


def patient_search_params(statement: Mapping[str, Any], resource_type: str) -> tuple[str, ...]:
    """The parameters by which to search ``resource_type`` for one patient's resources.

    From the CapabilityStatement when it lists the type's search parameters: ``subject`` and/or
    ``patient`` (in that order), or none when the server lists the type without them or does
    not list the type among the resources it serves. Without such a listing, both are tried.
    """
    listed_types: dict[str, set[str] | None] = {}
    for rest in statement.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        for res in rest.get("resource") or []:
            if isinstance(res, dict) and isinstance(res.get("type"), str):
                params = res.get("searchParam")
                listed_types[res["type"]] = (
                    {str(p.get("name")) for p in params if isinstance(p, dict)}
                    if isinstance(params, list)
                    else None
                )
    if not listed_types:
        return ("subject", "patient")
    if resource_type not in listed_types:
        return ()
    served = listed_types[resource_type]
    if served is None:
        return ("subject", "patient")
    return tuple(n for n in ("subject", "patient") if n in served)


def _is_everything(op: Mapping[str, Any]) -> bool:
    name = str(op.get("name", "")).lstrip("$")
    return name == "everything" or str(op.get("definition", "")).endswith("Patient-everything")


def is_idempotent_bundle(bundle: Mapping[str, Any]) -> bool:
    """True when every entry is GET/HEAD/PUT/DELETE or a conditional create (POST + ifNoneExist)."""
    for entry in bundle.get("entry") or []:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            return False
        method = str(request.get("method", "")).upper()
        if method in ("GET", "HEAD", "PUT", "DELETE"):
            continue
        if method == "POST" and request.get("ifNoneExist"):
            continue
        return False
    return True


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class WriteResult:
    """What a create or update returned.

    ``type``, ``id`` and ``version`` come from ``Location`` (absolute or relative), else from
    the returned resource and ``ETag``. ``resource`` is the body when the server sent it
    (``Prefer: return=representation``), ``outcome`` the OperationOutcome when it sent one.
    """

    status: int
    type: str | None
    id: str | None
    version: str | None
    location: str | None
    resource: dict[str, Any] | None
    outcome: dict[str, Any] | None

    @property
    def created(self) -> bool:
        """True for 201 Created (a conditional create that matched answers 200)."""
        return self.status == 201


@dataclass(frozen=True)
class PushedEntry:
    """One entry of a pushed transaction.

    ``local`` is the entry's ``fullUrl`` (else ``Type/id``); ``local_ref`` is ``Type/id`` from the
    entry's request or resource; ``server`` is where the server keeps it, with its version (None
    when the response said nothing usable); ``status`` is the entry's ``response.status`` ("201
    Created"). From a case: ``field`` is the case field (``labs[3]``), ``item`` the case item's
    id; ``resource`` names what was sent (``Observation/plao-...``, or with server-assigned ids
    ``Observation?identifier=…/lab-x``). ``problem`` says why a batch entry failed.
    """

    local: str
    local_ref: str | None
    server: ServerId | None
    status: str
    field: str | None = None
    item: str | None = None
    resource: str | None = None
    problem: Location | None = None

    @property
    def created(self) -> bool:
        return self.status.strip().startswith("201")

    @property
    def failed(self) -> bool:
        """A batch entry the server refused (a transaction is all or nothing)."""
        return not self.status.strip().startswith("2")

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON result: what it came from, where it went, created or updated."""
        out: dict[str, Any] = {
            "field": self.field,
            "item": self.item,
            "resource": self.resource or self.local_ref or self.local,
            "server_id": f"{self.server.type}/{self.server.id}" if self.server else None,
            "version": self.server.version if self.server else None,
            "status": "failed" if self.failed else "created" if self.created else "updated",
            "http_status": self.status,
        }
        if self.problem is not None:
            out["problem"] = self.problem.as_json()
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class PushResult:
    """The outcome of a push: one :class:`PushedEntry` per Bundle entry, in order, over the
    ``parts`` transactions sent; ``response`` is the last transaction-response."""

    entries: tuple[PushedEntry, ...]
    response: dict[str, Any]
    parts: int = 1
    #: resources of this patient that an earlier push wrote and the case no longer has, still
    #: on the server (``Type/id``); None when not looked for
    left_behind: tuple[str, ...] | None = None
    #: such resources deleted by ``prune``
    pruned: tuple[str, ...] = ()
    #: an answer came only after an attempt of unknown fate (a timeout, a lost answer): that
    #: attempt may still land late and overwrite what was confirmed (see ``verify``)
    uncertain: bool = False
    #: how often the case was pushed again because its resources moved after it was confirmed
    repushed: int = 0

    @property
    def ids(self) -> dict[str, ServerId]:
        """Each local entry (fullUrl, else Type/id) -> its server type, id and version."""
        return {e.local: e.server for e in self.entries if e.server is not None}

    @property
    def unresolved(self) -> tuple[str, ...]:
        """Local entries whose server id the response did not reveal."""
        return tuple(e.local for e in self.entries if e.server is None)

    @property
    def created(self) -> int:
        return sum(1 for e in self.entries if e.created)

    @property
    def failed(self) -> tuple[PushedEntry, ...]:
        return tuple(e for e in self.entries if e.failed)

    @property
    def updated(self) -> int:
        return len(self.entries) - self.created - len(self.failed)


def _local_ref(entry: Mapping[str, Any]) -> str | None:
    request = entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    if isinstance(url, str):
        path = url.split("?", 1)[0].strip("/").split("/")
        if len(path) == 2 and _TYPE_RE.fullmatch(path[0]):
            return f"{path[0]}/{path[1]}"
    resource = entry.get("resource")
    if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def push_result(sent: Mapping[str, Any], received: dict[str, Any]) -> PushResult:
    """Pair each sent entry with the server's answer (the response keeps the request order)."""
    sent_entries = [e for e in sent.get("entry") or [] if isinstance(e, dict)]
    got = [e for e in received.get("entry") or [] if isinstance(e, dict)]
    after_unknown = bool(received.get(AFTER_UNKNOWN))
    received = {k: v for k, v in received.items() if k != AFTER_UNKNOWN}
    if len(got) != len(sent_entries):
        raise UnexpectedResponse(
            f"the transaction response has {len(got)} entries for the {len(sent_entries)} sent"
        )
    entries = []
    for index, (mine, theirs) in enumerate(zip(sent_entries, got, strict=True)):
        local_ref = _local_ref(mine)
        full_url = mine.get("fullUrl")
        local = full_url if isinstance(full_url, str) and full_url else local_ref
        answer = theirs.get("response")
        if not isinstance(answer, dict):
            answer = {}
        location = answer.get("location")
        server = parse_location(location if isinstance(location, str) else None)
        if server is None:
            method = str((mine.get("request") or {}).get("method", "")).upper()
            resource = theirs.get("resource")
            if isinstance(resource, dict) and resource.get("id"):
                meta = resource.get("meta") or {}
                server = ServerId(
                    str(resource.get("resourceType")), str(resource["id"]), meta.get("versionId")
                )
            elif method == "PUT" and local_ref and "?" not in str(mine["request"].get("url")):
                rtype, rid = local_ref.split("/", 1)  # a PUT to Type/id lands at that id
                server = ServerId(rtype, rid, parse_etag(answer.get("etag")))
        key = local or f"entry[{index}]"
        if server is None and str(answer.get("status", "")).strip().startswith("2"):
            log.warning("push: the server did not say where %s went (no usable location)", key)
        status = str(answer.get("status", ""))
        if after_unknown and status.startswith("200") and server and server.version == "1":
            # the first version is ours: an earlier attempt, whose answer never came, made it
            status = "201 Created (by an earlier attempt whose answer was lost)"
        entries.append(PushedEntry(key, local_ref, server, status))
    return PushResult(tuple(entries), received, uncertain=after_unknown)


def dedupe_resources(resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resources in first-seen order, one per type/id (the same one can come via several paths)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for resource in resources:
        rid = resource.get("id")
        if isinstance(rid, str):
            key = (str(resource.get("resourceType")), rid)
            if key in seen:
                continue
            seen.add(key)
        out.append(resource)
    return out


# Searches used to pull a patient when $everything is not there: type -> _include values.
# Every type to_fhir writes must be here (a test round-trips the example case this way).
PULL_SEARCHES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Observation", ()),
    ("Condition", ()),
    ("Procedure", ()),
    ("MedicationStatement", ("MedicationStatement:medication",)),
    ("MedicationRequest", ("MedicationRequest:medication",)),
    ("DiagnosticReport", ("DiagnosticReport:result",)),
    ("ImagingStudy", ()),
    ("CarePlan", ()),
    ("ClinicalImpression", ()),
    ("DeviceUseStatement", ("DeviceUseStatement:device",)),
    ("Encounter", ()),
)
_EVERYTHING_MISSING = frozenset({400, 404, 405, 501})


# --------------------------------------------------------------------------- searching


@dataclass(frozen=True)
class Limits:
    """Caller-set caps on a search: pages fetched, resources handed out (None: no cap)."""

    max_pages: int | None = None
    max_resources: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_pages", "max_resources"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a positive integer or None, not {value!r}")


@dataclass
class SearchState:
    """How far a search got. ``truncated`` is True when resources were left unread: a cap
    stopped it, or the server stopped sending pages before its ``total``; ``note`` says which."""

    total: int | None = None
    pages: int = 0
    resources: int = 0
    matches: int = 0
    truncated: bool = False
    note: str | None = None

    def stop(self, note: str, request: PendingRequest) -> None:
        self.truncated = True
        self.note = note
        log.warning("%s %s: %s", request.method, sanitize_url(request.url), note)


Mode: TypeAlias = Literal["resources", "pages"]


class PagedQuery:
    """A search (or history, or $everything) not yet run. Each ``start`` runs it anew."""

    def __init__(self, protocol: FhirProtocol, request: PendingRequest, limits: Limits) -> None:
        self._protocol = protocol
        self.request = request
        self.limits = limits
        self.state = SearchState()

    def start(self, mode: Mode) -> Flow[None]:
        self.state = SearchState()
        return self._protocol.paged(self.request, self.limits, self.state, mode)


# --------------------------------------------------------------------------- the protocol


class AuthLike(Protocol):
    def flow(self, request: PendingRequest) -> Generator[PendingRequest, Response, Response]: ...


class FhirProtocol:
    """Every FHIR REST rule of the client, as flows. Holds configuration and cached capabilities."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthLike | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        follow_foreign_links: bool = False,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.auth = auth
        self.retry = retry if retry is not None else RetryPolicy()
        self.extra_headers = dict(headers or {})
        self.follow_foreign_links = follow_foreign_links
        self.clock = clock
        self.rng = rng
        self.capability_statement: dict[str, Any] | None = None

    # ----------------------------------------------------------------- building requests

    def url(self, path: str, query: str = "") -> str:
        url = f"{self.base_url}/{path}" if path else self.base_url
        return f"{url}?{query}" if query else url

    def _headers(self, *, body: bool, on_server: bool = True) -> dict[str, str]:
        headers = dict(self.extra_headers) if on_server else {}
        headers.update({"Accept": FHIR_JSON, "Accept-Encoding": "gzip", "User-Agent": USER_AGENT})
        if body:
            headers["Content-Type"] = FHIR_JSON
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        label: str = "",
    ) -> PendingRequest:
        """A request to ``[base]/path?query`` with the FHIR headers; ``body`` written by jsonio."""
        all_headers = self._headers(body=body is not None)
        all_headers.update(headers or {})
        return PendingRequest(
            method,
            self.url(path, query),
            all_headers,
            jsonio.dumps_bytes(body) if body is not None else None,
            idempotent=method in ("GET", "HEAD", "PUT", "DELETE")
            if idempotent is None
            else idempotent,
            label=label,
        )

    def next_page_request(self, link: str, previous: PendingRequest) -> PendingRequest:
        """A GET of a ``next`` link exactly as given; off the server: refused or sent bare."""
        url = resolve_link(link, self.base_url)
        on_server = is_on_server(url, self.base_url)
        if not on_server:
            if not self.follow_foreign_links:
                raise UnexpectedResponse(
                    f"{_request_head(previous)}: the server's next link leads off the server "
                    f"({sanitize_url(url)} is not under {self.base_url}); not following it. "
                    "If the server's own base URL setting is wrong, fix it; to follow such "
                    "links without credentials pass follow_foreign_links=True"
                )
            log.warning(
                "following a next link off the server without credentials: %s", sanitize_url(url)
            )
        headers = self._headers(body=False, on_server=on_server)
        headers["Cache-Control"] = "no-cache"
        return PendingRequest(
            "GET",
            url,
            headers,
            None,
            idempotent=True,
            authenticate=on_server,
            label=previous.label,
        )

    # ----------------------------------------------------------------- sending

    def exchange(self, request: PendingRequest) -> Flow[Response]:
        """Send with auth and retries; returns a 2xx response, raises for anything else.

        A write whose earlier attempt may have been applied (and may yet be, late) is marked:
        the response by ``after_unknown``, the error by ``uncertain``."""
        fate = _Fate()
        try:
            return (yield from self._exchange(request, fate))
        except FhirError as exc:
            exc.uncertain = fate.unknown and request.method not in ("GET", "HEAD")
            raise

    def _exchange(self, request: PendingRequest, fate: _Fate) -> Flow[Response]:
        policy = self.retry
        attempt = 1
        unknown = False  # whether an earlier attempt may have been applied
        while True:
            fate.unknown = unknown
            log.debug("%s %s (attempt %d)", request.method, sanitize_url(request.url), attempt)
            try:
                response = yield from self._authorised(request)
                if 200 <= response.status < 300 and request.expects_resource:
                    _check_complete(response)
            except TransportFailure as failure:
                unknown = fate.unknown = unknown or failure.may_have_arrived
                if request.idempotent and attempt < policy.attempts:
                    delay = policy.backoff(attempt, self.rng)
                    log.warning(
                        "%s %s: %s; retry %d of %d in %.2f s",
                        request.method,
                        sanitize_url(request.url),
                        failure.describe(),
                        attempt,
                        policy.attempts - 1,
                        delay,
                    )
                    yield Sleep(delay)
                    attempt += 1
                    continue
                raise failure.to_error(request, attempt, policy) from failure.cause
            log.debug("%s %s -> %d", request.method, sanitize_url(request.url), response.status)
            if 200 <= response.status < 300:
                return dataclasses.replace(response, after_unknown=True) if unknown else response
            if response.status in policy.statuses or _collided(response, request):
                if response.status in _MAY_HAVE_APPLIED:
                    unknown = fate.unknown = True  # a gateway gave up; it may still be applied
                now = self.clock()
                if not request.idempotent:
                    raise error_for(
                        response,
                        request,
                        secrets=self._secrets(),
                        now=now,
                        note=f"not retried: {request.method} is not idempotent",
                    )
                if attempt < policy.attempts:
                    wait = parse_retry_after(response.header("retry-after"), now)
                    if wait is not None and wait > policy.max_retry_after:
                        raise error_for(
                            response,
                            request,
                            secrets=self._secrets(),
                            attempts=attempt,
                            now=now,
                            note=f"the server asks to wait {wait:g} s, more than "
                            f"max_retry_after={policy.max_retry_after:g} s",
                        )
                    if wait is None:
                        wait = policy.backoff(attempt, self.rng)
                    log.warning(
                        "%s %s -> %d; retry %d of %d in %.2f s",
                        request.method,
                        sanitize_url(request.url),
                        response.status,
                        attempt,
                        policy.attempts - 1,
                        wait,
                    )
                    yield Sleep(wait)
                    attempt += 1
                    continue
            retried = attempt if response.status in policy.statuses or attempt > 1 else 1
            raise error_for(
                response, request, attempts=retried, now=self.clock(), secrets=self._secrets()
            )

    def _secrets(self) -> tuple[str, ...]:
        """The credentials this client sends, to keep out of every message it makes."""
        found = getattr(self.auth, "secrets", ())
        return tuple(found) if isinstance(found, tuple | list) else ()

    def _authorised(self, request: PendingRequest) -> Generator[PendingRequest, Response, Response]:
        if self.auth is None or not request.authenticate:
            response = yield request
            return response
        return (yield from self.auth.flow(request))

    def _fetch_resource(
        self, request: PendingRequest, resource_type: str | None = None
    ) -> Flow[dict[str, Any]]:
        response = yield from self.exchange(request)
        data = parse_json_body(response, request)
        return expect_resource(data, response, request, resource_type)

    # ----------------------------------------------------------------- operations

    def capabilities(self) -> Flow[dict[str, Any]]:
        """GET /metadata once per client; refuses a server that is not FHIR 4.0.x."""
        if self.capability_statement is None:
            request = self.request("GET", "metadata", label="capabilities")
            statement = yield from self._fetch_resource(request, "CapabilityStatement")
            check_fhir_version(statement, self.base_url)
            self.capability_statement = statement
        return self.capability_statement

    def create(
        self,
        resource: Mapping[str, Any],
        *,
        if_none_exist: SearchParams | str | None = None,
        prefer: Prefer | None = "representation",
    ) -> Flow[WriteResult]:
        rtype = self._resource_type(resource)
        headers = self._prefer(prefer)
        if if_none_exist is not None:
            criteria = encode_params(if_none_exist)
            if not criteria:
                raise InputError("if_none_exist must name at least one search parameter")
            headers["If-None-Exist"] = criteria
        request = self.request(
            "POST",
            rtype,
            body=resource,
            headers=headers,
            idempotent=if_none_exist is not None,
            label=f"create {rtype}",
        )
        return (yield from self._write(request))

    def read(self, resource_type: str, resource_id: str) -> Flow[dict[str, Any]]:
        path = f"{check_type(resource_type)}/{check_id(resource_id)}"
        request = self.request("GET", path, label=f"read {path}")
        return (yield from self._fetch_resource(request, resource_type))

    def vread(self, resource_type: str, resource_id: str, version: str) -> Flow[dict[str, Any]]:
        path = f"{check_type(resource_type)}/{check_id(resource_id)}/_history/"
        path += check_id(str(version), "version id")
        request = self.request("GET", path, label=f"vread {path}")
        return (yield from self._fetch_resource(request, resource_type))

    def update(
        self,
        resource: Mapping[str, Any],
        *,
        if_match: bool | str = True,
        prefer: Prefer | None = "representation",
    ) -> Flow[WriteResult]:
        rtype = self._resource_type(resource)
        rid = resource.get("id")
        if not isinstance(rid, str):
            raise InputError(f"an update needs the {rtype}'s id (resource.id is missing)")
        check_id(rid)
        headers = self._prefer(prefer)
        if if_match is True:
            meta = resource.get("meta")
            version = meta.get("versionId") if isinstance(meta, dict) else None
            if not version:
                raise InputError(
                    f"{rtype}/{rid} has no meta.versionId to send as If-Match; read it first, "
                    "pass if_match='<version>', or if_match=False to overwrite blindly"
                )
            headers["If-Match"] = if_match_value(str(version))
        elif isinstance(if_match, str):
            headers["If-Match"] = if_match_value(if_match)
        request = self.request(
            "PUT", f"{rtype}/{rid}", body=resource, headers=headers, label=f"update {rtype}/{rid}"
        )
        return (yield from self._write(request))

    def conditional_update(
        self,
        resource: Mapping[str, Any],
        criteria: SearchParams | str,
        *,
        prefer: Prefer | None = "representation",
    ) -> Flow[WriteResult]:
        rtype = self._resource_type(resource)
        query = encode_params(criteria)
        if not query:
            raise InputError("a conditional update needs search criteria")
        request = self.request(
            "PUT",
            rtype,
            query=query,
            body=resource,
            headers=self._prefer(prefer),
            label=f"conditional update {rtype}",
        )
        return (yield from self._write(request))

    def delete(self, resource_type: str, resource_id: str) -> Flow[None]:
        path = f"{check_type(resource_type)}/{check_id(resource_id)}"
        yield from self.exchange(self.request("DELETE", path, label=f"delete {path}"))
        return None

    def history_query(
        self,
        resource_type: str,
        resource_id: str | None = None,
        limits: Limits | None = None,
    ) -> PagedQuery:
        path = check_type(resource_type)
        if resource_id is not None:
            path += f"/{check_id(resource_id)}"
        request = self.request("GET", f"{path}/_history", label=f"history {path}")
        return PagedQuery(self, request, limits or Limits())

    def search_request(
        self, resource_type: str, params: SearchParams | str | None = None
    ) -> PendingRequest:
        rtype = check_type(resource_type)
        return self.request(
            "GET",
            rtype,
            query=encode_params(params),
            headers={"Cache-Control": "no-cache"},
            label=f"search {rtype}",
        )

    def search_query(
        self,
        resource_type: str,
        params: SearchParams | str | None = None,
        limits: Limits | None = None,
    ) -> PagedQuery:
        return PagedQuery(self, self.search_request(resource_type, params), limits or Limits())

    def everything_query(self, patient_id: str, limits: Limits | None = None) -> PagedQuery:
        path = f"Patient/{check_id(patient_id)}/$everything"
        request = self.request(
            "GET", path, headers={"Cache-Control": "no-cache"}, label="Patient/$everything"
        )
        return PagedQuery(self, request, limits or Limits())

    def count(self, resource_type: str, params: SearchParams | str | None = None) -> Flow[int]:
        query = encode_params(params)
        query = f"{query}&_summary=count" if query else "_summary=count"
        rtype = check_type(resource_type)
        request = self.request(
            "GET",
            rtype,
            query=query,
            headers={"Cache-Control": "no-cache"},
            label=f"count {rtype}",
        )
        response = yield from self.exchange(request)
        bundle = expect_resource(parse_json_body(response, request), response, request, "Bundle")
        total = bundle.get("total")
        if not isinstance(total, int):
            raise UnexpectedResponse(
                f"{_request_head(request)}: the server sent no Bundle.total for _summary=count"
            )
        return total

    def transaction(self, bundle: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        return (yield from self._bundle("transaction", bundle))

    def batch(self, bundle: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        return (yield from self._bundle("batch", bundle))

    def _bundle(self, kind: str, bundle: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
            raise InputError(f"a {kind} must be a Bundle resource")
        if bundle.get("type") != kind:
            raise InputError(f"a {kind} needs Bundle.type {kind!r}, not {bundle.get('type')!r}")
        request = self.request(
            "POST", "", body=bundle, idempotent=is_idempotent_bundle(bundle), label=kind
        )
        request = dataclasses.replace(request, expects_resource=True)
        response = yield from self.exchange(request)
        answer = expect_resource(parse_json_body(response, request), response, request, "Bundle")
        if response.after_unknown:
            answer = {**answer, AFTER_UNKNOWN: True}
        return answer

    def paged(
        self,
        first: PendingRequest,
        limits: Limits,
        state: SearchState,
        mode: Mode,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> Flow[None]:
        """Fetch page after page following ``next``; emit (or sink) resources or whole pages."""
        request = first
        seen = {first.url}
        while True:
            response = yield from self.exchange(request)
            data = parse_json_body(response, request)
            bundle = expect_resource(data, response, request, "Bundle")
            state.pages += 1
            total = bundle.get("total")
            if isinstance(total, int) and state.total is None:
                state.total = total
            entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
            link = _link(bundle, "next")
            cap = limits.max_resources
            for entry in entries:
                search = entry.get("search")
                entry_mode = search.get("mode") if isinstance(search, dict) else None
                resource = entry.get("resource")
                if entry_mode == "outcome":
                    if isinstance(resource, dict):
                        for issue in _issues(resource):
                            log.warning("%s: the server notes: %s", request.label, issue)
                    continue
                more = isinstance(resource, dict) or link is not None
                if mode == "resources" and cap is not None and state.resources >= cap and more:
                    state.stop(self._cap_note("max_resources", cap, state), request)
                    return None
                if entry_mode != "include":
                    state.matches += 1
                if not isinstance(resource, dict):
                    continue
                state.resources += 1
                if mode == "resources":
                    if sink is not None:
                        sink(resource)
                    else:
                        yield Emit(resource)
            if mode == "pages":
                if sink is not None:
                    sink(bundle)
                else:
                    yield Emit(bundle)
            if link is None:
                if state.total is not None and state.matches < state.total:
                    state.stop(
                        f"the server reported total={state.total} but sent only "
                        f"{state.matches} match(es) and no next link: results are incomplete",
                        request,
                    )
                return None
            if limits.max_pages is not None and state.pages >= limits.max_pages:
                state.stop(self._cap_note("max_pages", limits.max_pages, state), request)
                return None
            if cap is not None and state.resources >= cap:
                state.stop(self._cap_note("max_resources", cap, state), request)
                return None
            request = self.next_page_request(link, request)
            if request.url in seen:
                raise UnexpectedResponse(
                    f"{_request_head(request)}: the server's next link repeats a page already "
                    "read; stopping to avoid a loop"
                )
            seen.add(request.url)

    @staticmethod
    def _cap_note(name: str, cap: int, state: SearchState) -> str:
        note = f"stopped by {name}={cap} after {state.resources} resource(s)"
        note += f" in {state.pages} page(s)"
        if state.total is not None:
            note += f"; the server reported {state.total} match(es)"
        return note + ": results are incomplete"

    # ----------------------------------------------------------------- a patient

    def patient_resources(self, patient_id: str) -> Flow[list[dict[str, Any]]]:
        """$everything when the server has it, else a read and searches by ``patient=``."""
        statement = yield from self.capabilities()
        advertised = everything_advertised(statement)
        collected: list[dict[str, Any]] = []
        if advertised is not False:
            query = self.everything_query(patient_id)
            try:
                yield from self.paged(
                    query.request, query.limits, query.state, "resources", collected.append
                )
            except ServerError as exc:
                if exc.status not in _EVERYTHING_MISSING:
                    raise
                log.info("Patient/$everything answered %d; searching per type", exc.status)
                collected = []
            if query.state.truncated:
                log.warning("Patient/$everything was incomplete; searching per type instead")
            elif collected:
                # a server's Patient compartment may be narrower than HAPI's (SEKMET leaves out
                # ClinicalImpression): search each type we read that $everything did not bring
                seen = {r.get("resourceType") for r in collected}
                missing = [(t, inc) for t, inc in PULL_SEARCHES if t not in seen]
                yield from self._search_types(patient_id, missing, collected)
                return dedupe_resources(collected)
        patient = yield from self.read("Patient", patient_id)
        collected = [patient]
        yield from self._search_types(patient_id, PULL_SEARCHES, collected)
        return dedupe_resources(collected)

    def _search_types(
        self,
        patient_id: str,
        searches: Sequence[tuple[str, tuple[str, ...]]],
        collected: list[dict[str, Any]],
    ) -> Flow[None]:
        """Every resource of each type that names the patient, with its includes, in full.

        The searches are strict (``Prefer: handling=strict``): a server that ignores a parameter
        it does not know would otherwise answer with every patient's resources. ``subject`` is
        tried first, then ``patient`` (R4 defines one or both per type; servers differ).
        """
        statement = yield from self.capabilities()
        for rtype, includes in searches:
            names = patient_search_params(statement, rtype)
            if not names:
                log.warning(
                    "%s cannot be searched by patient on this server (its CapabilityStatement "
                    "says so): such resources are not pulled",
                    rtype,
                )
                continue
            for name in names:
                value = f"Patient/{patient_id}" if name == "subject" else patient_id
                params = [(name, value), *(("_include", inc) for inc in includes)]
                request = self.search_request(rtype, params).with_header(
                    "Prefer", "handling=strict"
                )
                state = SearchState()
                found: list[dict[str, Any]] = []
                try:
                    yield from self.paged(request, Limits(), state, "resources", found.append)
                except ServerError as exc:
                    if exc.status != 400 or name == names[-1]:
                        raise
                    log.info("search %s by subject refused (%d); by patient", rtype, exc.status)
                    continue
                if state.truncated:  # a case built from part of the data would look complete
                    raise UnexpectedResponse(f"{_request_head(request)}: {state.note}")
                collected.extend(found)
                break

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _resource_type(resource: Mapping[str, Any]) -> str:
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise InputError("expected a FHIR resource (a dict with resourceType)")
        return check_type(resource["resourceType"])

    @staticmethod
    def _prefer(prefer: Prefer | None) -> dict[str, str]:
        if prefer is None:
            return {}
        if prefer not in ("representation", "minimal", "OperationOutcome"):
            raise InputError(
                f"prefer must be 'representation', 'minimal', 'OperationOutcome' or None, "
                f"not {prefer!r}"
            )
        return {"Prefer": f"return={prefer}"}

    def _write(self, request: PendingRequest) -> Flow[WriteResult]:
        response = yield from self.exchange(request)
        data = parse_json_body(response, request)
        resource = outcome = None
        if data is not None:
            body = expect_resource(data, response, request)
            if body["resourceType"] == "OperationOutcome":
                outcome = body
            else:
                resource = body
        location = response.header("location") or response.header("content-location")
        where = parse_location(location)
        rtype = where.type if where else (resource or {}).get("resourceType")
        rid = where.id if where else (resource or {}).get("id")
        version = where.version if where and where.version else None
        if version is None and resource is not None:
            meta = resource.get("meta")
            version = meta.get("versionId") if isinstance(meta, dict) else None
        if version is None:
            version = parse_etag(response.header("etag"))
        return WriteResult(response.status, rtype, rid, version, location, resource, outcome)


def _link(bundle: Mapping[str, Any], relation: str) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == relation:
            url = link.get("url")
            if isinstance(url, str) and url.strip():
                return url
    return None
