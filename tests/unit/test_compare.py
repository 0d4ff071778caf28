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
    assert case_differences(example_case, other) == ["vitals[vital-height].value: 165 != 165.0"]
    assert case_differences(example_case, other, exact_decimals=False) == []


def test_values_still_differ_when_compared_by_value(example_case: Case) -> None:
    other = with_vital_value(example_case, "166")
    assert case_differences(example_case, other, exact_decimals=False) == [
        "vitals[vital-height].value: 165 != 166"
    ]


def test_items_are_matched_by_id_whatever_their_order(example_case: Case) -> None:
    shuffled = example_case.model_copy(
        update={"fractures": tuple(reversed(example_case.fractures))}
    )
    assert case_differences(example_case, shuffled) == []


def test_the_order_of_a_list_without_ids_counts_unless_ignored(example_case: Case) -> None:
    scan = example_case.dxa_scans[0]
    turned = scan.model_copy(update={"scores": tuple(reversed(scan.scores))})
    shuffled = example_case.model_copy(update={"dxa_scans": (turned, *example_case.dxa_scans[1:])})

    differences = case_differences(example_case, shuffled)

    assert differences and all(d.startswith("dxa_scans[dxa-baseline].scores[") for d in differences)


def test_the_file_comment_is_not_compared(example_case: Case) -> None:
    other = example_case.model_copy(update={"comment": "another note"})
    assert case_differences(example_case, other) == []


def test_an_item_only_on_one_side_is_named_by_its_id(example_case: Case) -> None:
    fewer = example_case.model_copy(update={"labs": example_case.labs[1:]})

    (line,) = case_differences(example_case, fewer, names=("original", "round trip"))

    assert line.startswith(f"labs[{example_case.labs[0].id}]: only in the original:")


def test_an_item_only_in_the_second_is_named_too(example_case: Case) -> None:
    fewer = example_case.model_copy(update={"labs": example_case.labs[:-1]})
    (line,) = case_differences(fewer, example_case)
    assert line.startswith(f"labs[{example_case.labs[-1].id}]: only in the second:")
