"""Shared pieces: progress lines, repeated measurements, a bounded async worker pool."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
FHIR_JSON = "application/fhir+json"

_STARTED = time.monotonic()


class BenchError(RuntimeError):
    """A benchmark could not do the work it claims to measure (wrong counts, errors, ...)."""


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the bench started."""
    print(f"[bench {time.monotonic() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Series:
    """Repeated measurements of one figure; ``median`` is what the tables show."""

    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        if not self.values:
            raise BenchError("no measurement was taken")
        return statistics.median(self.values)

    @property
    def runs(self) -> int:
        return len(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "values": self.values}


async def run_pool(
    items: Iterable[T], work: Callable[[T], Awaitable[object]], concurrency: int
) -> None:
    """Run ``work`` over ``items`` with at most ``concurrency`` in flight.

    ``items`` is consumed lazily (the workers share one iterator), so a generator over a large
    file is never held in memory; the first failure cancels the other workers and is raised.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be 1 or more")
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


def plain_numbers(obj: Any) -> Any:
    """A copy with every :class:`Decimal` as a float (for serialisers that know no Decimal)."""
    if isinstance(obj, Mapping):
        return {key: plain_numbers(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [plain_numbers(value) for value in obj]
    if isinstance(obj, Decimal):
        return float(obj)
    return obj


def resource_type_counts(bundles: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many resources of each type the Bundles' entries hold."""
    counts: dict[str, int] = {}
    for bundle in bundles:
        for entry in bundle.get("entry") or []:
            rtype = entry["resource"]["resourceType"]
            counts[rtype] = counts.get(rtype, 0) + 1
    return dict(sorted(counts.items()))
