"""Fixtures for the client tests: one test body runs against both clients.

``make_fhir(**options)`` builds a :class:`FhirClient` or an :class:`AsyncFhirClient` (the
``flavour`` parameter) over an ``httpx.MockTransport`` fed by a respx router, with the sleeps
recorded instead of slept, and wraps it in :class:`Fhir`, whose methods are all awaitable, so a
test reads ``await fhir.read("Patient", "p1")`` whichever client is underneath.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from client_fakes import BASE, Fhir, StandInMapping, stand_in_bundle

from fhir_plao.client import AsyncFhirClient, FhirClient, RetryPolicy


@pytest.fixture(autouse=True)
def _no_fhir_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's FHIR_* settings."""
    for name in list(os.environ):
        if name.startswith("FHIR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False, assert_all_mocked=True)


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait a client asked for, in order (nothing is slept for real)."""
    return []


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeFhir = Callable[..., Fhir]


@pytest.fixture
async def make_fhir(
    flavour: str, router: respx.MockRouter, sleeps: list[float]
) -> AsyncIterator[MakeFhir]:
    made: list[Fhir] = []

    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def make(**options: Any) -> Fhir:
        options.setdefault("retry", RetryPolicy(attempts=3, base_delay=0.1, jitter=0.0))
        client: FhirClient | AsyncFhirClient
        if flavour == "sync":
            client = FhirClient(
                options.pop("base_url", BASE),
                transport=httpx.MockTransport(router.handler),
                sleep=sleeps.append,
                **options,
            )
        else:
            client = AsyncFhirClient(
                options.pop("base_url", BASE),
                transport=httpx.MockTransport(router.handler),
                sleep=async_sleep,
                **options,
            )
        made.append(Fhir(client))
        return made[-1]

    yield make
    for fhir in made:
        await fhir.close()


@pytest.fixture
def stand_in_mapping(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInMapping]:
    mapping = StandInMapping(stand_in_bundle())
    monkeypatch.setitem(sys.modules, "fhir_plao.mapping", mapping.module())
    yield mapping
