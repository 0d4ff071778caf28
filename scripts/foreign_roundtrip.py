"""How much of other systems' FHIR survives FHIR -> case -> FHIR.

For every JSON file under the given folders (default: the vendored examples in
``tests/data/foreign``), read it with ``from_fhir``, write the case back with ``to_fhir`` and
count, per resource kind, the clinical resources (Observation, Condition, MedicationStatement,
MedicationRequest, Procedure, DiagnosticReport; entered-in-error left out) that come back with
the same first coding of their code (the medication's, for medication resources) and the same
value (``value[x]`` and each component's, for Observations).

    python scripts/foreign_roundtrip.py [DIR_OR_FILE ...] [--show-lost N]

Files that ``from_fhir`` refuses as a whole (several patients, no patient) are listed with their
one-line reason; their resources are not counted. Exit 1 when a file crashes the reader.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_plao import jsonio  # noqa: E402
from fhir_plao.errors import FhirError  # noqa: E402
from fhir_plao.mapping import from_fhir, to_fhir  # noqa: E402

CLINICAL = (
    "Observation",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "Procedure",
    "DiagnosticReport",
)


def resources(data: Any) -> list[dict[str, Any]]:
    """Every resource of a Bundle (nested Bundles too), a resource, or a list."""
    if isinstance(data, list):
        return [r for item in data for r in resources(item)]
    if not isinstance(data, dict):
        return []
    if data.get("resourceType") == "Bundle":
        out = []
        for entry in data.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                out.extend(resources(entry["resource"]))
        return out
    return [data] if "resourceType" in data else []


def _first_coding(cc: Any) -> tuple[Any, Any] | None:
    if not isinstance(cc, dict):
        return None
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict):
            return coding.get("system"), coding.get("code")
    return None


def _medication_code(res: dict[str, Any], by_ref: dict[str, dict[str, Any]]) -> Any:
    if "medicationCodeableConcept" in res:
        return _first_coding(res["medicationCodeableConcept"])
    ref = (res.get("medicationReference") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("#"):
        for contained in res.get("contained") or []:
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                return _first_coding(contained.get("code"))
    target = by_ref.get(ref) if isinstance(ref, str) else None
    if target is None and isinstance(ref, str):
        target = by_ref.get("/".join(ref.split("/")[-2:]))
    return _first_coding(target.get("code")) if target else None


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _value(res: dict[str, Any]) -> str:
    found = {k: v for k, v in res.items() if k.startswith("value")}
    for i, comp in enumerate(res.get("component") or []):
        if isinstance(comp, dict):
            found[f"component{i}"] = [
                _first_coding(comp.get("code")),
                {k: v for k, v in comp.items() if k.startswith("value")},
            ]
    return _canon(found)


def signatures(all_resources: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    by_ref: dict[str, dict[str, Any]] = {}
    for res in all_resources:
        if isinstance(res.get("id"), str):
            by_ref[f"{res['resourceType']}/{res['id']}"] = res
    out: Counter[tuple[str, str]] = Counter()
    for res in all_resources:
        rtype = res.get("resourceType")
        if rtype not in CLINICAL or res.get("status") == "entered-in-error":
            continue
        if rtype.startswith("Medication"):
            code = _medication_code(res, by_ref)
            value = ""
        else:
            code = _first_coding(res.get("code"))
            value = _value(res) if rtype == "Observation" else ""
        out[(rtype, _canon([code, value]))] += 1
    return out


def measure(files: list[Path], show_lost: int) -> int:
    total: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    refused: list[str] = []
    crashed = 0
    lost_examples: list[str] = []
    for path in files:
        try:
            data = jsonio.loads(path.read_bytes())
        except jsonio.JsonError as exc:
            refused.append(f"{path}: not JSON: {exc}")
            continue
        before = signatures(resources(data))
        if not before:
            continue
        try:
            result = from_fhir(data)
            after = signatures(resources(jsonio.loads(jsonio.dumps(to_fhir(result.case)))))
        except FhirError as exc:
            refused.append(f"{path}: {exc}")
            continue
        except Exception as exc:  # a crash is what this script exists to find
            crashed += 1
            print(f"CRASH {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        for (rtype, sig), n in before.items():
            total[rtype] += n
            got = min(n, after.get((rtype, sig), 0))
            kept[rtype] += got
            if got < n and len(lost_examples) < show_lost:
                lost_examples.append(f"{path.name}: {rtype} {sig[:160]}")
    print(f"{'resource kind':<22} {'in':>6} {'back':>6} {'share':>7}")
    for rtype in CLINICAL:
        if total[rtype]:
            share = 100 * kept[rtype] / total[rtype]
            print(f"{rtype:<22} {total[rtype]:>6} {kept[rtype]:>6} {share:>6.1f}%")
    t, k = sum(total.values()), sum(kept.values())
    print(f"{'all clinical':<22} {t:>6} {k:>6} {100 * k / max(t, 1):>6.1f}%")
    print(f"files refused as a whole: {len(refused)}")
    for line in refused:
        print(f"  {line}")
    print(f"crashes: {crashed}")
    for line in lost_examples:
        print(f"  lost: {line}")
    return 1 if crashed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "tests" / "data" / "foreign")])
    parser.add_argument("--show-lost", type=int, default=0, metavar="N")
    args = parser.parse_args()
    files: list[Path] = []
    for p in map(Path, args.paths):
        files.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    return measure(files, args.show_lost)


if __name__ == "__main__":
    raise SystemExit(main())
