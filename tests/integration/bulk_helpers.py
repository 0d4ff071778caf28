"""Bulk helpers for the tests against the real servers (SEKMET, HAPI): instrumentation only.

:class:`RecordingTransport` wraps ``httpx.AsyncHTTPTransport()``: every request goes to the real
server, and the transport records what was sent, when, and how many requests were in flight at
once. For the fault paths a real server will not produce on demand,
:meth:`RecordingTransport.inject` answers the requests a predicate picks (one patient's
transactions, say) with a fault instead: a canned status, a reset connection, or the real server's
answer cut short. Every other request still reaches the server, so the cases around the faulty one
really are stored.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fhir_plao import jsonio
from fhir_plao.bulk import (
    CaseResult,
    CaseSource,
    PatientResult,
    PullOptions,
    PullSummary,
    PushOptions,
    PushSummary,
    open_cases,
    pull_cases,
    push_cases,
)
from fhir_plao.case import Case, case_to_json
from fhir_plao.client import AsyncFhirClient, FhirClient, RetryPolicy
from fhir_plao.mapping import to_fhir
from fhir_plao.synth import synth_cases

FHIR_JSON = "application/fhir+json"
#: quick retries for the library-level runs (the CLI keeps its default policy)
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.0, jitter=0.0)

Forward = Callable[[httpx.Request], Awaitable[httpx.Response]]
Fault = Callable[[httpx.Request, Forward], Awaitable[httpx.Response]]
Predicate = Callable[[httpx.Request], bool]


@dataclass
class Sent:
    """One request as it left the client (``injected``: answered by a fault, not the server)."""

    method: str
    url: httpx.URL
    body: bytes
    started: float
    ended: float = float("inf")
    injected: bool = False
    status: int | None = None
    reply: bytes = b""

    def json(self) -> Any:
        return jsonio.loads(self.body) if self.body else None

    @property
    def is_transaction(self) -> bool:
        return self.method == "POST" and b'"transaction"' in self.body


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport, recording each request and the peak number in flight.

    ``latency`` (seconds) is waited before each request is forwarded, so that requests
    overlap even when the server answers quickly. It can be used across several clients
    (and event loops): the real transport is made again after each ``aclose``.
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.peak = 0
        self._real: httpx.AsyncHTTPTransport | None = None
        self._faults: list[tuple[Predicate, Fault]] = []
        self._hooks: list[tuple[Predicate, Callable[[], None]]] = []

    def inject(self, when: Predicate, fault: Fault) -> None:
        """Requests for which ``when`` is true get ``fault`` instead of going straight through."""
        self._faults.append((when, fault))

    def before(self, when: Predicate, action: Callable[[], None]) -> None:
        """Run ``action`` before forwarding the first request for which ``when`` is true."""
        self._hooks.append((when, action))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        record = Sent(request.method, request.url, body, time.monotonic())
        self.sent.append(record)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.latency:
                await anyio.sleep(self.latency)
            for when, action in list(self._hooks):
                if when(request):
                    self._hooks.remove((when, action))
                    await anyio.to_thread.run_sync(action)
            for when, fault in self._faults:
                if when(request):
                    record.injected = True
                    response = await fault(request, self._forward)
                    break
            else:
                response = await self._forward(request)
            record.status, record.reply = response.status_code, response.content
            return response
        finally:
            self.in_flight -= 1
            record.ended = time.monotonic()

    async def _forward(self, request: httpx.Request) -> httpx.Response:
        """Send to the real server and read the whole body (the request is in flight till then)."""
        if self._real is None:
            self._real = httpx.AsyncHTTPTransport()
        response = await self._real.handle_async_request(request)
        try:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=raw)

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()
            self._real = None

    # ----------------------------------------------------------------- what was sent

    def transactions(self, identifier: str | None = None) -> list[Sent]:
        """The transaction POSTs (those carrying ``identifier``'s resources, when given)."""
        return [
            s
            for s in self.sent
            if s.is_transaction and (identifier is None or carries_body(s.body, identifier))
        ]

    def gets(self, path_suffix: str) -> list[Sent]:
        return [s for s in self.sent if s.method == "GET" and s.url.path.endswith(path_suffix)]

    def search_pages(self, resource_type: str) -> list[Sent]:
        """The GETs of a paged search of ``resource_type``: the search itself, then each next
        link as the server gave it, whether it pages on the type (SEKMET: ``Patient?_offset=``)
        or on its base URL (HAPI: ``?_getpages=ID&_getpagesoffset=N``)."""
        gets = [s for s in self.sent if s.method == "GET"]
        pages = [s for s in gets if s.url.path.endswith(f"/{resource_type}")][:1]
        while pages and pages[-1].reply:
            links = jsonio.loads(pages[-1].reply).get("link", [])
            following = [link["url"] for link in links if link.get("relation") == "next"]
            if not following:
                break
            wanted = httpx.URL(following[0])
            nxt = [s for s in gets if s.url.path == wanted.path and s.url.params == wanted.params]
            if not nxt:
                break
            pages.append(nxt[0])
        return pages


# --------------------------------------------------------------------------- faults


def carries_body(body: bytes, identifier: str) -> bool:
    """Whether a request body holds a resource of the patient with this identifier (the Patient's
    own identifier, or an item identifier ``IDENTIFIER/item``)."""
    text = body.decode("utf-8", errors="replace")
    return f'"{identifier}"' in text or f'"{identifier}/' in text


def carries(identifier: str) -> Predicate:
    """A transaction POST with this patient's resources."""
    return lambda r: r.method == "POST" and carries_body(r.content, identifier)


def everything_of(patient_id: str) -> Predicate:
    return lambda r: r.method == "GET" and r.url.path.endswith(f"/Patient/{patient_id}/$everything")


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


def answer(status: int, body: Any = None, **headers: str) -> Fault:
    """Always this canned response (stateless)."""

    async def fault(request: httpx.Request, forward: Forward) -> httpx.Response:
        return fhir_response(status, body, **headers)

    return fault


def first_then_real(first: Fault, times: int = 1) -> Fault:
    """``first`` for the first ``times`` matching requests, then the real server."""
    left = times

    async def fault(request: httpx.Request, forward: Forward) -> httpx.Response:
        nonlocal left
        if left > 0:
            left -= 1
            return await first(request, forward)
        return await forward(request)

    return fault


async def reset(request: httpx.Request, forward: Forward) -> httpx.Response:
    """The connection is reset before the request reaches the server."""
    raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)


