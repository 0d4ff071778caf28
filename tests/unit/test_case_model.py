"""The case model: what it accepts, what it refuses, and how it says so."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.case import Case, case_from_json, case_to_json
from fhir_plao.errors import InputError


def parse(data: dict[str, Any]) -> Case:
    return case_from_json(jsonio.dumps(data), source="case.json")


@pytest.mark.parametrize(
    "when",
    [
        "2023",
        "2023-06",
        "2023-06-14",
        "2023-06-14T09:30:00+03:00",
        "2023-06-14T09:30:00.123Z",
        "2024-02-29",
    ],
)
def test_dates_keep_their_precision(example_case_data: dict[str, Any], when: str) -> None:
    example_case_data["vitals"][0]["date"] = when
    assert parse(example_case_data).vitals[0].date == when


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("2023-13", "not a calendar date"),
        ("2023-02-29", "not a calendar date"),
        ("2023-06-14T09:30:00", "is not a FHIR date"),  # a time needs an offset
        ("2023-06-14T09:30-05:00", "is not a FHIR date"),  # and seconds
        ("14/06/2023", "is not a FHIR date"),
        ("2023-06-14T25:00:00Z", "not a real date and time"),
        ("2023-06-14T09:30:00+15:00", "offset +15:00 is out of range"),
        ("2023-06-14T09:30:00+14:30", "offset +14:30 is out of range"),
    ],
)
def test_impossible_dates_are_refused(
    example_case_data: dict[str, Any], when: str, why: str
) -> None:
    example_case_data["vitals"][0]["date"] = when
    with pytest.raises(
        InputError, match=rf"case.json: invalid case: vitals\[0\]\.date: .*{re.escape(why)}"
    ):
        parse(example_case_data)


def test_decimals_keep_their_digits(example_case_data: dict[str, Any]) -> None:
    example_case_data["dxa_scans"][0]["scores"][0]["value"] = Decimal("-1.50")
    example_case_data["dxa_scans"][0]["scores"][1]["value"] = Decimal("-0.0")
    case = parse(example_case_data)
    assert str(case.dxa_scans[0].scores[0].value) == "-1.50"
    assert str(case.dxa_scans[0].scores[1].value) == "-0.0"
    assert '"value": -1.50' in case_to_json(case)


def test_unknown_fields_are_refused_not_ignored(example_case_data: dict[str, Any]) -> None:
    example_case_data["medications"][0]["dosis"] = 1200
    with pytest.raises(InputError, match=r"medications\[0\]\.dosis: unknown field"):
        parse(example_case_data)


def test_ids_are_unique_across_the_case(example_case_data: dict[str, Any]) -> None:
    example_case_data["labs"][1]["id"] = example_case_data["vitals"][0]["id"]
    with pytest.raises(
        InputError, match=r"labs\[1\]\.id: 'vital-height' is already used by vitals\[0\]"
    ):
        parse(example_case_data)


def test_a_t_score_unit_of_1_is_the_default(example_case_data: dict[str, Any]) -> None:
    example_case_data["dxa_scans"][0]["scores"][0]["unit"] = "1"
    assert parse(example_case_data) == parse(
        {
            **example_case_data,
            "dxa_scans": jsonio.loads(jsonio.dumps(example_case_data["dxa_scans"])),
        }
    )
    assert parse(example_case_data).dxa_scans[0].scores[0].unit is None


def test_a_bmd_needs_its_unit(example_case_data: dict[str, Any]) -> None:
    example_case_data["dxa_scans"][0]["scores"].append(
        {"site": "lumbar-spine-l1-l4", "kind": "BMD", "value": Decimal("0.812")}
    )
    with pytest.raises(InputError, match=r"a BMD needs its unit"):
        parse(example_case_data)
    example_case_data["dxa_scans"][0]["scores"][-1]["unit"] = "g/cm2"
    assert parse(example_case_data).dxa_scans[0].scores[-1].value == Decimal("0.812")


def test_other_sites_and_drugs_for_the_next_patient(example_case_data: dict[str, Any]) -> None:
    example_case_data["fractures"].append(
        {
            "id": "fracture-hip",
            "site": "femoral-neck-bone",
            "onset": "2024-01-03",
            "concept": "osteoporosis",
        }
    )
    example_case_data["medications"].append(
        {
            "id": "med-teriparatide",
            "drug": "teriparatide",
            "dose": 20,
            "dose_unit": "ug",
            "frequency": 1,
            "period": 1,
            "period_unit": "d",
            "route": "subcutaneous",
            "start": "2024-01-10",
            "status": "active",
        }
    )
    case = parse(example_case_data)
    assert case.fractures[-1].site == "femoral-neck-bone"
    assert case.medications[-1].route == "subcutaneous"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("medications", 0, "end"), "2022-01-01", "end 2022-01-01 is before start 2023-05-15"),
        (("medications", 0, "period_unit"), "fortnight", "period_unit: Input should be"),
        (("labs", 0, "reference_range", "low"), 9, "low 9 is above high 4.7"),
        (
            ("status_observations", 0, "answer"),
            "breastfeeding",
            "does not answer 'pregnancy-status'",
        ),
        (("lactations", 0, "pregnancy"), "pregnancy-9", "lactations[0].pregnancy: no pregnancy"),
        (("care", 0, "status"), "scheduled", "a procedure is not 'scheduled'"),
    ],
)
def test_inconsistent_items_are_refused(
    example_case_data: dict[str, Any], path: tuple[Any, ...], value: Any, message: str
) -> None:
    node: Any = example_case_data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(InputError) as info:
        parse(example_case_data)
    assert message in str(info.value)
