"""Mapping: ``to_fhir`` + validation + JSON bytes, against two floors building the same output.

* **ours**: for each synthetic case, ``to_fhir(case)`` (the transaction Bundle), then
  ``Validator.validate(bundle)`` (base R4 + the PLAO profiles; zero errors is checked, outside the
  clock), then ``jsonio.dumps_bytes(bundle)`` (exact decimals). Each stage is timed apart.
* **fhir.resources floor** ("the pydantic floor"): for every resource of the same Bundles,
  ``get_fhir_model_class(type).model_validate(resource_dict)`` from ``fhir.resources.R4B`` and its
  own ``model_dump_json()`` as UTF-8 bytes. The dicts are ``to_fhir``'s output, made before the
  clock starts.
* **orjson floor** ("the byte-producing floor"): ``orjson.dumps`` of the same Bundles; their
  Decimals are turned into floats before the clock starts (orjson has no Decimal).

Cases are made by ``fhir_plao.synth`` before any clock starts; every contender is warmed up on a
few Bundles first (lazy model building, profile compiling), then the runs alternate contenders.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import BenchError, Series, plain_numbers, progress

STAGES = ("to_fhir", "validate", "json")
WARMUP_CASES = 5


@dataclass
class MappingInputs:
    """What every contender works on: the cases, and the Bundles ``to_fhir`` makes of them."""

    cases: list[Any]
    bundles: list[dict[str, Any]]
    plain_bundles: list[dict[str, Any]]
    resources: int


@dataclass
class MappingResult:
    cases: int
    resources: int
    ours: dict[str, Series] = field(default_factory=dict)  # "total" and each stage
    fhir_resources: Series = field(default_factory=lambda: Series("s"))
    orjson: Series | None = None
    bytes_out: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "resources": self.resources,
            "ours": {name: series.to_json() for name, series in self.ours.items()},
            "fhir_resources": self.fhir_resources.to_json(),
            "orjson": self.orjson.to_json() if self.orjson is not None else None,
            "bytes_out": self.bytes_out,
        }


def prepare(n: int, seed: int = 0, *, with_plain: bool = True) -> MappingInputs:
    """Synthetic cases and their Bundles (outside any clock)."""
    from fhir_plao.mapping import to_fhir
    from fhir_plao.synth import synth_cases

    cases = list(synth_cases(n, seed))
    bundles = [to_fhir(case) for case in cases]
    plain = [plain_numbers(bundle) for bundle in bundles] if with_plain else []
    resources = sum(len(bundle["entry"]) for bundle in bundles)
    return MappingInputs(cases, bundles, plain, resources)


def run_ours(cases: list[Any], validator: Any) -> tuple[dict[str, float], int]:
    """One pass of our pipeline; seconds per stage and in all, and the bytes produced."""
    from fhir_plao import jsonio
    from fhir_plao.mapping import to_fhir

    clock = time.perf_counter
    spent = dict.fromkeys(STAGES, 0.0)
    produced = 0
    errors = 0
    for case in cases:
        t0 = clock()
        bundle = to_fhir(case)
        t1 = clock()
        issues = validator.validate(bundle)
        t2 = clock()
        data = jsonio.dumps_bytes(bundle)
        t3 = clock()
        spent["to_fhir"] += t1 - t0
        spent["validate"] += t2 - t1
        spent["json"] += t3 - t2
        produced += len(data)
        errors += sum(1 for issue in issues if issue.severity == "error")
    if errors:
        raise BenchError(f"validation found {errors} error(s) in the synthetic Bundles")
    spent["total"] = sum(spent[stage] for stage in STAGES)
    return spent, produced


def run_fhir_resources(bundles: list[dict[str, Any]]) -> tuple[float, int]:
    """One pass of the fhir.resources floor: model_validate + model_dump_json per resource."""
    from fhir.resources.R4B import get_fhir_model_class

    produced = 0
    t0 = time.perf_counter()
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            produced += len(model.model_dump_json().encode("utf-8"))
    return time.perf_counter() - t0, produced


def run_orjson(plain_bundles: list[dict[str, Any]]) -> tuple[float, int]:
    """One pass of the orjson floor: ``orjson.dumps`` per Bundle."""
    import orjson

    produced = 0
    t0 = time.perf_counter()
    for bundle in plain_bundles:
        produced += len(orjson.dumps(bundle))
    return time.perf_counter() - t0, produced


def orjson_available() -> bool:
    try:
        import orjson  # noqa: F401
    except ImportError:
        return False
    return True


def benchmark(
    n: int = 1000, runs: int = 3, seed: int = 0, *, with_orjson: bool | None = None
) -> MappingResult:
    """The mapping benchmark: ``runs`` alternating passes of each contender over ``n`` cases."""
    from fhir_plao.validation import Validator

    if with_orjson is None:
        with_orjson = orjson_available()
    progress(f"mapping: preparing {n} synthetic cases and their Bundles")
    inputs = prepare(n, seed, with_plain=with_orjson)
    result = MappingResult(cases=n, resources=inputs.resources)
    result.ours = {name: Series("s") for name in ("total", *STAGES)}
    if with_orjson:
        result.orjson = Series("s")

    validator = Validator()
    warm = slice(0, WARMUP_CASES)
    run_ours(inputs.cases[warm], validator)
    run_fhir_resources(inputs.bundles[warm])
    if with_orjson:
        run_orjson(inputs.plain_bundles[warm])

    for run in range(1, runs + 1):
        gc.collect()
        spent, produced = run_ours(inputs.cases, validator)
        for name, seconds in spent.items():
            result.ours[name].add(seconds)
        result.bytes_out["ours"] = produced
        gc.collect()
        seconds, produced = run_fhir_resources(inputs.bundles)
        result.fhir_resources.add(seconds)
        result.bytes_out["fhir_resources"] = produced
        line = (
            f"mapping run {run}/{runs}: ours {spent['total']:.2f} s "
            f"(to_fhir {spent['to_fhir']:.2f}, validate {spent['validate']:.2f}, "
            f"json {spent['json']:.2f}); fhir.resources {seconds:.2f} s"
        )
        if result.orjson is not None:
            gc.collect()
            seconds, produced = run_orjson(inputs.plain_bundles)
            result.orjson.add(seconds)
            result.bytes_out["orjson"] = produced
            line += f"; orjson {seconds:.3f} s"
        progress(line)
    return result
