"""Integrity of the code table ``fhir_plao/data/terminology.json``.

The table is data, not code: these tests check that it hangs together (kinds, systems, sources,
cross-references, code formats and LOINC check digits), not that the codes are clinically right;
that is what each coding's recorded ``source`` is for.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

TABLE = Path(__file__).resolve().parents[2] / "fhir_plao" / "data" / "terminology.json"
DATA: dict[str, Any] = json.loads(TABLE.read_text("utf-8"))
SYSTEMS: dict[str, str] = DATA["systems"]
CONCEPTS: dict[str, dict[str, Any]] = DATA["concepts"]

KINDS = {
    "vital",
    "lab",
    "lab-panel",
    "dxa-score",
    "dxa-site",
    "dxa-panel",
    "vertebra",
    "fracture-site",
    "condition",
    "status-question",
    "status-answer",
    "imaging",
    "severity",
    "medication",
    "route",
    "procedure",
    "finding",
    "encounter-class",
    "modality",
}

# Primary codings deliberately shared by two concepts of different kinds: the same SNOMED CT body
# structure is a DXA measurement site (or the sacrum as the lowest spinal segment) and also a
# non-vertebral fracture site. Reading the coding back yields both keys; the caller keeps the one
# of the kind it expects (Terminology.keys_for + kind filter).
SHARED_PRIMARY_CODINGS: dict[tuple[str, str], set[str]] = {
    ("snomed", "29627003"): {"femoral-neck", "femoral-neck-bone"},  # neck of femur
    ("snomed", "29836001"): {"total-hip", "hip"},  # hip region
}

LOINC_RE = re.compile(r"^\d{1,7}-\d$")
LOINC_ANSWER_RE = re.compile(r"^LA\d{1,8}-\d$")
SNOMED_RE = re.compile(r"^\d{6,18}$")
ICD10CM_RE = re.compile(r"^[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$")
ATC_RE = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$")
RXNORM_RE = re.compile(r"^\d{1,9}$")
KEY_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def loinc_check_digit(number: str) -> int:
    """The LOINC Mod 10 check digit of ``number`` (the part before the hyphen).

    As LOINC publishes it: take the digits in odd positions counting from the right, keep their
    order, multiply that number by 2; put the digits in even positions in front of the product;
    add up all the digits; the check digit brings the sum to the next multiple of 10.
    """
    if not number.isdigit():
        raise ValueError(f"not a LOINC number: {number!r}")
    reversed_digits = number[::-1]
    odd = reversed_digits[0::2][::-1]
    even = reversed_digits[1::2][::-1]
    combined = even + str(int(odd) * 2)
    total = sum(int(d) for d in combined)
    return (10 - total % 10) % 10


def loinc_code_is_valid(code: str) -> bool:
    """A LOINC term code (not an LA answer code) whose check digit is right."""
    match = LOINC_RE.fullmatch(code)
    number, _, digit = code.partition("-")
    return match is not None and loinc_check_digit(number) == int(digit)


def all_codings() -> list[tuple[str, dict[str, Any]]]:
    return [(key, coding) for key, c in CONCEPTS.items() for coding in c["codings"]]


# ---- the check-digit algorithm itself


@pytest.mark.parametrize(
    ("number", "digit"),
    [
        ("12345", 5),  # the worked example in the LOINC Users' Guide
        ("8302", 2),  # body height
        ("29463", 7),  # body weight
        ("39156", 5),  # BMI
        ("85353", 1),  # vital signs panel
        ("0", 0),
    ],
)
def test_loinc_check_digit_known_values(number: str, digit: int) -> None:
    assert loinc_check_digit(number) == digit


def test_loinc_check_digit_rejects_wrong_digits_and_transpositions() -> None:
    assert loinc_code_is_valid("8302-2")
    assert not loinc_code_is_valid("8302-3")
    assert not loinc_code_is_valid("8320-2")  # adjacent digits swapped
    assert loinc_code_is_valid("38267-1")
    assert not loinc_code_is_valid("38267-7")
    # Answer codes (LA...) are not covered by the term-code algorithm: LA33-6 "Yes" and
    # LA32-8 "No" would fail it, so the table checks only their format.
    assert not loinc_code_is_valid("LA33-6")
    with pytest.raises(ValueError):
        loinc_check_digit("12a")


def test_loinc_check_digit_matches_luhn() -> None:
    def luhn(number: str) -> int:
        total = 0
        for i, ch in enumerate(reversed(number)):
            d = int(ch) * (2 if i % 2 == 0 else 1)
            total += d - 9 if d > 9 else d
        return (10 - total % 10) % 10

    for n in range(0, 20000, 7):
        assert loinc_check_digit(str(n)) == luhn(str(n))


# ---- the table's shape


def test_top_level_shape() -> None:
    assert set(DATA) == {"about", "systems", "concepts"}
    assert isinstance(DATA["about"], str) and DATA["about"].strip()
    assert SYSTEMS["loinc"] == "http://loinc.org"
    assert SYSTEMS["snomed"] == "http://snomed.info/sct"
    assert all(url.startswith("http://") for url in SYSTEMS.values())
    assert CONCEPTS


@pytest.mark.parametrize("key", sorted(CONCEPTS))
def test_concept_has_kind_text_and_codings(key: str) -> None:
    concept = CONCEPTS[key]
    assert KEY_RE.match(key), key
    assert concept.get("kind") in KINDS
    assert isinstance(concept.get("text"), str) and concept["text"].strip()
    assert isinstance(concept.get("codings"), list)


def test_every_coding_is_complete_and_sourced() -> None:
    for key, coding in all_codings():
        assert coding.get("system") in SYSTEMS, (key, coding)
        assert isinstance(coding.get("code"), str) and coding["code"].strip(), (key, coding)
        assert coding["code"] == coding["code"].strip(), (key, coding)
        assert isinstance(coding.get("display"), str) and coding["display"].strip(), (key, coding)
        assert isinstance(coding.get("source"), str) and coding["source"].strip(), (key, coding)
        assert isinstance(coding.get("weak", False), bool), (key, coding)
        assert set(coding) <= {"system", "code", "display", "source", "weak"}, (key, coding)


def test_no_coding_repeated_within_a_concept() -> None:
    for key, concept in CONCEPTS.items():
        pairs = [(c["system"], c["code"]) for c in concept["codings"]]
        assert len(pairs) == len(set(pairs)), key


def test_primary_codings_are_unique_unless_allowed() -> None:
    owners: dict[tuple[str, str], set[str]] = {}
    for key, concept in CONCEPTS.items():
        if concept["codings"]:
            first = concept["codings"][0]
            owners.setdefault((first["system"], first["code"]), set()).add(key)
    shared = {pair: keys for pair, keys in owners.items() if len(keys) > 1}
    assert shared == SHARED_PRIMARY_CODINGS
    for keys in shared.values():
        kinds = [CONCEPTS[k]["kind"] for k in keys]
        assert len(kinds) == len(set(kinds)), keys  # never two concepts of one kind


def test_texts_unique_within_a_kind() -> None:
    # text-only concepts are recognised by their text on reading
    counts = Counter((c["kind"], c["text"]) for c in CONCEPTS.values())
    assert [pair for pair, n in counts.items() if n > 1] == []


# ---- code formats


def test_code_formats() -> None:
    for key, coding in all_codings():
        system, code = coding["system"], coding["code"]
        if system == "loinc":
            if code.startswith("LA"):
                assert LOINC_ANSWER_RE.match(code), (key, code)
            else:
                assert LOINC_RE.match(code), (key, code)
                assert loinc_code_is_valid(code), f"{key}: LOINC check digit wrong in {code}"
        elif system == "snomed":
            assert SNOMED_RE.match(code), (key, code)
        elif system == "icd10cm":
            assert ICD10CM_RE.match(code), (key, code)
        elif system == "atc":
            assert ATC_RE.match(code), (key, code)
        elif system == "rxnorm":
            assert RXNORM_RE.match(code), (key, code)


def test_snomed_codes_have_valid_verhoeff_check_digit() -> None:
    # SNOMED CT identifiers end in a Verhoeff check digit.
    d = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ]
    p = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ]

    def verhoeff_ok(code: str) -> bool:
        check = 0
        for i, ch in enumerate(reversed(code)):
            check = d[check][p[i % 8][int(ch)]]
        return check == 0

    assert verhoeff_ok("64859006")  # osteoporosis
    assert not verhoeff_ok("64859007")
    for key, coding in all_codings():
        if coding["system"] == "snomed":
            code = coding["code"]
            assert verhoeff_ok(code), f"{key}: SNOMED check digit wrong in {code}"


# ---- kind-specific fields


def test_dxa_sites_point_at_dxa_scores_of_the_right_kind() -> None:
    sites = {k: c for k, c in CONCEPTS.items() if c["kind"] == "dxa-site"}
    assert sites
    for key, site in sites.items():
        scores = site["scores"]
        assert scores and set(scores) <= {"T", "Z", "BMD"}, key
        for kind, score_key in scores.items():
            assert CONCEPTS.get(score_key, {}).get("kind") == "dxa-score", (key, score_key)
            assert CONCEPTS[score_key]["score"] == kind, (key, score_key)


def test_dxa_scores_have_score_kind_and_units() -> None:
    for key, concept in CONCEPTS.items():
        if concept["kind"] != "dxa-score":
            continue
        assert concept["score"] in {"T", "Z", "BMD"}, key
        units = concept["units"]
        if concept["score"] == "BMD":
            assert units[0] == "g/cm2", key
        else:
            assert units[0] == "1", key
            assert f"{{{concept['score']}-score}}" in units, key


def test_status_answers_name_an_existing_question() -> None:
    answers = {k: c for k, c in CONCEPTS.items() if c["kind"] == "status-answer"}
    assert answers
    for key, answer in answers.items():
        assert CONCEPTS.get(answer["question"], {}).get("kind") == "status-question", key


def test_units_of_quantity_tests() -> None:
    for key, concept in CONCEPTS.items():
        if concept["kind"] == "vital":
            assert concept["units"] and all(u.strip() for u in concept["units"]), key
        if concept["kind"] == "lab":
            value_type = concept.get("value_type", "quantity")
            assert value_type in {"quantity", "text", "titer"}, key
            assert isinstance(concept.get("units", []), list), key
            if value_type == "quantity":
                assert concept["units"] and all(u.strip() for u in concept["units"]), key
        for unit in concept.get("units", []):
            assert " " not in unit, (key, unit)


def test_vertebrae() -> None:
    vertebrae = {k: c for k, c in CONCEPTS.items() if c["kind"] == "vertebra"}
    expected = (
        {f"vertebra-c{i}" for i in range(1, 8)}
        | {f"vertebra-t{i}" for i in range(1, 13)}
        | {f"vertebra-l{i}" for i in range(1, 6)}
        | {"sacrum"}
    )
    assert expected <= set(vertebrae)
    region_of = {"c": "cervical", "t": "thoracic", "l": "lumbar"}
    for key, v in vertebrae.items():
        assert v["region"] in {"cervical", "thoracic", "lumbar", "sacral"}, key
        assert v["label"], key
        if key.startswith("vertebra-"):
            assert v["region"] == region_of[key[len("vertebra-")]], key
            assert v["label"] == key[len("vertebra-") :].upper(), key
        for coding in v["codings"]:
            # the codings are SNOMED CT body structures named after the vertebra itself
            assert coding["system"] == "snomed", key
            if key.startswith("vertebra-"):
                assert re.search(rf"\b{v['label']}\b", coding["display"]), key


def test_keys_the_case_needs_exist() -> None:
    needed = {
        "body-height": "vital",
        "body-weight": "vital",
        "bmi": "vital",
        "phosphate": "lab",
        "vitamin-d-25oh": "lab",
        "calcium": "lab",
        "pth": "lab",
        "urine-calcium-24h": "lab",
        "alkaline-phosphatase": "lab",
        "ldh": "lab",
        "tsh": "lab",
        "free-t4": "lab",
        "esr": "lab",
        "crp": "lab",
        "brucella-agglutination": "lab",
        "cbc": "lab",
        "metabolic-panel": "lab",
        "tumour-markers": "lab",
        "lab-workup": "lab-panel",
        "dxa-panel": "dxa-panel",
        "lumbar-spine-l1-l4": "dxa-site",
        "femoral-neck": "dxa-site",
        "plao": "condition",
        "osteoporosis": "condition",
        "vertebral-compression-fracture": "condition",
        "vitamin-d-insufficiency": "condition",
        "low-back-pain": "condition",
        "kyphosis": "condition",
        "scoliosis": "condition",
        "pregnancy-status": "status-question",
        "breastfeeding-status": "status-question",
        "pregnant": "status-answer",
        "not-pregnant": "status-answer",
        "breastfeeding": "status-answer",
        "not-breastfeeding": "status-answer",
        "mri-thoracic-spine": "imaging",
        "mri-lumbar-spine": "imaging",
        "alendronate-70mg-tablet": "medication",
        "cholecalciferol": "medication",
        "nsaid": "medication",
        "oral": "route",
        "cesarean-section": "procedure",
        "combined-spinal-epidural": "procedure",
        "lactation-suppression": "procedure",
        "orthosis": "procedure",
        "calcium-rich-diet": "procedure",
        "home-exercise-program": "procedure",
        "walking-exercise": "procedure",
    }
    for key, kind in needed.items():
        assert CONCEPTS.get(key, {}).get("kind") == kind, key
