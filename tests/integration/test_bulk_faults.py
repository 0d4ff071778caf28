"""Bulk push and pull when something goes wrong for one patient, against the real SEKMET server.

A real server will not answer 503 or 429, reset a connection or cut a body on demand, so
:class:`RecordingTransport` (``bulk_helpers``) injects the fault for one patient's requests and
passes every other request to the real server (SEKMET or HAPI): the cases around the faulty one
really are stored, and what the faulty one left behind on the server is checked there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from bulk_helpers import (
    Fault,
    RecordingTransport,
    answer,
    carries,
    cases,
    cut_short,
    everything_of,
    first_then_real,
    outcome,
    patient_id,
    push,
    read_ndjson,
    reset,
    route_cli_through,
    stored,
    write_ndjson,
)

from fhir_plao import jsonio
from fhir_plao.bulk import split_transaction
from fhir_plao.case import Case, case_to_json
from fhir_plao.cli import main
from fhir_plao.client import FhirClient
from fhir_plao.errors import NotFound
from fhir_plao.mapping import to_fhir

# name, seed, a maker of the fault for the unlucky patient's transactions (a fresh one per test:
# some count the requests they have seen), attempts sent for it, and its end: None (confirmed in
# the end) or (stage, a piece of the dead letter's reason, status)
FAULTS: list[tuple[str, int, Callable[[], Fault], int, tuple[str, str, int | None] | None]] = [
    (
        "503-storm",
        201,
        lambda: answer(503, outcome("busy, try later"), retry_after="0"),
        3,  # the client's retry policy here: 3 attempts
        ("server", "gave up after 3 attempts", 503),
    ),
    (
        "429-then-success",
        202,
        lambda: first_then_real(answer(429, outcome("slow down"), retry_after="0")),
        2,
        None,
    ),
    ("reset-then-success", 203, lambda: first_then_real(reset), 2, None),
    ("reset-every-time", 204, lambda: reset, 3, ("transport", "the connection broke", None)),
    # the server applied it, the answer was cut, every time: retried (an idempotent
    # transaction), then not confirmed (pushing it again is harmless: the same ids are updated)
    ("cut-body", 205, lambda: cut_short, 3, ("transport", "a body cut short", None)),
]


@pytest.mark.parametrize(
    ("seed", "make_fault", "attempts", "end"),
    [pytest.param(*rest, id=name) for name, *rest in FAULTS],
)
def test_a_fault_on_one_case_leaves_the_others_alone(
    fhir_server_url: str,
    tmp_path: Path,
    seed: int,
    make_fault: Callable[[], Fault],
    attempts: int,
    end: tuple[str, str, int | None] | None,
) -> None:
    fault = make_fault()
    items = cases(4, seed)
    unlucky = items[2]
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport()
    transport.inject(carries(unlucky.patient.identifier), fault)

    summary, results = push(fhir_server_url, source, tmp_path, transport=transport, concurrency=2)

    assert len(transport.transactions(unlucky.patient.identifier)) == attempts
    assert summary.transactions == 4  # one per case; the retries are the client's own
    others = [items[i] for i in (0, 1, 3)]
    assert all(stored(fhir_server_url, c) for c in others)
    journal = {j["source"] for j in read_ndjson(tmp_path / "run.journal.ndjson")}
    if end is None:
        assert (summary.created, summary.failed) == (4, 0)
        assert stored(fhir_server_url, unlucky)
        assert journal == {f"{source}:{n}" for n in (1, 2, 3, 4)}
        assert not (tmp_path / "run.dead-letter.ndjson").exists()
        return
    stage, reason, status = end
    assert (summary.created, summary.failed) == (3, 1)
    assert [r.source for r in results if r.status == "failed"] == [f"{source}:3"]
    assert journal == {f"{source}:{n}" for n in (1, 2, 4)}
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert dead["source"] == f"{source}:3" and dead["line"] == 3
    assert dead["stage"] == stage and reason in dead["reason"]
    assert dead.get("status") == status
    assert dead["case"] == jsonio.loads(case_to_json(unlucky))  # to push again
    assert stored(fhir_server_url, unlucky) == (fault is cut_short)


def test_a_server_error_names_the_case_field_behind_the_failing_element(
    fhir_server_url: str, tmp_path: Path
) -> None:
    items = cases(2, seed=206)
    unlucky = items[1]
    bundle = to_fhir(unlucky)
    index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Observation"
    )
    transport = RecordingTransport()
    transport.inject(
        carries(unlucky.patient.identifier),
        answer(
            422,
            outcome(
                "HAPI-0450: unknown code",
                f"Bundle.entry[{index}].resource.code",
                "Bundle.entry[0].resource.birthDate",
            ),
        ),
    )
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport)

    assert (summary.created, summary.failed) == (1, 1)
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert dead["status"] == 422 and dead["hapi_code"] == "HAPI-0450"
    fields = [loc["field"] for loc in dead["locations"]]
    assert fields[1] == "patient.birth_date"
    assert fields[0] == "pregnancies[0]"  # the case item of that Observation (the first one)
    assert dead["locations"][0]["element"] == "Observation.code"
    assert (
        dead["locations"][0]["resource"]
        == f"Observation/{bundle['entry'][index]['resource']['id']}"
    )


def opens_part(part: dict[str, Any]) -> Callable[[httpx.Request], bool]:
    """The transaction whose first entry is ``part``'s first entry."""
    url = part["entry"][0]["request"]["url"]

    def when(request: httpx.Request) -> bool:
        if request.method != "POST":
            return False
        entries = jsonio.loads(request.content).get("entry") or [{}]
        return bool(entries[0].get("request", {}).get("url") == url)

    return when


