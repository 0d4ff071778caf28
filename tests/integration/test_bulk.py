"""Bulk push and pull against the real servers (SEKMET, HAPI): what a user of ``fhir-plao
push`` (many cases) and ``fhir-plao pull --all / --search`` meets.

The transactions actually sent are counted by :class:`RecordingTransport` (``bulk_helpers``):
the real ``httpx.AsyncHTTPTransport`` with a record of each request, never a server of our own.
The fault paths (a 503 storm, resets, cut bodies, refused parts) are in ``test_bulk_faults.py``.

Tests that read every Patient (``pull --all``) or count resources use ``fresh_fhir_server_url``;
the others use the session's server and a synthetic-case seed of their own (the patients' ids
derive from it), so they do not see each other's data and need no reset."""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from bulk_helpers import (
    RecordingTransport,
    cases,
    entries_of,
    identifier_criteria,
    patient_id,
    pull,
    push,
    read_ndjson,
    route_cli_through,
    search_order,
    stored,
    write_ndjson,
)

from fhir_plao import jsonio
from fhir_plao.bulk import (
    CaseResult,
    CaseSource,
    PushOptions,
    open_cases,
    push_cases,
    split_transaction,
)
from fhir_plao.case import Case, case_from_json, case_to_json
from fhir_plao.cli import main
from fhir_plao.client import AsyncFhirClient, FhirClient
from fhir_plao.compare import case_differences
from fhir_plao.errors import MappingError, ServerError
from fhir_plao.mapping import to_fhir
from fhir_plao.synth import synth_cases
from fhir_plao.validation import Issue

N = 30
SEED = 2026


@pytest.fixture(scope="module")
def pushed_cases() -> list[Case]:
    return list(synth_cases(N, SEED))


@pytest.fixture(scope="module")
def expected_counts(pushed_cases: list[Case]) -> dict[str, int]:
    """Resources per type the 30 Bundles write: what the server must hold, no more."""
    counts: Counter[str] = Counter()
    for case in pushed_cases:
        counts.update(e["resource"]["resourceType"] for e in to_fhir(case)["entry"])
    return dict(counts)


@pytest.fixture
def source(tmp_path: Path, pushed_cases: list[Case]) -> Path:
    path = tmp_path / "cases.ndjson"
    path.write_text("".join(case_to_json(c, indent=None) for c in pushed_cases))
    return path


def server_counts(url: str, types: list[str]) -> dict[str, int]:
    with FhirClient(url) as fhir:
        return {t: fhir.count(t) for t in types}


def journal_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def round_trips(original: Case, pulled: Case) -> bool:
    # SEKMET re-serialises decimals (0.860 -> 0.86): values compared, not digits
    return case_differences(original, pulled, ignore_order=True, exact_decimals=False) == []


# --------------------------------------------------------------------------- the whole run


