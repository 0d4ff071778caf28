"""The server fixtures themselves (SEKMET and HAPI), checked with plain httpx, not our client."""

from __future__ import annotations

import sys
from typing import Any

import httpx

FHIR_JSON = "application/fhir+json"
HEADERS = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}


def _patient(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Example", "given": ["Plao"]}],
        "gender": "female",
        "birthDate": "1990-01-01",
    }


def _count(client: httpx.Client, base_url: str, resource_type: str) -> int:
    resp = client.get(f"{base_url}/{resource_type}", params={"_summary": "count"})
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert "entry" not in bundle or not [
        e for e in bundle["entry"] if e.get("search", {}).get("mode") == "match"
    ]
    total = bundle["total"]
    assert isinstance(total, int)
    return total


def test_metadata_is_fhir_4_0_1(fhir_server_url: str) -> None:
    assert fhir_server_url.startswith("http://127.0.0.1:")
    assert fhir_server_url.endswith("/fhir")
    resp = httpx.get(f"{fhir_server_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=10)
    assert resp.status_code == 200
    cap = resp.json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"


def test_put_patient_with_client_id_then_read(fresh_fhir_server_url: str) -> None:
    base = fresh_fhir_server_url
    with httpx.Client(headers=HEADERS, timeout=10) as client:
        resp = client.put(f"{base}/Patient/plao-abc", json=_patient("plao-abc"))
        assert resp.status_code == 201, resp.text
        # SEKMET says Location, HAPI Content-Location: both absolute, on the configured base
        where = resp.headers.get("Location") or resp.headers["Content-Location"]
        assert where.startswith(f"{base}/Patient/plao-abc/_history/")

        read = client.get(f"{base}/Patient/plao-abc")
        assert read.status_code == 200, read.text
        body = read.json()
        assert body["resourceType"] == "Patient"
        assert body["id"] == "plao-abc"
        assert body["birthDate"] == "1990-01-01"
        assert body["meta"]["versionId"] == "1"
        assert read.headers["ETag"] == 'W/"1"'


def test_summary_count_on_patient(fresh_fhir_server_url: str) -> None:
    base = fresh_fhir_server_url
    with httpx.Client(headers=HEADERS, timeout=10) as client:
        assert _count(client, base, "Patient") == 0
        for pid in ("plao-abc", "plao-def"):
            assert client.put(f"{base}/Patient/{pid}", json=_patient(pid)).status_code == 201
        assert _count(client, base, "Patient") == 2


def test_reset_empties_the_database(fresh_fhir_server_url: str, fhir_server_handle: Any) -> None:
    base = fresh_fhir_server_url
    with httpx.Client(headers=HEADERS, timeout=10) as client:
        assert client.put(f"{base}/Patient/plao-abc", json=_patient("plao-abc")).status_code == 201
        assert _count(client, base, "Patient") == 1
        sys.modules["plao_fhir_server_script"].reset(fhir_server_handle)
        assert _count(client, base, "Patient") == 0
        assert client.get(f"{base}/Patient/plao-abc").status_code == 404
