"""Golden files for the FHIR written by others in ``tests/data/foreign``.

For every input ``tests/data/foreign/<dir>/<name>.json`` there is one expected file
``tests/golden/foreign/<dir>/<name>.json`` holding what ``from_fhir`` makes of it: the case
(as ``case_to_json`` writes it) and the unmapped report, or the one-line refusal when the input
is not one patient's FHIR. The suite compares them as parsed JSON
(``tests/unit/test_foreign_golden.py``); a change in the mapping shows as a diff of these files.

    python scripts/foreign_golden.py           # rewrite every golden file (make golden)
    python scripts/foreign_golden.py --check   # exit 1 naming each file that differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_plao import jsonio  # noqa: E402
from fhir_plao.case import case_to_json  # noqa: E402
from fhir_plao.errors import FhirError  # noqa: E402
from fhir_plao.mapping import from_fhir, unmapped_report  # noqa: E402

INPUTS = ROOT / "tests" / "data" / "foreign"
GOLDEN = ROOT / "tests" / "golden" / "foreign"


def inputs() -> list[Path]:
    return sorted(p for p in INPUTS.rglob("*.json"))


def golden_path(source: Path) -> Path:
    return GOLDEN / source.relative_to(INPUTS)


def expected(source: Path) -> dict[str, Any]:
    """What the golden file for ``source`` holds, computed now."""
    try:
        result = from_fhir(jsonio.loads(source.read_bytes()))
    except FhirError as exc:
        return {"refused": str(exc)}
    return {
        "case": json.loads(case_to_json(result.case)),
        "unmapped": unmapped_report(result.unmapped),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    differ = []
    for source in inputs():
        target = golden_path(source)
        now = expected(source)
        if args.check:
            if not target.exists() or json.loads(target.read_text("utf-8")) != now:
                differ.append(str(target.relative_to(ROOT)))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(now), "utf-8")
    if args.check and differ:
        print(f"{len(differ)} golden file(s) differ: " + ", ".join(differ), file=sys.stderr)
        return 1
    print(f"{len(inputs())} golden file(s) {'match' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
