"""Push: synthetic cases to the local FHIR server (SEKMET or HAPI), four ways, the same resources
each time.

Every contender runs with the same concurrency (4 by default: that many cases in flight), starts
on an emptied database, and is followed by a ``_summary=count`` of every resource type, which must
equal what the Bundles hold (the same work was done):

* **ours**: ``AsyncFhirClient.push(case)`` per case: ``to_fhir`` and one transaction Bundle of PUT
  entries (the mapping is inside the clock; validation is not, as in the client's ``push``).
* **httpx transaction**: one plain ``httpx.AsyncClient`` POST of the same transaction Bundle,
  serialised before the clock starts; the status is checked, the response body not parsed. The
  server's own ceiling for that shape.
* **fhirpy one by one**: fhirpy's ``AsyncFHIRClient``, ``client.resource(type, **dict).save()``
  for each resource of a case in Bundle order (which never refers forward). Each resource keeps
  our deterministic id, so ``save`` is a PUT ``Type/id``, and every ``urn:uuid:`` reference is
  rewritten to the ``Type/id`` of its target before the clock starts; Decimals become floats
  (fhirpy serialises with the standard ``json``). The same resources, ids and references as ours.
* **httpx one by one**: one plain keep-alive ``httpx`` PUT per resource (same rewritten resources,
  serialised before the clock): what any one-by-one client could do at best on this server.

Besides wall time, each run records the CPU seconds the server's process used (``/proc/PID/stat``)
and those of the bench process (which is the client for all four): where the time went.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench import server
from bench._common import (
    FHIR_JSON,
    BenchError,
    Series,
    plain_numbers,
    progress,
    resource_type_counts,
    run_pool,
)

CONTENDERS = ("ours", "httpx_transaction", "fhirpy_one_by_one", "httpx_one_by_one")
LABELS = {
    "ours": "ours: AsyncFhirClient.push, 1 transaction/case",
    "httpx_transaction": "plain httpx: 1 POST/transaction Bundle",
    "fhirpy_one_by_one": "fhirpy: 1 save()/resource",
    "httpx_one_by_one": "plain httpx: 1 PUT/resource",
}
TIMEOUT = 120.0  # s, per request


@dataclass
class PushInputs:
    cases: list[Any]
    bodies: list[bytes]  # the transaction Bundles, serialised
    one_by_one: list[list[dict[str, Any]]]  # per case: resources with Type/id references
    one_by_one_bodies: list[list[tuple[str, bytes]]]  # per case: (Type/id, body)
    expected: dict[str, int]  # resources per type

    @property
    def resources(self) -> int:
        return sum(self.expected.values())


@dataclass
class PushResult:
    cases: int
    resources: int
    concurrency: int
    seconds: dict[str, Series] = field(default_factory=dict)
    server_cpu: dict[str, Series] = field(default_factory=dict)  # the server process's CPU seconds
    client_cpu: dict[str, Series] = field(default_factory=dict)  # this process's CPU seconds
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def resources_per_second(self, name: str) -> float:
        return self.resources / self.seconds[name].median

    def cases_per_second(self, name: str) -> float:
        return self.cases / self.seconds[name].median

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "resources": self.resources,
            "concurrency": self.concurrency,
            "seconds": {name: series.to_json() for name, series in self.seconds.items()},
            "server_cpu": {name: series.to_json() for name, series in self.server_cpu.items()},
            "client_cpu": {name: series.to_json() for name, series in self.client_cpu.items()},
            "resources_per_second": {
                name: self.resources_per_second(name) for name in self.seconds
            },
            "counts_after_each": self.counts,
        }


def rewrite_references(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bundle's resources, each ``urn:uuid:`` reference replaced by its target's Type/id."""
    target = {entry["fullUrl"]: entry["request"]["url"] for entry in bundle["entry"]}

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: target.get(item, item)
                if key == "reference" and isinstance(item, str)
                else fix(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [fix(item) for item in value]
        return value

    resources = [fix(entry["resource"]) for entry in bundle["entry"]]
    for resource in resources:
        leftover = _references(resource)
        if any(ref.startswith("urn:") for ref in leftover):
            raise BenchError(f"a reference was not rewritten in {resource['resourceType']}")
    return resources


def _references(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if key == "reference" and isinstance(inner, str):
                    found.append(inner)
                else:
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def prepare(n: int, seed: int = 1) -> PushInputs:
    from fhir_plao import jsonio
    from fhir_plao.mapping import to_fhir
    from fhir_plao.synth import synth_cases

    cases = list(synth_cases(n, seed))
    bundles = [to_fhir(case) for case in cases]
    rewritten = [rewrite_references(bundle) for bundle in bundles]
    return PushInputs(
        cases=cases,
        bodies=[jsonio.dumps_bytes(bundle) for bundle in bundles],
        one_by_one=[[plain_numbers(r) for r in resources] for resources in rewritten],
        one_by_one_bodies=[
            [(f"{r['resourceType']}/{r['id']}", jsonio.dumps_bytes(r)) for r in resources]
            for resources in rewritten
        ],
        expected=resource_type_counts(bundles),
    )


# --------------------------------------------------------------------------- contenders


async def push_ours(url: str, inputs: PushInputs, concurrency: int) -> float:
    from fhir_plao import AsyncFhirClient

    t0 = time.perf_counter()
    async with AsyncFhirClient(url, timeout=TIMEOUT) as client:

        async def push(case: Any) -> Any:
            return await client.push(case, validate=False)  # as the others: no validation

        await run_pool(inputs.cases, push, concurrency)
    return time.perf_counter() - t0


async def push_httpx_transaction(url: str, inputs: PushInputs, concurrency: int) -> float:
    import httpx

    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:

        async def one(body: bytes) -> None:
            response = await http.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise BenchError(f"transaction: HTTP {response.status_code} {response.text[:300]}")

        await run_pool(inputs.bodies, one, concurrency)
    return time.perf_counter() - t0


async def push_fhirpy(url: str, inputs: PushInputs, concurrency: int) -> float:
    from fhirpy import AsyncFHIRClient

    client = AsyncFHIRClient(url)

    async def one(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            await client.resource(resource["resourceType"], **resource).save()

    t0 = time.perf_counter()
    await run_pool(inputs.one_by_one, one, concurrency)
    return time.perf_counter() - t0


async def push_httpx_one_by_one(url: str, inputs: PushInputs, concurrency: int) -> float:
    import httpx

    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:

        async def one(resources: list[tuple[str, bytes]]) -> None:
            for path, body in resources:
                response = await http.put(f"{url}/{path}", content=body, headers=headers)
                if response.status_code not in (200, 201):
                    raise BenchError(f"PUT {path}: HTTP {response.status_code}")

        await run_pool(inputs.one_by_one_bodies, one, concurrency)
    return time.perf_counter() - t0


Contender = Callable[[str, PushInputs, int], Coroutine[Any, Any, float]]
RUNNERS: dict[str, Contender] = {
    "ours": push_ours,
    "httpx_transaction": push_httpx_transaction,
    "fhirpy_one_by_one": push_fhirpy,
    "httpx_one_by_one": push_httpx_one_by_one,
}


def benchmark(
    handle: Any,
    n: int = 200,
    runs: int = 3,
    concurrency: int = 4,
    contenders: tuple[str, ...] = CONTENDERS,
) -> PushResult:
    """``runs`` rounds; in each, every contender (in a rotating order) on an emptied server."""
    url = str(handle.base_url)
    progress(f"push: preparing {n} synthetic cases four ways")
    inputs = prepare(n)
    result = PushResult(cases=n, resources=inputs.resources, concurrency=concurrency)
    result.seconds = {name: Series("s") for name in contenders}
    result.server_cpu = {name: Series("s") for name in contenders}
    result.client_cpu = {name: Series("s") for name in contenders}
    for run in range(runs):
        order = contenders[run % len(contenders) :] + contenders[: run % len(contenders)]
        for name in order:
            server.reset(handle)
            server_cpu, client_cpu = server.cpu_seconds(handle.pid), time.process_time()
            seconds = asyncio.run(RUNNERS[name](url, inputs, concurrency))
            result.server_cpu[name].add(server.cpu_seconds(handle.pid) - server_cpu)
            result.client_cpu[name].add(time.process_time() - client_cpu)
            counts = server.check_counts(url, inputs.expected, f"push {name}")
            result.counts[name] = counts
            result.seconds[name].add(seconds)
            progress(
                f"push run {run + 1}/{runs}: {name}: {seconds:.2f} s, "
                f"{inputs.resources / seconds:.0f} resources/s, {n / seconds:.1f} cases/s; CPU: "
                f"server {result.server_cpu[name].values[-1]:.1f} s, "
                f"client {result.client_cpu[name].values[-1]:.1f} s "
                f"(server then holds {sum(counts.values())} resources, as expected)"
            )
    server.reset(handle)
    return result
