"""Write ``fhir_plao/data/r4-core-rules.json``: the rules of base R4 that fhir.resources leaves out.

fhir.resources checks the shape of R4 resources but not their code values or invariants. This
script extracts, from the R4 4.0.1 core package that ``build_core_package.py`` builds, what the
validator needs for those, in a compact form shipped with the package:

* for every resource and complex data type (and the SimpleQuantity / MoneyQuantity profiles), the
  elements worth visiting: those of a complex type (to walk into), those with a required binding,
  and those with invariants; each with its type codes, the bound value set and any
  ``contentReference``;
* the invariants (FHIRPath) of each element, by element path, except ele-1, ext-1, dom-3 and dom-6
  (checked natively, or not at all: see ``fhir_plao/_validation/conformance.py``);
* the codes of every value set that a required binding names and that can be enumerated from the
  package (``include`` of whole complete code systems or of listed concepts);
* the codes of every code system the package defines completely (FHIR's own, HL7 v2 and v3, DICOM),
  so that a Coding or Quantity naming such a system with a code it does not define is an error
  wherever it stands, bound or not (as HAPI's validator says).

Usage: ``python scripts/profiles/build_core_rules.py`` (``build.py`` calls it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUTPUT = ROOT / "fhir_plao" / "data" / "r4-core-rules.json"

sys.path.insert(0, str(HERE))
import build_core_package  # noqa: E402

SKIPPED = frozenset({"ele-1", "ext-1", "dom-3", "dom-6"})
EXTRA_TYPES = ("SimpleQuantity", "MoneyQuantity")


def _load(package: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    definitions: dict[str, Any] = {}
    value_sets: dict[str, Any] = {}
    code_systems: dict[str, Any] = {}
    for path in sorted(package.glob("*.json")):
        if path.name in ("package.json", ".index.json"):
            continue
        resource = json.loads(path.read_text("utf-8"))
        kind = resource.get("resourceType")
        if kind == "StructureDefinition":
            specialization = resource.get("derivation") == "specialization"
            wanted = (
                specialization
                and resource.get("kind") in ("resource", "complex-type")
                and not resource.get("abstract")
            ) or resource.get("id") in EXTRA_TYPES
            if wanted:
                definitions[resource["id"]] = resource
        elif kind == "ValueSet":
            value_sets[resource["url"]] = resource
        elif kind == "CodeSystem":
            code_systems[resource["url"]] = resource
    return definitions, value_sets, code_systems


def _all_codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for concept in concepts:
        out.append(concept["code"])
        out.extend(_all_codes(concept.get("concept", [])))
    return out


def _expand(url: str, value_sets: dict[str, Any], code_systems: dict[str, Any]) -> Any:
    """{system: [codes]} for a value set that the package can enumerate, else None."""
    vs = value_sets.get(url)
    if vs is None:
        return None
    out: dict[str, list[str]] = {}
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return None
    for include in compose.get("include", []):
        system = include.get("system")
        if not system or include.get("filter") or include.get("valueSet"):
            return None
        if "concept" in include:
            codes = [c["code"] for c in include["concept"]]
        else:
            cs = code_systems.get(system)
            if cs is None or cs.get("content") != "complete":
                return None
            codes = _all_codes(cs.get("concept", []))
        out.setdefault(system, []).extend(c for c in codes if c not in out.get(system, []))
    return out or None


def rules(package: Path) -> dict[str, Any]:
    definitions, value_sets, code_systems = _load(package)
    types: dict[str, Any] = {}
    bound: set[str] = set()
    for name, sd in sorted(definitions.items()):
        root = sd["snapshot"]["element"][0]["path"]
        elements: dict[str, Any] = {}
        constraints: dict[str, list[list[str]]] = {}
        for element in sd["snapshot"]["element"]:
            path: str = element["path"]
            rel = path[len(root) + 1 :] if path != root else ""
            for c in element.get("constraint", []):
                if c["key"] in SKIPPED or not c.get("expression"):
                    continue
                entry = [c["key"], c.get("severity", "error"), c.get("human", ""), c["expression"]]
                if entry not in constraints.setdefault(rel, []):
                    constraints[rel].append(entry)
            if not rel:
                continue
            type_codes = []
            for t in element.get("type", []):
                code = t["code"]
                for profile in t.get("profile", []):
                    tail = profile.rsplit("/", 1)[-1]
                    if tail in EXTRA_TYPES:
                        code = tail
                type_codes.append(code)
            binding = element.get("binding", {})
            value_set = None
            if binding.get("strength") == "required" and binding.get("valueSet"):
                value_set = binding["valueSet"].split("|", 1)[0]
            complex_type = any(t[:1].isupper() for t in type_codes)
            content_ref = element.get("contentReference")
            if complex_type or value_set or content_ref or rel in constraints:
                entry_rule: list[Any] = [type_codes, value_set]
                if content_ref:
                    entry_rule.append(content_ref.split(".", 1)[1] if "." in content_ref else "")
                elements[rel] = entry_rule
                if value_set:
                    bound.add(value_set)
        types[name] = {"elements": elements, "constraints": constraints}
    expansions = {}
    for url in sorted(bound):
        expanded = _expand(url, value_sets, code_systems)
        if expanded is not None:
            expansions[url] = expanded
    systems = {
        url: sorted(set(_all_codes(cs.get("concept", []))))
        for url, cs in sorted(code_systems.items())
        if cs.get("content") == "complete" and cs.get("concept")
    }
    case_insensitive = sorted(
        url
        for url, cs in code_systems.items()
        if url in systems and cs.get("caseSensitive") is False
    )
    return {
        "codeSystems": systems,
        "caseInsensitiveCodeSystems": case_insensitive,
        "about": (
            "Base FHIR R4 4.0.1 rules for fhir_plao.validation (element types, required "
            "bindings, invariants, value set and code system codes), extracted by "
            "scripts/profiles/build_core_rules.py from hl7.fhir.r4.core#4.0.1 as unpacked from "
            f"{build_core_package._source_version()}. Generated: do not edit."
        ),
        "types": types,
        "valueSets": expansions,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n"


def generate(check: bool = False) -> bool:
    """Write (or with ``check`` only compare) the rules file; True when it was up to date."""
    package = build_core_package.build()
    text = render(rules(package))
    current = OUTPUT.read_text("utf-8") if OUTPUT.is_file() else None
    if current == text:
        return True
    if not check:
        OUTPUT.write_text(text, "utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return False


if __name__ == "__main__":
    generate()
