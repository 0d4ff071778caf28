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
apply: ``field`` (the case field, e.g. ``labs[0].value`` or ``patient.birth_date``), ``item``
(the case item's id), ``resource`` (``Observation/plao-...``), ``element`` (the FHIR element
path, from the validator, the server's ``OperationOutcome.issue.expression`` / ``location``, or
its message), ``message``; :mod:`fhir_plao.outbound` traces them, as for every push.
``status`` and ``hapi_code`` come with server errors; ``parts_applied`` / ``parts``
say how many of a split case's transactions had already been applied. ``case`` is the case as
parsed (so ``jq -c .case`` gives NDJSON that can be pushed again), else ``text``: the raw input.
A pull's dead letter has ``patient`` (``Patient/ID``) and no case.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeAlias

from fhir_plao import jsonio
from fhir_plao._closing import Closing
from fhir_plao._files import open_private
from fhir_plao.errors import (
    FhirError,
    InputError,
    Location,
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
]

log = logging.getLogger(__name__)

Stage: TypeAlias = Literal[
    "read",
    "json",
    "case",
    "mapping",
    "validation",
    "split",
    "server",
    "transport",
    "response",
    "verify",
]

#: at most this many locations per dead letter (a broken case can have hundreds)
MAX_LOCATIONS = 50
#: raw input longer than this is cut in a dead letter's ``text``
MAX_TEXT = 100_000


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


class Journal(Closing):
    """The cases the server confirmed. ``resume=False`` starts it afresh (an existing file is
    emptied); ``resume=True`` reads it and appends."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self._confirmed: set[tuple[str, str]] = set()
        if resume:
            self._load()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: TextIO = open_private(path, "a" if resume else "w")
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


# --------------------------------------------------------------------------- dead letters


class DeadLetter(Closing):
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
                self._handle = open_private(self.path, "w")
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


# --------------------------------------------------------------------------- failures


def failure_from_error(exc: FhirError, *, stage: Stage | None = None) -> Failure:
    """A :class:`Failure` for ``exc``: its stage by kind, its locations as the push pipeline
    traced them (:mod:`fhir_plao.outbound`), and what a server error says of itself."""
    locations = exc.locations[:MAX_LOCATIONS]
    if isinstance(exc, InputError) and not locations and exc.location:
        locations = (Location(field=exc.location, message=exc.message),)
    kind: Stage = "response"
    if isinstance(exc, ValidationError):
        kind = "validation"
    elif isinstance(exc, ServerError):
        kind = "server"
    elif isinstance(exc, TransportError):
        kind = "transport"
    elif isinstance(exc, InputError):
        kind = "mapping"
    server = exc if isinstance(exc, ServerError) else None
    return Failure(
        stage or kind,
        str(exc),
        locations,
        status=server.status if server else None,
        hapi_code=server.hapi_code if server else None,
        parts_applied=exc.parts_applied,
        parts=exc.parts,
    )
