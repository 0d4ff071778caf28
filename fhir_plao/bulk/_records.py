"""The files a bulk run keeps: the journal (what the server confirmed) and the dead letters.

Both are NDJSON, one record a line, appended and flushed record by record, so a run that is
killed leaves every record it finished (a torn last line is ignored when the journal is read).

**Journal** record (one per case the server confirmed)::

    {"source": "cases.ndjson:17", "patient": "SYSTEM|VALUE", "sha256": "...",
     "resources": 40, "created": 40, "updated": 0, "transactions": 1}

``--resume`` skips a case when the journal holds its patient *and* the hash of its content:
a case that moved to another line or file is still recognised, and one that was edited since
is sent again. ``source`` is kept for people to read.

**Dead letter** record (one per case that failed)::

    {"source": "cases.ndjson:17", "file": "cases.ndjson", "line": 17, "patient": "SYSTEM|VALUE",
     "stage": "case", "reason": "...", "locations": [{"field": "labs[0].value", ...}],
     "case": {...}}

``stage`` is where it failed: ``read`` (the file), ``json`` (not JSON), ``case`` (not a valid
case), ``mapping`` (the case could not become FHIR), ``validation`` (the Bundle breaks R4 or a
profile), ``split`` (the Bundle cannot be cut under the limits), ``server`` (an error status,
after retries), ``transport`` (no response, after retries), ``response`` (a response that could
not be used). ``locations`` lists what the failure traces back to, each with the keys that
apply: ``field`` (the case field, e.g. ``labs[0]`` or ``patient.birth_date``), ``element`` (the
FHIR element path, from the validator or the server's ``OperationOutcome.issue.expression``),
``message``. ``status`` and ``hapi_code`` come with server errors; ``parts_applied`` / ``parts``
say how many of a split case's transactions had already been applied. ``case`` is the case as
parsed (so ``jq -c .case`` gives NDJSON that can be pushed again), else ``text``: the raw input.
A pull's dead letter has ``patient`` (``Patient/ID``) and no case.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TextIO, TypeAlias

from fhir_plao import jsonio
from fhir_plao.errors import (
    FhirError,
    InputError,
    ServerError,
    TransportError,
    ValidationError,
)

if TYPE_CHECKING:
    from fhir_plao.case import Case

__all__ = [
    "DeadLetter",
    "Failure",
    "Journal",
    "Location",
    "Stage",
    "case_digest",
    "failure_from_error",
    "patient_key",
    "trace_element",
]

log = logging.getLogger(__name__)

Stage: TypeAlias = Literal[
    "read", "json", "case", "mapping", "validation", "split", "server", "transport", "response"
]

#: at most this many locations per dead letter (a broken case can have hundreds)
MAX_LOCATIONS = 50
#: raw input longer than this is cut in a dead letter's ``text``
MAX_TEXT = 100_000


@dataclass(frozen=True)
class Location:
    """What a failure traces back to: a case field, a FHIR element, or both."""

    field: str | None = None
    element: str | None = None
    message: str | None = None

    def as_json(self) -> dict[str, str]:
        out = {"field": self.field, "element": self.element, "message": self.message}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Failure:
    """Why a case (or a pulled patient) failed."""

    stage: Stage
    reason: str
    locations: tuple[Location, ...] = ()
    status: int | None = None
    hapi_code: str | None = None
    parts_applied: int | None = None
    parts: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "reason": self.reason}
        out["locations"] = [loc.as_json() for loc in self.locations]
        for name in ("status", "hapi_code", "parts_applied", "parts"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def patient_key(case: Case) -> str:
    """``SYSTEM|VALUE`` of the case's patient identifier (what the resource ids derive from)."""
    return f"{case.patient.identifier_system}|{case.patient.identifier}"


