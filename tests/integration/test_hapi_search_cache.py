"""HAPI's search cache, as HAPI servers ship it, and our client getting past it.

HAPI answers a search identical to one made in the last 60 s (its default) from the stored
results of the first, so a search right after a write can miss the write. The suite's shared
HAPI runs with that cache off; this module starts a HAPI of its own with the cache on (60 s),
shows the stale answer with a plain request, and shows that our client, which sends
``Cache-Control: no-cache`` on every search, count and ``$everything``, sees the write.
HAPI only: SEKMET has no search cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from own_server import own_hapi

from fhir_plao.client import AsyncFhirClient, FhirClient

pytestmark = pytest.mark.timeout(600)

HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
SYSTEM = "urn:plao:cache-test"


@pytest.fixture(scope="module")
def cached_hapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_hapi(
        tmp_path_factory, "with its search cache on", {"search-cache-millis": "60000"}
    ) as url:
        yield url


def _patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"plao-cache-{n}",
        "identifier": [{"system": SYSTEM, "value": "shared"}],
        "gender": "female",
    }


def _raw_total(http: httpx.Client, headers: dict[str, str] | None = None) -> int:
    response = http.get("/Patient", params={"identifier": f"{SYSTEM}|shared"}, headers=headers)
    assert response.status_code == 200, response.text
    return len(response.json().get("entry", []))


def test_a_search_after_a_write_sees_it_through_hapis_search_cache(cached_hapi: str) -> None:
    with httpx.Client(base_url=cached_hapi, headers=HEADERS, timeout=60) as http:
        assert http.put("/Patient/plao-cache-1", json=_patient(1)).status_code == 201
        assert _raw_total(http) == 1
        assert http.put("/Patient/plao-cache-2", json=_patient(2)).status_code == 201
        assert _raw_total(http) == 1  # the cache answered: the second patient is missing
        assert _raw_total(http, {"Cache-Control": "no-cache"}) == 2

    with FhirClient(cached_hapi) as client:
        found = list(client.search("Patient", {"identifier": f"{SYSTEM}|shared"}))
        assert sorted(p["id"] for p in found) == ["plao-cache-1", "plao-cache-2"]
        assert client.count("Patient", {"identifier": f"{SYSTEM}|shared"}) == 2


def test_the_async_client_gets_past_the_cache_too(cached_hapi: str) -> None:
    async def counts() -> tuple[int, int]:
        async with AsyncFhirClient(cached_hapi) as client:
            await client.update(_patient(3), if_match=False)
            before = await client.count("Patient", {"identifier": f"{SYSTEM}|shared"})
            await client.update(_patient(4), if_match=False)
            after = await client.count("Patient", {"identifier": f"{SYSTEM}|shared"})
        return before, after

    before, after = asyncio.run(counts())
    assert after == before + 1
