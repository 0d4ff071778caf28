"""Where our mapping pipeline spends its time: a pyinstrument profile, boiled down to numbers.

Run by ``make bench`` when the mapping target is missed (or always with ``--profile``): the
pipeline of :func:`bench.mapping.run_ours` over a slice of the same synthetic cases, sampled by
pyinstrument, then summed three ways: by library (self time of the Python frames in each; C code
counts for the Python function that called it), the functions with the most self time, and the
``fhir_plao`` functions with the most inclusive time (recursion counted once).

    python -m bench.profile [N_CASES]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from bench._common import REPO_ROOT, progress

INTERVAL = 0.0005  # s between samples

_LIBRARIES = (
    ("fhir_plao/_validation/", "fhir_plao validation internals"),
    ("fhir_plao/validation.py", "fhir_plao validation internals"),
    ("fhir_plao/mapping/", "fhir_plao mapping"),
    ("fhir_plao/", "fhir_plao other"),
    ("/fhirpathpy/", "fhirpathpy (FHIRPath invariants)"),
    ("/fhir_core/", "fhir_core + fhir.resources (models)"),
    ("/fhir/resources/", "fhir_core + fhir.resources (models)"),
    ("/pydantic_core/", "pydantic (validation in C)"),
    ("/pydantic/", "pydantic (validation in C)"),
    ("/simplejson/", "simplejson (JSON bytes)"),
    ("/antlr4/", "antlr4 (FHIRPath parser)"),
)


@dataclass
class Hotspot:
    name: str
    where: str
    seconds: float
    share: float  # of the profiled total

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "where": self.where,
            "seconds": self.seconds,
            "share": self.share,
        }


@dataclass
class Profile:
    cases: int
    total: float
    by_library: list[Hotspot] = field(default_factory=list)
    self_time: list[Hotspot] = field(default_factory=list)
    ours_inclusive: list[Hotspot] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "total": self.total,
            "by_library": [h.to_json() for h in self.by_library],
            "self_time": [h.to_json() for h in self.self_time],
            "ours_inclusive": [h.to_json() for h in self.ours_inclusive],
        }


def _library(path: str | None) -> str:
    if not path:
        return "other"
    path = path.replace("\\", "/")
    for marker, name in _LIBRARIES:
        if marker in path:
            return name
    if "site-packages" in path:
        return "other libraries"
    return "Python standard library / other"


def _short(path: str | None) -> str:
    if not path:
        return "?"
    path = path.replace("\\", "/")
    for marker in ("site-packages/", f"{REPO_ROOT.as_posix()}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1] if path.count("/") > 2 else path


def profile_mapping(n: int = 200, seed: int = 0, top: int = 15) -> Profile:
    """Profile :func:`bench.mapping.run_ours` over ``n`` cases (after a warm-up)."""
    from pyinstrument import Profiler

    from bench.mapping import prepare, run_ours
    from fhir_plao.validation import Validator

    progress(f"profile: sampling our mapping pipeline over {n} cases with pyinstrument")
    cases = prepare(n, seed, with_plain=False).cases
    validator = Validator()
    run_ours(cases[:5], validator)
    profiler = Profiler(interval=INTERVAL)
    profiler.start()
    run_ours(cases, validator)
    profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        return Profile(cases=n, total=0.0)
    total = root.time

    self_by_fn: dict[tuple[str, str], float] = {}
    by_lib: dict[str, float] = {}
    incl_ours: dict[tuple[str, str], float] = {}

    def walk(frame: Any, on_stack: frozenset[tuple[str, str]], caller_lib: str) -> None:
        key = (frame.function, f"{_short(frame.file_path)}:{frame.line_no}")
        own = frame.total_self_time
        path = (frame.file_path or "").replace("\\", "/")
        # a builtin or frozen function (isinstance, dict.get, abc) is charged to its caller
        lib = caller_lib if path.startswith("<") else _library(path)
        self_by_fn[key] = self_by_fn.get(key, 0.0) + own
        by_lib[lib] = by_lib.get(lib, 0.0) + own
        if "fhir_plao/" in path and key not in on_stack:
            incl_ours[key] = incl_ours.get(key, 0.0) + frame.time
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, on_stack | {key}, lib)

    walk(root, frozenset(), "other")

    def spots(table: dict[tuple[str, str], float], limit: int) -> list[Hotspot]:
        ranked = sorted(table.items(), key=lambda item: item[1], reverse=True)[:limit]
        return [Hotspot(name, where, secs, secs / total) for (name, where), secs in ranked]

    result = Profile(cases=n, total=total)
    result.by_library = [
        Hotspot(name, "", secs, secs / total)
        for name, secs in sorted(by_lib.items(), key=lambda item: item[1], reverse=True)
    ]
    result.self_time = spots(self_by_fn, top)
    result.ours_inclusive = [h for h in spots(incl_ours, top + 3) if h.name not in ("run_ours",)][
        :top
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prof = profile_mapping(int(args[0]) if args else 200)
    print(f"profiled {prof.cases} cases, {prof.total:.2f} s")
    for title, spots in (
        ("by library (self time)", prof.by_library),
        ("functions, self time", prof.self_time),
        ("fhir_plao functions, inclusive time", prof.ours_inclusive),
    ):
        print(f"\n{title}:")
        for h in spots:
            print(f"  {h.share * 100:5.1f}%  {h.seconds:7.3f} s  {h.name}  {h.where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
