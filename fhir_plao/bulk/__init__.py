"""Many cases at once: bulk push and bulk pull over the async client.

::

    from fhir_plao.bulk import PushOptions, open_cases, push_cases
    from fhir_plao.client import AsyncFhirClient

    async with AsyncFhirClient(url) as fhir:
        options = PushOptions(journal=Path("run.journal.ndjson"),
                              dead_letter=Path("run.dead-letter.ndjson"), concurrency=4)
        summary = await push_cases(fhir, open_cases("cases.ndjson"), options)
        print(summary.line())

* :func:`open_cases`: a case file, a directory of ``*.json`` case files, or NDJSON (one case a
  line), read lazily (:mod:`fhir_plao.bulk._sources`).
* :func:`push_cases`: bounded concurrency, memory flat in the number of cases, per-patient
  order kept, a journal of confirmed cases for ``resume``, dead letters for failures
  (:mod:`fhir_plao.bulk._push`, record formats in :mod:`fhir_plao.bulk._records`).
* :func:`split_transaction`: a large Bundle cut into reference-closed transactions under an
  entry and a byte limit (:mod:`fhir_plao.bulk._split` explains how).
* :func:`pull_cases`: every Patient (or a Patient search) pulled back into cases, written as
  NDJSON in search order (:mod:`fhir_plao.bulk._pull`).

The command line is ``fhir-plao push`` and ``fhir-plao pull --all`` (``fhir_plao.cli.push``,
``fhir_plao.cli.pull``).
"""

from fhir_plao._split import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, split_transaction
from fhir_plao.bulk._progress import Progress, PullSummary, PushSummary
from fhir_plao.bulk._pull import PatientResult, PullOptions, patient_query, pull_cases
from fhir_plao.bulk._push import CaseResult, PushOptions, push_cases
from fhir_plao.bulk._records import (
    DeadLetter,
    Failure,
    Journal,
    Location,
    case_digest,
    patient_key,
)
from fhir_plao.bulk._sources import CaseInput, CaseSource, open_cases

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "CaseInput",
    "CaseResult",
    "CaseSource",
    "DeadLetter",
    "Failure",
    "Journal",
    "Location",
    "PatientResult",
    "Progress",
    "PullOptions",
    "PullSummary",
    "PushOptions",
    "PushSummary",
    "case_digest",
    "open_cases",
    "patient_key",
    "patient_query",
    "pull_cases",
    "push_cases",
    "split_transaction",
]