async def cut_short(request: httpx.Request, forward: Forward) -> httpx.Response:
    """The server applies the request; its answer arrives cut off after 40 bytes."""
    real = await forward(request)
    headers = [
        (k, v)
        for k, v in real.headers.items()
        if k.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(real.status_code, headers=headers, content=real.content[:40])


# --------------------------------------------------------------------------- cases and runs


def cases(n: int, seed: int) -> list[Case]:
    """``n`` synthetic cases; each test uses a seed of its own, so its patients are its own."""
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


def entries_of(items: Iterable[Case]) -> int:
    return sum(len(to_fhir(c)["entry"]) for c in items)


def patient_id(case: Case) -> str:
    """The server id of the case's Patient (derived from its identifier)."""
    (pid,) = [
        e["resource"]["id"]
        for e in to_fhir(case)["entry"]
        if e["request"]["url"].startswith("Patient/")
    ]
    return str(pid)


def identifier_criteria(items: Iterable[Case]) -> str:
    """``Patient?identifier=SYS|A,SYS|B``: a search for exactly these cases' patients."""
    values = ",".join(f"{c.patient.identifier_system}|{c.patient.identifier}" for c in items)
    return f"Patient?identifier={values}"


def stored(url: str, case: Case) -> bool:
    """Whether the server holds the case's Patient."""
    with FhirClient(url) as fhir:
        query = {"identifier": f"{case.patient.identifier_system}|{case.patient.identifier}"}
        return fhir.count("Patient", query) == 1


def client(url: str, transport: httpx.AsyncBaseTransport | None) -> AsyncFhirClient:
    return AsyncFhirClient(url, transport=transport, retry=FAST_RETRY)


def push(
    url: str,
    source: Path | Iterable[CaseSource],
    tmp_path: Path,
    *,
    transport: RecordingTransport | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    **overrides: Any,
) -> tuple[PushSummary, list[CaseResult]]:
    """push_cases to the server (records in ``tmp_path/run.*``; no validation unless asked).

    The faults here are made in the transport, at once: no attempt is held anywhere to land
    late, so a patient that met one is verified after 0.2 s, not the read timeout."""
    overrides.setdefault("settle", 0.2)
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
        async with client(url, transport) as fhir:
            return await push_cases(fhir, sources, options, on_result=record)

    return anyio.run(go), results


def pull(
    url: str,
    tmp_path: Path,
    *,
    transport: RecordingTransport | None = None,
    criteria: str | None = None,
    concurrency: int = 3,
    page_size: int = 100,
) -> tuple[PullSummary, list[str], list[PatientResult]]:
    """pull_cases from the server; returns the summary, the NDJSON lines and each result."""
    lines: list[str] = []
    results: list[PatientResult] = []
    options = PullOptions(
        dead_letter=tmp_path / "pull.dead-letter.ndjson",
        concurrency=concurrency,
        page_size=page_size,
    )

    async def go() -> PullSummary:
        async with client(url, transport) as fhir:
            return await pull_cases(
                fhir, lines.append, options, criteria=criteria, on_result=results.append
            )

    return anyio.run(go), lines, results


def route_cli_through(monkeypatch: pytest.MonkeyPatch, transport: RecordingTransport) -> None:
    """Make the bulk CLI (``fhir-plao push`` of many cases, ``pull --all/--search``) send through
    ``transport``; everything else about its client stays as the CLI makes it."""
    from fhir_plao.cli import _server, pull, push

    def async_client(args: Any) -> AsyncFhirClient:
        server, auth, timeout = _server.connection(args)
        return AsyncFhirClient(server, auth=auth, timeout=timeout, transport=transport)

    for module in (push, pull):
        monkeypatch.setattr(module, "async_client", async_client)


def search_order(url: str, criteria: str | None = None) -> list[str]:
    """The Patient ids the server's search returns, in its order (read with the sync client)."""
    with FhirClient(url) as fhir:
        return [str(p["id"]) for p in fhir.search("Patient", criteria)]
