"""Every input in ``tests/data/foreign`` maps to exactly its golden file in
``tests/golden/foreign`` (the case and the unmapped report, or the one-line refusal), compared
as parsed JSON. After an intended change, rewrite them with ``make golden`` and review the diff."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _golden_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foreign_golden", REPO / "scripts" / "foreign_golden.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOLDEN = _golden_module()
INPUTS = GOLDEN.inputs()


def test_there_is_a_golden_file_for_every_foreign_input_and_no_other() -> None:
    expected = {GOLDEN.golden_path(p) for p in INPUTS}
    present = set((REPO / "tests" / "golden" / "foreign").rglob("*.json"))
    assert len(INPUTS) >= 100
    assert present == expected


@pytest.mark.parametrize("source", INPUTS, ids=lambda p: str(p.relative_to(GOLDEN.INPUTS)))
def test_foreign_input_maps_to_its_golden_file(source: Path) -> None:
    golden = json.loads(GOLDEN.golden_path(source).read_text("utf-8"))
    assert GOLDEN.expected(source) == golden, "run `make golden` and review the diff"


def test_refusals_are_one_line_and_say_why() -> None:
    refusals = [json.loads(GOLDEN.golden_path(p).read_text("utf-8")).get("refused") for p in INPUTS]
    reasons = [r for r in refusals if r is not None]
    assert reasons, "the samples hold non-patient files (OperationOutcomes, searchsets)"
    for reason in reasons:
        assert "\n" not in reason
        assert "Patient" in reason or "patient" in reason
