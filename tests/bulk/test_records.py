"""The journal, the dead-letter file, case hashes, failures traced to case fields, summaries."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.bulk import (
    DeadLetter,
    Failure,
    Journal,
    Location,
    Progress,
    PullSummary,
    PushSummary,
    case_digest,
    patient_key,
)
from fhir_plao.bulk._records import failure_from_error
from fhir_plao.case import Case
from fhir_plao.errors import MappingError, ServerError, TransportError

# --------------------------------------------------------------------------- journal


def record(journal: Journal, patient: str, digest: str, source: str = "in:1") -> None:
    journal.record(
        source=source, patient=patient, digest=digest, created=3, updated=1, transactions=1
    )


def test_journal_records_are_flushed_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "j.ndjson"
    with Journal(path, resume=False) as journal:
        record(journal, "s|p1", "h1")
        # readable before the journal is closed: a killed run keeps what it confirmed
        (line,) = path.read_text().splitlines()
        assert jsonio.loads(line) == {
            "source": "in:1",
            "patient": "s|p1",
            "sha256": "h1",
            "resources": 4,
            "created": 3,
            "updated": 1,
            "transactions": 1,
        }


def test_resume_reads_the_journal_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "j.ndjson"
    with Journal(path, resume=False) as journal:
        record(journal, "s|p1", "h1")
        record(journal, "s|p2", "h2")
    with Journal(path, resume=True) as journal:
        assert journal.confirmed("s|p1", "h1") and journal.confirmed("s|p2", "h2")
        assert not journal.confirmed("s|p1", "h2")  # same patient, changed case: sent again
        record(journal, "s|p3", "h3")
    assert len(path.read_text().splitlines()) == 3


def test_without_resume_the_journal_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "j.ndjson"
    with Journal(path, resume=False) as journal:
        record(journal, "s|p1", "h1")
    with Journal(path, resume=False) as journal:
        assert not journal.confirmed("s|p1", "h1")
    assert path.read_text() == ""


def test_a_torn_last_line_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.ndjson"
    with Journal(path, resume=False) as journal:
        record(journal, "s|p1", "h1")
    with path.open("a") as handle:
        handle.write('{"source": "in:2", "patient": "s|p2", "sha2')  # killed mid-write
    with Journal(path, resume=True) as journal:
        assert len(journal) == 1 and journal.confirmed("s|p1", "h1")
    assert "not a journal record (torn write?)" in caplog.text


def test_resume_without_a_journal_skips_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path / "new" / "j.ndjson", resume=True) as journal:
        assert len(journal) == 0
    assert (tmp_path / "new" / "j.ndjson").exists()


# --------------------------------------------------------------------------- dead letter


def test_dead_letter_is_made_at_the_first_failure_and_replaces_an_old_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.ndjson"
    path.write_text('{"from": "an earlier run"}\n')
    with DeadLetter(path) as dead:
        assert not path.exists()
        dead.write({"source": "x", "reason": "because"})
        dead.write({"source": "y", "reason": "because"})
        assert dead.count == 2
    assert [jsonio.loads(line)["source"] for line in path.read_text().splitlines()] == ["x", "y"]


def test_no_failure_no_dead_letter_file(tmp_path: Path) -> None:
    with DeadLetter(tmp_path / "d.ndjson"):
        pass
    assert not (tmp_path / "d.ndjson").exists()


# --------------------------------------------------------------------------- hashes


def test_the_digest_follows_the_content_not_the_formatting(example_case: Case) -> None:
    again = Case.model_validate_json(example_case.model_dump_json(indent=4))
    assert case_digest(again) == case_digest(example_case)
    changed = example_case.model_copy(update={"comment": "another note"})
    assert case_digest(changed) != case_digest(example_case)
    assert patient_key(example_case) == (
        "http://fhir-plao.example.org/fhir/case-id|plao-example-0001"
    )


# --------------------------------------------------------------------------- failures


def entry_index(bundle: dict[str, Any], rtype: str, item_id: str) -> int:
    for i, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        values = [ident.get("value", "") for ident in resource.get("identifier", [])]
        if resource["resourceType"] == rtype and any(v.endswith(f"/{item_id}") for v in values):
            return i
    raise AssertionError(f"no {rtype} for {item_id}")


def test_a_traced_error_gives_its_locations_status_and_parts_to_the_dead_letter() -> None:
    error = ServerError(422, "POST -> 422", hapi_code="HAPI-0450").traced(
        [Location(field="labs[1].value", element="Observation.valueQuantity", message="bad")]
    )
    error.parts, error.parts_applied = 3, 1

    failure = failure_from_error(error)

    assert failure.as_json() == {
        "stage": "server",
        "reason": str(error),
        "locations": [
            {"field": "labs[1].value", "element": "Observation.valueQuantity", "message": "bad"}
        ],
        "status": 422,
        "hapi_code": "HAPI-0450",
        "parts_applied": 1,
        "parts": 3,
    }
    assert str(error).startswith("labs[1].value (Observation.valueQuantity): POST -> 422")


def test_other_failures() -> None:
    assert failure_from_error(TransportError("connect")).stage == "transport"
    mapping = failure_from_error(MappingError("no patient", location="Bundle.entry[2]"))
    assert mapping.stage == "mapping"
    assert mapping.locations == (Location(field="Bundle.entry[2]", message="no patient"),)


# --------------------------------------------------------------------------- summaries


def test_push_summary_line() -> None:
    summary = PushSummary(
        read=32,
        skipped=1,
        sent=30,
        created=28,
        updated=1,
        failed=2,
        resources_created=1100,
        resources_updated=40,
        transactions=31,
        seconds=2.0,
    )
    assert not summary.ok and summary.confirmed == 29
    assert summary.line() == (
        "cases: 32 read, 30 sent, 28 created, 1 updated, 2 failed, 1 skipped (already "
        "confirmed); resources: 1100 created, 40 updated; 31 transaction(s) in 2.00 s "
        "(14.5 cases/s)"
    )
    assert PushSummary(read=3, created=3).ok


def test_pull_summary_line() -> None:
    summary = PullSummary(found=3, written=2, failed=1, unmapped=1, seconds=0.5)
    assert summary.line() == (
        "patients: 3 found, 2 written, 1 failed, 1 with unmapped elements; in 0.50 s (4.0 cases/s)"
    )
    assert not summary.ok
    assert not PullSummary(found=1, written=1, incomplete=True).ok
    assert "INCOMPLETE" in PullSummary(incomplete=True).line()


# --------------------------------------------------------------------------- progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_quiet_when_not_a_terminal() -> None:
    stream = io.StringIO()  # isatty() is False
    progress = Progress(stream, label="push")
    progress.update(5, force=True)
    progress.finish()
    assert not progress.enabled and stream.getvalue() == ""


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    clock = Clock()
    progress = Progress(stream, label="push", enabled=True, clock=clock)
    progress.total = 30
    clock.now += 2
    progress.update(12, 1)
    clock.now += 0.05
    progress.update(13, 1)  # too soon: not drawn
    assert stream.getvalue() == (
        "\rpush [#########...............] 12/30 cases, 1 failed, 6.0/s, 3 s left"
    )
    progress.finish()
    assert stream.getvalue().endswith("\r" + " " * 70 + "\r")


def test_progress_notes_do_not_garble_the_bar() -> None:
    stream = io.StringIO()
    progress = Progress(stream, label="pull", noun="patients", enabled=True, clock=Clock())
    progress.update(2, force=True)
    progress.note("a warning")
    bar = "pull 2 patients, 0 failed"
    assert stream.getvalue() == f"\r{bar}\r{' ' * len(bar)}\ra warning\n\r{bar}"


def test_failure_json_leaves_out_what_is_unknown() -> None:
    assert Failure("json", "malformed").as_json() == {
        "stage": "json",
        "reason": "malformed",
        "locations": [],
    }


def test_record_files_and_outputs_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    from fhir_plao._files import write_text

    loose = tmp_path / "old.journal.ndjson"
    loose.write_text("")
    loose.chmod(0o644)  # left by an older version
    with Journal(loose, resume=True) as journal:
        record(journal, "s|1", "d1")
    with DeadLetter(tmp_path / "run.dead-letter.ndjson") as dead:
        dead.write({"source": "x"})
    write_text(tmp_path / "case.json", "{}")

    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {
        "old.journal.ndjson": 0o600,
        "run.dead-letter.ndjson": 0o600,
        "case.json": 0o600,
    }
