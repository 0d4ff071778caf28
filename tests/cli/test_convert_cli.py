"""`fhir-plao convert` and `roundtrip`: what a person or an interface engine sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.cli import main

from ..conftest import EXAMPLE, FOREIGN_EXAMPLES


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script's code path, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "fhir_plao.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )


def write_json(path: Path, data: Any) -> Path:
    path.write_text(jsonio.dumps(data, indent=2), encoding="utf-8")
    return path


def test_convert_prints_a_transaction_bundle_on_stdout() -> None:
    result = run("convert", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert result.stderr == ""


def test_converting_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["convert", str(EXAMPLE), "-o", str(first)]) == 0
    assert main(["convert", str(EXAMPLE), "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()


def test_bundle_back_to_case_equals_the_example(tmp_path: Path) -> None:
    bundle, case = tmp_path / "bundle.json", tmp_path / "case.json"
    assert main(["convert", str(EXAMPLE), "-o", str(bundle)]) == 0
    assert main(["convert", str(bundle), "--to", "case", "-o", str(case)]) == 0
    original = jsonio.loads(EXAMPLE.read_bytes())
    original.pop("comment")
    assert jsonio.dumps(jsonio.loads(case.read_bytes()), sort_keys=True) == jsonio.dumps(
        original, sort_keys=True
    )


def test_ndjson_and_single_resources_are_read(
    tmp_path: Path, example_bundle: dict[str, Any]
) -> None:
    ndjson = tmp_path / "resources.ndjson"
    ndjson.write_text(
        "\n".join(jsonio.dumps(e["resource"]) for e in example_bundle["entry"]) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "case.json"
    assert main(["convert", str(ndjson), "--to", "case", "-o", str(out)]) == 0
    assert len(jsonio.loads(out.read_bytes())["fractures"]) == 8


def test_a_searchset_from_another_system_is_read_and_the_rest_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synthea = next((FOREIGN_EXAMPLES / "synthea").glob("Chad_*.json"))
    out = tmp_path / "case.json"
    assert main(["convert", str(synthea), "--to", "case", "-o", str(out)]) == 0
    case = jsonio.loads(out.read_bytes())
    assert any(d.get("concept") == "osteoporosis" for d in case["diagnoses"])
    assert case["medications"][0]["drug"] == "alendronate-10mg-tablet"
    err = capsys.readouterr().err
    assert "element(s) not mapped" in err
    assert "a Claim is not part of the case model" in err


def test_roundtrip_of_the_example_says_identical() -> None:
    result = run("roundtrip", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round trip: identical (124 resources)" in result.stdout


# --------------------------------------------------------------------------- bad input


def corrupt(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with ..., delete) the element at a dotted path like 'labs.0.unit'."""
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return data


BAD_CASES = [
    ("missing required field", "patient.sex", ..., "patient.sex: Field required"),
    ("unknown vertebra", "fractures.0.site", "vertebra-t13", "fractures[0].site: unknown vertebra"),
    ("negative dose", "medications.0.dose", -1200, "medications[0]: dose: must be positive"),
    (
        "unit that does not fit the lab",
        "labs.0.unit",
        "kg",
        "labs[0]: unit: 'kg' does not fit phosphate",
    ),
    ("impossible date", "vitals.0.date", "2023-02-30", "vitals[0].date"),
    ("misspelled field", "patient.birthdate", "1998", "patient.birthdate: unknown field"),
    (
        "dangling evidence",
        "fractures.0.evidence.0",
        "mri-3-years",
        "fractures[0].evidence[0]: no imaging study",
    ),
    ("time without offset", "labs.0.date", "2023-05-10T09:00:00", "labs[0].date"),
]


