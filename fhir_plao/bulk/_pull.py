"""Bulk pull: every matching Patient on a server, each mapped back to a case, as NDJSON.

The Patient search is read page after page (following ``next`` links) while up to
``concurrency`` patients are pulled at once (``Patient/$everything``, else per-type searches:
the client's ``pull``). Cases are written one per line **in the order the search returned the
patients**, whatever order the pulls finish in: at most ``2 x concurrency`` patients are between
being found and being written, so memory stays flat however many there are. A patient that
cannot be pulled or mapped goes to the dead letter; the others carry on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

import anyio
import anyio.abc

from fhir_plao.bulk._progress import Progress, PullSummary
from fhir_plao.bulk._records import DeadLetter, Failure, failure_from_error
from fhir_plao.bulk._run import BulkRun
from fhir_plao.errors import FhirError, InputError

if TYPE_CHECKING:
    from fhir_plao.client.aio import AsyncFhirClient
    from fhir_plao.mapping import Unmapped

__all__ = ["PatientResult", "PullOptions", "patient_query", "pull_cases"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullOptions:
    """How a bulk pull runs: ``concurrency`` patients pulled at once; ``page_size`` is the
    ``_count`` asked of the Patient search when the criteria do not set one."""

    dead_letter: Path
    concurrency: int = 4
    page_size: int = 100

    def __post_init__(self) -> None:
        for name in ("concurrency", "page_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be at least 1, not {value!r}")


@dataclass(frozen=True)
class PatientResult:
    """One patient: ``written`` (its case is in the output; ``unmapped`` lists what could not be
    carried into it) or ``failed`` (``failure`` says why)."""

    patient_id: str
    status: Literal["written", "failed"]
    unmapped: tuple[Unmapped, ...] = field(default=())
    failure: Failure | None = None


def patient_query(criteria: str | None, page_size: int = 100) -> str:
    """The Patient search query for ``criteria``: None (every Patient), ``Patient?name=value``,
    ``?name=value`` or ``name=value``. ``_count`` is added unless given."""
    text = (criteria or "").strip()
    rtype, sep, query = text.partition("?")
    if not sep:
        rtype, query = ("Patient", "") if text in ("", "Patient") else ("Patient", text)
    elif not rtype:
        rtype = "Patient"
    if rtype.rstrip("/") != "Patient":
        raise InputError(
            f"a bulk pull searches Patients: the criteria must be Patient?..., not {rtype}?..."
        )
    if query and "=" not in query:
        raise InputError(f"not search criteria (name=value&...): {criteria!r}")
    if "_count" not in {name for name, _ in parse_qsl(query, keep_blank_values=True)}:
        query = f"{query}&_count={page_size}" if query else f"_count={page_size}"
    return query


async def pull_cases(
    client: AsyncFhirClient,
    write: Callable[[str], object],
    options: PullOptions,
    *,
    criteria: str | None = None,
    progress: Progress | None = None,
    on_result: Callable[[PatientResult], None] | None = None,
) -> PullSummary:
    """Pull every Patient matching ``criteria`` (None: all) and ``write`` each case as one NDJSON
    line (``case_to_json`` without indent). Failures go to ``options.dead_letter``.

    Raises only for what stops the whole run: the server cannot be reached or is not FHIR R4,
    the Patient search itself fails, the dead letter cannot be written.
    """
    query = patient_query(criteria, options.page_size)
    await client.capabilities()
    with DeadLetter(options.dead_letter) as dead_letter, _each_warning_once():
        run = _BulkPull(client, write, options, dead_letter, progress, on_result)
        return await run.run(query)


class _OncePerRun(logging.Filter):
    """Lets each distinct message through once (the client warns per patient about what the
    server cannot search; a thousand patients would repeat it a thousand times)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@contextlib.contextmanager
def _each_warning_once() -> Iterator[None]:
    client_log = logging.getLogger("fhir_plao.client._core")
    once = _OncePerRun()
    client_log.addFilter(once)
    try:
        yield
    finally:
        client_log.removeFilter(once)


class _BulkPull(BulkRun[tuple[int, str], PatientResult, PullSummary]):
    def __init__(
        self,
        client: AsyncFhirClient,
        write: Callable[[str], object],
        options: PullOptions,
        dead_letter: DeadLetter,
        progress: Progress | None,
        on_result: Callable[[PatientResult], None] | None,
    ) -> None:
        super().__init__(
            client, options.concurrency, dead_letter, PullSummary(), progress, on_result
        )
        self.write = write
        self.options = options
        self._window = anyio.Semaphore(2 * options.concurrency)
        self._ready: dict[int, str | None] = {}  # finished out of order: seq -> line (None: failed)
        self._next = 0

    async def run(self, query: str) -> PullSummary:
        results = self.client.search("Patient", query)

        async def feed(send: anyio.abc.ObjectSendStream[tuple[int, str]]) -> None:
            seen: set[str] = set()
            patients = aiter(results)
            try:
                async for patient in patients:
                    pid = patient.get("id")
                    if patient.get("resourceType") != "Patient" or not isinstance(pid, str):
                        continue  # an _include'd resource, or no id to pull by
                    if pid in seen:
                        continue  # offset paging can show a patient twice
                    seen.add(pid)
                    if self.progress is not None:
                        self.progress.total = results.total
                    await self._window.acquire()
                    await send.send((self.summary.found, pid))
                    self.summary.found += 1
            finally:
                aclose = getattr(patients, "aclose", None)
                if aclose is not None:
                    await aclose()

        await self.pool(feed, self._work)
        # offset paging lists a patient twice, and skips another, when a patient already
        # read is written during the search: fewer distinct patients than the total says so
        missed = results.total is not None and self.summary.found < results.total
        self.summary.incomplete = results.truncated or missed
        return self.summary

    def finished(self) -> int:
        return self.summary.written + self.summary.failed

    async def _work(self, item: tuple[int, str]) -> None:
        from fhir_plao.case import case_to_json

        seq, pid = item
        try:
            result = await self.client.pull(pid)
            line = case_to_json(result.case, indent=None)
        except FhirError as exc:
            self._failed(seq, pid, failure_from_error(exc))
            return
        self._done(seq, line)
        unmapped = tuple(result.unmapped)
        if unmapped:
            self.summary.unmapped += 1
        self.report(PatientResult(pid, "written", unmapped))

    def _failed(self, seq: int, pid: str, failure: Failure) -> None:
        self.dead_letter.write(
            {"source": f"Patient/{pid}", "patient": f"Patient/{pid}", **failure.as_json()}
        )
        self.summary.failed += 1
        log.info("Patient/%s: failed (%s): %s", pid, failure.stage, failure.reason)
        self._done(seq, None)
        self.report(PatientResult(pid, "failed", failure=failure))

    def _done(self, seq: int, line: str | None) -> None:
        """Write what is next in search order; keep what finished early until its turn."""
        self._ready[seq] = line
        while self._next in self._ready:
            ready = self._ready.pop(self._next)
            if ready is not None:
                self.write(ready if ready.endswith("\n") else ready + "\n")
                self.summary.written += 1
            self._next += 1
            self._window.release()
