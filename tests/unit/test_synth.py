"""`fhir-plao synth`: seeded, varied, valid synthetic cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_plao import jsonio
from fhir_plao.case import case_from_json, case_to_json
from fhir_plao.cli import main
from fhir_plao.compare import case_differences
from fhir_plao.mapping import from_fhir, to_fhir
from fhir_plao.synth import SYNTHETIC_SYSTEM, synth_case, synth_cases
from fhir_plao.validation import validate


def test_the_same_seed_gives_the_same_cases() -> None:
    first = [case_to_json(c) for c in synth_cases(20, seed=3)]
    again = [case_to_json(c) for c in synth_cases(20, seed=3)]
    other = [case_to_json(c) for c in synth_cases(20, seed=4)]
    assert first == again
    assert first != other
    # case i does not depend on the cases before it
    assert case_to_json(synth_case(13, seed=3)) == first[13]


def test_cases_vary_like_a_series_would() -> None:
    cases = list(synth_cases(120, seed=0))
    assert len({c.patient.identifier for c in cases}) == 120
    assert len({len(c.fractures) for c in cases}) >= 5
    assert {m.drug for c in cases for m in c.medications if m.id == "med-bone"} == {
        "alendronate-70mg-tablet", "teriparatide", "denosumab",
    }  # fmt: skip
    assert any(
        f.site == "femoral-neck-bone" or f.site == "distal-radius"
        for c in cases
        for f in c.fractures
    )
    assert {len(c.dxa_scans) for c in cases} == {1, 2, 3}
    assert {lab.interpretation for c in cases for lab in c.labs} == {"H", "L", "N"}


def test_cases_say_they_are_synthetic() -> None:
    for case in synth_cases(5):
        assert case.patient.identifier_system == SYNTHETIC_SYSTEM
        assert case.comment is not None and "SYNTHETIC" in case.comment


def test_synthetic_cases_round_trip_and_validate() -> None:
    for case in synth_cases(40, seed=11):
        bundle = to_fhir(case)
        result = from_fhir(jsonio.loads(jsonio.dumps(bundle)))
        assert case_differences(case, result.case) == []
        assert result.unmapped == []
        assert [i for i in validate(bundle) if i.severity == "error"] == []


def test_the_command_writes_one_case_per_line(tmp_path: Path) -> None:
    out = tmp_path / "cases.ndjson"
    assert main(["synth", "25", "--seed", "2", "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25
    assert case_from_json(lines[7]).patient.identifier == "synth-2-0000007"


def test_a_negative_count_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "-3"]) == 2
    assert "must be 0 or more, not -3" in capsys.readouterr().err
