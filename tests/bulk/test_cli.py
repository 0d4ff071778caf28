"""``fhir-plao push`` (bulk) and ``fhir-plao pull --all / --search`` end to end, over respx."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from fhir_plao.case import Case, case_from_json, case_to_json
from fhir_plao.cli import main
from fhir_plao.client import RetryPolicy
from fhir_plao.mapping import to_fhir
from tests.bulk.fakes import (
    BASE,
    CAPABILITIES,
    PatientServer,
    TransactionEndpoint,
    cases,
    fhir_response,
    outcome,
    read_ndjson,
    write_ndjson,
)


@pytest.fixture
def server(endpoint: TransactionEndpoint) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/metadata").mock(return_value=fhir_response(200, CAPABILITIES))
        mock.post(BASE).mock(side_effect=endpoint.handler)
        yield mock


def test_push_an_ndjson_file(
    server: respx.MockRouter,
    endpoint: TransactionEndpoint,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(3))

    code = main(["push", str(source), "--server", BASE, "--no-validate"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("fhir-plao push: cases: 3 read, 3 sent, 3 created, 0 updated, 0 failed")
    assert "\r" not in err  # not a terminal: no progress line
    assert len(read_ndjson(tmp_path / "cases.journal.ndjson")) == 3  # beside the input
    assert not (tmp_path / "cases.dead-letter.ndjson").exists()
    assert len(endpoint.transactions) == 3


def test_push_validates_by_default(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(2))
    assert main(["push", str(source), "--server", BASE, "--concurrency", "2"]) == 0
    assert "2 created" in capsys.readouterr().out


def test_push_a_directory_with_a_bad_file_exits_1_and_names_the_dead_letter(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    for n, item in enumerate(cases(2)):
        (folder / f"{n}.json").write_text(case_to_json(item))
    (folder / "2.json").write_text('{"patient": 1}')

    code = main(["push", str(folder), "--server", BASE, "--no-validate"])

    out, err = capsys.readouterr()
    dead_letter = tmp_path / "cases.dead-letter.ndjson"  # beside the directory
    assert code == 1
    assert "2 created, 0 updated, 1 failed" in out
    assert f"1 case(s) failed; see {dead_letter}" in err
    (dead,) = read_ndjson(dead_letter)
    assert dead["source"] == str(folder / "2.json")


def test_push_resume_sends_nothing_already_confirmed(
    server: respx.MockRouter,
    endpoint: TransactionEndpoint,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_ndjson(tmp_path / "cases.ndjson", cases(4))
    journal = tmp_path / "records" / "my.journal"
    dead_letter = tmp_path / "records" / "my.dead"
    argv = ["push", str(source), "--server", BASE, "--no-validate", "--journal", str(journal)]
    argv += ["--dead-letter", str(dead_letter)]
    assert main(argv) == 0
    assert len(endpoint.transactions) == 4

    assert main([*argv, "--resume"]) == 0

    assert len(endpoint.transactions) == 4
    assert "0 sent, 0 created, 0 updated, 0 failed, 4 skipped" in capsys.readouterr().out
    assert len(read_ndjson(journal)) == 4


def test_one_case_file_with_a_bulk_option_is_pushed_in_parts(
    server: respx.MockRouter,
    endpoint: TransactionEndpoint,
    tmp_path: Path,
    example_case: Case,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "case.json"
    path.write_text(case_to_json(example_case))

    code = main(["push", str(path), "--server", BASE, "--no-validate", "--max-entries", "10"])

    assert code == 0
    assert len(endpoint.transactions) == 11
    assert "1 created" in capsys.readouterr().out
    assert (tmp_path / "case.journal.ndjson").exists()


def test_one_case_file_alone_keeps_the_one_case_output(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (item,) = cases(1)
    path = tmp_path / "case.json"
    path.write_text(case_to_json(item))

    assert main(["push", str(path), "--server", BASE, "--no-validate"]) == 0

    out = capsys.readouterr().out
    entries = len(to_fhir(item)["entry"])
    assert "[201 Created]" in out and f"resources to {BASE}: {entries} created" in out
    assert not (tmp_path / "case.journal.ndjson").exists()


def test_push_a_503_storm_with_retry_after_zero(
    server: respx.MockRouter,
    endpoint: TransactionEndpoint,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    items = cases(3)
    endpoint.fail_for(
        items[0].patient.identifier,
        lambda: fhir_response(503, outcome("busy"), retry_after="0"),
    )
    source = write_ndjson(tmp_path / "cases.ndjson", items)

    code = main(["push", str(source), "--server", BASE, "--no-validate"])

    assert code == 1
    assert "2 created, 0 updated, 1 failed" in capsys.readouterr().out
    (dead,) = read_ndjson(tmp_path / "cases.dead-letter.ndjson")
    assert dead["line"] == 1 and dead["status"] == 503


def test_push_to_a_server_that_is_down_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, retry, rng: 0.0)
    source = write_ndjson(tmp_path / "cases.ndjson", cases(2))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))
        code = main(["push", str(source), "--server", BASE, "--no-validate"])
    assert code == 2
    assert "could not connect" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.ndjson"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--concurrency", "0", "must be at least 1"),
        ("--max-entries", "-1", "must be 0 (no limit) or more"),
        ("--max-bytes", "lots", "not a whole number"),
    ],
)
def test_push_option_values_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["push", str(tmp_path), "--server", BASE, option, value])
    assert stop.value.code == 2 and message in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_push_shows_progress_on_a_terminal(
    server: respx.MockRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    source = write_ndjson(tmp_path / "cases.ndjson", cases(3))

    assert main(["push", str(source), "--server", BASE, "--no-validate"]) == 0

    shown = terminal.getvalue()
    assert "\rpush [########################] 3/3 cases, 0 failed" in shown
    assert shown.endswith("\r")  # the bar is wiped before the summary


def test_push_no_progress_even_on_a_terminal(
    server: respx.MockRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    source = write_ndjson(tmp_path / "cases.ndjson", cases(1))
    assert main(["push", str(source), "--server", BASE, "--no-validate", "--no-progress"]) == 0
    assert terminal.getvalue() == ""


# --------------------------------------------------------------------------- pull


def test_pull_all_writes_ndjson_in_search_order(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = cases(5)
    PatientServer(server, items, page=2)
    output = tmp_path / "pulled.ndjson"

    code = main(["pull", "--all", "--server", BASE, "-o", str(output)])

    out, _ = capsys.readouterr()
    assert code == 0
    assert "fhir-plao pull: patients: 5 found, 5 written, 0 failed" in out
    assert f"wrote {output}" in out
    lines = output.read_text().splitlines()
    assert [case_from_json(x).patient.identifier for x in lines] == [
        c.patient.identifier for c in items
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.ndjson"]


def test_pull_all_to_standard_output(
    server: respx.MockRouter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    PatientServer(server, cases(2))

    assert main(["pull", "--all", "--server", BASE, "-o", "-"]) == 0

    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "patients: 2 found" in err


def test_pull_all_with_a_failing_patient_exits_1_and_still_writes_the_others(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patients = PatientServer(server, cases(3))
    patients.answers[patients.ids[1]] = fhir_response(500, outcome("oops"))
    output = tmp_path / "pulled.ndjson"

    code = main(["pull", "--all", "--server", BASE, "-o", str(output)])

    err = capsys.readouterr().err
    dead_letter = tmp_path / "pulled.dead-letter.ndjson"
    assert code == 1
    assert f"1 patient(s) failed; see {dead_letter}" in err
    assert len(output.read_text().splitlines()) == 2
    (dead,) = read_ndjson(dead_letter)
    assert dead["patient"] == f"Patient/{patients.ids[1]}"


def test_pull_search(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patients = PatientServer(server, cases(1))
    output = tmp_path / "one.ndjson"

    code = main(
        ["pull", "--search", "Patient?identifier=urn:x|7", "--server", BASE, "-o", str(output)]
    )

    assert code == 0
    assert patients.searches[0].params["identifier"] == "urn:x|7"


def test_pull_search_of_another_type_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["pull", "--search", "Observation?code=x", "--server", BASE, "-o", str(tmp_path / "o")]
    )
    assert code == 2 and "must be Patient?" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_pull_expect_needs_one_patient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["pull", "--all", "--server", BASE, "-o", str(tmp_path / "o"), "--expect", "x.json"]
    )
    assert code == 2 and "--expect works with --patient only" in capsys.readouterr().err


def test_pull_needs_one_of_patient_all_search(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pull", "--server", BASE, "-o", "x"])
    assert "one of the arguments --patient --all --search is required" in capsys.readouterr().err


def test_pull_all_failing_search_leaves_no_file_behind(
    server: respx.MockRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.get(f"{BASE}/Patient").mock(return_value=fhir_response(500, outcome("down")))
    output = tmp_path / "pulled.ndjson"
    output.write_text("before\n")

    assert main(["pull", "--all", "--server", BASE, "-o", str(output)]) == 2

    assert output.read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.ndjson"]
