"""The finding type every check returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Issue", "Severity"]

Severity = Literal["error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: how bad, where (a FHIRPath-like element path), and what to do about it.

    ``path`` names the element, with list indexes, from the root of what was validated, e.g.
    ``Bundle.entry[3].resource.valueQuantity.unit``. ``source`` says where that root came
    from when it is not the whole input (``line 3`` of an NDJSON file). ``rule`` names the kind
    of check (``structure``, ``cardinality``, ``fixed``, ``pattern``, ``slice``, ``type``,
    ``binding``, ``invariant:<key>``, ``reference``, ``profile``, ``bundle``); it does not take
    part in equality.
    """

    severity: Severity
    path: str
    message: str
    rule: str = field(default="", compare=False)
    source: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = f"{self.source} {self.path}" if self.source else self.path
        return f"{self.severity} {where}: {self.message}"
