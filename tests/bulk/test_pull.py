"""pull_cases against respx routes: paging, order, dead letters, criteria."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import respx

from fhir_plao.bulk import (
    PatientResult,
    PullOptions,
    PullSummary,
    patient_query,
    pull_cases,
)
from fhir_plao.case import case_from_json
from fhir_plao.compare import case_differences
from fhir_plao.errors import InputError, ServerError
from tests.bulk.fakes import (
    BASE,
    PatientServer,
    cases,
    fhir_response,
    outcome,
    read_ndjson,
    searchset,
)


def run_pull(
    router: respx.MockRouter,
    tmp_path: Path,
    criteria: str | None = None,
    concurrency: int = 3,
) -> tuple[PullSummary, list[str], list[PatientResult]]:
    from tests.bulk.fakes import make_client

    lines: list[str] = []
    results: list[PatientResult] = []
    options = PullOptions(dead_letter=tmp_path / "pull.dead-letter.ndjson", concurrency=concurrency)

    async def go() -> PullSummary:
        async with make_client(router, latency=0.002) as fhir:
            return await pull_cases(
                fhir, lines.append, options, criteria=criteria, on_result=results.append
            )

    return anyio.run(go), lines, results


def test_every_patient_is_written_in_search_order(router: respx.MockRouter, tmp_path: Path) -> None:
    items = cases(7)
    server = PatientServer(router, items, page=3)

    summary, lines, _ = run_pull(router, tmp_path)

    assert (summary.found, summary.written, summary.failed, summary.incomplete) == (7, 7, 0, False)
    assert len(server.searches) == 3  # pages of 3, 3 and 1, following the next links
    pulled = [case_from_json(line) for line in lines]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert [c.patient.identifier for c in pulled] == [c.patient.identifier for c in items]
    for original, back in zip(items, pulled, strict=True):
        assert case_differences(original, back, ignore_order=True) == []
    assert not (tmp_path / "pull.dead-letter.ndjson").exists()


def test_a_patient_that_fails_goes_to_the_dead_letter_the_rest_are_written(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    items = cases(5)
    server = PatientServer(router, items)
    broken = server.ids[1]
    unmappable = server.ids[3]
    server.answers[broken] = fhir_response(500, outcome("database on fire"))
    # two Patients in one patient's compartment: from_fhir cannot make one case of it
    two = [*server.by_id[unmappable], {**server.by_id[server.ids[0]][0]}]
    server.answers[unmappable] = fhir_response(200, searchset(two, len(two)))

    summary, lines, results = run_pull(router, tmp_path)

    assert (summary.found, summary.written, summary.failed) == (5, 3, 2)
    written = [case_from_json(line).patient.identifier for line in lines]
    assert written == [items[i].patient.identifier for i in (0, 2, 4)]
    dead = read_ndjson(tmp_path / "pull.dead-letter.ndjson")
    by_patient = {d["patient"]: d for d in dead}
    assert by_patient[f"Patient/{broken}"]["stage"] == "server"
    assert by_patient[f"Patient/{broken}"]["status"] == 500
    assert by_patient[f"Patient/{unmappable}"]["stage"] == "mapping"
    assert "several Patients" in by_patient[f"Patient/{unmappable}"]["reason"]
    assert sorted(r.status for r in results) == ["failed"] * 2 + ["written"] * 3


def test_unmapped_elements_are_reported_and_the_case_written(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    server = PatientServer(router, cases(2))
    pid = server.ids[0]
    extra = {"resourceType": "Practitioner", "id": "dr1"}
    resources = [*server.by_id[pid], extra]
    server.answers[pid] = fhir_response(200, searchset(resources, len(resources)))

    summary, _, results = run_pull(router, tmp_path)

    assert (summary.written, summary.unmapped, summary.failed) == (2, 1, 0)
    (with_unmapped,) = [r for r in results if r.unmapped]
    assert with_unmapped.patient_id == pid
    assert "Practitioner/dr1" in str(with_unmapped.unmapped[0])


def test_search_criteria_are_sent_with_a_page_size(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    server = PatientServer(router, cases(1))

    run_pull(router, tmp_path, criteria="Patient?identifier=urn:x|1")

    (url,) = server.searches
    assert url.params["identifier"] == "urn:x|1" and url.params["_count"] == "100"


def test_a_failing_search_stops_the_run(router: respx.MockRouter, tmp_path: Path) -> None:
    router.get(f"{BASE}/Patient").mock(return_value=fhir_response(400, outcome("bad search")))
    with pytest.raises(ServerError, match="bad search"):
        run_pull(router, tmp_path, criteria="Patient?bogus=1")


@pytest.mark.parametrize(
    ("criteria", "query"),
    [
        (None, "_count=100"),
        ("Patient", "_count=100"),
        ("Patient?identifier=a|b", "identifier=a|b&_count=100"),
        ("?name=x", "name=x&_count=100"),
        ("name=x&_count=5", "name=x&_count=5"),
    ],
)
def test_patient_query(criteria: str | None, query: str) -> None:
    assert patient_query(criteria) == query


@pytest.mark.parametrize("criteria", ["Observation?code=x", "Patient?justtext"])
def test_patient_query_refuses_what_is_not_a_patient_search(criteria: str) -> None:
    with pytest.raises(InputError):
        patient_query(criteria)
