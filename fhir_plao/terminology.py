"""The code table: every code the package writes, its system, display and published source.

Loaded once from ``fhir_plao/data/terminology.json``. Concepts are named by keys
(``"phosphate"``, ``"vertebra-t5"``); the case model uses keys, the mappers turn them into
CodeableConcepts and, reading FHIR, turn codings back into keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["TERMINOLOGY", "Coding", "Concept", "Terminology"]


@dataclass(frozen=True, slots=True)
class Coding:
    system: str  # the canonical URL
    code: str
    display: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Concept:
    key: str
    kind: str
    text: str
    codings: tuple[Coding, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.extra.get("units", ()))


class Terminology:
    """Lookup both ways between keys and codings."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        systems: Mapping[str, str] = data["systems"]
        self.systems = dict(systems)
        concepts: dict[str, Concept] = {}
        for key, raw in data["concepts"].items():
            codings = tuple(
                Coding(
                    system=systems[c["system"]],
                    code=c["code"],
                    display=c.get("display"),
                    source=c["source"],
                )
                for c in raw.get("codings", ())
            )
            extra = {k: v for k, v in raw.items() if k not in ("kind", "text", "codings")}
            concepts[key] = Concept(key, raw["kind"], raw["text"], codings, extra)
        self._concepts = concepts

    def __contains__(self, key: object) -> bool:
        return key in self._concepts

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts.values())

    def concept(self, key: str) -> Concept:
        try:
            return self._concepts[key]
        except KeyError:
            raise KeyError(f"no concept {key!r} in the code table") from None

    def kinds(self) -> tuple[str, ...]:
        """Every kind of concept in the table."""
        return tuple(dict.fromkeys(c.kind for c in self._concepts.values()))

    def keys_of(self, *kinds: str) -> list[str]:
        return [c.key for c in self._concepts.values() if c.kind in kinds]

    def require(self, key: str, *kinds: str) -> Concept:
        """The concept for ``key``; a ``ValueError`` naming the known keys when it is unknown."""
        concept = self._concepts.get(key)
        if concept is None or concept.kind not in kinds:
            known = self.keys_of(*kinds)
            shown = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
            what = " or ".join(kinds)
            raise ValueError(f"unknown {what} {key!r} (known: {shown})")
        return concept

    def require_unit(self, key: str, unit: str, *, field: str = "unit") -> None:
        units = self.concept(key).units
        if units and unit not in units:
            raise ValueError(
                f"{field}: {unit!r} does not fit {key} (expected UCUM {' or '.join(units)})"
            )

    def dxa_score_key(self, site: str, kind: str) -> str:
        scores: Mapping[str, str] = self.concept(site).extra.get("scores", {})
        key = scores.get(kind)
        if key is None:
            raise ValueError(f"no LOINC code for a DXA {kind} score at {site}")
        return key

    @cached_property
    def _by_coding(self) -> dict[tuple[str, str], list[str]]:
        index: dict[tuple[str, str], list[str]] = {}
        for concept in self._concepts.values():
            for coding in concept.codings:
                index.setdefault((coding.system, coding.code), []).append(concept.key)
        return index

    def keys_for(self, system: str | None, code: str | None) -> list[str]:
        """Every key whose codings include (system, code)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return []  # absent, or not the strings FHIR has there
        return list(self._by_coding.get((system, code), ()))

    def key_for_codings(
        self, codings: Iterable[tuple[Any, Any]], kinds: tuple[str, ...]
    ) -> str | None:
        """The key of ``kinds`` that (system, code) pairs name. A coding that names one concept
        wins over one that several share (an ATC code names the substance of every product
        that holds it); among those, a concept without a strength (the substance) comes first."""
        shared: list[str] = []
        for system, code in codings:
            candidates = [k for k in self.keys_for(system, code) if self._concepts[k].kind in kinds]
            if len(candidates) == 1:
                return candidates[0]
            shared.extend(c for c in candidates if c not in shared)
        if not shared:
            return None
        return sorted(shared, key=lambda k: "strength" in self._concepts[k].extra)[0]

    def key_for_text(self, text: str | None, *kinds: str) -> str | None:
        """A key of ``kinds`` whose text is ``text`` (for text-only concepts)."""
        if not text:
            return None
        for concept in self._concepts.values():
            if concept.kind in kinds and concept.text == text:
                return concept.key
        return None

    def system(self, name: str) -> str:
        return self.systems[name]


def _load() -> Terminology:
    raw = (Path(__file__).parent / "data" / "terminology.json").read_text("utf-8")
    return Terminology(json.loads(raw))


TERMINOLOGY = _load()
