"""split_transaction: parts under the limits, reference-closed, dependencies first, input kept."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.bulk import split_transaction
from fhir_plao.errors import InputError
from fhir_plao.validation import errors_in, validate


def full_urls(part: dict[str, Any]) -> set[str]:
    return {e["fullUrl"] for e in part["entry"] if "fullUrl" in e}


def refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append(value)
            else:
                out.extend(refs(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(refs(item))
    return out


def assert_closed_and_ordered(original: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    """Every urn:uuid reference stays inside its part; every rewritten one names a resource
    written in an earlier part; together the parts write exactly the original entries."""
    by_url = {e["fullUrl"]: e for e in original["entry"]}
    name_of = {url: e["request"]["url"] for url, e in by_url.items()}
    written_before: set[str] = set()
    seen: list[str] = []
    for part in parts:
        here = full_urls(part)
        names_here = {e["request"]["url"] for e in part["entry"]}
        for entry in part["entry"]:
            for ref in refs(entry["resource"]):
                if ref.startswith("urn:uuid:"):
                    assert ref in here, f"{ref} crosses a part boundary"
                elif ref in name_of.values():
                    assert ref in written_before or ref in names_here, f"{ref} comes later"
        written_before |= names_here
        seen.extend(e["fullUrl"] for e in part["entry"])
    assert sorted(seen) == sorted(by_url)
    # the rewritten references point where the urn:uuid pointed
    for part in parts:
        for entry in part["entry"]:
            before = refs(by_url[entry["fullUrl"]]["resource"])
            after = refs(entry["resource"])
            assert [name_of.get(r, r) for r in before] == [name_of.get(r, r) for r in after]


def test_a_bundle_within_the_limits_comes_back_whole(example_bundle: dict[str, Any]) -> None:
    parts = split_transaction(example_bundle, 500, 10_000_000)
    assert parts == [example_bundle]


def test_no_limits_means_one_part(example_bundle: dict[str, Any]) -> None:
    assert split_transaction(example_bundle, None, None) == [example_bundle]


@pytest.mark.parametrize("max_entries", [1, 7, 10, 50, 106])
def test_entry_limit(example_bundle: dict[str, Any], max_entries: int) -> None:
    parts = split_transaction(example_bundle, max_entries, None)
    assert len(parts) == -(-len(example_bundle["entry"]) // max_entries)  # packed full
    assert all(len(p["entry"]) <= max_entries for p in parts)
    assert all(p["type"] == "transaction" and p["resourceType"] == "Bundle" for p in parts)
    assert_closed_and_ordered(example_bundle, parts)


@pytest.mark.parametrize("max_bytes", [8_000, 20_000, 60_000])
def test_byte_limit(example_bundle: dict[str, Any], max_bytes: int) -> None:
    parts = split_transaction(example_bundle, None, max_bytes)
    assert len(parts) > 1
    assert all(len(jsonio.dumps_bytes(p)) <= max_bytes for p in parts)
    assert_closed_and_ordered(example_bundle, parts)


def test_both_limits_at_once(example_bundle: dict[str, Any]) -> None:
    parts = split_transaction(example_bundle, 12, 15_000)
    assert all(len(p["entry"]) <= 12 and len(jsonio.dumps_bytes(p)) <= 15_000 for p in parts)
    assert_closed_and_ordered(example_bundle, parts)


def test_the_input_is_not_modified(example_bundle: dict[str, Any]) -> None:
    before = copy.deepcopy(example_bundle)
    split_transaction(example_bundle, 5, 10_000)
    assert example_bundle == before


def test_the_patient_comes_first_since_everything_refers_to_it(
    example_bundle: dict[str, Any],
) -> None:
    parts = split_transaction(example_bundle, 5, None)
    assert parts[0]["entry"][0]["resource"]["resourceType"] == "Patient"


def test_each_part_is_a_valid_transaction_on_its_own(example_bundle: dict[str, Any]) -> None:
    for part in split_transaction(example_bundle, 10, None):
        assert errors_in(validate(part)) == []


# --------------------------------------------------------------------------- small graphs


def put(rtype: str, rid: str, *references: str, pad: int = 0) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": rtype, "id": rid}
    if references:
        resource["extension"] = [
            {"url": "urn:x", "valueReference": {"reference": r}} for r in references
        ]
    if pad:
        resource["text"] = {"status": "generated", "div": "x" * pad}
    return {
        "fullUrl": f"urn:uuid:{rid}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
    }


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def order(parts: list[dict[str, Any]]) -> list[list[str]]:
    return [[e["resource"]["id"] for e in p["entry"]] for p in parts]


def test_referenced_entries_move_ahead_of_their_referrers() -> None:
    bundle = transaction(
        put("Observation", "o1", "urn:uuid:p1"),
        put("Observation", "o2", "urn:uuid:p1"),
        put("Patient", "p1"),
    )
    parts = split_transaction(bundle, 1, None)
    assert order(parts) == [["p1"], ["o1"], ["o2"]]
    assert refs(parts[1]["entry"][0]["resource"]) == ["Patient/p1"]


def test_independent_entries_keep_the_bundle_order() -> None:
    bundle = transaction(*(put("Patient", f"p{i}") for i in range(5)))
    assert order(split_transaction(bundle, 2, None)) == [["p0", "p1"], ["p2", "p3"], ["p4"]]


def test_references_inside_a_part_keep_their_urn_uuid() -> None:
    bundle = transaction(
        put("Patient", "p1"), put("Observation", "o1", "urn:uuid:p1"), put("Patient", "p2")
    )
    parts = split_transaction(bundle, 2, None)
    assert order(parts) == [["p1", "o1"], ["p2"]]
    assert refs(parts[0]["entry"][1]["resource"]) == ["urn:uuid:p1"]


def test_a_reference_cycle_stays_in_one_part() -> None:
    bundle = transaction(
        put("DiagnosticReport", "r1", "urn:uuid:o1"),
        put("Observation", "o1", "urn:uuid:r1"),
        put("Patient", "p1"),
    )
    parts = split_transaction(bundle, 2, None)
    assert order(parts) == [["r1", "o1"], ["p1"]]


def test_a_cycle_over_the_limit_cannot_be_split() -> None:
    bundle = transaction(
        put("DiagnosticReport", "r1", "urn:uuid:o1"),
        put("Observation", "o1", "urn:uuid:r1"),
    )
    with pytest.raises(InputError, match="cannot split the transaction: entries urn:uuid:r1"):
        split_transaction(bundle, 1, None)


def test_an_entry_without_a_client_id_keeps_its_referrers_with_it() -> None:
    created = {
        "fullUrl": "urn:uuid:m1",
        "resource": {"resourceType": "Medication", "code": {"text": "x"}},
        "request": {"method": "POST", "url": "Medication"},
    }
    bundle = transaction(
        put("Patient", "p1"),
        put("Patient", "p2"),
        put("MedicationStatement", "s1", "urn:uuid:m1", "urn:uuid:p1"),
        created,
    )
    parts = split_transaction(bundle, 2, None)
    assert [[e["fullUrl"] for e in p["entry"]] for p in parts] == [
        ["urn:uuid:p1", "urn:uuid:p2"],
        ["urn:uuid:s1", "urn:uuid:m1"],
    ]
    assert refs(parts[1]["entry"][0]["resource"]) == ["urn:uuid:m1", "Patient/p1"]


def test_references_outside_the_bundle_are_left_alone() -> None:
    bundle = transaction(
        put("Observation", "o1", "Patient/elsewhere", "http://x.test/fhir/Patient/9"),
        put("Patient", "p1"),
    )
    parts = split_transaction(bundle, 1, None)
    assert refs(parts[0]["entry"][0]["resource"]) == [
        "Patient/elsewhere",
        "http://x.test/fhir/Patient/9",
    ]


def test_the_byte_limit_counts_the_longer_rewritten_references() -> None:
    # "Observation/o-..." is longer than "urn:uuid:o-...": a part must fit after the rewrite
    target = put("Observation", "o" + "1" * 40)
    referrers = [put("Patient", f"p{i}", "urn:uuid:" + "o" + "1" * 40) for i in range(6)]
    bundle = transaction(target, *referrers)
    one = len(jsonio.dumps_bytes(transaction(referrers[0])))
    limit = one * 3
    parts = split_transaction(bundle, None, limit)
    assert all(len(jsonio.dumps_bytes(p)) <= limit for p in parts)
    assert_closed_and_ordered(bundle, parts)


def test_an_entry_bigger_than_the_byte_limit_is_refused() -> None:
    bundle = transaction(put("Patient", "p1", pad=5000), put("Patient", "p2"))
    with pytest.raises(InputError, match="max_bytes=1000"):
        split_transaction(bundle, None, 1000)


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"resourceType": "Patient"}, "needs a Bundle"),
        ({"resourceType": "Bundle", "type": "batch", "entry": []}, "needs a transaction"),
    ],
)
def test_only_transactions_are_split(bundle: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        split_transaction(bundle, 1, None)


@pytest.mark.parametrize("limits", [(0, None), (None, 0), (-1, 10)])
def test_limits_must_be_positive(limits: tuple[int | None, int | None]) -> None:
    with pytest.raises(InputError, match="must be a positive whole number"):
        split_transaction(transaction(put("Patient", "p1")), *limits)


def test_an_empty_transaction_is_one_empty_part() -> None:
    assert split_transaction(transaction(), 1, 10) == [transaction()]
    assert split_transaction(transaction(), 1, None) == [transaction()]
