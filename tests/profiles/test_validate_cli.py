"""`fhir-plao validate FILE`: output, summary, and exit codes (0 valid, 1 errors, 2 unusable)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.cli import main

from .conftest import entry_index


def write(path: Path, data: Any) -> str:
    path.write_text(jsonio.dumps(data, indent=2), encoding="utf-8")
    return str(path)


def test_valid_bundle_exits_0_with_a_summary(
    tmp_path: Path, example_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bundle.json", example_bundle)
    assert main(["validate", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"{path}: valid: 0 error(s), {len(out) - 1} warning(s) in "
        f"{len(example_bundle['entry'])} resource(s)"
    )
    assert all(line.startswith("warning ") for line in out[:-1])


def test_errors_are_printed_one_a_line_and_exit_1(
    tmp_path: Path, minimal_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    del minimal_bundle["entry"][i]["resource"]["valueQuantity"]
    minimal_bundle["entry"][i]["resource"]["effectiveDateTime"] = "2023-13-01"
    path = write(tmp_path / "bad.json", minimal_bundle)
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"error Bundle.entry[{i}].resource.effectiveDateTime: " in "\n".join(out)
    assert any(
        line.startswith(f"error Bundle.entry[{i}].resource.valueQuantity: required element")
        for line in out
    )
    # and the DXA report whose result must be a conforming DXA score, as HAPI's validator says
    report = entry_index(minimal_bundle, "plao-dxa-report")
    assert any(
        line.startswith(f"error Bundle.entry[{report}].resource.result[0].reference: ")
        and "does not conform to profile plao-dxa-score" in line
        for line in out
    )
    assert out[-1].startswith(f"{path}: invalid: 3 error(s), 0 warning(s)")


def test_ndjson_lines_are_named(
    tmp_path: Path, minimal_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    resources = [e["resource"] for e in minimal_bundle["entry"]]
    del resources[2]["status"]
    path = tmp_path / "resources.ndjson"
    path.write_text("\n".join(jsonio.dumps(r) for r in resources) + "\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"error line 3 {resources[2]['resourceType']}.status: " in out
    assert f"in {len(resources)} resource(s)" in out


def test_outcome_format(
    tmp_path: Path, minimal_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bundle.json", minimal_bundle)
    assert main(["validate", "--format", "outcome", path]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"


def test_errors_only_hides_warnings(
    tmp_path: Path, minimal_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    i = entry_index(minimal_bundle, "plao-dxa-score")
    minimal_bundle["entry"][i]["resource"]["meta"]["profile"].append("http://example.org/p")
    path = write(tmp_path / "bundle.json", minimal_bundle)
    assert main(["validate", "--errors-only", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{path}: valid: 0 error(s), 1 warning(s) in 9 resource(s)"]


def test_standard_input(
    minimal_bundle: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = jsonio.dumps(minimal_bundle).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["validate", "-"]) == 0
    assert capsys.readouterr().out.startswith("<stdin>: valid: 0 error(s)")


@pytest.mark.parametrize(
    "content",
    [None, b"not json at all", b'{"resourceType": 3}', b"[1, 2]", b"\xff\xfe"],
    ids=["missing file", "not json", "no resource type", "json array", "not utf-8"],
)
def test_unusable_input_exits_2(
    tmp_path: Path, content: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fhir-plao validate: error: ")