def case_digest(case: Case) -> str:
    """SHA-256 of the case's content (canonical JSON: sorted keys, defaults left out)."""
    data = case.model_dump(mode="python", exclude_defaults=True)
    return hashlib.sha256(jsonio.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- journal


class Journal:
    """The cases the server confirmed. ``resume=False`` starts it afresh (an existing file is
    emptied); ``resume=True`` reads it and appends."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self._confirmed: set[tuple[str, str]] = set()
        if resume:
            self._load()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: TextIO = path.open("a" if resume else "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise InputError(
                f"cannot write the journal: {exc.strerror}", location=str(path)
            ) from None

    def _load(self) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            log.info("no journal at %s yet: nothing to skip", self.path)
            return
        except OSError as exc:
            raise InputError(
                f"cannot read the journal: {exc.strerror}", location=str(self.path)
            ) from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = jsonio.loads(line)
                    key = (str(record["patient"]), str(record["sha256"]))
                except (jsonio.JsonError, KeyError, TypeError):
                    log.warning(
                        "%s:%d: not a journal record (torn write?); ignored", self.path, number
                    )
                    continue
                self._confirmed.add(key)

    def __len__(self) -> int:
        return len(self._confirmed)

    def confirmed(self, patient: str, digest: str) -> bool:
        return (patient, digest) in self._confirmed

    def record(
        self,
        *,
        source: str,
        patient: str,
        digest: str,
        created: int,
        updated: int,
        transactions: int,
    ) -> None:
        """Append one confirmed case and flush it to the operating system."""
        line = jsonio.dumps(
            {
                "source": source,
                "patient": patient,
                "sha256": digest,
                "resources": created + updated,
                "created": created,
                "updated": updated,
                "transactions": transactions,
            }
        )
        self._handle.write(line + "\n")
        self._handle.flush()
        self._confirmed.add((patient, digest))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- dead letters


class DeadLetter:
    """The failures of this run. A file left by an earlier run is removed when the run starts
    (cases that failed then are tried again now); the file is made at the first failure, so
    its presence after a run means something failed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._handle: TextIO | None = None
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot replace the dead-letter file: {exc.strerror}", location=str(path)
            ) from None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._handle is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("w", encoding="utf-8", newline="\n")
            except OSError as exc:
                raise InputError(
                    f"cannot write the dead-letter file: {exc.strerror}", location=str(self.path)
                ) from None
        self._handle.write(jsonio.dumps(dict(record)) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- failures


_ENTRY = re.compile(r"^Bundle\.entry\[(\d+)\]")


def failure_from_error(
    exc: FhirError,
    *,
    case: Case | None = None,
    bundle: Mapping[str, Any] | None = None,
    stage: Stage | None = None,
) -> Failure:
    """A :class:`Failure` for ``exc``, its locations traced to case fields where they can be.

    ``bundle`` is the Bundle the error's element paths refer to (the one validated, or the
    part that was sent), ``case`` the case it came from.
    """
    if isinstance(exc, ValidationError):
        errors = [i for i in exc.issues if getattr(i, "severity", "error") == "error"]
        return Failure(
            stage or "validation",
            str(exc),
            tuple(
                _located(str(getattr(i, "path", "")), str(getattr(i, "message", i)), case, bundle)
                for i in errors[:MAX_LOCATIONS]
            ),
        )
    if isinstance(exc, ServerError):
        locations = []
        for issue in exc.issues:
            if issue.severity not in ("fatal", "error"):
                continue
            for expression in issue.expression or [""]:
                locations.append(_located(expression, issue.diagnostics, case, bundle))
        return Failure(
            stage or "server",
            str(exc),
            tuple(locations[:MAX_LOCATIONS]),
            status=exc.status,
            hapi_code=exc.hapi_code,
        )
    if isinstance(exc, TransportError):
        return Failure(stage or "transport", str(exc))
    if isinstance(exc, InputError):
        where = (Location(field=exc.location, message=exc.message),) if exc.location else ()
        return Failure(stage or "mapping", str(exc), where)
    return Failure(stage or "response", str(exc))


def _located(
    element: str, message: str | None, case: Case | None, bundle: Mapping[str, Any] | None
) -> Location:
    traced = trace_element(case, bundle, element) if element else None
    return Location(field=traced, element=element or None, message=message)


def trace_element(case: Case | None, bundle: Mapping[str, Any] | None, element: str) -> str | None:
    """The case field an element path such as ``Bundle.entry[3].resource.valueQuantity`` comes
    from: the entry's resource carries the case item's id (``Resource.identifier`` in the item
    system), and the item is looked up in the case. None when it cannot be told."""
    match = _ENTRY.match(element)
    if case is None or bundle is None or match is None:
        return None
    entries = bundle.get("entry") or []
    index = int(match.group(1))
    if index >= len(entries) or not isinstance(entries[index], dict):
        return None
    resource = entries[index].get("resource")
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        return "patient"
    local = _item_id(resource, case)
    if local is None:
        return None
    return _case_path(case, local.split("#", 1)[0]) or f"item {local!r}"


def _item_id(resource: Mapping[str, Any], case: Case) -> str | None:
    from fhir_plao.mapping._fhir import ITEM_SYSTEM

    prefix = f"{case.patient.identifier}/"
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, dict) or identifier.get("system") != ITEM_SYSTEM:
            continue
        value = identifier.get("value")
        if isinstance(value, str) and value.startswith(prefix):
            return value[len(prefix) :]
    return None


def _case_path(case: Case, item_id: str) -> str | None:
    from fhir_plao.case import SECTIONS

    for name in SECTIONS:
        items: Iterable[Any] = getattr(case, name, ()) or ()
        for i, item in enumerate(items):
            if getattr(item, "id", None) == item_id:
                return f"{name}[{i}]"
    return None
