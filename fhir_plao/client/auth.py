"""Authentication as sans-IO flows (the shape of httpx's ``Auth.auth_flow``).

``flow(request)`` is a generator: it yields the requests to send (the caller's, with credentials
added, and for SMART the token request before it) and receives each response; it returns the
response the caller gets. One flow serves both the sync and the async client; the client's core
drives it inside its retry loop.

Secrets stay out of logs and reprs: ``repr()`` of each class redacts them, and the core never logs
headers or bodies.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fhir_plao.client._core import (
    PendingRequest,
    Response,
    error_for,
    normalise_base_url,
    parse_json_body,
    sanitize_url,
)
from fhir_plao.errors import InputError, UnexpectedResponse

__all__ = ["Auth", "AuthFlow", "BasicAuth", "BearerAuth", "SmartBackendAuth"]

log = logging.getLogger(__name__)

AuthFlow = Generator[PendingRequest, Response, Response]
"""Yields requests to send, receives their responses, returns the caller's response."""


class Auth:
    """Base class: no credentials. Subclasses override :meth:`flow`, and :attr:`secrets` (what
    must never appear in a message: the client scrubs them from every error it makes)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return ()

    def flow(self, request: PendingRequest) -> AuthFlow:
        response = yield request
        return response


class BearerAuth(Auth):
    """A fixed bearer token (``Authorization: Bearer …``). A 401 is not retried: the token is
    what it is; use :class:`SmartBackendAuth` for tokens that expire."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise InputError("BearerAuth needs a non-empty token")
        self._header = f"Bearer {token.strip()}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._header.removeprefix("Bearer "),)

    def flow(self, request: PendingRequest) -> AuthFlow:
        response = yield request.with_header("Authorization", self._header)
        return response

    def __repr__(self) -> str:
        return "BearerAuth(token=<redacted>)"


class BasicAuth(Auth):
    """HTTP Basic: ``user`` and ``password`` (UTF-8) in the ``Authorization`` header."""

    def __init__(self, user: str, password: str) -> None:
        if ":" in user:
            raise InputError("a Basic auth user name cannot contain ':'")
        self._user = user
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._header = f"Basic {token}"
        self._secrets = (token, password)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def flow(self, request: PendingRequest) -> AuthFlow:
        response = yield request.with_header("Authorization", self._header)
        return response

    def __repr__(self) -> str:
        return f"BasicAuth(user={self._user!r}, password=<redacted>)"


class SmartBackendAuth(Auth):
    """SMART Backend Services: ``client_credentials`` with a signed JWT client assertion.

    The access token is cached and fetched again ``refresh_margin`` seconds before it expires
    (at most half its lifetime early); when the server still answers 401 the token is fetched
    once more and the request sent once more. ``private_key`` is a PEM string/bytes or a
    ``cryptography`` private key; ``alg`` is RS384 or ES384 in SMART (any PyJWT algorithm works).

    Several concurrent requests that find the token stale may each fetch one; the last one wins.
    """

    ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        private_key: str | bytes | Any,
        kid: str,
        scope: str,
        alg: str = "RS384",
        *,
        assertion_lifetime: int = 300,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = normalise_base_url(token_url)
        self.client_id = client_id
        self.kid = kid
        self.scope = scope
        self.alg = alg
        if not 0 < assertion_lifetime <= 300:
            raise InputError("SMART limits a client assertion's lifetime to 300 s")
        self._assertion_lifetime = assertion_lifetime
        self._margin = refresh_margin
        self._clock = clock
        if isinstance(private_key, str | bytes):
            data = private_key.encode() if isinstance(private_key, str) else private_key
            try:
                private_key = load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise InputError(f"the SMART private key is not a usable PEM key: {exc}") from None
        self._key: Any = private_key
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"kid={self.kid!r}, scope={self.scope!r}, alg={self.alg!r}, private_key=<redacted>)"
        )

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    def flow(self, request: PendingRequest) -> AuthFlow:
        if self._token is None or self._clock() >= self._expires_at:
            yield from self._fetch_token()
        response = yield self._with_token(request)
        if response.status == 401:
            log.info(
                "%s %s -> 401; fetching a new access token and sending it once more",
                request.method,
                sanitize_url(request.url),
            )
            yield from self._fetch_token()
            response = yield self._with_token(request)
        return response

    def _with_token(self, request: PendingRequest) -> PendingRequest:
        return request.with_header("Authorization", f"Bearer {self._token}")

    def client_assertion(self) -> str:
        """A fresh signed JWT: iss = sub = client_id, aud = token URL, short exp, unique jti."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + self._assertion_lifetime,
            "jti": uuid.uuid4().hex,
        }
        try:
            return jwt.encode(
                claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"}
            )
        except (jwt.PyJWTError, ValueError, TypeError, NotImplementedError) as exc:
            raise InputError(
                f"cannot sign the SMART client assertion with {self.alg}: {exc}"
            ) from None

    def _fetch_token(self) -> Generator[PendingRequest, Response, None]:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": self.ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        request = PendingRequest(
            "POST",
            self.token_url,
            {
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            urlencode(form).encode("ascii"),
            idempotent=False,
            authenticate=False,
            label="SMART token request",
        )
        response = yield request
        if not 200 <= response.status < 300:
            raise error_for(
                response,
                request,
                now=self._clock(),
                note="the token endpoint refused the client credentials",
            )
        data = parse_json_body(response, request)
        if not isinstance(data, dict):
            data = {}
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise UnexpectedResponse(
                f"the token endpoint {self.token_url} answered without an access_token"
            )
        token_type = str(data.get("token_type", "bearer"))
        if token_type.lower() != "bearer":
            raise UnexpectedResponse(
                f"the token endpoint issued a {token_type!r} token; only bearer tokens are usable"
            )
        expires_in = data.get("expires_in", 300)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = 300.0
        self._token = token
        self._expires_at = self._clock() + lifetime - min(self._margin, lifetime / 2)
        log.info("SMART: new access token for %s, valid %.0f s", self.client_id, lifetime)
