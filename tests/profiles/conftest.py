"""Helpers for the profile and validation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio

DATA = Path(__file__).resolve().parent / "data"
PROFILE = "http://fhir-plao.example.org/fhir/StructureDefinition/"


@pytest.fixture
def minimal_bundle() -> dict[str, Any]:
    """A small hand-kept transaction Bundle with one resource of each profile; valid."""
    bundle: dict[str, Any] = jsonio.loads((DATA / "minimal-bundle.json").read_bytes())
    return bundle


def entry_index(
    bundle: dict[str, Any],
    profile: str | None = None,
    *,
    rtype: str | None = None,
    where: Callable[[dict[str, Any]], bool] = lambda r: True,
) -> int:
    """Index of the first entry whose resource claims ``profile`` (or is of ``rtype``)."""
    for i, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        claimed = resource.get("meta", {}).get("profile", [])
        if profile is not None and PROFILE + profile not in claimed:
            continue
        if rtype is not None and resource["resourceType"] != rtype:
            continue
        if where(resource):
            return i
    raise AssertionError(f"no entry with profile {profile} / type {rtype} in the Bundle")
