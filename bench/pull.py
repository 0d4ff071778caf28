"""Pull: one patient's 1,000 Observations, paged, our client against raw httpx.

Set-up (once, not timed): a Patient and ``n`` Observations (lab-style, a Decimal ``valueQuantity``
each), written with our client in transactions of 100 PUT entries. Then, alternating:

* **ours**: ``FhirClient.search("Observation", {"subject": "Patient/ID", "_count": "100"})``,
  iterated to the end (it follows ``next`` links, parses with exact decimals, checks each page);
* **raw httpx**: ``httpx.Client.get`` of the same first URL, ``response.json()``, then the
  ``next`` link of each page as the server wrote it, until there is none.

Both reuse one pooled connection (each client is made once and warmed by one full pull); each
run must bring back exactly ``n`` Observations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench._common import FHIR_JSON, BenchError, Series, progress

PATIENT_ID = "bench-pull-patient"
PAGE_SIZE = 100
BATCH = 100
MAX_PAGES = 10_000  # a bound on any paging loop here


@dataclass
class PullResult:
    observations: int
    page_size: int
    seconds: dict[str, Series] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.seconds["ours"].median / self.seconds["raw_httpx"].median

    def to_json(self) -> dict[str, Any]:
        return {
            "observations": self.observations,
            "page_size": self.page_size,
            "seconds": {name: series.to_json() for name, series in self.seconds.items()},
        }


def _observation(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"bench-pull-obs-{i:05d}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}], "text": "Calcium"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": f"20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "valueQuantity": {
            "value": Decimal(f"{8 + (i % 300) / 100:.2f}"),
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    path = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": f"urn:bench:{path}",
        "resource": resource,
        "request": {"method": "PUT", "url": path},
    }


def load(url: str, n: int) -> None:
    """The Patient and its ``n`` Observations, in transactions of :data:`BATCH` entries."""
    from fhir_plao import FhirClient

    patient = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}
    with FhirClient(url, timeout=120) as client:
        client.update(patient, if_match=False)
        for start in range(0, n, BATCH):
            entries = [_entry(_observation(i)) for i in range(start, min(n, start + BATCH))]
            client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        found = client.count("Observation", {"subject": f"Patient/{PATIENT_ID}"})
    if found != n:
        raise BenchError(f"pull set-up: the server holds {found} Observations, expected {n}")


def pull_ours(client: Any) -> int:
    params = {"subject": f"Patient/{PATIENT_ID}", "_count": str(PAGE_SIZE)}
    return sum(1 for _ in client.search("Observation", params, max_pages=MAX_PAGES))


def pull_raw(http: Any, url: str) -> int:
    link: str | None = f"{url}/Observation?subject=Patient/{PATIENT_ID}&_count={PAGE_SIZE}"
    got = 0
    for _ in range(MAX_PAGES):
        if link is None:
            return got
        response = http.get(link)
        response.raise_for_status()
        page = response.json()
        got += sum(1 for entry in page.get("entry", []) if "resource" in entry)
        link = next((lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"), None)
    raise BenchError(f"raw pull: more than {MAX_PAGES} pages")


def benchmark(handle: Any, n: int = 1000, runs: int = 21) -> PullResult:
    import httpx

    from fhir_plao import FhirClient

    url = str(handle.base_url)
    progress(f"pull: loading a patient with {n} Observations")
    load(url, n)
    result = PullResult(observations=n, page_size=PAGE_SIZE)
    result.seconds = {"ours": Series("s"), "raw_httpx": Series("s")}
    with (
        FhirClient(url, timeout=120) as client,
        httpx.Client(timeout=120, headers={"Accept": FHIR_JSON}) as http,
    ):
        contenders = {"ours": lambda: pull_ours(client), "raw_httpx": lambda: pull_raw(http, url)}
        for name, pull in contenders.items():  # warm-up: connection, first pages
            if pull() != n:
                raise BenchError(f"pull {name}: did not bring back {n} Observations")
        for run in range(runs):
            names = list(contenders) if run % 2 == 0 else list(reversed(contenders))
            for name in names:
                t0 = time.perf_counter()
                got = contenders[name]()
                seconds = time.perf_counter() - t0
                if got != n:
                    raise BenchError(f"pull {name}: brought back {got} Observations, not {n}")
                result.seconds[name].add(seconds)
        progress(
            f"pull: ours {result.seconds['ours'].median:.3f} s, raw httpx "
            f"{result.seconds['raw_httpx'].median:.3f} s (medians of {runs}); "
            f"ratio {result.ratio:.2f}"
        )
    return result
