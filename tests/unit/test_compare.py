"""case_differences: what `roundtrip` and `pull --expect` print."""

from __future__ import annotations

from decimal import Decimal

from fhir_plao.case import Case
from fhir_plao.compare import case_differences


def with_vital_value(case: Case, value: str) -> Case:
    vitals = list(case.vitals)
    vitals[0] = vitals[0].model_copy(update={"value": Decimal(value)})
    return case.model_copy(update={"vitals": tuple(vitals)})


def test_a_case_has_no_difference_with_itself(example_case: Case) -> None:
    assert case_differences(example_case, example_case) == []


def test_digits_count_by_default(example_case: Case) -> None:
    other = with_vital_value(example_case, "165.0")
    assert case_differences(example_case, other) == ["vitals[0].value: 165 != 165.0"]
    assert case_differences(example_case, other, exact_decimals=False) == []


def test_values_still_differ_when_compared_by_value(example_case: Case) -> None:
    other = with_vital_value(example_case, "166")
    assert case_differences(example_case, other, exact_decimals=False) == [
        "vitals[0].value: 165 != 166"
    ]


def test_order_of_items_can_be_ignored(example_case: Case) -> None:
    shuffled = example_case.model_copy(
        update={"fractures": tuple(reversed(example_case.fractures))}
    )
    assert case_differences(example_case, shuffled)  # order matters by default
    assert case_differences(example_case, shuffled, ignore_order=True) == []


def test_the_file_comment_is_not_compared(example_case: Case) -> None:
    other = example_case.model_copy(update={"comment": "another note"})
    assert case_differences(example_case, other) == []


def test_an_item_only_on_one_side_is_named(example_case: Case) -> None:
    fewer = example_case.model_copy(update={"labs": example_case.labs[:-1]})
    (line,) = case_differences(example_case, fewer)
    assert line.startswith("labs[12]: only in the first:")
