#!/usr/bin/env python3
"""Run our validator and HAPI's (the HL7 engine) over one corpus; write where they agree.

    .venv/bin/python scripts/validation_agreement.py [--synthetic 200] [-o FILE.md]

(``make agreement`` does the same, building HAPI's validator first.) The corpus:

* the example Bundle (``examples/plao-case.json`` through ``to_fhir``);
* ``--synthetic`` synthetic cases (``synth_cases(N, seed=1)``), each as its Bundle;
* each corruption of ``tests/profiles/corruptions.py`` planted in the example Bundle;
* the FHIR written by others in ``tests/data/foreign`` (spec, US Core, QI-Core, Synthea, HAPI).

For each document: valid or invalid by each engine (any error), and per error the element. A
document is "both invalid" when both report an error, whatever the element; the error lists
below compare elements. Every error HAPI reports at an element where ours reports none is listed,
grouped by HAPI's message id, with the reason it is not a miss of ours (``EXPLAINED``), or marked
UNEXPLAINED: the script then exits 1, so a new kind of HAPI-only error cannot go unnoticed.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fhir_plao import jsonio  # noqa: E402
from fhir_plao._validation.hapi import HapiValidator, same_element  # noqa: E402
from fhir_plao.case import load_case  # noqa: E402
from fhir_plao.errors import FhirError  # noqa: E402
from fhir_plao.mapping import to_fhir  # noqa: E402
from fhir_plao.synth import synth_cases  # noqa: E402
from fhir_plao.validation import Issue, validate  # noqa: E402
from tests.profiles.corruptions import CORRUPTIONS, corrupt, expected_path  # noqa: E402

FOREIGN = REPO / "tests" / "data" / "foreign"
DEFAULT_OUTPUT = REPO / "docs" / "validation-agreement.md"

#: HAPI-only errors, by HAPI message id (regexes over ``rule``, message and path), and why each
#: is not an error ours misses. Keep each reason specific: it is read by people deciding whom to
#: believe. The kinds in ``SAME_FINDING`` are errors ours reports too, at another element: they
#: are not set aside in the second table.
EXPLAINED: list[tuple[str, str, str, str]] = [
    (
        r"hapi:Reference_REF_CantMatchChoice",
        r"",
        r"",
        "a consequence of another error in the same Bundle: the resource this reference points "
        "to breaks its profile, so it cannot match the reference's target profile. Ours reports "
        "the broken resource at its own element and, since 2026-12, this reference too when the "
        "target is one of our profiles; HAPI also says it for targets of profiles we do not hold "
        "(US Core, QI-Core), which ours cannot check",
    ),
    (
        r"hapi:Terminology_TX_NoValid|hapi:Terminology_PassThrough|hapi:TX_",
        r"(?i)unknown|could not be validated|not found|can't be validated",
        r"",
        "a code that HAPI could not look up without a terminology server (LOINC, SNOMED CT, "
        "RxNorm, CVX and other large systems are not loaded), reported as an error under a "
        "required binding of a profile that is not ours",
    ),
    (
        r"hapi:Validation_VAL_Profile_Unknown|hapi:VALIDATION_VAL_PROFILE_UNKNOWN",
        r"",
        r"",
        "a profile that neither engine holds (US Core, QI-Core, mCODE ...): HAPI calls it an "
        "error, ours a warning that it was not checked against it; neither can say more",
    ),
    (
        r"hapi:Validation_VAL_Profile_Minimum",
        r"^Observation\.value\[x\]\.\w+: minimum required",
        r"\.value(?!Quantity)[A-Z]\w*\.\w+$",
        "a consequence of a value of the wrong type: the profile wants a Quantity, the value is "
        "another type, and HAPI then reports each required Quantity child (value, unit, system, "
        "code) missing from it; both engines report the wrong type itself at the value",
    ),
    (
        r"hapi:BUNDLE_ENTRY_URL_MATCHES_TYPE_ID",
        r"looks like a RESTful server URL",
        r"^Bundle\.entry\[0\]\.fullUrl$",
        "the same error as ours, at another entry: HAPI 8.8 reports every fullUrl that disagrees "
        "with its resource's id at Bundle.entry[0], whichever entry it is (its message names "
        "the fullUrl); ours reports each at the fullUrl of the entry that has it",
    ),
    (
        r"#plao-dxa-[123]$",
        r"^Constraint failed: plao-dxa-",
        r"\.resource$",
        "a consequence of a DXA score without a value: our unit invariants (plao-dxa-1/2/3) "
        "read the value's unit, which FHIRPath gives as empty when there is no value, and HAPI "
        "counts an empty result as a failed invariant where ours (FHIRPath's empty-propagating "
        "logic) does not; the missing value itself is an error for both, at valueQuantity",
    ),
]


@dataclass
class Document:
    kind: str  # example, synthetic, corruption, foreign
    name: str
    data: Any
    element: str | None = None  # corruptions: the element the error is planted at


@dataclass
class Outcome:
    document: Document
    ours: list[Issue]
    hapi: list[Issue]
    hapi_only: list[Issue] = field(default_factory=list)
    ours_only: list[Issue] = field(default_factory=list)


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.is_error]


def corpus(synthetic: int) -> Iterator[Document]:
    example = jsonio.loads(jsonio.dumps(to_fhir(load_case(REPO / "examples" / "plao-case.json"))))
    yield Document("example", "examples/plao-case.json", example)
    for n, case in enumerate(synth_cases(synthetic, seed=1)):
        yield Document(
            "synthetic", f"synthetic case {n}", jsonio.loads(jsonio.dumps(to_fhir(case)))
        )
    for corruption in CORRUPTIONS:
        bundle = copy.deepcopy(example)
        index = corrupt(bundle, corruption)
        yield Document("corruption", corruption.name, bundle, expected_path(index, corruption))
    for path in sorted(FOREIGN.glob("*/*.json")):
        yield Document("foreign", str(path.relative_to(FOREIGN)), jsonio.loads(path.read_bytes()))


SAME_FINDING = frozenset({"hapi:BUNDLE_ENTRY_URL_MATCHES_TYPE_ID"})


def explain(issue: Issue) -> str | None:
    for rule, message, path, reason in EXPLAINED:
        if (
            re.search(rule, issue.rule)
            and re.search(message, issue.message)
            and re.search(path, issue.path)
        ):
            return reason
    return None


def compare(document: Document, hapi: HapiValidator) -> Outcome:
    ours = errors(validate(document.data))
    theirs = errors(hapi.validate(document.data))
    outcome = Outcome(document, ours, theirs)
    outcome.hapi_only = [h for h in theirs if not any(same_element(h.path, o.path) for o in ours)]
    outcome.ours_only = [o for o in ours if not any(same_element(h.path, o.path) for h in theirs)]
    return outcome


def verdict(outcome: Outcome, *, set_aside_explained: bool = False) -> str:
    hapi = outcome.hapi
    if set_aside_explained:
        explained = {
            id(i)
            for i in outcome.hapi_only
            if explain(i) is not None and i.rule not in SAME_FINDING
        }
        hapi = [i for i in hapi if id(i) not in explained]
    return {
        (False, False): "both valid",
        (True, True): "both invalid",
        (True, False): "ours only",
        (False, True): "HAPI only",
    }[(bool(outcome.ours), bool(hapi))]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(outcomes: list[Outcome], seconds: float, synthetic: int) -> tuple[str, int]:
    kinds = ["example", "synthetic", "corruption", "foreign"]
    verdicts = ["both valid", "both invalid", "ours only", "HAPI only"]
    names = {
        "example": "the example Bundle",
        "synthetic": f"synthetic cases (`synth_cases({synthetic}, seed=1)`)",
        "corruption": "corruptions of the example (`tests/profiles/corruptions.py`)",
        "foreign": "FHIR written by others (`tests/data/foreign`)",
    }

    def documents_table(set_aside: bool) -> list[str]:
        table: dict[str, Counter[str]] = defaultdict(Counter)
        for outcome in outcomes:
            table[outcome.document.kind][verdict(outcome, set_aside_explained=set_aside)] += 1
        rows = [
            "| corpus | documents | " + " | ".join(verdicts) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in verdicts) + " |",
        ]
        total = Counter[str]()
        for kind in kinds:
            counts = table[kind]
            total.update(counts)
            rows.append(
                f"| {names[kind]} | {sum(counts.values())} | "
                + " | ".join(str(counts[v]) for v in verdicts)
                + " |"
            )
        rows.append(
            f"| **all** | {sum(total.values())} | "
            + " | ".join(str(total[v]) for v in verdicts)
            + " |"
        )
        return rows

    lines = [
        "# Validation agreement: fhir-plao's validator and HAPI's",
        "",
        "Generated by `scripts/validation_agreement.py` (`make agreement`); do not edit by hand.",
        f"Both engines validated {len(outcomes)} documents in {seconds:.0f} s: HAPI FHIR 8.8.0's",
        "`FhirInstanceValidator` (the HL7 validation engine, run by `servers/hapi`'s",
        "`ValidateCommand`, R4 core definitions plus our profiles and value sets, no terminology",
        "server, unknown code systems as warnings) and ours (`fhir-plao validate`). A document",
        "is invalid for an engine when that engine reports at least one error.",
        "",
        "## Documents, as each engine judged them",
        "",
        *documents_table(False),
        "",
        "## Documents, with the explained HAPI-only errors set aside",
        "",
        "The same, not counting the HAPI errors that the last sections explain as no error of",
        "the document's own (profiles neither engine holds, consequences of another error):",
        "",
        *documents_table(True),
    ]

    lines += ["", "## Each corruption: the same element?", ""]
    lines += ["| corruption | element | ours | HAPI |", "| --- | --- | --- | --- |"]
    for outcome in outcomes:
        doc = outcome.document
        if doc.kind != "corruption" or doc.element is None:
            continue
        ours = any(o.path == doc.element for o in outcome.ours)
        theirs = any(same_element(h.path, doc.element) for h in outcome.hapi)
        lines.append(
            f"| {doc.name} | `{doc.element}` | {'error' if ours else '**none**'} | "
            f"{'error' if theirs else '**none**'} |"
        )

    grouped: dict[str, list[tuple[Outcome, Issue]]] = defaultdict(list)
    for outcome in outcomes:
        for issue in outcome.hapi_only:
            grouped[issue.rule or "hapi"].append((outcome, issue))
    unexplained = 0
    lines += [
        "",
        "## Errors HAPI reports at an element where ours reports none",
        "",
        "Grouped by HAPI's message id. Each is either explained (why it is not an error ours "
        "misses) or UNEXPLAINED (the script then fails).",
        "",
    ]
    if not grouped:
        lines.append("None.")
    for rule, found in sorted(grouped.items(), key=lambda kv: -len(kv[1])):
        reasons = {explain(issue) for _, issue in found}
        example_outcome, example_issue = found[0]
        documents = len({id(o) for o, _ in found})
        lines.append(f"### `{rule}`: {len(found)} error(s) in {documents} document(s)")
        lines.append("")
        lines.append(
            f"For example, in {example_outcome.document.name}: `{example_issue.path}`: "
            f"{_cell(example_issue.message[:300])}"
        )
        lines.append("")
        for reason in sorted(r or "" for r in reasons):
            if reason:
                lines.append(f"- Explained: {reason}.")
            else:
                bad = [i for _, i in found if explain(i) is None]
                unexplained += len(bad)
                lines.append(
                    f"- **UNEXPLAINED** ({len(bad)}): e.g. `{bad[0].path}`: "
                    f"{_cell(bad[0].message[:300])}"
                )
        lines.append("")

    ours_only = Counter(i.rule.split(":")[0] or "?" for o in outcomes for i in o.ours_only)
    lines += [
        "## Errors ours reports at an element where HAPI reports none",
        "",
        "By our rule kind (these are where ours is stricter, or names a different element):",
        "",
        "| rule | errors |",
        "| --- | ---: |",
    ]
    lines += [f"| {rule} | {n} |" for rule, n in ours_only.most_common()] or ["| none | 0 |"]
    lines.append("")
    return "\n".join(lines), unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=int, default=200, help="synthetic cases (200)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="report file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        with HapiValidator() as hapi:
            for n, document in enumerate(corpus(args.synthetic), start=1):
                outcomes.append(compare(document, hapi))
                if n % 50 == 0:
                    print(f"agreement: {n} documents", file=sys.stderr, flush=True)
    except FhirError as exc:
        print(f"agreement: error: {exc}", file=sys.stderr)
        return 2
    text, unexplained = report(outcomes, time.monotonic() - started, args.synthetic)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"agreement: {len(outcomes)} documents -> {args.output}", file=sys.stderr)
    if unexplained:
        print(f"agreement: {unexplained} HAPI-only error(s) UNEXPLAINED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