def test_push_30_twice_then_pull_all(
    fresh_fhir_server_url: str,
    source: Path,
    tmp_path: Path,
    pushed_cases: list[Case],
    expected_counts: dict[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fresh_fhir_server_url
    types = sorted(expected_counts)
    resources = sum(expected_counts.values())
    push_argv = ["push", str(source), "--server", url, "--concurrency", "4"]

    started = time.perf_counter()
    assert main(push_argv) == 0
    first_run = time.perf_counter() - started
    first = server_counts(url, types)
    out = capsys.readouterr().out
    assert "30 read, 30 sent, 30 created, 0 updated, 0 failed" in out
    assert f"resources: {resources} created, 0 updated; 30 transaction(s)" in out
    assert first == expected_counts and first["Patient"] == N

    started = time.perf_counter()
    assert main(push_argv) == 0
    second_run = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "30 sent, 0 created, 30 updated, 0 failed" in out
    assert f"resources: 0 created, {resources} updated" in out
    assert server_counts(url, types) == first  # no duplicate Patient, Observation, ...

    output = tmp_path / "pulled.ndjson"
    started = time.perf_counter()
    assert main(["pull", "--all", "--server", url, "-o", str(output), "--page-size", "7"]) == 0
    pull_run = time.perf_counter() - started
    assert "30 found, 30 written, 0 failed, 0 with unmapped elements" in capsys.readouterr().out

    pulled = [case_from_json(line) for line in output.read_text().splitlines()]
    by_identifier = {c.patient.identifier: c for c in pushed_cases}
    assert sorted(c.patient.identifier for c in pulled) == sorted(by_identifier)
    for case in pulled:
        assert round_trips(by_identifier[case.patient.identifier], case)
    with capsys.disabled():
        print(
            f"\n[bulk] {N} cases ({resources} resources): push "
            f"{first_run:.2f} s, push again {second_run:.2f} s, pull --all {pull_run:.2f} s"
        )


# --------------------------------------------------------------------------- push: counts


def test_push_counts_created_then_updated_cases_and_resources(
    fhir_server_url: str, tmp_path: Path
) -> None:
    items = cases(6, seed=101)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport()

    summary, results = push(fhir_server_url, source, tmp_path, transport=transport, concurrency=3)

    assert (summary.read, summary.sent, summary.created, summary.updated, summary.failed) == (
        6,
        6,
        6,
        0,
        0,
    )
    assert (summary.resources_created, summary.resources_updated) == (entries_of(items), 0)
    assert summary.transactions == len(transport.transactions()) == 6
    assert all(stored(fhir_server_url, c) for c in items)
    assert sorted(r.source for r in results) == sorted(f"{source}:{n}" for n in range(1, 7))
    assert {r.status for r in results} == {"created"}
    journal = read_ndjson(tmp_path / "run.journal.ndjson")
    assert sorted(j["source"] for j in journal) == sorted(f"{source}:{n}" for n in range(1, 7))
    assert sum(j["created"] for j in journal) == entries_of(items)
    assert not (tmp_path / "run.dead-letter.ndjson").exists()

    summary, results = push(fhir_server_url, source, tmp_path, transport=transport)

    assert (summary.created, summary.updated, summary.failed) == (0, 6, 0)
    assert (summary.resources_created, summary.resources_updated) == (0, entries_of(items))
    assert len(transport.transactions()) == 12
    assert {r.status for r in results} == {"updated"}
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 6  # started afresh


def test_resume_sends_only_what_the_journal_has_not_confirmed(
    fhir_server_url: str, tmp_path: Path
) -> None:
    items = cases(5, seed=102)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport()
    push(fhir_server_url, source, tmp_path, transport=transport)
    assert len(transport.transactions()) == 5

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport, resume=True)

    assert len(transport.transactions()) == 5  # nothing sent
    assert (summary.read, summary.skipped, summary.sent, summary.transactions) == (5, 5, 0, 0)

    changed = items[3].model_copy(
        update={"patient": items[3].patient.model_copy(update={"birth_date": "1979"})}
    )
    write_ndjson(source, [*items[:3], changed, items[4]])
    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport, resume=True)

    (resent,) = transport.transactions()[5:]  # only the edited case
    assert patient_id(changed) in resent.body.decode()
    assert (summary.skipped, summary.sent, summary.updated) == (4, 1, 1)
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 6
    with FhirClient(fhir_server_url) as fhir:
        assert fhir.read("Patient", patient_id(changed))["birthDate"] == "1979"


class Stop(Exception):
    """Stands for a run stopped part-way."""


