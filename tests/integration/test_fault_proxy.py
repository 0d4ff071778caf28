"""Bulk push through our fault-injecting proxy (``fault_proxy.py``) to the real servers.

Four synthetic cases are pushed through the proxy; the transactions of one of them meet the
fault. Afterwards the server is counted, type by type, against the four cases' Bundles: nothing
duplicated, nothing lost outside the dead letter; then ``--resume`` (without faults) must leave
exactly the four cases on the server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from bulk_helpers import FAST_RETRY, cases, patient_id, read_ndjson, write_ndjson
from fault_proxy import (
    CUT,
    HTML,
    LOST,
    RESET,
    UNAVAILABLE,
    Fault,
    FaultProxy,
    ProxiedRequest,
    stall,
)

from fhir_plao.bulk import PushOptions, PushSummary, open_cases, push_cases
from fhir_plao.case import Case
from fhir_plao.client import AsyncFhirClient, FhirClient, Timeout
from fhir_plao.compare import case_differences
from fhir_plao.mapping import to_fhir

pytestmark = pytest.mark.timeout(600)

#: the client's read timeout here: a stalled request is held longer than this
READ_TIMEOUT = 2.0


def expected_counts(items: list[Case]) -> Counter[str]:
    return Counter(e["resource"]["resourceType"] for c in items for e in to_fhir(c)["entry"])


def server_counts(url: str, types: list[str]) -> Counter[str]:
    with FhirClient(url) as fhir:
        return Counter({t: fhir.count(t) for t in types})


def first(n: int, fault: Fault, identifier: str) -> Callable[[ProxiedRequest], Fault | None]:
    """``fault`` for the first ``n`` transactions that carry ``identifier``."""
    left = [n]

    def rule(request: ProxiedRequest) -> Fault | None:
        if request.method == "POST" and identifier.encode() in request.body and left[0] > 0:
            left[0] -= 1
            return fault
        return None

    return rule


def bulk(url: str, source: Path, tmp_path: Path, *, resume: bool = False) -> PushSummary:
    options = PushOptions(
        journal=tmp_path / "run.journal.ndjson",
        dead_letter=tmp_path / "run.dead-letter.ndjson",
        concurrency=2,
        validate=False,
        resume=resume,
    )

    async def go() -> PushSummary:
        timeout = Timeout(connect=5, read=READ_TIMEOUT)
        async with AsyncFhirClient(url, retry=FAST_RETRY, timeout=timeout) as fhir:
            return await push_cases(fhir, open_cases(source), options)

    return anyio.run(go)


# mode, fault, how many of the unlucky case's transactions meet it, confirmed at once?
MODES: list[tuple[str, Fault, int, bool]] = [
    ("reset", RESET, 1, True),  # retried: nothing reached the server
    ("lost response after commit", LOST, 1, True),  # retried: the same PUTs again
    ("stall past the timeout", stall(READ_TIMEOUT + 1.5), 1, True),  # retried; the first lands late
    ("503 storm", UNAVAILABLE, 99, False),  # every attempt: dead letter, then --resume
    ("cut-off body", CUT, 1, True),  # an idempotent transaction: retried
    ("HTML page", HTML, 1, True),  # an idempotent transaction: retried
]


@pytest.mark.parametrize(
    ("fault", "times", "confirmed"), [pytest.param(f, t, c, id=m) for m, f, t, c in MODES]
)
def test_through_each_fault_nothing_is_duplicated_or_lost_and_resume_is_exact(
    fresh_fhir_server_url: str, tmp_path: Path, fault: Fault, times: int, confirmed: bool
) -> None:
    items = cases(4, seed=301 + times)
    unlucky = items[2]
    source = write_ndjson(tmp_path / "cases.ndjson", items)
    expected = expected_counts(items)
    types = sorted(expected)

    with FaultProxy(
        fresh_fhir_server_url, first(times, fault, unlucky.patient.identifier)
    ) as proxy:
        summary = bulk(proxy.url, source, tmp_path)
        proxy.wait_idle()  # a late write has landed by now
        faulted = sum(1 for r in proxy.seen if r.fault is not None)

    assert faulted == (times if times < 99 else 3)  # the retry policy: 3 attempts
    print(
        f"\n[fault] {fault.kind}: {faulted} faulted request(s); cases {summary.confirmed} "
        f"confirmed ({summary.created} created), {summary.failed} dead-lettered; "
        f"{summary.transactions} transaction(s)",
        end="",
    )
    after = server_counts(fresh_fhir_server_url, types)
    assert all(after[t] <= expected[t] for t in types), "a resource was duplicated"
    if confirmed:
        assert (summary.confirmed, summary.failed) == (4, 0)
        assert after == expected
        assert not (tmp_path / "run.dead-letter.ndjson").exists()
    else:
        assert (summary.confirmed, summary.failed) == (3, 1)
        (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
        assert dead["patient"].endswith(unlucky.patient.identifier)
        missing = expected_counts([unlucky])
        assert after == expected - missing  # nothing of it stored: all or nothing

    again = bulk(fresh_fhir_server_url, source, tmp_path, resume=True)
    print(f"; --resume: {again.skipped} skipped, {again.confirmed} confirmed", end="")

    assert (again.skipped, again.failed) == ((4, 0) if confirmed else (3, 0))
    assert server_counts(fresh_fhir_server_url, types) == expected
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 4


# --------------------------------------------------------------------------- late writes


def amended(case: Case) -> Case:
    """A newer version of ``case``: its first lab amended (same patient, same items)."""
    labs = list(case.labs)
    labs[0] = labs[0].model_copy(update={"status": "amended"})
    return case.model_copy(update={"labs": tuple(labs)})


def on_the_server(url: str, case: Case) -> Case:
    with FhirClient(url) as fhir:
        return fhir.pull(patient_id(case)).case


def test_a_held_first_attempt_of_an_older_version_does_not_outlive_the_run(
    fresh_fhir_server_url: str, tmp_path: Path
) -> None:
    """The late-write scenario: two versions of one patient in one file; the first version's
    transaction is held past the client's timeout, retried, and the second version written;
    then the held attempt reaches the server and makes the older data the newest. The run
    verifies the patient after the settle time, finds its versions moved, and pushes the
    newer case again: the server ends with the newer version."""
    older = cases(1, seed=331)[0]
    newer = amended(older)
    source = write_ndjson(tmp_path / "cases.ndjson", [older, newer])

    with FaultProxy(
        fresh_fhir_server_url, first(1, stall(READ_TIMEOUT + 1.5), older.patient.identifier)
    ) as proxy:
        summary = bulk(proxy.url, source, tmp_path)
        proxy.wait_idle()
        (held,) = [r for r in proxy.seen if r.fault is not None]

    print(
        f"\n[late write] held attempt answered {held.status} after the run's other writes; "
        f"cases {summary.confirmed} confirmed, {summary.repushed} pushed again",
        end="",
    )
    assert held.status == 200  # the held attempt did land, after the newer case
    assert (summary.confirmed, summary.failed, summary.repushed) == (2, 0, 1)
    assert case_differences(on_the_server(fresh_fhir_server_url, newer), newer) == []
    assert len(read_ndjson(tmp_path / "run.journal.ndjson")) == 2


def test_a_patient_that_cannot_be_verified_fails_the_run_and_is_not_journalled(
    fresh_fhir_server_url: str, tmp_path: Path
) -> None:
    """The same late write, and every later transaction of the patient held too: the newer
    case cannot be made the newest again, so the run fails naming the patient (dead letter,
    stage ``verify``), and ``--resume`` pushes the patient again."""
    older = cases(1, seed=337)[0]
    newer = amended(older)
    source = write_ndjson(tmp_path / "cases.ndjson", [older, newer])
    seen = [0]

    def rule(request: ProxiedRequest) -> Fault | None:
        if request.method != "POST" or older.patient.identifier.encode() not in request.body:
            return None
        seen[0] += 1  # 1: older, held; 2: its retry; 3: newer; then the pushes again: held
        return stall(READ_TIMEOUT + 1.5) if seen[0] == 1 or seen[0] > 3 else None

    with FaultProxy(fresh_fhir_server_url, rule) as proxy:
        summary = bulk(proxy.url, source, tmp_path)
        proxy.wait_idle()

    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    print(f"\n[late write, unverifiable] {dead['stage']}: {dead['reason'][:120]}", end="")
    assert (summary.confirmed, summary.failed) == (1, 1)
    assert dead["stage"] == "verify" and dead["patient"].endswith(older.patient.identifier)
    assert dead["reason"].startswith(f"Patient/{patient_id(older)}: the server may hold older data")
    assert dead["case"]["labs"][0]["status"] == "amended"  # the newer case, to push again
    assert not (tmp_path / "run.journal.ndjson").read_text().strip()  # nothing to skip

    again = bulk(fresh_fhir_server_url, source, tmp_path, resume=True)
    assert (again.skipped, again.confirmed, again.failed) == (0, 2, 0)
    assert case_differences(on_the_server(fresh_fhir_server_url, newer), newer) == []
