"""Fixtures shared by every test: the example case, its Bundle, and FHIR written by others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.case import Case, load_case
from fhir_plao.mapping import to_fhir

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plao-case.json"
#: FHIR JSON written by others (spec, US Core, Synthea, QI-Core, HAPI), copied into the tests with
#: each file's source repository, commit and licence in ``tests/data/foreign/SOURCES.md``
FOREIGN_EXAMPLES = REPO / "tests" / "data" / "foreign"


@pytest.fixture(autouse=True)
def _no_fhir_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's FHIR_* settings."""
    import os

    for name in list(os.environ):
        if name.startswith("FHIR_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def example_case() -> Case:
    return load_case(EXAMPLE)


@pytest.fixture(scope="session")
def example_bundle_text(example_case: Case) -> str:
    return jsonio.dumps(to_fhir(example_case), indent=2)


@pytest.fixture
def example_bundle(example_bundle_text: str) -> dict[str, Any]:
    """A fresh parsed copy each time, so a test may change it."""
    bundle: dict[str, Any] = jsonio.loads(example_bundle_text)
    return bundle


@pytest.fixture
def example_case_data() -> dict[str, Any]:
    """The example case as plain JSON data, a fresh copy each time."""
    data: dict[str, Any] = jsonio.loads(EXAMPLE.read_bytes())
    return data