def test_a_run_stopped_halfway_then_resumed_ends_with_the_same_counts(
    fresh_fhir_server_url: str,
    source: Path,
    tmp_path: Path,
    expected_counts: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = fresh_fhir_server_url
    journal = tmp_path / "run.journal.ndjson"
    dead_letter = tmp_path / "run.dead-letter.ndjson"
    options = PushOptions(journal=journal, dead_letter=dead_letter, concurrency=4)
    confirmed = 0

    def stop_halfway(result: CaseResult) -> None:
        nonlocal confirmed
        confirmed += 1
        if confirmed == N // 2:
            raise Stop

    async def interrupted() -> None:
        async with AsyncFhirClient(url) as fhir:
            await push_cases(fhir, open_cases(source), options, on_result=stop_halfway)

    with pytest.raises(Stop):
        anyio.run(interrupted)
    assert journal_lines(journal) == N // 2
    assert server_counts(url, ["Patient"])["Patient"] < N  # it did stop part-way

    transport = RecordingTransport()
    route_cli_through(monkeypatch, transport)
    argv = ["push", str(source), "--server", url, "--journal", str(journal), "--resume"]
    assert main([*argv, "--dead-letter", str(dead_letter)]) == 0

    out = capsys.readouterr().out
    assert f"{N - N // 2} sent" in out and f"{N // 2} skipped" in out
    assert len(transport.transactions()) == N - N // 2  # the confirmed half is not sent again
    assert server_counts(url, sorted(expected_counts)) == expected_counts
    assert journal_lines(journal) == N


def test_a_killed_push_resumes_from_its_journal(
    fresh_fhir_server_url: str,
    source: Path,
    tmp_path: Path,
    expected_counts: dict[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fresh_fhir_server_url
    journal = tmp_path / "cases.journal.ndjson"
    command = [sys.executable, "-m", "fhir_plao.cli", "push", str(source), "--server", url]
    process = subprocess.Popen(
        [*command, "--concurrency", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("FHIR_")},
    )
    deadline = time.monotonic() + 30
    while journal_lines(journal) < 8 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL, err.decode()
    confirmed = journal_lines(journal)
    assert 8 <= confirmed < N

    dead_letter = tmp_path / "cases.dead-letter.ndjson"
    code = main(["push", str(source), "--server", url, "--resume"])
    assert code == 0, dead_letter.read_text() if dead_letter.exists() else "no dead letter"

    out = capsys.readouterr().out
    assert f"{N - confirmed} sent" in out and f"{confirmed} skipped" in out
    assert server_counts(url, sorted(expected_counts)) == expected_counts


# --------------------------------------------------------------------------- push: failures


def test_bad_input_is_dead_lettered_and_the_rest_is_pushed(
    fhir_server_url: str, tmp_path: Path
) -> None:
    good = cases(3, seed=103)
    bad_case = jsonio.loads(case_to_json(good[0]))
    bad_case["patient"]["identifier"] = "synth-103-not-a-case"
    bad_case["patient"]["birth_date"] = "1990-13"
    bad_case["labs"][0]["valeu"] = 1
    source = write_ndjson(
        tmp_path / "cases.ndjson",
        [good[0], '{"patient": {', good[1], jsonio.dumps(bad_case), "[1, 2]", good[2]],
    )
    transport = RecordingTransport()

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport)

    assert (summary.read, summary.created, summary.failed, summary.sent) == (6, 3, 3, 3)
    assert len(transport.transactions()) == 3
    assert all(stored(fhir_server_url, c) for c in good)
    dead = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert [(d["line"], d["stage"]) for d in dead] == [(2, "json"), (4, "case"), (5, "case")]
    not_json, not_a_case, not_an_object = dead
    assert not_json["source"] == f"{source}:2" and not_json["file"] == str(source)
    assert not_json["reason"].startswith(f"{source}:2: malformed JSON at column 14:")
    assert not_json["text"] == '{"patient": {'
    system = bad_case["patient"]["identifier_system"]
    assert not_a_case["patient"] == f"{system}|synth-103-not-a-case"
    assert not_a_case["reason"].startswith(f"{source}:4: invalid case:")
    assert {loc["field"] for loc in not_a_case["locations"]} == {
        "patient.birth_date",
        "labs[0].valeu",
    }
    assert not_a_case["case"] == bad_case  # as read, to fix and push again
    assert not_an_object["reason"] == f"{source}:5: a case must be a JSON object"


def test_a_case_failing_validation_or_mapping_is_dead_lettered_and_never_sent(
    fhir_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No case the model accepts breaks R4 or the profiles (the model is built so), so the
    validator and the mapping are made to fail for one patient each; the server is real."""
    items = cases(4, seed=104)
    invalid, unmappable = items[1], items[3]
    lab_index = next(
        i
        for i, e in enumerate(to_fhir(invalid)["entry"])
        if any(
            v.get("value", "").endswith(f"/{invalid.labs[0].id}")
            for v in e["resource"].get("identifier", [])
        )
    )
    from fhir_plao import mapping, validation

    real_validate, real_to_fhir = validation.validate, mapping.to_fhir

    def validate(bundle: dict[str, Any]) -> list[Issue]:
        if invalid.patient.identifier in jsonio.dumps(bundle):
            path = f"Bundle.entry[{lab_index}].resource.valueQuantity.code"
            return [Issue("error", path, "not a UCUM code")]
        return real_validate(bundle)

    def to_fhir_(case: Case) -> dict[str, Any]:
        if case.patient.identifier == unmappable.patient.identifier:
            raise MappingError("no code for this finding", location="findings[0]")
        return real_to_fhir(case)

    monkeypatch.setattr(validation, "validate", validate)
    monkeypatch.setattr(mapping, "to_fhir", to_fhir_)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport()

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport, validate=True)

    assert (summary.created, summary.failed, summary.sent) == (2, 2, 2)
    by_line = {d["line"]: d for d in read_ndjson(tmp_path / "run.dead-letter.ndjson")}
    assert by_line[2]["stage"] == "validation"
    lab = to_fhir(invalid)["entry"][lab_index]["resource"]
    assert by_line[2]["locations"] == [
        {
            "field": "labs[0].unit",
            "item": invalid.labs[0].id,
            "resource": f"Observation/{lab['id']}",
            "element": "Observation.valueQuantity.code",
            "message": "not a UCUM code",
        }
    ]
    assert by_line[4]["stage"] == "mapping"
    assert by_line[4]["locations"] == [
        {"field": "findings[0]", "message": "no code for this finding"}
    ]
    assert by_line[4]["case"] == jsonio.loads(case_to_json(unmappable))
    for failed in (invalid, unmappable):
        assert transport.transactions(failed.patient.identifier) == []
        assert not stored(fhir_server_url, failed)
    assert stored(fhir_server_url, items[0]) and stored(fhir_server_url, items[2])


def test_a_case_that_cannot_be_split_under_the_limits_is_dead_lettered(
    fhir_server_url: str, tmp_path: Path
) -> None:
    items = cases(1, seed=105)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport()

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport, max_bytes=500)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert summary.failed == 1 and dead["stage"] == "split"
    assert "max_bytes=500" in dead["reason"]
    assert transport.transactions() == []
    assert not stored(fhir_server_url, items[0])


def test_a_directory_of_case_files(fhir_server_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    items = cases(3, seed=106)
    for n, item in enumerate(items):
        (folder / f"case-{n}.json").write_text(case_to_json(item))
    (folder / "case-9.json").write_text("{}")

    summary, _ = push(fhir_server_url, folder, tmp_path)

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert (summary.created, summary.failed) == (3, 1)
    assert all(stored(fhir_server_url, c) for c in items)
    assert dead["source"] == str(folder / "case-9.json") and dead["line"] is None
    assert {loc["field"] for loc in dead["locations"]} == {"patient"}


# --------------------------------------------------------------------------- push: concurrency


def test_concurrency_is_bounded_used_and_the_input_read_only_as_needed(
    fhir_server_url: str, tmp_path: Path
) -> None:
    """At most N transactions in flight, and N reached; memory stays flat: the reader is never
    more than the bounded queue ahead of the cases finished."""
    concurrency = 3
    items = cases(12, seed=107)
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    transport = RecordingTransport(latency=0.05)  # the requests overlap however fast SEKMET is
    read = finished = worst = 0

    def counted() -> Iterator[CaseSource]:
        nonlocal read
        for item in open_cases(source):
            read += 1
            yield item

    def on_result(result: CaseResult) -> None:
        nonlocal finished, worst
        finished += 1
        worst = max(worst, read - finished)

    summary, _ = push(
        fhir_server_url,
        counted(),
        tmp_path,
        transport=transport,
        on_result=on_result,
        concurrency=concurrency,
    )

    assert summary.created == 12 and finished == 12
    assert transport.peak == concurrency
    # queued (concurrency) + being worked on (concurrency) + the one waiting to be queued
    assert worst <= 2 * concurrency + 1


def test_cases_of_one_patient_are_sent_in_input_order_one_at_a_time(
    fhir_server_url: str, tmp_path: Path
) -> None:
    first, other1, other2 = cases(3, seed=108)
    versions = [
        first.model_copy(
            update={"patient": first.patient.model_copy(update={"birth_date": str(1980 + n)})}
        )
        for n in range(4)
    ]
    source = write_ndjson(tmp_path / "cases.ndjson", [versions[0], other1, *versions[1:], other2])
    transport = RecordingTransport(latency=0.02)

    summary, _ = push(fhir_server_url, source, tmp_path, transport=transport, concurrency=4)

    assert summary.failed == 0 and (summary.created, summary.updated) == (3, 3)
    sent = transport.transactions(first.patient.identifier)
    assert len(sent) == 4
    for earlier, later in itertools.pairwise(sent):
        assert earlier.ended <= later.started  # never two of one patient at once
    with FhirClient(fhir_server_url) as fhir:
        history = list(fhir.history("Patient", patient_id(first)))
    # the server's versions of the Patient, oldest first: the input order
    assert [p["birthDate"] for p in reversed(history)] == ["1980", "1981", "1982", "1983"]


# --------------------------------------------------------------------------- push: splitting


def test_a_case_split_into_small_transactions_round_trips(
    fresh_fhir_server_url: str,
    tmp_path: Path,
    example_case: Case,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--max-entries`` on one case file: the CLI goes bulk and sends reference-closed parts
    in dependency order. The order is checked on what was sent: each ``Type/id`` reference names a
    resource an earlier part or the same part wrote. SEKMET does not check referential integrity;
    HAPI does (HAPI-1094), so on HAPI the server itself accepting every part proves it too."""
    url = fresh_fhir_server_url
    path = tmp_path / "case.json"
    path.write_text(case_to_json(example_case))
    transport = RecordingTransport()
    route_cli_through(monkeypatch, transport)

    resources = len(to_fhir(example_case)["entry"])
    expected_parts = len(split_transaction(to_fhir(example_case), 10, None))
    assert main(["push", str(path), "--server", url, "--max-entries", "10"]) == 0
    assert "1 created, 0 updated, 0 failed" in (out := capsys.readouterr().out)
    assert f"{resources} created, 0 updated; {expected_parts} transaction(s)" in out

    parts = [s.json() for s in transport.transactions()]
    assert len(parts) == expected_parts and all(len(p["entry"]) <= 10 for p in parts)
    written: set[str] = set()
    for part in parts:
        written |= {e["request"]["url"] for e in part["entry"]}
        for entry in part["entry"]:
            for ref in references(entry["resource"]):
                assert ref.startswith("urn:uuid:") or ref in written, ref
    (journal,) = read_ndjson(tmp_path / "case.journal.ndjson")  # beside the input
    assert (journal["transactions"], journal["resources"]) == (expected_parts, resources)
    assert parts == split_transaction(to_fhir(example_case), 10, None)  # nothing else was sent

    with FhirClient(url) as fhir:
        (patient,) = list(fhir.search("Patient"))
        pulled = fhir.pull(patient["id"])
    assert round_trips(example_case, pulled.case)


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


# --------------------------------------------------------------------------- pull


def test_pull_writes_every_patient_in_search_order_page_by_page(
    fresh_fhir_server_url: str, tmp_path: Path
) -> None:
    url = fresh_fhir_server_url
    items = cases(7, seed=109)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    transport = RecordingTransport()

    summary, lines, _ = pull(url, tmp_path, transport=transport, page_size=3)

    assert (summary.found, summary.written, summary.failed, summary.incomplete) == (7, 7, 0, False)
    pages = transport.search_pages("Patient")
    assert len(pages) == 3  # 3, 3 and 1, following the server's next links
    assert [p.url.params["_count"] for p in pages] == ["3", "3", "3"]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    pulled = [case_from_json(line) for line in lines]
    assert [patient_id(c) for c in pulled] == search_order(url)
    by_identifier = {c.patient.identifier: c for c in items}
    for case in pulled:
        assert round_trips(by_identifier[case.patient.identifier], case)
    assert not (tmp_path / "pull.dead-letter.ndjson").exists()


def someone_updates(url: str, patient_id: str) -> None:
    """Another client writes a new version of the patient while our pull pages its search."""
    with FhirClient(url) as fhir:
        patient = fhir.read("Patient", patient_id)
        fhir.update({**patient, "gender": "female"}, if_match=False)


@pytest.mark.servers(
    "sekmet",
    reason="SEKMET pages by offset over live data; HAPI pages a stored snapshot of the search "
    "(_getpages), so an update while paging cannot move a patient: the HAPI test below",
)
def test_pull_writes_a_patient_once_when_offset_paging_shows_it_twice_and_says_one_was_missed(
    fresh_fhir_server_url: str, tmp_path: Path
) -> None:
    """Another client updates a patient already read while the search is paged: SEKMET (sorting
    by last write) then lists it again on a later page, and the patient that moved into its
    place on the page already read is never listed. The twice-listed one is pulled and written
    once; the run says it is incomplete (fewer patients than the server's total)."""
    url = fresh_fhir_server_url
    items = cases(5, seed=110)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path, concurrency=1)
    moved = search_order(url)[0]

    transport = RecordingTransport()
    transport.before(
        lambda r: r.url.path.endswith("/Patient") and r.url.params.get("_offset") == "2",
        lambda: someone_updates(url, moved),
    )

    summary, lines, _ = pull(url, tmp_path, transport=transport, page_size=2, concurrency=1)

    pages = [jsonio.loads(page.reply) for page in transport.gets("/Patient")]
    listed = [e["resource"]["id"] for page in pages for e in page["entry"]]
    assert listed.count(moved) == 2  # the server did show it twice
    written = [patient_id(case_from_json(line)) for line in lines]
    assert written.count(moved) == 1 and len(written) == len(set(written))
    assert summary.found == summary.written == len(set(listed)) == 4 and summary.failed == 0
    assert len(transport.gets(f"/Patient/{moved}/$everything")) == 1
    assert summary.incomplete and not summary.ok  # 4 of the 5 the server counted
    assert "INCOMPLETE" in summary.line()


@pytest.mark.servers(
    "hapi", reason="HAPI's paging links (_getpages) keep the search's first result list"
)
def test_pull_is_complete_when_a_patient_is_updated_while_snapshot_pages_are_read(
    fresh_fhir_server_url: str, tmp_path: Path
) -> None:
    url = fresh_fhir_server_url
    items = cases(5, seed=110)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path, concurrency=1)
    first = search_order(url)[0]

    transport = RecordingTransport()
    transport.before(lambda r: "_getpages" in r.url.params, lambda: someone_updates(url, first))

    summary, lines, _ = pull(url, tmp_path, transport=transport, page_size=2, concurrency=1)

    pages = transport.search_pages("Patient")
    assert len(pages) == 3 and all("_getpages" in p.url.params for p in pages[1:])
    written = [patient_id(case_from_json(line)) for line in lines]
    assert sorted(written) == sorted(search_order(url)) and len(set(written)) == 5
    assert (summary.found, summary.written, summary.failed) == (5, 5, 0)
    assert summary.ok and not summary.incomplete


def test_pull_search_criteria_are_sent_with_the_page_size(
    fhir_server_url: str, tmp_path: Path
) -> None:
    items = cases(3, seed=111)
    push(fhir_server_url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    wanted = items[1].patient
    criteria = f"Patient?identifier={wanted.identifier_system}|{wanted.identifier}"
    transport = RecordingTransport()

    summary, lines, _ = pull(
        fhir_server_url, tmp_path, transport=transport, criteria=criteria, page_size=5
    )

    (search,) = transport.gets("/Patient")
    assert search.url.params["identifier"] == f"{wanted.identifier_system}|{wanted.identifier}"
    assert search.url.params["_count"] == "5"
    assert (summary.found, summary.written) == (1, 1)
    assert round_trips(items[1], case_from_json(lines[0]))


def test_pull_dead_letters_an_unmappable_patient_and_reports_unmapped_elements(
    fhir_server_url: str, tmp_path: Path, fhir_server_kind: str
) -> None:
    """Real data the mapping cannot take: a Patient linked to another patient's record, and a
    general practitioner (no place in a case). SEKMET's $everything brings both Patients, so the
    linked one cannot be one case; HAPI's $everything leaves other Patients out, so the link is
    reported as unmapped instead."""
    url = fhir_server_url
    items = cases(3, seed=112)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    linked, with_gp = patient_id(items[0]), patient_id(items[2])
    with FhirClient(url) as fhir:
        other = {"resourceType": "Patient", "id": "synth-112-other", "gender": "male"}
        fhir.update(other, if_match=False)
        gp = {"resourceType": "Practitioner", "id": "synth-112-gp", "gender": "female"}
        fhir.update(gp, if_match=False)
        patient = fhir.read("Patient", linked)
        link = [{"other": {"reference": "Patient/synth-112-other"}, "type": "seealso"}]
        fhir.update({**patient, "link": link}, if_match=False)
        patient = fhir.read("Patient", with_gp)
        refs = [{"reference": "Practitioner/synth-112-gp"}]
        fhir.update({**patient, "generalPractitioner": refs}, if_match=False)

    summary, lines, results = pull(url, tmp_path, criteria=identifier_criteria(items))

    if fhir_server_kind == "hapi":
        assert (summary.found, summary.written, summary.failed, summary.unmapped) == (3, 3, 0, 2)
        unmapped = {r.patient_id: [str(u) for u in r.unmapped] for r in results if r.unmapped}
        assert sorted(unmapped) == sorted([linked, with_gp])
        assert any("Patient/synth-112-other" in u for u in unmapped[linked]), unmapped[linked]
        assert any("Practitioner/synth-112-gp" in u for u in unmapped[with_gp])
        return
    assert (summary.found, summary.written, summary.failed, summary.unmapped) == (3, 2, 1, 1)
    assert sorted(patient_id(case_from_json(x)) for x in lines) == sorted(
        [patient_id(items[1]), with_gp]
    )
    (dead,) = read_ndjson(tmp_path / "pull.dead-letter.ndjson")
    assert dead["patient"] == f"Patient/{linked}" and dead["stage"] == "mapping"
    assert "several Patients" in dead["reason"]
    (reported,) = [r for r in results if r.unmapped]
    assert reported.patient_id == with_gp
    assert any("Practitioner/synth-112-gp" in str(u) for u in reported.unmapped)


def test_a_search_the_server_refuses_stops_the_pull(fhir_server_url: str, tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="Invalid date") as info:
        pull(fhir_server_url, tmp_path, criteria="Patient?birthdate=notadate")
    assert info.value.status == 400
    assert not (tmp_path / "pull.dead-letter.ndjson").exists()


# --------------------------------------------------------------------------- the CLI


def test_cli_push_ndjson_validates_and_keeps_its_records_beside_the_input(
    fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = cases(3, seed=113)
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    code = main(["push", str(source), "--server", fhir_server_url, "--concurrency", "2"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("fhir-plao push: cases: 3 read, 3 sent, 3 created, 0 updated, 0 failed")
    assert "\r" not in err  # not a terminal: no progress line
    assert len(read_ndjson(tmp_path / "cases.journal.ndjson")) == 3
    assert not (tmp_path / "cases.dead-letter.ndjson").exists()
    assert all(stored(fhir_server_url, c) for c in items)


def test_cli_push_a_directory_with_a_bad_file_exits_1_and_names_the_dead_letter(
    fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    for n, item in enumerate(cases(2, seed=114)):
        (folder / f"{n}.json").write_text(case_to_json(item))
    (folder / "2.json").write_text('{"patient": 1}')

    code = main(["push", str(folder), "--server", fhir_server_url, "--no-validate"])

    out, err = capsys.readouterr()
    dead_letter = tmp_path / "cases.dead-letter.ndjson"  # beside the directory
    assert code == 1
    assert "2 created, 0 updated, 1 failed" in out
    assert f"1 case(s) failed; see {dead_letter}" in err
    (dead,) = read_ndjson(dead_letter)
    assert dead["source"] == str(folder / "2.json")


def test_cli_push_resume_sends_nothing_already_confirmed(
    fhir_server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(4, seed=115))
    journal = tmp_path / "records" / "my.journal"
    dead_letter = tmp_path / "records" / "my.dead"
    transport = RecordingTransport()
    route_cli_through(monkeypatch, transport)
    argv = ["push", str(source), "--server", fhir_server_url, "--no-validate"]
    argv += ["--journal", str(journal), "--dead-letter", str(dead_letter)]
    assert main(argv) == 0
    assert len(transport.transactions()) == 4

    assert main([*argv, "--resume"]) == 0

    assert len(transport.transactions()) == 4
    assert "0 sent, 0 created, 0 updated, 0 failed, 4 skipped" in capsys.readouterr().out
    assert len(read_ndjson(journal)) == 4


def test_cli_one_case_file_alone_keeps_the_one_case_output(
    fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (item,) = cases(1, seed=116)
    path = tmp_path / "case.json"
    path.write_text(case_to_json(item))

    assert main(["push", str(path), "--server", fhir_server_url, "--no-validate"]) == 0

    out = capsys.readouterr().out
    entries = len(to_fhir(item)["entry"])
    assert "[201 Created]" in out
    assert f"{entries} resources to {fhir_server_url} in 1 transaction(s): {entries} created" in out
    assert not (tmp_path / "case.journal.ndjson").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_push_shows_progress_on_a_terminal_unless_told_not_to(
    fhir_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(3, seed=117))
    argv = ["push", str(source), "--server", fhir_server_url, "--no-validate"]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    assert main(argv) == 0

    shown = terminal.getvalue()
    assert "\rpush [########################] 3/3 cases, 0 failed" in shown
    assert shown.endswith("\r")  # the bar is wiped before the summary

    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert main([*argv, "--no-progress"]) == 0
    assert quiet.getvalue() == ""


def test_cli_pull_all_to_a_file_and_to_standard_output_in_search_order(
    fresh_fhir_server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = fresh_fhir_server_url
    items = cases(5, seed=118)
    push(url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    order = search_order(url)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "pulled.ndjson"

    code = main(["pull", "--all", "--server", url, "-o", str(output), "--page-size", "2"])

    out, _ = capsys.readouterr()
    assert code == 0
    assert "fhir-plao pull: patients: 5 found, 5 written, 0 failed" in out
    assert f"wrote {output}" in out
    assert [patient_id(case_from_json(x)) for x in output.read_text().splitlines()] == order
    assert sorted(p.name for p in out_dir.iterdir()) == ["pulled.ndjson"]  # no temporary left

    monkeypatch.chdir(out_dir)
    assert main(["pull", "--all", "--server", url, "-o", "-"]) == 0

    out, err = capsys.readouterr()
    assert [patient_id(case_from_json(x)) for x in out.splitlines()] == order
    assert "patients: 5 found, 5 written" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["pulled.ndjson"]


def test_cli_pull_search(
    fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = cases(2, seed=119)
    push(fhir_server_url, write_ndjson(tmp_path / "cases.ndjson", items), tmp_path)
    wanted = items[0].patient
    output = tmp_path / "one.ndjson"

    criteria = f"Patient?identifier={wanted.identifier_system}|{wanted.identifier}"
    code = main(["pull", "--search", criteria, "--server", fhir_server_url, "-o", str(output)])

    assert code == 0, capsys.readouterr().err
    (line,) = output.read_text().splitlines()
    assert round_trips(items[0], case_from_json(line))


def test_cli_pull_a_refused_search_exits_2_and_leaves_the_output_alone(
    fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "pulled.ndjson"
    output.write_text("before\n")

    argv = ["pull", "--search", "Patient?birthdate=notadate", "--server", fhir_server_url]
    assert main([*argv, "-o", str(output)]) == 2

    assert "Invalid date" in capsys.readouterr().err
    assert output.read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.ndjson"]