@pytest.mark.parametrize(
    ("what", "path", "value", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_case_exits_2_naming_the_field_and_writes_nothing(
    tmp_path: Path,
    example_case_data: dict[str, Any],
    what: str,
    path: str,
    value: Any,
    message: str,
) -> None:
    case = write_json(tmp_path / "case.json", corrupt(example_case_data, path, value))
    out = tmp_path / "bundle.json"
    result = run("convert", str(case), "-o", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert str(case) in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [case]  # no temporary file left behind either


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient": {"sex": "female",}}', encoding="utf-8")
    out = tmp_path / "out.json"
    result = run("convert", str(bad), "-o", str(out))
    assert result.returncode == 2
    assert "malformed JSON at line 1, column 30" in result.stderr
    assert not out.exists()


def test_json_that_is_not_fhir_is_refused_when_reading_fhir(tmp_path: Path) -> None:
    out = tmp_path / "case.json"
    result = run("convert", str(EXAMPLE), "--to", "case", "-o", str(out))
    assert result.returncode == 2
    assert "not FHIR JSON: no resourceType" in result.stderr
    assert not out.exists()


def test_fhir_given_as_a_case_is_refused(tmp_path: Path, example_bundle: dict[str, Any]) -> None:
    bundle = write_json(tmp_path / "bundle.json", example_bundle)
    result = run("convert", str(bundle))
    assert result.returncode == 2
    assert "this is a FHIR Bundle, not a case" in result.stderr


def test_fhir_without_any_patient_is_refused(tmp_path: Path) -> None:
    outcome = FOREIGN_EXAMPLES / "spec-examples" / "OperationOutcome-101.json"
    out = tmp_path / "case.json"
    result = run("convert", str(outcome), "--to", "case", "-o", str(out))
    assert result.returncode == 2
    assert "no Patient resource" in result.stderr
    assert not out.exists()


def test_a_bundle_of_several_patients_is_refused(tmp_path: Path) -> None:
    page = FOREIGN_EXAMPLES / "hapi-responses" / "search-results-page-1.json"
    result = run("convert", str(page), "--to", "case", "-o", str(tmp_path / "c.json"))
    assert result.returncode == 2
    assert "several Patients" in result.stderr


def test_broken_fhir_element_is_named(tmp_path: Path, example_bundle: dict[str, Any]) -> None:
    patient = example_bundle["entry"][0]["resource"]
    patient["gender"] = ["female"]
    bundle = write_json(tmp_path / "bundle.json", example_bundle)
    result = run("convert", str(bundle), "--to", "case", "-o", str(tmp_path / "c.json"))
    assert result.returncode == 2
    assert f"Patient/{patient['id']}.gender" in result.stderr
    assert not (tmp_path / "c.json").exists()


def test_a_patient_identifier_without_system_is_kept_as_given(
    tmp_path: Path, example_bundle: dict[str, Any]
) -> None:
    example_bundle["entry"][0]["resource"]["identifier"] = [{"value": "no-system"}]
    bundle = write_json(tmp_path / "bundle.json", example_bundle)
    report = tmp_path / "unmapped.json"
    result = run(
        "convert",
        str(bundle),
        "--to",
        "case",
        "-o",
        str(tmp_path / "c.json"),
        "--unmapped-report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    case = json.loads((tmp_path / "c.json").read_text())
    assert case["patient"]["identifier"] == "no-system"
    assert "identifier_system" not in case["patient"]
    assert json.loads(report.read_text())["count"] >= 0


def test_missing_input_file(tmp_path: Path) -> None:
    result = run("convert", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "nope.json: cannot read: No such file or directory" in result.stderr


def test_roundtrip_reports_differences_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fhir_plao.mapping as mapping

    real_to_fhir = mapping.to_fhir

    def lossy(case: Any) -> dict[str, Any]:
        bundle = real_to_fhir(case)
        for entry in bundle["entry"]:
            quantity = entry["resource"].get("valueQuantity")
            if quantity is not None:
                quantity["value"] = jsonio.loads(str(float(quantity["value"])))  # a float trip
        return bundle

    monkeypatch.setattr(mapping, "to_fhir", lossy)
    assert main(["roundtrip", str(EXAMPLE)]) == 1
    out = capsys.readouterr().out
    assert "vitals[vital-height].value: 165 != 165.0" in out
    assert "difference(s)" in out


def test_unmapped_report_is_json_a_script_can_count(tmp_path: Path) -> None:
    foreign = FOREIGN_EXAMPLES / "us-core" / "observation-serum-creatinine.json"
    report = tmp_path / "unmapped.json"
    out = tmp_path / "case.json"
    result = run(
        "convert", str(foreign), "--to", "case", "-o", str(out), "--unmapped-report", str(report)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["count"] == len(data["items"]) > 0
    assert sum(data["byResourceType"].values()) == data["count"]
    assert all(set(item) == {"path", "reason"} for item in data["items"])
    assert f"{data['count']} element(s) not mapped" in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        ["--unmapped-report", "{out}"],  # not the output itself
        ["--unmapped-report", "-", "--format", "json"],  # the report is in the JSON result
    ],
)
def test_unmapped_report_refuses_a_file_it_cannot_have(tmp_path: Path, extra: list[str]) -> None:
    foreign = FOREIGN_EXAMPLES / "us-core" / "observation-serum-creatinine.json"
    out = tmp_path / "case.json"
    args = [a.format(out=out) for a in extra]
    result = run("convert", str(foreign), "--to", "case", "-o", str(out), *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--unmapped-report" in result.stderr
    assert not out.exists()


def test_unmapped_report_goes_with_to_case_only(tmp_path: Path) -> None:
    report = tmp_path / "unmapped.json"
    result = run("convert", str(EXAMPLE), "--unmapped-report", str(report))
    assert result.returncode == 2
    assert "--unmapped-report goes with --to case" in result.stderr
    assert not report.exists()
