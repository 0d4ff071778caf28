"""Validation: resources per second validating the example Bundle, warm; and the first call.

The Bundle is ``to_fhir(load_case("examples/plao-case.json"))``. *Warm*: one ``Validator`` made
and used once beforehand, then ``runs`` timed ``validate`` calls; the median gives resources per
second. *First call*: in a fresh interpreter (``python -m bench.validation --first-call``), the
import of ``fhir_plao.validation``, then the first ``validate`` (profiles loaded and compiled on
first use), then a second one; the median of a few such processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import REPO_ROOT, BenchError, Series, progress

EXAMPLE = REPO_ROOT / "examples" / "plao-case.json"


@dataclass
class ValidationResult:
    resources: int
    warm: Series = field(default_factory=lambda: Series("s"))
    first_call: dict[str, Series] = field(default_factory=dict)

    @property
    def resources_per_second(self) -> float:
        return self.resources / self.warm.median

    def to_json(self) -> dict[str, Any]:
        return {
            "resources": self.resources,
            "resources_per_second": self.resources_per_second,
            "warm": self.warm.to_json(),
            "first_call": {name: series.to_json() for name, series in self.first_call.items()},
        }


def example_bundle() -> dict[str, Any]:
    from fhir_plao import load_case, to_fhir

    return to_fhir(load_case(EXAMPLE))


def _errors(issues: list[Any]) -> int:
    return sum(1 for issue in issues if issue.severity == "error")


def warm(runs: int = 30) -> tuple[int, Series]:
    """Resources in the example Bundle, and ``runs`` warm timings of validating it."""
    from fhir_plao.validation import Validator

    bundle = example_bundle()
    validator = Validator()
    if _errors(validator.validate(bundle)):
        raise BenchError("the example Bundle does not validate: nothing to measure")
    series = Series("s")
    for _ in range(runs):
        t0 = time.perf_counter()
        validator.validate(bundle)
        series.add(time.perf_counter() - t0)
    return len(bundle["entry"]), series


def first_call() -> dict[str, float]:
    """In this (fresh) process: import, first and second validation of the example Bundle."""
    t0 = time.perf_counter()
    from fhir_plao import validation

    t1 = time.perf_counter()
    bundle = example_bundle()
    t2 = time.perf_counter()
    issues = validation.validate(bundle)
    t3 = time.perf_counter()
    validation.validate(bundle)
    t4 = time.perf_counter()
    if _errors(issues):
        raise BenchError("the example Bundle does not validate")
    return {"import": t1 - t0, "first_validate": t3 - t2, "second_validate": t4 - t3}


def first_call_in_subprocesses(repeats: int = 3) -> dict[str, Series]:
    """:func:`first_call` in ``repeats`` fresh interpreters."""
    series: dict[str, Series] = {}
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-m", "bench.validation", "--first-call"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"first-call measurement failed:\n{done.stderr[-2000:]}")
        for name, seconds in json.loads(done.stdout).items():
            series.setdefault(name, Series("s")).add(seconds)
    return series


def benchmark(runs: int = 30, first_call_repeats: int = 3) -> ValidationResult:
    resources, series = warm(runs)
    result = ValidationResult(resources=resources, warm=series)
    progress(
        f"validation: example Bundle of {resources} resources, warm median "
        f"{series.median * 1000:.1f} ms over {runs} runs = {result.resources_per_second:.0f} "
        "resources/s"
    )
    if first_call_repeats:
        result.first_call = first_call_in_subprocesses(first_call_repeats)
        first = result.first_call["first_validate"].median
        progress(f"validation: first call {first:.2f} s (median of {first_call_repeats} processes)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validation")
    parser.add_argument("--first-call", action="store_true", help="print first-call costs (JSON)")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    if args.first_call:
        print(json.dumps(first_call()))
    else:
        print(json.dumps(benchmark(args.runs, first_call_repeats=0).to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
