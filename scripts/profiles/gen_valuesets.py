"""Write ``profiles/input/fsh/from-code-table.fsh`` from the package's code table.

The value sets the profiles bind to hold only codes that are in ``fhir_plao/data/terminology.json``
(where each code's public source is recorded), so they are generated from it, never typed in:

* ``plao-vertebrae``: the codings of every concept of kind ``vertebra`` (bone structure of a
  vertebra, SNOMED CT); vertebrae without a verified code are left out;
* ``plao-dxa-sites``: the codings of every concept of kind ``dxa-site``;
* ``plao-dxa-score-codes``: the codings of the ``dxa-score`` concepts that a DXA site names as
  its T-score, Z-score or BMD (``scores`` of the ``dxa-site`` concepts), i.e. every DXA score
  code the mapping can write.

The DXA unit invariants (``plao-dxa-1`` BMD, ``plao-dxa-2`` T-score, ``plao-dxa-3`` Z-score: the
UCUM units of the code table for each kind of score) are generated from the same concepts.

``value_sets()`` and ``dxa_unit_rules()`` are also used by the tests to check the built
resources against the table.

Usage: ``python scripts/profiles/gen_valuesets.py [--check]`` (``build.py`` calls it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TERMINOLOGY = ROOT / "fhir_plao" / "data" / "terminology.json"
OUTPUT = ROOT / "profiles" / "input" / "fsh" / "from-code-table.fsh"


@dataclass(frozen=True)
class ValueSetSpec:
    id: str
    name: str
    title: str
    description: str
    codes: tuple[tuple[str, str, str | None, str], ...]  # (system, code, display, concept key)


def _codings(concept: dict[str, Any], systems: dict[str, str]) -> list[tuple[str, str, str | None]]:
    return [(systems[c["system"]], c["code"], c.get("display")) for c in concept.get("codings", ())]


def value_sets(table: dict[str, Any] | None = None) -> list[ValueSetSpec]:
    """The value sets, computed from the code table (read from the package when not given)."""
    if table is None:
        table = json.loads(TERMINOLOGY.read_text("utf-8"))
    systems: dict[str, str] = table["systems"]
    concepts: dict[str, dict[str, Any]] = table["concepts"]

    def of_kind(kind: str) -> list[tuple[str, str, str | None, str]]:
        out = []
        for key, concept in concepts.items():
            if concept["kind"] == kind:
                out.extend((s, c, d, key) for s, c, d in _codings(concept, systems))
        return out

    scores = [
        (s, c, d, key)
        for key in _score_keys(concepts)
        for s, c, d in _codings(concepts[key], systems)
    ]
    return [
        ValueSetSpec(
            "plao-vertebrae",
            "PlaoVertebrae",
            "PLAO vertebrae",
            "Bone structures of single vertebrae (SNOMED CT), the body sites of a vertebral "
            "fracture. Generated from the fhir-plao code table: only vertebrae whose code was "
            "verified in a published source are included.",
            tuple(of_kind("vertebra")),
        ),
        ValueSetSpec(
            "plao-dxa-sites",
            "PlaoDxaSites",
            "PLAO DXA measurement sites",
            "Body sites of a DXA bone density measurement (lumbar spine L1-L4, femoral neck, "
            "hip, radius) that have a verified SNOMED CT code. Generated from the fhir-plao code "
            "table.",
            tuple(of_kind("dxa-site")),
        ),
        ValueSetSpec(
            "plao-dxa-score-codes",
            "PlaoDxaScoreCodes",
            "PLAO DXA score codes",
            "LOINC codes of DXA T-scores, Z-scores and bone mineral densities at the measurement "
            "sites of the fhir-plao code table (lumbar spine, femur, hip, radius and ulna). "
            "Generated from the code table.",
            tuple(scores),
        ),
    ]


def _score_keys(concepts: dict[str, dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for concept in concepts.values():
        if concept["kind"] == "dxa-site":
            for key in concept.get("scores", {}).values():
                if key not in keys:
                    keys.append(key)
    return keys


@dataclass(frozen=True)
class UnitRule:
    key: str
    kind: str  # T, Z or BMD
    codes: tuple[str, ...]  # LOINC codes of that kind of score
    units: tuple[str, ...]  # the UCUM codes allowed for them


_RULE_KEYS = {"BMD": "plao-dxa-1", "T": "plao-dxa-2", "Z": "plao-dxa-3"}
_KIND_NAMES = {"BMD": "bone mineral density", "T": "T-score", "Z": "Z-score"}


def dxa_unit_rules(table: dict[str, Any] | None = None) -> list[UnitRule]:
    """Per kind of DXA score: its LOINC codes and the UCUM units the code table allows."""
    if table is None:
        table = json.loads(TERMINOLOGY.read_text("utf-8"))
    concepts: dict[str, dict[str, Any]] = table["concepts"]
    loinc = table["systems"]["loinc"]
    rules = []
    for kind, key in _RULE_KEYS.items():
        codes: list[str] = []
        units: list[str] = []
        for concept_key in _score_keys(concepts):
            concept = concepts[concept_key]
            if concept.get("score") != kind:
                continue
            for c in concept.get("codings", ()):
                if table["systems"][c["system"]] == loinc and c["code"] not in codes:
                    codes.append(c["code"])
            units.extend(u for u in concept.get("units", ()) if u not in units)
        if codes and units:
            rules.append(UnitRule(key, kind, tuple(codes), tuple(units)))
    return rules


def _fhirpath_list(items: tuple[str, ...]) -> str:
    return "(" + " | ".join(f"'{i}'" for i in items) + ")"


def render_unit_rules(rules: list[UnitRule]) -> list[str]:
    lines: list[str] = []
    for rule in rules:
        name = _KIND_NAMES[rule.kind]
        units = " or ".join(repr(u) for u in rule.units)
        description = f"A DXA {name} has its value in UCUM {units}."
        expression = (
            "code.coding.where(system = 'http://loinc.org' and code in "
            f"{_fhirpath_list(rule.codes)}).exists() implies "
            f"value.ofType(Quantity).code in {_fhirpath_list(rule.units)}"
        )
        lines += [
            f"Invariant: {rule.key}",
            f"Description: {_fsh_string(description)}",
            f"Expression: {_fsh_string(expression)}",
            "Severity: #error",
            "",
        ]
    return lines


def _fsh_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ALIASES = {
    "http://snomed.info/sct": "$sct",
    "http://loinc.org": "$loinc",
}


def render(specs: list[ValueSetSpec], rules: list[UnitRule]) -> str:
    lines = [
        "// GENERATED by scripts/profiles/gen_valuesets.py from fhir_plao/data/terminology.json:",
        "// do not edit; change the code table and rebuild (python scripts/profiles/build.py).",
        "",
    ]
    for spec in specs:
        if not spec.codes:
            raise SystemExit(f"value set {spec.id}: the code table gives it no codes")
        lines += [
            f"ValueSet: {spec.name}",
            f"Id: {spec.id}",
            f"Title: {_fsh_string(spec.title)}",
            f"Description: {_fsh_string(spec.description)}",
            "* ^experimental = false",
        ]
        for system, code, display, key in spec.codes:
            prefix = _ALIASES.get(system, system)
            shown = f" {_fsh_string(display)}" if display else ""
            lines.append(f"* {prefix}#{code}{shown}  // {key}")
        lines.append("")
    lines += render_unit_rules(rules)
    return "\n".join(lines)


def generate(check: bool = False) -> bool:
    """Write (or with ``check`` only compare) the FSH file; True when it was up to date."""
    text = render(value_sets(), dxa_unit_rules())
    current = OUTPUT.read_text("utf-8") if OUTPUT.is_file() else None
    if current == text:
        return True
    if not check:
        OUTPUT.write_text(text, "utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    fresh = generate(check=args.check)
    if args.check and not fresh:
        print(f"{OUTPUT.relative_to(ROOT)} is stale: run build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