def exists(fhir: FhirClient, reference: str) -> bool:
    rtype, rid = reference.split("/")
    try:
        fhir.read(rtype, rid)
    except NotFound:
        return False
    return True


def test_a_refused_part_says_how_many_parts_were_applied_and_a_second_push_completes_it(
    fhir_server_url: str, tmp_path: Path, example_case: Case
) -> None:
    """The third of thirteen parts is refused the way HAPI refuses a reference to a resource it
    does not hold (HAPI-1094, referential integrity). SEKMET does not check referential
    integrity, so that answer is injected; the two parts before it really are on the server."""
    case = example_case.model_copy(
        update={"patient": example_case.patient.model_copy(update={"identifier": "synth-207-x"})}
    )
    parts = split_transaction(to_fhir(case), 10, None)
    assert len(parts) == 13
    pid = patient_id(case)
    transport = RecordingTransport()
    transport.inject(
        opens_part(parts[2]),
        answer(
            400,
            outcome(
                f"HAPI-1094: Resource Patient/{pid} not found, specified in path: "
                "Observation.subject",
                "Bundle.entry[0].resource.subject",
            ),
        ),
    )
    source = write_ndjson(tmp_path / "cases.ndjson", [case])

    summary, _ = push(
        fhir_server_url, source, tmp_path, transport=transport, max_entries=10, max_bytes=None
    )

    assert summary.failed == 1 and summary.transactions == 3
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert (dead["parts_applied"], dead["parts"]) == (2, 13)
    assert (dead["stage"], dead["status"], dead["hapi_code"]) == ("server", 400, "HAPI-1094")
    assert dead["locations"][0]["element"] == "Observation.subject"
    applied = [e["request"]["url"] for p in parts[:2] for e in p["entry"]]
    refused = [e["request"]["url"] for p in parts[2:] for e in p["entry"]]
    with FhirClient(fhir_server_url) as fhir:
        assert all(exists(fhir, ref) for ref in applied)
        assert not any(exists(fhir, ref) for ref in refused)

    summary, _ = push(fhir_server_url, source, tmp_path, max_entries=10, max_bytes=None)

    assert (summary.updated, summary.failed, summary.transactions) == (1, 0, 13)
    assert (summary.resources_updated, summary.resources_created) == (len(applied), len(refused))


def test_cli_push_a_503_storm_with_retry_after_zero(
    fhir_server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = cases(3, seed=208)
    transport = RecordingTransport()
    transport.inject(
        carries(items[0].patient.identifier), answer(503, outcome("busy"), retry_after="0")
    )
    route_cli_through(monkeypatch, transport)
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    code = main(["push", str(source), "--server", fhir_server_url, "--no-validate"])

    assert code == 1
    assert "2 created, 0 updated, 1 failed" in capsys.readouterr().out
    (dead,) = read_ndjson(tmp_path / "cases.dead-letter.ndjson")
    assert dead["line"] == 1 and dead["status"] == 503
    assert len(transport.transactions(items[0].patient.identifier)) == 4  # the CLI's 4 attempts
    assert not stored(fhir_server_url, items[0])
    assert stored(fhir_server_url, items[1]) and stored(fhir_server_url, items[2])


def test_cli_pull_all_with_a_failing_patient_exits_1_and_still_writes_the_others(
    fresh_fhir_server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = fresh_fhir_server_url
    items = cases(3, seed=209)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    broken = patient_id(items[1])
    transport = RecordingTransport()
    transport.inject(everything_of(broken), answer(500, outcome("database on fire")))
    route_cli_through(monkeypatch, transport)
    output = tmp_path / "pulled.ndjson"

    code = main(["pull", "--all", "--server", url, "-o", str(output)])

    err = capsys.readouterr().err
    dead_letter = tmp_path / "pulled.dead-letter.ndjson"
    assert code == 1
    assert f"1 patient(s) failed; see {dead_letter}" in err
    assert len(output.read_text().splitlines()) == 2
    (dead,) = read_ndjson(dead_letter)
    assert dead["patient"] == f"Patient/{broken}"
    assert (dead["stage"], dead["status"]) == ("server", 500)
    assert "database on fire" in dead["reason"]
