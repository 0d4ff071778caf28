"""Fixtures for the bulk tests (the helpers they use are in ``fakes.py``)."""

from __future__ import annotations

import pytest
import respx

from tests.bulk.fakes import BASE, CAPABILITIES, TransactionEndpoint, fhir_response


@pytest.fixture
def endpoint() -> TransactionEndpoint:
    return TransactionEndpoint()


@pytest.fixture
def router(endpoint: TransactionEndpoint) -> respx.MockRouter:
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    router.get(f"{BASE}/metadata").mock(return_value=fhir_response(200, CAPABILITIES))
    router.post(BASE).mock(side_effect=endpoint.handler)
    return router
