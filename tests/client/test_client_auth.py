"""SMART Backend Services auth, for both clients: token fetch, caching, refresh before expiry,
refresh on a 401 with one replay, and secrets kept out of reprs."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from client_fakes import fhir_response, url
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fhir_plao.client import (
    BasicAuth,
    BearerAuth,
    InputError,
    PendingRequest,
    ServerError,
    SmartBackendAuth,
)

pytestmark = pytest.mark.anyio

TOKEN_URL = "http://auth.test/token"
PATIENT = {"resourceType": "Patient", "id": "p1"}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_endpoint(router: respx.MockRouter, *tokens: str, expires_in: int = 300) -> respx.Route:
    return router.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(
                200,
                json={"access_token": t, "token_type": "bearer", "expires_in": expires_in},
            )
            for t in tokens
        ]
    )


def smart(pem: bytes, clock: Clock) -> SmartBackendAuth:
    return SmartBackendAuth(
        TOKEN_URL, "plao-app", pem, kid="key-1", scope="system/*.rs", clock=clock
    )


async def test_token_expiring_mid_run_is_refreshed_once_and_the_request_replayed(
    make_fhir, router, pem
):
    tokens = token_endpoint(router, "token-A", "token-B")
    seen: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer token-A" and len(seen) > 1:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return fhir_response(200, PATIENT)

    route = router.get(url("Patient/p1")).mock(side_effect=serve)
    fhir = make_fhir(auth=smart(pem, Clock()))

    await fhir.read("Patient", "p1")  # fetches token-A
    await fhir.read("Patient", "p1")  # token-A now refused: refresh, replay once

    assert tokens.call_count == 2
    assert route.call_count == 3
    assert seen == ["Bearer token-A", "Bearer token-A", "Bearer token-B"]


async def test_still_401_after_the_refresh_is_an_error_not_a_loop(make_fhir, router, pem):
    tokens = token_endpoint(router, "token-A", "token-B")
    route = router.get(url("Patient/p1")).mock(return_value=httpx.Response(401))
    fhir = make_fhir(auth=smart(pem, Clock()))

    with pytest.raises(ServerError) as caught:
        await fhir.read("Patient", "p1")

    assert caught.value.status == 401
    assert tokens.call_count == 2 and route.call_count == 2


async def test_token_is_cached_and_refreshed_shortly_before_expiry(make_fhir, router, pem):
    clock = Clock()
    tokens = token_endpoint(router, "token-A", "token-B", expires_in=300)
    route = router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    fhir = make_fhir(auth=smart(pem, clock))

    await fhir.read("Patient", "p1")
    clock.now += 200  # still fresh
    await fhir.read("Patient", "p1")
    assert tokens.call_count == 1

    clock.now += 45  # 245 s in: inside the 60 s refresh margin
    await fhir.read("Patient", "p1")

    assert tokens.call_count == 2
    assert route.calls.last.request.headers["Authorization"] == "Bearer token-B"
    assert route.call_count == 3  # no 401 round trip was needed


async def test_the_client_assertion_is_a_signed_smart_jwt(make_fhir, router, pem, rsa_key):
    clock = Clock()
    tokens = token_endpoint(router, "token-A")
    router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    fhir = make_fhir(auth=smart(pem, clock))

    await fhir.read("Patient", "p1")

    request = tokens.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in request.headers
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/*.rs"
    assert form["client_assertion_type"] == SmartBackendAuth.ASSERTION_TYPE
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS384" and header["kid"] == "key-1" and header["typ"] == "JWT"
    claims: dict[str, Any] = jwt.decode(
        assertion,
        rsa_key.public_key(),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "plao-app"
    assert claims["exp"] - claims["iat"] == 300 and claims["iat"] == int(clock.now)
    assert claims["jti"]


async def test_a_refusing_token_endpoint_is_a_clear_error(make_fhir, router, pem):
    router.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            401, json={"error": "invalid_client", "error_description": "unknown key id"}
        )
    )
    resource = router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    fhir = make_fhir(auth=smart(pem, Clock()))

    with pytest.raises(ServerError) as caught:
        await fhir.read("Patient", "p1")

    assert "invalid_client: unknown key id" in str(caught.value)
    assert "token endpoint refused" in str(caught.value)
    assert resource.call_count == 0


def test_secrets_stay_out_of_reprs(pem: bytes) -> None:
    auth = smart(pem, Clock())
    assert "PRIVATE" not in repr(auth) and "<redacted>" in repr(auth)
    assert "tok3n" not in repr(BearerAuth("tok3n"))
    assert "pw" not in repr(BasicAuth("ana", "pw"))
    request = PendingRequest("GET", "http://fhir.test/fhir/Patient?name=Ana").with_header(
        "Authorization", "Bearer tok3n"
    )
    assert "tok3n" not in repr(request) and "Ana" not in repr(request)


def test_a_bad_private_key_is_refused_at_once() -> None:
    with pytest.raises(InputError, match="not a usable PEM key"):
        SmartBackendAuth(TOKEN_URL, "app", "not a key", kid="k", scope="system/*.rs")
