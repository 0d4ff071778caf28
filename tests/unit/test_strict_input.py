"""What the JSON reader and the case model refuse, each with a one-line reason that says where."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.case import Case, case_from_json
from fhir_plao.errors import InputError
from fhir_plao.ucum import UcumError, dimension, is_dose_unit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN is not a JSON number at line 1, column 7"),
        ('{\n "a": [1,\n  -Infinity]}', "-Infinity is not a JSON number at line 3, column 3"),
        ('{"a": 1, "b": {"c": 1, "c": 2}}', "the key 'c' appears twice in one object"),
        ('{"a": "\\ud800"}', "the text at 'a' holds a lone UTF-16 surrogate (\\ud800)"),
        ("[" * 1000 + "]" * 1000, "nested deeper than 128 levels at line 1, column 129"),
        ("[" * 130 + "]" * 130, "nested deeper than 128 levels at line 1, column 129"),
        (b'{"a": "\xff"}', "not UTF-8 text"),
        ('{"a": 1', "malformed JSON at line 1, column 8"),
    ],
)
def test_the_reader_refuses_what_no_fhir_document_holds(text: Any, message: str) -> None:
    with pytest.raises(jsonio.JsonError) as raised:
        jsonio.loads(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_reader_keeps_what_is_fine() -> None:
    assert jsonio.loads('{"NaN": "Infinity", "e": "\\ud83d\\ude00"}') == {
        "NaN": "Infinity",
        "e": "😀",
    }
    assert jsonio.loads("[" * 128 + "]" * 128) is not None


def case_with(example_case_data: dict[str, Any], change: Any) -> bytes:
    change(example_case_data)
    return jsonio.dumps(example_case_data).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["pregnancies"][0].update(gravida=2**31), "pregnancies[0].gravida"),
        (
            lambda d: next(m for m in d["medications"] if m.get("frequency")).update(
                frequency=2**31
            ),
            "frequency",
        ),
        (
            lambda d: next(m for m in d["medications"] if m.get("dose_unit")).update(
                dose_unit="cm"
            ),
            "dose_unit: 'cm' measures [length], not a dose",
        ),
        (
            lambda d: next(m for m in d["medications"] if m.get("start")).update(
                start="2030-01-01", end="2020-01-01"
            ),
            "end 2020-01-01 is before start 2030-01-01",
        ),
        (
            lambda d: d["lactations"][0].update(start="2030-01-01", stopped="2020-01-01"),
            "lactations[0]: stopped 2020-01-01 is before start 2030-01-01",
        ),
    ],
)
def test_the_case_model_checks_what_fhir_will_check(
    example_case_data: dict[str, Any], change: Any, message: str
) -> None:
    with pytest.raises(InputError) as raised:
        case_from_json(case_with(example_case_data, change), source="case.json")
    assert message in str(raised.value)


def test_ucum_codes_have_a_dimension_from_the_library() -> None:
    assert dimension("mg/dL") == "[mass] / [length] ** 3"
    assert dimension("{tablet}") == "dimensionless"
    assert [is_dose_unit(u) for u in ("mg", "ug", "[iU]", "mL", "mmol", "cm", "mg/dL")] == [
        True, True, True, True, True, False, False,
    ]  # fmt: skip
    with pytest.raises(UcumError, match="'mg/dLx' is not a valid UCUM unit"):
        dimension("mg/dLx")


def test_a_dose_in_a_unit_ucum_does_not_know_is_kept_as_the_source_wrote_it(
    example_case_data: dict[str, Any],
) -> None:
    med = next(m for m in example_case_data["medications"] if m.get("dose_unit"))
    med["dose_unit"] = "tablet"
    assert isinstance(Case.model_validate(example_case_data), Case)
