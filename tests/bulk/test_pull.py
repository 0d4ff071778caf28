"""patient_query: the Patient search a bulk pull sends.

Everything a bulk pull does with a server (paging, order, dedupe, dead letters, criteria) is
tested against the real SEKMET server in ``tests/integration/test_bulk.py`` (and its fault paths
in ``test_bulk_faults.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_plao.bulk import PullOptions, patient_query
from fhir_plao.errors import InputError


@pytest.mark.parametrize(
    ("criteria", "query"),
    [
        (None, "_count=100"),
        ("Patient", "_count=100"),
        ("Patient?identifier=a|b", "identifier=a|b&_count=100"),
        ("?name=x", "name=x&_count=100"),
        ("name=x&_count=5", "name=x&_count=5"),
    ],
)
def test_patient_query(criteria: str | None, query: str) -> None:
    assert patient_query(criteria) == query


@pytest.mark.parametrize("criteria", ["Observation?code=x", "Patient?justtext"])
def test_patient_query_refuses_what_is_not_a_patient_search(criteria: str) -> None:
    with pytest.raises(InputError):
        patient_query(criteria)


@pytest.mark.parametrize("option", ["concurrency", "page_size"])
def test_pull_options_are_checked(option: str) -> None:
    with pytest.raises(InputError, match=option):
        PullOptions(dead_letter=Path("d"), **{option: 0})
