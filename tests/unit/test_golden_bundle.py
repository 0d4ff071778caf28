"""The example's Bundle against a reviewed copy (tests/golden/plao-bundle.json).

Any change in ids, order, codes or number formatting shows up here. After an intended change,
regenerate with ``fhir-plao convert examples/plao-case.json -o tests/golden/plao-bundle.json``
and review the diff.
"""

from __future__ import annotations

from pathlib import Path

from fhir_plao import jsonio

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plao-bundle.json"


def test_example_bundle_equals_the_golden_file(example_bundle_text: str) -> None:
    golden = GOLDEN.read_text(encoding="utf-8")
    assert jsonio.loads(example_bundle_text) == jsonio.loads(golden)
    # and byte for byte: decimals keep their digits, keys their order
    assert example_bundle_text + "\n" == golden
