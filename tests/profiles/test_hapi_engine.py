"""HAPI's instance validator as the second opinion: the real HL7 engine, run by our Java command.

One validator process serves the whole module (the JVM and the R4 definitions load once). It
is built from ``servers/hapi`` by Maven on first use, like the HAPI server; without Java these
tests fail (they never skip): CI has Java, and a skip would hide the engine.
"""

from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao._validation.hapi import HapiValidator, hapi_path, same_element
from fhir_plao.cli import main
from fhir_plao.errors import ValidatorUnavailable
from fhir_plao.validation import Issue, validate

from .corruptions import CORRUPTIONS, Corruption, corrupt, expected_path

REPO = Path(__file__).resolve().parents[2]

#: corruptions HAPI's validator does not report at the element ours does, and why
KNOWN_DIFFERENCES = {
    "broken reference": "HAPI does not resolve urn:uuid references between the entries of a "
    "transaction Bundle, so a reference to no entry passes; a server refuses that transaction "
    "(HAPI-1094 on write), so ours reports it before it is sent",
}


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.is_error]


@pytest.fixture(scope="module")
def hapi() -> Iterator[HapiValidator]:
    with HapiValidator() as validator:
        yield validator


def test_the_example_bundle_has_no_errors_for_hapi(
    hapi: HapiValidator, example_bundle: dict[str, Any]
) -> None:
    issues = hapi.validate(example_bundle)
    assert errors(issues) == [], "\n".join(map(str, errors(issues)))
    assert issues, "HAPI always has something to say (narratives, unknown code systems)"
    assert all(i.path.startswith("Bundle.entry[") for i in issues)


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=lambda c: c.name)
def test_each_corruption_is_an_error_for_both_engines_at_the_same_element(
    hapi: HapiValidator, example_bundle: dict[str, Any], corruption: Corruption
) -> None:
    bundle = copy.deepcopy(example_bundle)
    i = corrupt(bundle, corruption)
    element = expected_path(i, corruption)
    ours = [x for x in errors(validate(bundle)) if x.path == element]
    theirs = [x for x in errors(hapi.validate(bundle)) if same_element(x.path, element)]
    assert ours, f"ours reports nothing at {element}"
    if corruption.name in KNOWN_DIFFERENCES:
        assert theirs == [], f"HAPI now reports {corruption.name}: drop it from the list"
    else:
        assert theirs, f"HAPI reports nothing at {element}: " + "; ".join(
            map(str, errors(hapi.validate(bundle)))
        )


def test_an_input_that_is_not_fhir_json_is_one_error(hapi: HapiValidator) -> None:
    issues = hapi.validate({"resourceType": "NoSuchType", "id": "x"}, source="line 1")
    assert errors(issues) and all(i.source == "line 1" for i in issues)


def test_hapi_locations_read_like_ours() -> None:
    assert hapi_path("Bundle.entry[3].resource/*Observation/plao-1*/.code") == (
        "Bundle.entry[3].resource.code"
    )
    assert hapi_path("Observation.value.ofType(Quantity)") == "Observation.valueQuantity"
    assert (
        hapi_path("Bundle.entry[0].resource", "Patient.gender: minimum required = 1, but only")
        == "Bundle.entry[0].resource.gender"
    )
    assert (
        hapi_path(
            "Bundle.entry[2].resource.valueQuantity",
            "Observation.value[x]:valueQuantity.unit: minimum required = 1, but only found 0",
        )
        == "Bundle.entry[2].resource.valueQuantity.unit"
    )
    assert (
        hapi_path(
            "Observation",
            "Slice 'Observation.category:imaging': a matching slice is required, but not found",
        )
        == "Observation.category"
    )
    assert hapi_path("Observation.value[x]", "Unrecognized property 'unitt'") == (
        "Observation.value[x].unitt"
    )


def test_same_element_allows_choice_names_and_reference_holders() -> None:
    assert same_element("Observation.value[x]", "Observation.valueQuantity")
    assert not same_element("Observation.value[x]", "Observation.valuequantity")
    assert same_element(
        "Condition.evidence[0].detail[0]", "Condition.evidence[0].detail[0].reference"
    )
    assert not same_element("Observation.code", "Observation.category")


