"""Bulk push: many cases, streamed, with bounded concurrency, a journal and dead letters.

The pipeline (one event loop, one pooled :class:`~fhir_plao.client.AsyncFhirClient`)::

    input ──read, parse, hash, --resume check──▶ queue (bounded) ──▶ N workers:
        to_fhir + validate + split (a worker thread) ──▶ transaction(s), one part after another
        ──▶ journal (confirmed) or dead letter (failed), summary, progress

* Memory stays flat in the number of cases: the input is read lazily, the queue holds at most
  ``concurrency`` cases and at most ``concurrency`` more are being worked on. What grows is
  the set of journal keys read for ``--resume`` (a hash per confirmed case).
* Mapping and validation are CPU work: they run in one worker thread at a time (under the GIL
  more threads gain nothing), so the event loop keeps sending and receiving meanwhile.
* Cases of the same patient (the same identifier: the same resource ids) are sent in input
  order, one after the other, never concurrently; a later line updates what an earlier one
  wrote.
* A case counts as confirmed once every part of its Bundle was accepted; the journal record is
  written and flushed then -- unless an attempt for its patient got no answer (a timeout, a
  lost response): such an attempt may still land late and overwrite a newer case of the
  patient. Those patients are verified at the end of the run, once ``settle`` seconds have
  passed since their last such attempt: the newest confirmed case's versions are read back and
  the case pushed again if they moved; only then are their journal records written (so
  ``--resume`` never skips a patient left unverified). A patient whose resources keep moving is
  dead-lettered (stage ``verify``) and the run fails.
* Parts are sent in order (see :func:`split_transaction`); when a part fails, the parts before
  it stay applied (they are PUTs of deterministic ids, so pushing the case again completes it)
  and the dead letter says how many were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc

from fhir_plao import jsonio
from fhir_plao._split import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from fhir_plao.bulk._progress import Progress, PushSummary
from fhir_plao.bulk._records import (
    MAX_LOCATIONS,
    MAX_TEXT,
    DeadLetter,
    Failure,
    Journal,
    Location,
    case_digest,
    failure_from_error,
    patient_key,
)
from fhir_plao.bulk._run import BulkRun
from fhir_plao.bulk._sources import CaseSource
from fhir_plao.errors import FhirError, InputError, ValidationError
from fhir_plao.outbound import ID_MODES, LIMITS, IdMode

if TYPE_CHECKING:
    from fhir_plao.case import Case
    from fhir_plao.client import PushResult
    from fhir_plao.client.aio import AsyncFhirClient
    from fhir_plao.outbound import Outbound

__all__ = ["CaseResult", "PushOptions", "push_cases"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushOptions:
    """How a bulk push runs.

    ``journal`` and ``dead_letter`` are the two record files (see :mod:`fhir_plao.bulk`);
    ``resume`` skips the cases the journal already holds (else the journal starts afresh);
    ``concurrency`` is the number of cases in flight; ``max_entries`` / ``max_bytes`` bound
    each transaction (None: no bound); ``validate`` checks each Bundle against R4 and the
    profiles before sending (a case that fails is not sent); ``ids``: ``client`` (our
    deterministic ids) or ``server`` (conditional updates on our identifiers; see
    :mod:`fhir_plao.outbound`); ``prune``: after each case, delete the patient's resources an
    earlier push wrote and the case no longer has; ``settle``: seconds to wait after an attempt
    of unknown fate before verifying its patient (None: the client's read timeout).
    """

    journal: Path
    dead_letter: Path
    concurrency: int = 4
    max_entries: int | None = DEFAULT_MAX_ENTRIES
    max_bytes: int | None = DEFAULT_MAX_BYTES
    validate: bool = True
    resume: bool = False
    ids: IdMode = "client"
    prune: bool = False
    settle: float | None = None

    def __post_init__(self) -> None:
        if self.ids not in ID_MODES:
            raise InputError(f"ids must be 'client' or 'server', not {self.ids!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise InputError(f"concurrency must be at least 1, not {self.concurrency!r}")
        if self.settle is not None and (
            isinstance(self.settle, bool)
            or not isinstance(self.settle, int | float)
            or not 0 <= self.settle <= 3600
        ):
            raise InputError(f"settle must be between 0 and 3600 seconds, not {self.settle!r}")
        for name in ("max_entries", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a positive whole number, not {value!r}")


@dataclass(frozen=True)
class CaseResult:
    """What happened to one case: ``status`` is ``created`` / ``updated`` (confirmed, by whether
    its Patient was new), ``skipped`` (already in the journal) or ``failed`` (``failure`` says
    why; the dead letter has it too)."""

    source: str
    patient: str | None
    status: Literal["created", "updated", "skipped", "failed"]
    resources_created: int = 0
    resources_updated: int = 0
    transactions: int = 0
    failure: Failure | None = None


async def push_cases(
    client: AsyncFhirClient,
    sources: Iterable[CaseSource],
    options: PushOptions,
    *,
    progress: Progress | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> PushSummary:
    """Push every case of ``sources``; returns the summary (failures are in the dead letter).

    Raises only for what stops the whole run: the server cannot be reached or is not FHIR R4
    (checked first, before any case is read), a record file cannot be written, the input cannot
    be listed -- or an exception from ``on_result``, which is called in the event loop after each
    case is recorded (tests use it to stop a run part-way, as a kill would).
    """
    await client.capabilities()
    with (
        Journal(options.journal, resume=options.resume) as journal,
        DeadLetter(options.dead_letter) as dead_letter,
    ):
        run = _BulkPush(client, options, journal, dead_letter, progress, on_result)
        return await run.run(sources)


@dataclass(frozen=True)
class _Origin:
    key: str
    path: Path
    line: int | None


@dataclass(eq=False)
class _Job:
    origin: _Origin
    case: Case
    patient: str
    digest: str
    after: anyio.Event | None
    done: anyio.Event


@dataclass(eq=False)
class _Unsettled:
    """A patient with an attempt of unknown fate: verified at the end of the run."""

    deadline: float
    newest: tuple[_Job, Outbound, PushResult, bool] | None = None  # ..., counted as created
    records: list[dict[str, Any]] = field(default_factory=list)  # journal records held back


class _Rejected(Exception):
    """Internal: preparing a case failed; carries the failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class _BulkPush(BulkRun[_Job, CaseResult, PushSummary]):
    def __init__(
        self,
        client: AsyncFhirClient,
        options: PushOptions,
        journal: Journal,
        dead_letter: DeadLetter,
        progress: Progress | None,
        on_result: Callable[[CaseResult], None] | None,
    ) -> None:
        super().__init__(
            client, options.concurrency, dead_letter, PushSummary(), progress, on_result
        )
        self.options = options
        self.journal = journal
        self._last_of_patient: dict[str, anyio.Event] = {}
        self._cpu = anyio.CapacityLimiter(1)
        self._unsettled: dict[str, _Unsettled] = {}
        self._settle = client.settle_default if options.settle is None else options.settle

    async def run(self, sources: Iterable[CaseSource]) -> PushSummary:
        async def feed(send: anyio.abc.ObjectSendStream[_Job]) -> None:
            for source in sources:
                job = self._admit(source)
                if job is not None:
                    await send.send(job)

        return await self.pool(feed, self._work, self._verify_unsettled)

    def finished(self) -> int:
        s = self.summary
        return s.confirmed + s.failed + s.skipped

    # ----------------------------------------------------------------- reading (event loop)

    def _admit(self, source: CaseSource) -> _Job | None:
        """Parse and hash a case; record it at once when it is unusable or already confirmed."""
        self.summary.read += 1
        origin = _Origin(source.key, source.path, source.line)
        if source.error is not None:
            self._failed(origin, None, Failure("read", source.error))
            return None
        try:
            data = jsonio.loads(source.raw)
        except jsonio.JsonError as exc:
            message = str(exc)
            if source.line is not None:  # one line of NDJSON: its column is what helps
                message = message.replace("at line 1, column", "at column")
            failure = Failure("json", f"{source.key}: {message}")
            self._failed(origin, None, failure, raw=source.raw)
            return None
        try:
            case = _parse_case(data, source)
        except _Rejected as rejected:
            self._failed(origin, _patient_of(data), rejected.failure, data=data, raw=source.raw)
            return None
        patient = patient_key(case)
        digest = case_digest(case)
        if self.options.resume and self.journal.confirmed(patient, digest):
            self.summary.skipped += 1
            self.report(CaseResult(origin.key, patient, "skipped"))
            return None
        done = anyio.Event()
        after = self._last_of_patient.get(patient)
        self._last_of_patient[patient] = done
        return _Job(origin, case, patient, digest, after, done)

    # ----------------------------------------------------------------- sending

    async def _work(self, job: _Job) -> None:
        try:
            await self._push(job)
        finally:
            job.done.set()
            if self._last_of_patient.get(job.patient) is job.done:
                del self._last_of_patient[job.patient]

    async def _push(self, job: _Job) -> None:
        if job.after is not None:
            await job.after.wait()  # an earlier case of this patient is still being sent
        try:
            outbound = await anyio.to_thread.run_sync(self._prepare, job.case, limiter=self._cpu)
        except _Rejected as rejected:
            self._failed(job.origin, job.patient, rejected.failure, case=job.case)
            return
        self.summary.sent += 1
        try:
            result = await self.client.push(outbound, prune=self.options.prune, settle=None)
        except FhirError as exc:
            self.summary.transactions += (exc.parts_applied or 0) + 1
            if exc.uncertain:
                self._unsure(job.patient)
            self._failed(job.origin, job.patient, failure_from_error(exc), case=job.case)
            return
        if result.uncertain:
            self._unsure(job.patient)
        self.summary.transactions += result.parts
        self.summary.resources_pruned += len(result.pruned)
        created = result.created
        updated = result.updated
        patient_created = next(
            (e.created for e in result.entries if (e.local_ref or "").startswith("Patient/")), None
        )
        if patient_created is None and result.entries and result.entries[0].field == "patient":
            patient_created = result.entries[0].created
        if patient_created is None:
            patient_created = created > 0
        record: dict[str, Any] = {
            "source": job.origin.key,
            "patient": job.patient,
            "digest": job.digest,
            "created": created,
            "updated": updated,
            "transactions": len(outbound.parts),
        }
        unsettled = self._unsettled.get(job.patient)
        if unsettled is None:
            self.journal.record(**record)
        else:  # held back until the patient is verified
            unsettled.records.append(record)
            unsettled.newest = (job, outbound, result, bool(patient_created))
        if patient_created:
            self.summary.created += 1
        else:
            self.summary.updated += 1
        self.summary.resources_created += created
        self.summary.resources_updated += updated
        log.debug("%s: %d created, %d updated", job.origin.key, created, updated)
        self.report(
            CaseResult(
                job.origin.key,
                job.patient,
                "created" if patient_created else "updated",
                created,
                updated,
                len(outbound.parts),
            )
        )

    # ----------------------------------------------------------------- late writes

    def _unsure(self, patient: str) -> None:
        """An attempt for ``patient`` got no answer: it may land late; verify the patient."""
        deadline = time.monotonic() + self._settle
        unsettled = self._unsettled.setdefault(patient, _Unsettled(deadline))
        unsettled.deadline = max(unsettled.deadline, deadline)

    async def _verify_unsettled(self) -> None:
        """At the end of the run: each patient with an attempt of unknown fate, once it had
        ``settle`` seconds to land, read back and pushed again if it moved (see module doc)."""
        if self._unsettled:
            log.info(
                "verifying %d patient(s) with an unanswered attempt, %g s after it",
                len(self._unsettled),
                self._settle,
            )
        for patient, unsettled in sorted(self._unsettled.items(), key=lambda i: i[1].deadline):
            await anyio.sleep(max(0.0, unsettled.deadline - time.monotonic()))
            if unsettled.newest is None:
                continue  # nothing confirmed: its cases are in the dead letter already
            job, outbound, result, created = unsettled.newest
            try:
                verified = await self.client.verify(outbound, result, prune=self.options.prune)
            except FhirError as exc:
                if created:
                    self.summary.created -= 1
                else:
                    self.summary.updated -= 1
                failure = failure_from_error(exc, stage="verify")
                self._failed(job.origin, patient, failure, case=job.case)
                continue
            self.summary.repushed += verified.repushed
            for record in unsettled.records:
                self.journal.record(**record)
        self._unsettled.clear()

    def _prepare(self, case: Case) -> Outbound:
        """The one outbound pipeline: to_fhir, validation and split (in a worker thread)."""
        from fhir_plao.outbound import prepare

        options = self.options
        try:
            return prepare(
                case,
                validate=options.validate,
                ids=options.ids,
                max_entries=options.max_entries,
                max_bytes=options.max_bytes,
            )
        except ValidationError as exc:
            raise _Rejected(failure_from_error(exc)) from None
        except FhirError as exc:
            split = isinstance(exc, InputError) and exc.location == LIMITS
            raise _Rejected(
                failure_from_error(exc, stage="split" if split else "mapping")
            ) from None
        except Exception as exc:  # a bug must not stop ten thousand other cases
            log.exception("preparing a case failed")
            raise _Rejected(Failure("mapping", f"internal error: {exc!r}")) from None

    # ----------------------------------------------------------------- recording

    def _failed(
        self,
        origin: _Origin,
        patient: str | None,
        failure: Failure,
        *,
        case: Case | None = None,
        data: Any = None,
        raw: bytes | None = None,
    ) -> None:
        """Dead-letter a case with what there is of it: the case, else its JSON, else its text."""
        record: dict[str, Any] = {
            "source": origin.key,
            "file": str(origin.path),
            "line": origin.line,
            "patient": patient,
            **failure.as_json(),
        }
        if case is not None:
            record["case"] = case.model_dump(mode="python", exclude_defaults=True)
        elif isinstance(data, dict):
            record["case"] = data
        elif raw is not None:
            record["text"] = _text(raw)
        self.dead_letter.write(record)
        self.summary.failed += 1
        log.info("%s: failed (%s): %s", origin.key, failure.stage, failure.reason)
        self.report(CaseResult(origin.key, patient, "failed", failure=failure))


def _parse_case(data: Any, source: CaseSource) -> Case:
    """The case in ``data`` (already parsed JSON), or :class:`_Rejected` naming the fields."""
    from pydantic import ValidationError as PydanticValidationError

    from fhir_plao.case import Case, case_from_json

    locations: tuple[Location, ...] = ()
    if isinstance(data, dict) and "resourceType" not in data:
        try:
            return Case.model_validate(data)
        except PydanticValidationError as exc:
            locations = tuple(
                Location(field=_field_path(err["loc"]) or None, message=_message(err))
                for err in exc.errors()[:MAX_LOCATIONS]
            )
    try:  # the message comes from the one rule that reads cases
        return case_from_json(source.raw, source=source.key)
    except InputError as exc:
        raise _Rejected(Failure("case", str(exc), locations)) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):
            out += f".{part}" if out else part
    return out


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field (misspelled?)"
    return str(error.get("msg", "")).removeprefix("Value error, ")


def _patient_of(data: Any) -> str | None:
    patient = data.get("patient") if isinstance(data, dict) else None
    if isinstance(patient, dict) and patient.get("identifier") is not None:
        return f"{patient.get('identifier_system')}|{patient.get('identifier')}"
    return None


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
