"""``fhir-plao push`` (bulk) and ``fhir-plao pull --all / --search``: their arguments, and a server
that cannot be reached (respx: a refused connection, nothing else).

The commands at work against the real SEKMET server are in ``tests/integration/test_bulk.py``
(and their fault paths in ``test_bulk_faults.py``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from fhir_plao.case import case_to_json
from fhir_plao.cli import main
from fhir_plao.client import RetryPolicy
from fhir_plao.synth import synth_cases

BASE = "http://fhir.test/r4"


def test_push_to_a_server_that_is_down_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, retry, rng: 0.0)
    source = tmp_path / "cases.ndjson"
    source.write_text("".join(case_to_json(c, indent=None) for c in synth_cases(2, 5)))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))
        code = main(["push", str(source), "--server", BASE, "--no-validate"])
    assert code == 2
    assert "could not connect" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.ndjson"]


def test_pull_all_from_a_server_that_is_down_exits_2_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, retry, rng: 0.0)
    output = tmp_path / "pulled.ndjson"
    output.write_text("before\n")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))
        code = main(["pull", "--all", "--server", BASE, "-o", str(output)])
    assert code == 2
    assert "could not connect" in capsys.readouterr().err
    assert output.read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.ndjson"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--concurrency", "0", "must be 1 or more"),
        ("--max-entries", "-1", "must be 0 (no limit) or more"),
        ("--max-bytes", "lots", "not a whole number"),
    ],
)
def test_push_option_values_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    assert main(["push", str(tmp_path), "--server", BASE, option, value]) == 2
    assert message in capsys.readouterr().err


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
    assert main(["pull", "--server", BASE, "-o", "x"]) == 2
    assert "one of the arguments --patient --all --search is required" in capsys.readouterr().err
