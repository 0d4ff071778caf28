"""Fakes and builders for the client tests (fixtures are in conftest.py)."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_plao import jsonio
from fhir_plao.client import AsyncFhirClient, FhirClient

BASE = "http://fhir.test/fhir"
FHIR_JSON = "application/fhir+json"
HAPI_RESPONSES = Path(__file__).resolve().parents[1] / "data" / "foreign" / "hapi-responses"


def url(path: str = "") -> str:
    return f"{BASE}/{path}" if path else BASE


def hapi(name: str) -> Any:
    """A recorded HAPI response body (decimals exact), from ``tests/data/foreign``."""
    path = HAPI_RESPONSES / name
    if not path.is_file():
        pytest.fail(f"recorded HAPI response {path} is missing from the repository")
    return jsonio.loads(path.read_bytes())


def fhir_response(status: int, body: Any = None, **headers: str) -> httpx.Response:
    """A response with a FHIR JSON body written by jsonio (so decimals go out exactly)."""
    content = b"" if body is None else jsonio.dumps_bytes(body)
    all_headers = {"Content-Type": FHIR_JSON} if body is not None else {}
    all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.Response(status, content=content, headers=all_headers)


def outcome(diagnostics: str, code: str = "processing", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{diagnostics}</div>',
        },
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def capability_statement(version: str = "4.0.1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": version,
        "format": ["json"],
        **extra,
    }


def searchset(
    resources: Iterable[dict[str, Any]],
    *,
    next_link: str | None = None,
    total: int | None = None,
    includes: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in includes]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if total is not None:
        bundle["total"] = total
    if next_link is not None:
        bundle["link"] = [{"relation": "next", "url": next_link}]
    return bundle


class Fhir:
    """Either client behind one awaitable face (test bodies are written once)."""

    def __init__(self, client: FhirClient | AsyncFhirClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncFhirClient)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.client, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = target(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return call

    async def collect(self, iterable: Any) -> list[Any]:
        """Everything a search (``results`` or ``results.pages()``) yields."""
        if self.is_async:
            return [item async for item in iterable]
        return list(iterable)

    async def close(self) -> None:
        if isinstance(self.client, AsyncFhirClient):
            await self.client.aclose()
        else:
            self.client.close()


# --------------------------------------------------------------------------- stand-in mapping


@dataclass(frozen=True)
class Note:
    """An unmapped element, printed as the real ``Unmapped`` is: ``path: reason``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class StandInMapping:
    """Replaces ``fhir_plao.mapping`` until the real one lands (respx tests only)."""

    bundle: dict[str, Any]
    received: list[dict[str, Any]] = field(default_factory=list)
    make_case: Callable[[list[dict[str, Any]]], Any] = lambda resources: resources

    def module(self) -> types.ModuleType:
        module = types.ModuleType("fhir_plao.mapping")

        def to_fhir(case: Any) -> dict[str, Any]:
            return self.bundle

        def from_fhir(resources: Iterable[dict[str, Any]]) -> Any:
            self.received = list(resources)
            return types.SimpleNamespace(
                case=self.make_case(self.received),
                unmapped=[
                    Note(f"{r['resourceType']}/{r.get('id')}", "not part of a PLAO case")
                    for r in self.received
                    if r["resourceType"] == "Practitioner"
                ],
            )

        module.to_fhir = to_fhir  # type: ignore[attr-defined]
        module.from_fhir = from_fhir  # type: ignore[attr-defined]
        return module


def stand_in_bundle() -> dict[str, Any]:
    """A tiny transaction as the lead's ``to_fhir`` will shape it (PUTs, urn:uuid fullUrls)."""
    patient = {
        "resourceType": "Patient",
        "id": "plao-p1",
        "identifier": [{"system": "urn:example:plao", "value": "X1"}],
        "gender": "female",
    }
    bmd = {
        "resourceType": "Observation",
        "id": "plao-bmd1",
        "status": "final",
        "code": {"text": "BMD L1-L4"},
        "subject": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"},
        "valueQuantity": {"value": Decimal("0.850"), "unit": "g/cm2"},
    }
    z_score = {
        "resourceType": "Observation",
        "id": "plao-z1",
        "status": "final",
        "code": {"text": "Z-score L1-L4"},
        "subject": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"},
        "valueQuantity": {"value": Decimal("-1.80")},
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-5000-8000-00000000000{i}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for i, r in enumerate((patient, bmd, z_score), start=1)
        ],
    }


EXAMPLE_CASE = Path(__file__).resolve().parents[2] / "examples" / "plao-case.json"
