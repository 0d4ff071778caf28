"""``fhir-plao push`` / ``fhir-plao pull`` through ``register`` and the handlers, against respx
(the mapping is the stand-in from conftest until the real one lands; the case model is real)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from client_fakes import BASE, capability_statement, fhir_response, outcome, searchset, url

from fhir_plao import jsonio
from fhir_plao.client.commands import register

CASE = {
    "comment": "synthetic test case",
    "patient": {
        "identifier_system": "urn:example:plao",
        "identifier": "X1",
        "birth_date": "1990-04",
        "sex": "female",
    },
}
PATIENT = {"resourceType": "Patient", "id": "plao-p1", "gender": "female", "birthDate": "1990-04"}


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fhir-plao")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    path = tmp_path / "case.json"
    path.write_text(jsonio.dumps(CASE, indent=2))
    return path


@pytest.fixture
def server() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
        # the per-type searches that follow $everything find nothing more
        mock.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?subject=Patient/").mock(
            return_value=fhir_response(200, searchset([], total=0))
        )
        yield mock


@pytest.fixture
def case_mapping(stand_in_mapping: Any) -> Any:
    """from_fhir gives back a real Case built from the pulled Patient."""
    from fhir_plao.case import Case

    def make_case(resources: list[dict[str, Any]]) -> Case:
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        return Case.model_validate(
            {
                "patient": {
                    "identifier_system": "urn:example:plao",
                    "identifier": "X1",
                    "birth_date": patient["birthDate"],
                    "sex": patient["gender"],
                }
            }
        )

    stand_in_mapping.make_case = make_case
    return stand_in_mapping


def _transaction_response() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/plao-p1/_history/1"}},
            {"response": {"status": "200 OK", "location": "Observation/plao-bmd1/_history/3"}},
            {"response": {"status": "200 OK", "location": "Observation/plao-z1/_history/3"}},
        ],
    }


def test_push_prints_the_server_ids(server, case_mapping, case_file, capsys) -> None:
    tx = server.post(BASE).mock(return_value=fhir_response(200, _transaction_response()))

    code = run("push", str(case_file), "--server", BASE, "--no-validate", "--token", "t0k")

    out = capsys.readouterr().out
    assert code == 0
    assert "Patient/plao-p1 -> Patient/plao-p1/_history/1  [201 Created]" in out
    assert "Observation/plao-z1 -> Observation/plao-z1/_history/3  [200 OK]" in out
    assert "3 resources" in out and "1 created, 2 updated" in out
    assert tx.calls.last.request.headers["Authorization"] == "Bearer t0k"


def test_push_takes_server_token_and_timeout_from_the_environment(
    server, case_mapping, case_file, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FHIR_SERVER_URL", BASE)
    monkeypatch.setenv("FHIR_TOKEN", "env-token")
    monkeypatch.setenv("FHIR_TIMEOUT", "2.5")
    tx = server.post(BASE).mock(return_value=fhir_response(200, _transaction_response()))

    assert run("push", str(case_file), "--no-validate") == 0
    request = tx.calls.last.request
    assert request.headers["Authorization"] == "Bearer env-token"
    assert request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_push_error_exits_2_with_the_server_message(server, case_mapping, case_file, capsys):
    server.post(BASE).mock(
        return_value=fhir_response(
            400, outcome("HAPI-1094: Resource Patient/nobody not found, specified in path")
        )
    )

    code = run("push", str(case_file), "--server", BASE, "--no-validate")

    captured = capsys.readouterr()
    assert code == 2
    assert "fhir-plao push: error:" in captured.err and "HAPI-1094" in captured.err
    assert captured.out == ""


def test_push_without_a_server_says_how_to_give_one(case_mapping, case_file, capsys) -> None:
    assert run("push", str(case_file), "--no-validate") == 2
    assert "--server URL or set FHIR_SERVER_URL" in capsys.readouterr().err


def test_push_of_a_bad_case_file_names_it(tmp_path, case_mapping, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient": {"sexx": "female"}}')
    assert run("push", str(bad), "--server", BASE, "--no-validate") == 2
    assert str(bad) in capsys.readouterr().err


def test_pull_writes_the_case_and_reports_unmapped(server, case_mapping, tmp_path, capsys):
    doctor = {"resourceType": "Practitioner", "id": "dr1"}
    server.get(url("Patient/plao-p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT, doctor], total=2))
    )
    out_file = tmp_path / "pulled.json"

    code = run("pull", "--server", BASE, "--patient", "plao-p1", "-o", str(out_file))

    captured = capsys.readouterr()
    assert code == 0
    written = jsonio.loads(out_file.read_bytes())
    assert written["patient"]["birth_date"] == "1990-04"
    assert "1 element(s) not mapped" in captured.err
    assert "Practitioner/dr1: not part of a PLAO case" in captured.err
    assert list(tmp_path.glob(".*.tmp")) == []


def test_pull_expect_identical(server, case_mapping, case_file, tmp_path, capsys) -> None:
    server.get(url("Patient/plao-p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT], total=1))
    )

    code = run(
        "pull", "--server", BASE, "--patient", "plao-p1",
        "-o", str(tmp_path / "pulled.json"), "--expect", str(case_file),
    )  # fmt: skip

    assert code == 0
    assert "round-trip verdict: identical" in capsys.readouterr().out


def test_pull_expect_different_lists_the_differences(
    server, case_mapping, case_file, tmp_path, capsys
) -> None:
    server.get(url("Patient/plao-p1/$everything")).mock(
        return_value=fhir_response(200, searchset([{**PATIENT, "birthDate": "1991"}], total=1))
    )

    code = run(
        "pull", "--server", BASE, "--patient", "plao-p1",
        "-o", str(tmp_path / "pulled.json"), "--expect", str(case_file),
    )  # fmt: skip

    out = capsys.readouterr().out
    assert code == 1
    assert "round-trip verdict: different" in out
    assert "patient.birth_date: '1990-04' != '1991'" in out


def test_pull_failure_leaves_no_file_behind(server, case_mapping, tmp_path, capsys) -> None:
    server.get(url("Patient/plao-p1/$everything")).mock(
        return_value=httpx.Response(500, content=b"<html><title>Oops</title></html>")
    )
    out_file = tmp_path / "pulled.json"
    out_file.write_text("previous content")

    code = run("pull", "--server", BASE, "--patient", "plao-p1", "-o", str(out_file))

    assert code == 2
    assert "Oops" in capsys.readouterr().err
    assert out_file.read_text() == "previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.json"]


def test_push_refuses_an_invalid_bundle_and_sends_nothing(
    case_mapping, case_file, capsys, monkeypatch
) -> None:
    from fhir_plao.errors import ValidationError

    def refuse(bundle: Any) -> Any:
        raise ValidationError(
            "invalid FHIR", [_Issue("error", "Bundle.entry[0].resource.gender", "not a code")]
        )

    monkeypatch.setattr("fhir_plao.validation.ensure_valid", refuse)
    with respx.mock(assert_all_called=False) as mock:
        tx = mock.post(BASE).mock(return_value=httpx.Response(500))
        code = run("push", str(case_file), "--server", BASE)

    err = capsys.readouterr().err
    assert code == 2 and tx.call_count == 0
    assert "1 validation error(s); nothing was sent" in err
    assert "Bundle.entry[0].resource.gender: not a code" in err


class _Issue:
    def __init__(self, severity: str, path: str, message: str) -> None:
        self.severity, self.path, self.message = severity, path, message

    def __str__(self) -> str:
        return f"{self.severity} {self.path}: {self.message}"
