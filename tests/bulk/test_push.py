"""push_cases against a respx-routed transaction endpoint: counts, dead letters, resume, split,
concurrency and ordering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx

from fhir_plao import jsonio
from fhir_plao.bulk import CaseResult, CaseSource, open_cases
from fhir_plao.case import Case, case_to_json
from fhir_plao.errors import ValidationError
from fhir_plao.mapping import to_fhir
from fhir_plao.validation import Issue
from tests.bulk.fakes import (
    TransactionEndpoint,
    cases,
    fhir_response,
    outcome,
    read_ndjson,
    run_push,
    write_ndjson,
)


def entries_of(items: list[Case]) -> int:
    return sum(len(to_fhir(c)["entry"]) for c in items)


def test_every_case_is_sent_once_and_counted(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    items = cases(6)
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    summary, results = run_push(router, source, tmp_path, concurrency=3)

    assert (summary.read, summary.sent, summary.created, summary.updated, summary.failed) == (
        6,
        6,
        6,
        0,
        0,
    )
    assert summary.resources_created == entries_of(items) and summary.resources_updated == 0
    assert summary.transactions == len(endpoint.transactions) == 6
    assert len(endpoint.patients()) == 6
    assert sorted(r.source for r in results) == sorted(f"{source}:{n}" for n in range(1, 7))
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 6
    assert not (tmp_path / "run.dead-letter.ndjson").exists()


def test_pushing_again_updates_instead_of_creating(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    items = cases(4)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    run_push(router, source, tmp_path)

    summary, _ = run_push(router, source, tmp_path)

    assert (summary.created, summary.updated) == (0, 4)
    assert (summary.resources_created, summary.resources_updated) == (0, entries_of(items))
    assert len(endpoint.patients()) == 4


def test_bad_lines_go_to_the_dead_letter_and_the_rest_goes_on(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    good = cases(3)
    bad_case = jsonio.loads(case_to_json(good[0]))
    bad_case["patient"]["identifier"] = "other-patient"
    bad_case["patient"]["birth_date"] = "1990-13"
    bad_case["labs"][0]["valeu"] = 1
    source = write_ndjson(
        tmp_path / "cases.ndjson",
        [good[0], '{"patient": {', good[1], jsonio.dumps(bad_case), "[1, 2]", good[2]],
    )

    summary, _ = run_push(router, source, tmp_path)

    assert (summary.read, summary.created, summary.failed, summary.sent) == (6, 3, 3, 3)
    dead = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert [(d["line"], d["stage"]) for d in dead] == [(2, "json"), (4, "case"), (5, "case")]
    not_json, not_a_case, not_an_object = dead
    assert not_json["source"] == f"{source}:2" and not_json["file"] == str(source)
    assert not_json["reason"].startswith(f"{source}:2: malformed JSON at column 14:")
    assert not_json["text"] == '{"patient": {'
    assert not_a_case["patient"] == bad_case["patient"]["identifier_system"] + "|other-patient"
    assert not_a_case["reason"].startswith(f"{source}:4: invalid case:")
    assert {loc["field"] for loc in not_a_case["locations"]} == {
        "patient.birth_date",
        "labs[0].valeu",
    }
    assert not_a_case["case"] == bad_case  # as read, to fix and push again
    assert not_an_object["reason"] == f"{source}:5: a case must be a JSON object"
    assert len(endpoint.patients()) == 3


def test_a_503_storm_on_one_case_dead_letters_it_and_the_others_succeed(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    items = cases(5)
    unlucky = items[2].patient.identifier
    endpoint.fail_for(
        unlucky, lambda: fhir_response(503, outcome("busy, try later"), retry_after="0")
    )
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    summary, results = run_push(router, source, tmp_path, concurrency=2)

    assert (summary.created, summary.failed) == (4, 1)
    assert summary.transactions == 5  # one per case; the retries are the client's own
    sent_for_unlucky = [t for t in endpoint.transactions if unlucky in jsonio.dumps(t)]
    assert len(sent_for_unlucky) == 3  # the client's retry policy: 3 attempts
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert dead["source"] == f"{source}:3" and dead["line"] == 3
    assert dead["stage"] == "server" and dead["status"] == 503
    assert "gave up after 3 attempts" in dead["reason"]
    assert dead["case"] == jsonio.loads(case_to_json(items[2]))
    journal = read_ndjson(tmp_path / "run.journal.ndjson")
    assert sorted(j["source"] for j in journal) == [f"{source}:{n}" for n in (1, 2, 4, 5)]
    assert [r.status for r in results if r.status == "failed"] == ["failed"]


def test_a_server_error_names_the_case_field_behind_the_failing_element(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    (item,) = cases(1)
    bundle = to_fhir(item)
    index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Observation"
    )
    endpoint.fail_for(
        item.patient.identifier,
        lambda: fhir_response(
            422,
            outcome(
                "HAPI-0450: unknown code",
                f"Bundle.entry[{index}].resource.code",
                "Bundle.entry[0].resource.birthDate",
            ),
        ),
    )
    source = write_ndjson(tmp_path / "cases.ndjson", [item])

    summary, _ = run_push(router, source, tmp_path)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert summary.failed == 1 and dead["status"] == 422 and dead["hapi_code"] == "HAPI-0450"
    fields = [loc["field"] for loc in dead["locations"]]
    assert fields[1] == "patient"
    assert fields[0] is not None and fields[0] != "patient"  # the case item of that Observation
    assert dead["locations"][0]["element"] == f"Bundle.entry[{index}].resource.code"


def test_a_validation_failure_is_dead_lettered_with_its_element_and_field(
    router: respx.MockRouter,
    endpoint: TransactionEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = cases(3)
    bad = items[1]
    lab_index = next(
        i
        for i, e in enumerate(to_fhir(bad)["entry"])
        if any(
            v.get("value", "").endswith(f"/{bad.labs[0].id}")
            for v in e["resource"].get("identifier", [])
        )
    )
    from fhir_plao import validation

    real = validation.ensure_valid

    def ensure_valid(bundle: dict[str, Any]) -> list[Issue]:
        if bad.patient.identifier in jsonio.dumps(bundle):
            path = f"Bundle.entry[{lab_index}].resource.valueQuantity.code"
            raise ValidationError("invalid FHIR", [Issue("error", path, "not a UCUM code")])
        return real(bundle)

    monkeypatch.setattr(validation, "ensure_valid", ensure_valid)
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    summary, _ = run_push(router, source, tmp_path, validate=True)

    assert (summary.created, summary.failed, summary.sent) == (2, 1, 2)
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert dead["stage"] == "validation"
    assert dead["locations"] == [
        {
            "field": "labs[0]",
            "element": f"Bundle.entry[{lab_index}].resource.valueQuantity.code",
            "message": "not a UCUM code",
        }
    ]
    assert not any(bad.patient.identifier in jsonio.dumps(t) for t in endpoint.transactions)


def test_resume_skips_what_the_journal_confirmed(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    items = cases(5)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    run_push(router, source, tmp_path)
    assert len(endpoint.transactions) == 5

    summary, _ = run_push(router, source, tmp_path, resume=True)

    assert len(endpoint.transactions) == 5  # nothing sent
    assert (summary.read, summary.skipped, summary.sent) == (5, 5, 0)

    changed = items[3].model_copy(
        update={"patient": items[3].patient.model_copy(update={"birth_date": "1979"})}
    )
    write_ndjson(source, [*items[:3], changed, items[4]])
    summary, _ = run_push(router, source, tmp_path, resume=True)

    assert len(endpoint.transactions) == 6  # only the edited case
    assert (summary.skipped, summary.sent, summary.updated) == (4, 1, 1)
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 6


class Stop(Exception):
    """Stands for the kill of a run part-way."""


def test_a_run_stopped_part_way_resumes_where_it_stopped(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    items = cases(12)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    confirmed = 0

    def stop_after_five(result: CaseResult) -> None:
        nonlocal confirmed
        confirmed += 1
        if confirmed == 5:
            raise Stop

    with pytest.raises(Stop):
        run_push(router, source, tmp_path, concurrency=4, latency=0.01, on_result=stop_after_five)
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 5
    sent_before = len(endpoint.transactions)

    summary, _ = run_push(router, source, tmp_path, concurrency=4, resume=True)

    assert summary.skipped == 5 and summary.sent == 7 and summary.failed == 0
    assert len(endpoint.transactions) == sent_before + 7
    assert len(endpoint.patients()) == 12
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 12


def test_a_large_case_is_split_into_ordered_transactions(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path, example_case: Case
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", [example_case])

    summary, _ = run_push(router, source, tmp_path, max_entries=10, max_bytes=None)

    # the endpoint refuses a Type/id reference to a resource it does not have yet
    assert summary.failed == 0 and summary.created == 1
    assert summary.transactions == len(endpoint.transactions) == 11
    assert summary.resources_created == 107
    assert all(len(t["entry"]) <= 10 for t in endpoint.transactions)
    (journal,) = read_ndjson(tmp_path / "run.journal.ndjson")
    assert journal["transactions"] == 11 and journal["resources"] == 107


def test_a_failed_part_says_how_many_parts_were_applied(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path, example_case: Case
) -> None:
    calls = 0

    def third_transaction(text: str) -> bool:
        nonlocal calls
        calls += 1
        return calls == 3

    endpoint.fail_when(third_transaction, lambda: fhir_response(400, outcome("no")))
    source = write_ndjson(tmp_path / "cases.ndjson", [example_case])

    summary, _ = run_push(router, source, tmp_path, max_entries=10, max_bytes=None)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert summary.failed == 1 and summary.transactions == 3
    assert (dead["parts_applied"], dead["parts"]) == (2, 11)


def test_a_case_that_cannot_be_split_under_the_limits_is_dead_lettered(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(1))

    summary, _ = run_push(router, source, tmp_path, max_bytes=500)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert summary.failed == 1 and dead["stage"] == "split" and endpoint.transactions == []
    assert "max_bytes=500" in dead["reason"]


def test_cases_of_one_patient_are_sent_in_input_order(
    router: respx.MockRouter, endpoint: TransactionEndpoint, tmp_path: Path
) -> None:
    first, other1, other2 = cases(3)
    versions = [
        first.model_copy(
            update={"patient": first.patient.model_copy(update={"birth_date": str(1980 + n)})}
        )
        for n in range(4)
    ]
    source = write_ndjson(tmp_path / "cases.ndjson", [versions[0], other1, *versions[1:], other2])

    summary, _ = run_push(router, source, tmp_path, concurrency=4, latency=0.01)

    assert summary.failed == 0 and summary.created == 3 and summary.updated == 3
    births = [
        e["resource"]["birthDate"]
        for t in endpoint.transactions
        for e in t["entry"]
        if e["resource"]["resourceType"] == "Patient"
        and e["resource"]["identifier"][0]["value"] == first.patient.identifier
    ]
    assert births == ["1980", "1981", "1982", "1983"]


def test_concurrency_is_bounded_and_used(router: respx.MockRouter, tmp_path: Path) -> None:
    in_flight = peak = 0
    handler = router.handler

    import anyio
    import httpx

    async def counting(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1
        response: httpx.Response = handler(request)
        return response

    router.handler = counting  # type: ignore[method-assign]
    source = write_ndjson(tmp_path / "cases.ndjson", cases(10))

    run_push(router, source, tmp_path, concurrency=3)

    assert peak == 3


def test_the_input_is_read_only_as_fast_as_cases_are_sent(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    """Memory stays flat: the reader is never more than a bounded queue ahead of the results."""
    concurrency = 3
    source = write_ndjson(tmp_path / "cases.ndjson", cases(20))
    read = finished = 0
    worst = 0

    def counted() -> Iterator[CaseSource]:
        nonlocal read
        for item in open_cases(source):
            read += 1
            yield item

    def on_result(result: CaseResult) -> None:
        nonlocal finished, worst
        finished += 1
        worst = max(worst, read - finished)

    run_push(
        router, counted(), tmp_path, concurrency=concurrency, latency=0.005, on_result=on_result
    )

    assert finished == 20
    # queued (concurrency) + being worked on (concurrency) + the one waiting to be queued
    assert worst <= 2 * concurrency + 1


def test_a_directory_of_case_files(router: respx.MockRouter, tmp_path: Path) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    for n, item in enumerate(cases(3)):
        (folder / f"case-{n}.json").write_text(case_to_json(item))
    (folder / "case-9.json").write_text("{}")

    summary, _ = run_push(router, folder, tmp_path)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert (summary.created, summary.failed) == (3, 1)
    assert dead["source"] == str(folder / "case-9.json") and dead["line"] is None
    assert {loc["field"] for loc in dead["locations"]} == {"patient"}


def test_an_unreachable_server_stops_the_run_before_any_case_is_read(
    tmp_path: Path,
) -> None:
    from fhir_plao.errors import TransportError
    from tests.bulk.fakes import BASE

    router = respx.MockRouter(assert_all_called=False)
    router.get(f"{BASE}/metadata").mock(side_effect=__import__("httpx").ConnectError("refused"))
    source = write_ndjson(tmp_path / "cases.ndjson", cases(2))

    with pytest.raises(TransportError, match="could not connect"):
        run_push(router, source, tmp_path)
    assert not (tmp_path / "run.journal.ndjson").exists()
