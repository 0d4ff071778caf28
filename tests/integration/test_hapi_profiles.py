"""Our profiles on a real HAPI FHIR server: uploaded as they are, then used by its ``$validate``.

HAPI builds what it needs from our StructureDefinitions and ValueSets and validates with the HL7
engine. The server holds no LOINC, SNOMED CT or RxNorm, so a code of those systems it cannot
look up is a warning there (``servers/hapi``), while membership of our own ValueSets is checked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_plao import jsonio

pytestmark = pytest.mark.servers(
    "hapi", reason="SEKMET's $validate ignores the profile parameter (its validation is structural)"
)

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


@pytest.fixture
def hapi(fresh_fhir_server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh_fhir_server_url, headers=HEADERS, timeout=120) as client:
        for path in sorted(PROFILES.glob("*.json")):
            resource = jsonio.loads(path.read_bytes())
            response = client.put(
                f"/{resource['resourceType']}/{resource['id']}", content=jsonio.dumps(resource)
            )
            assert response.status_code in (200, 201), f"{path.name}: {response.text}"
        yield client


def _validate(client: httpx.Client, resource: dict[str, Any], profile: str) -> list[str]:
    """The server's errors for ``resource`` against ``profile`` (``$validate?profile=``)."""
    response = client.post(
        f"/{resource['resourceType']}/$validate",
        params={"profile": profile},
        content=jsonio.dumps(resource),
    )
    assert response.status_code in (200, 412, 422), response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return [
        f"{issue.get('expression')}: {issue.get('diagnostics')}"
        for issue in outcome.get("issue", [])
        if issue["severity"] in ("error", "fatal")
    ]


def _profiled(bundle: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [
        (entry["resource"], url)
        for entry in bundle["entry"]
        for url in entry["resource"].get("meta", {}).get("profile", [])
    ]


def test_every_profiled_resource_of_the_example_is_valid_on_hapi(
    hapi: httpx.Client, example_bundle: dict[str, Any]
) -> None:
    checked = _profiled(example_bundle)
    assert len({url for _, url in checked}) == 8  # every profile of ours is used
    failures = {
        f"{resource['resourceType']}/{resource['id']} {url.rsplit('/', 1)[-1]}": errors
        for resource, url in checked
        if (errors := _validate(hapi, resource, url))
    }
    assert failures == {}
    assert len(checked) == 67


def test_the_server_refuses_what_our_profiles_refuse(
    hapi: httpx.Client, example_bundle: dict[str, Any]
) -> None:
    """So the test above could fail: a T-score in g/cm2 breaks plao-dxa-2, a vertebra outside
    plao-vertebrae breaks a required binding, a fracture without bodySite its cardinality."""
    by_profile = {url.rsplit("/", 1)[-1]: (r, url) for r, url in _profiled(example_bundle)}
    (score, score_url), *_ = [
        copy.deepcopy((r, url))
        for r, url in _profiled(example_bundle)
        if url.endswith("/plao-dxa-score") and r["code"]["coding"][0]["code"] == "38267-1"
    ]
    score["valueQuantity"]["code"] = "g/cm2"
    assert any("plao-dxa-2" in e for e in _validate(hapi, score, score_url))

    fracture, fracture_url = copy.deepcopy(by_profile["plao-vertebral-fracture"])
    fracture["bodySite"][0]["coding"][0]["code"] = "122496007"  # lumbar column, not a vertebra
    assert any("bodySite" in e for e in _validate(hapi, fracture, fracture_url))

    del fracture["bodySite"]
    assert any("bodySite" in e for e in _validate(hapi, fracture, fracture_url))