def test_cli_validate_with_the_hapi_engine(
    tmp_path: Path, example_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(jsonio.dumps(example_bundle), encoding="utf-8")
    assert main(["validate", "--engine", "hapi", "--errors-only", str(good)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{good}: valid: 0 error(s)")

    del example_bundle["entry"][0]["resource"]["gender"]
    bad = tmp_path / "bad.json"
    bad.write_text(jsonio.dumps(example_bundle), encoding="utf-8")
    assert main(["validate", "--engine", "hapi", "--errors-only", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("error Bundle.entry[0].resource.gender: ") for line in out)
    assert " invalid: " in out[-1]


def test_cli_hapi_engine_on_ndjson_with_a_line_that_is_not_json(
    tmp_path: Path, minimal_bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    resources = [e["resource"] for e in minimal_bundle["entry"]]
    del resources[0]["gender"]  # the Patient, line 1
    lines = [jsonio.dumps(r) for r in resources[:3]] + ["{not json"]
    path = tmp_path / "resources.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["validate", "--engine", "hapi", "--errors-only", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("error line 1 Patient.gender: ") for line in out)
    assert any(line.startswith("error line 4 $: not JSON") for line in out)


def test_without_java_the_hapi_engine_says_so_in_one_line(
    tmp_path: Path, example_bundle: dict[str, Any]
) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(jsonio.dumps(example_bundle), encoding="utf-8")
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-jdk"), "PATH": "/nonexistent"}
    res = subprocess.run(
        [sys.executable, "-m", "fhir_plao.cli", "validate", "--engine", "hapi", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert "Java 17 or newer" in line and "Traceback" not in res.stderr


def test_a_validator_that_cannot_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    validator = HapiValidator()
    with pytest.raises(ValidatorUnavailable, match="Java 17 or newer"):
        validator.start()
    del validator
    gc.collect()  # a temporary folder left to the garbage collector would warn (an error here)


def test_without_java_the_server_manager_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-jdk")}
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fhir_server.py"),
            "install",
            "--server",
            "hapi",
            "--force",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert "Java not found" in line and "Java 17 or newer" in line


@pytest.mark.timeout(900)
def test_the_agreement_report_has_no_unexplained_hapi_only_error(tmp_path: Path) -> None:
    """``scripts/validation_agreement.py`` (``make agreement``) on the whole corpus but fewer
    synthetic cases: every error HAPI reports where ours reports none is explained."""
    report = tmp_path / "agreement.md"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "validation_agreement.py"),
            "--synthetic",
            "3",
            "-o",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text(encoding="utf-8")
    assert "**UNEXPLAINED**" not in text
    assert "| the example Bundle | 1 | 1 | 0 | 0 | 0 |" in text


def test_a_validator_process_that_dies_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, example_bundle: dict[str, Any]
) -> None:
    import fhir_plao._validation.hapi as hapi_module

    monkeypatch.setattr(hapi_module, "_MAIN", "org.fhirplao.hapi.NoSuchCommand")
    with HapiValidator() as validator, pytest.raises(ValidatorUnavailable) as info:
        validator.validate(example_bundle)
    assert "stopped" in str(info.value) and "NoSuchCommand" in str(info.value)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--ndjson"], "--profiles DIR is required"),
        (["--profiles", "PROFILES"], "give either --ndjson"),
        (["--profiles", "PROFILES", "no-such-file.json"], "cannot read no-such-file.json"),
        (["--profiles", "EMPTY", "--ndjson"], "cannot load profiles"),
    ],
)
def test_the_java_command_refuses_bad_arguments_in_one_line(
    tmp_path: Path, arguments: list[str], problem: str
) -> None:
    from fhir_plao._validation.hapi import _classpath, _java

    (tmp_path / "empty").mkdir()
    given = [
        str(REPO / "profiles")
        if a == "PROFILES"
        else str(tmp_path / "empty")
        if a == "EMPTY"
        else a
        for a in arguments
    ]
    res = subprocess.run(
        [_java(), "-cp", _classpath(), "org.fhirplao.hapi.ValidateCommand", *given],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )
    assert res.returncode == 2
    assert res.stdout == ""
    assert problem in res.stderr and "Exception" not in res.stderr
