"""Helpers for the bulk tests: synthetic cases on disk, and a respx-routed transaction endpoint.

``TransactionEndpoint`` answers ``POST [base]`` the way a FHIR server answers a transaction of
PUTs: ``201 Created`` the first time a ``Type/id`` is written, ``200 OK`` after, one response
entry per request entry, in order. It refuses (400, as HAPI does with referential integrity) a
``Type/id`` reference to a resource it has not stored and the transaction does not write, so a
wrongly ordered split shows. ``fail_for(identifier, ...)`` makes every transaction carrying that
patient's resources answer an error status instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import respx

from fhir_plao import jsonio
from fhir_plao.bulk import (
    CaseResult,
    CaseSource,
    PushOptions,
    PushSummary,
    open_cases,
    push_cases,
    split_transaction,
)
from fhir_plao.case import Case, case_to_json
from fhir_plao.client import AsyncFhirClient, RetryPolicy
from fhir_plao.mapping import to_fhir
from fhir_plao.synth import synth_cases

BASE = "http://fhir.test/r4"
FHIR_JSON = "application/fhir+json"
_TYPED_REF = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]+$")


def fhir_response(status: int, body: Any = None, **headers: str) -> httpx.Response:
    content = b"" if body is None else jsonio.dumps_bytes(body)
    all_headers = {"Content-Type": FHIR_JSON} if body is not None else {}
    all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.Response(status, content=content, headers=all_headers)


def outcome(diagnostics: str, *expression: str) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": "processing", "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


CAPABILITIES = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "resource": [{"type": "Patient", "searchParam": []}],
            "operation": [{"name": "everything", "definition": "Patient-everything"}],
        }
    ],
}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


class TransactionEndpoint:
    def __init__(self) -> None:
        self.stored: dict[str, int] = {}  # Type/id -> version
        self.transactions: list[dict[str, Any]] = []
        self._failing: list[tuple[Callable[[str], bool], Callable[[], httpx.Response]]] = []

    def fail_for(self, identifier: str, respond: Callable[[], httpx.Response]) -> None:
        """Transactions carrying this patient's resources get ``respond()`` instead."""
        self.fail_when(lambda text: self.carries(text, identifier), respond)

    def fail_when(self, when: Callable[[str], bool], respond: Callable[[], httpx.Response]) -> None:
        """Transactions whose body text matches ``when`` get ``respond()`` instead."""
        self._failing.append((when, respond))

    def carries(self, bundle_text: str, identifier: str) -> bool:
        return f'"{identifier}"' in bundle_text or f'"{identifier}/' in bundle_text

    def handler(self, request: httpx.Request) -> httpx.Response:
        text = request.content.decode("utf-8")
        bundle = jsonio.loads(text)
        self.transactions.append(bundle)
        for when, respond in self._failing:
            if when(text):
                return respond()
        written = {e["request"]["url"] for e in bundle["entry"]}
        for index, entry in enumerate(bundle["entry"]):
            for ref in references(entry.get("resource")):
                if _TYPED_REF.match(ref) and ref not in written and ref not in self.stored:
                    return fhir_response(
                        400,
                        outcome(
                            f"HAPI-1094: Resource {ref} not found",
                            f"Bundle.entry[{index}].resource",
                        ),
                    )
        answers = []
        for entry in bundle["entry"]:
            url = entry["request"]["url"]
            version = self.stored.get(url, 0) + 1
            self.stored[url] = version
            answers.append(
                {
                    "response": {
                        "status": "201 Created" if version == 1 else "200 OK",
                        "location": f"{url}/_history/{version}",
                        "etag": f'W/"{version}"',
                    }
                }
            )
        return fhir_response(
            200, {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
        )

    def patients(self) -> set[str]:
        return {k for k in self.stored if k.startswith("Patient/")}


async def _no_sleep(seconds: float) -> None:
    return None


def make_client(router: respx.MockRouter, latency: float = 0.0) -> AsyncFhirClient:
    """An async client over the router; ``latency`` seconds per request (really waited)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(latency)
        response: httpx.Response = router.handler(request)
        return response

    return AsyncFhirClient(
        BASE,
        transport=httpx.MockTransport(slow if latency else router.handler),
        retry=RetryPolicy(attempts=3, base_delay=0.0, jitter=0.0),
        sleep=_no_sleep,
    )


def cases(n: int, seed: int = 5) -> list[Case]:
    return list(synth_cases(n, seed))


def write_ndjson(path: Path, items: Iterable[Case | str]) -> Path:
    lines = [
        item if isinstance(item, str) else case_to_json(item, indent=None).rstrip("\n")
        for item in items
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_ndjson(path: Path) -> list[Any]:
    return [jsonio.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def run_push(
    router: respx.MockRouter,
    source: Path | Iterable[CaseSource],
    tmp_path: Path,
    *,
    on_result: Callable[[CaseResult], None] | None = None,
    latency: float = 0.0,
    **overrides: Any,
) -> tuple[PushSummary, list[CaseResult]]:
    """push_cases over the respx router; returns the summary and every case's result."""
    options = PushOptions(
        journal=overrides.pop("journal", tmp_path / "run.journal.ndjson"),
        dead_letter=overrides.pop("dead_letter", tmp_path / "run.dead-letter.ndjson"),
        **{"validate": False, **overrides},
    )
    results: list[CaseResult] = []

    def record(result: CaseResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    async def go() -> PushSummary:
        sources = open_cases(source) if isinstance(source, Path) else source
        async with make_client(router, latency) as fhir:
            return await push_cases(fhir, sources, options, on_result=record)

    return anyio.run(go), results


def server_resources(case: Case) -> list[dict[str, Any]]:
    """The case's resources as a server holds them: references as Type/id, not urn:uuid
    (splitting into one-entry parts rewrites every reference)."""
    return [e["resource"] for p in split_transaction(to_fhir(case), 1, None) for e in p["entry"]]


def searchset(resources: list[dict[str, Any]], total: int, next_url: str | None = None) -> Any:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


class PatientServer:
    """Patient search in pages of ``page`` and ``$everything`` per patient, from cases."""

    def __init__(self, router: respx.MockRouter, items: list[Case], page: int = 2) -> None:
        self.by_id = {}
        for item in items:
            resources = server_resources(item)
            patient = next(r for r in resources if r["resourceType"] == "Patient")
            self.by_id[patient["id"]] = resources
        self.ids = list(self.by_id)
        self.page = page
        self.searches: list[httpx.URL] = []
        self.answers: dict[str, httpx.Response] = {}  # patient id -> its $everything answer
        router.get(f"{BASE}/Patient").mock(side_effect=self.search)
        router.get(url__regex=rf"^{BASE}/Patient/[^/]+/\$everything").mock(
            side_effect=self.everything
        )

    def search(self, request: httpx.Request) -> httpx.Response:
        self.searches.append(request.url)
        offset = int(request.url.params.get("_offset", "0"))
        chunk = self.ids[offset : offset + self.page]
        patients = [self.by_id[i][0] for i in chunk]
        more = offset + self.page < len(self.ids)
        next_url = f"{BASE}/Patient?_count={self.page}&_offset={offset + self.page}"
        return fhir_response(200, searchset(patients, len(self.ids), next_url if more else None))

    def everything(self, request: httpx.Request) -> httpx.Response:
        pid = request.url.path.split("/")[-2]
        if pid in self.answers:
            return self.answers[pid]
        resources = self.by_id[pid]
        return fhir_response(200, searchset(resources, len(resources)))
