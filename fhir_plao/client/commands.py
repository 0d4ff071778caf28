"""``fhir-plao push`` and ``fhir-plao pull``: the client's CLI subcommands.

``fhir_plao/cli.py`` calls :func:`register` with its subparsers; each subcommand sets
``func=handler`` where ``handler(args) -> int`` is the exit status:

* 0: done (for ``pull --expect``: the pulled case is identical to the expected one);
* 1: ``pull --expect``: the pulled case differs (the differences are printed); a bulk push or
  pull ran but some cases failed (they are in the dead-letter file) or the patient search was
  cut short;
* 2: an error (the message says what and where); nothing half-written is left behind.

Bulk mode (:mod:`fhir_plao.bulk`): ``push`` given a directory of case files or an NDJSON file
of cases, or any bulk option (``--concurrency``, ``--max-entries``, ``--max-bytes``,
``--dead-letter``, ``--journal``, ``--resume``); ``pull --all`` or ``pull --search``. Record
files by default sit beside the input (push) or the output (pull): ``NAME.dead-letter.ndjson``
and ``NAME.journal.ndjson``, where NAME is the input file's name without its suffix, or the
directory's name (for ``pull -o -``: ``pull.dead-letter.ndjson`` in the working directory).

Server, token and timeout come from the options, else from ``FHIR_SERVER_URL``, ``FHIR_TOKEN``,
``FHIR_TIMEOUT`` (seconds, for connecting and for each read).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_plao._files import atomic_output, write_text
from fhir_plao.cli import whole_number
from fhir_plao.client._core import Timeout
from fhir_plao.client.aio import AsyncFhirClient
from fhir_plao.client.auth import BearerAuth
from fhir_plao.client.sync import FhirClient
from fhir_plao.errors import FhirError, InputError, ValidationError

if TYPE_CHECKING:
    from fhir_plao.bulk import CaseInput, PatientResult, PullSummary, PushSummary
    from fhir_plao.case import Case

__all__ = ["register", "run_pull", "run_push"]

ENV_SERVER = "FHIR_SERVER_URL"
ENV_TOKEN = "FHIR_TOKEN"
ENV_TIMEOUT = "FHIR_TIMEOUT"

EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_SOME_FAILED = 1
EXIT_ERROR = 2

DEFAULT_CONCURRENCY = 4


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``push`` and ``pull`` subcommands."""
    from fhir_plao.bulk import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

    push = subparsers.add_parser(
        "push",
        help="send a case, a directory of cases or NDJSON of cases to a FHIR R4 server",
        description="Convert each case to FHIR, validate it, and send it as a transaction. "
        "Resource ids are derived from the case, so pushing again updates in place. For one "
        "case file, prints where the server keeps each resource. For a directory of *.json "
        "case files or an NDJSON file (one case a line), streams them with bounded "
        "concurrency, shows progress on a terminal, writes failed cases to a dead-letter "
        "file and confirmed ones to a journal, and ends with a summary (exit 0 only when "
        "nothing failed).",
    )
    push.add_argument(
        "case",
        metavar="INPUT",
        type=Path,
        help="a case file (CASE.json), a directory of case files, or NDJSON (one case a line)",
    )
    _server_options(push)
    push.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="send without validating the Bundle against the profiles first",
    )
    bulk = push.add_argument_group("bulk options (any of them turns a single case file bulk too)")
    bulk.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help=f"cases in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    bulk.add_argument(
        "--max-entries",
        type=_limit,
        metavar="N",
        help=f"split a case's Bundle into transactions of at most N entries (default "
        f"{DEFAULT_MAX_ENTRIES}; 0: no limit)",
    )
    bulk.add_argument(
        "--max-bytes",
        type=_limit,
        metavar="N",
        help=f"... and at most N bytes each (default {DEFAULT_MAX_BYTES}; 0: no limit)",
    )
    bulk.add_argument(
        "--dead-letter",
        type=Path,
        metavar="PATH",
        help="NDJSON of the cases that failed, with source, reason and field "
        "(default: NAME.dead-letter.ndjson beside the input; replaced each run)",
    )
    bulk.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="NDJSON of the cases the server confirmed (default: NAME.journal.ndjson beside "
        "the dead-letter file; started afresh unless --resume)",
    )
    bulk.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="skip the cases the journal holds (same patient, same content) and append to it",
    )
    push.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress line on stderr (it is shown only on a terminal anyway)",
    )
    push.set_defaults(func=run_push)

    pull = subparsers.add_parser(
        "pull",
        help="fetch patients' resources from a FHIR R4 server back into cases",
        description="Fetch a patient's resources (Patient/$everything, else searches), map "
        "them back to a case and write it; what could not be mapped is reported on stderr. "
        "With --all or --search, every matching patient, written as NDJSON (one case a line, "
        "in search order), with bounded concurrency, progress on a terminal, a dead-letter "
        "file for patients that fail, and a summary (exit 0 only when nothing failed).",
    )
    _server_options(pull)
    which = pull.add_mutually_exclusive_group(required=True)
    which.add_argument("--patient", metavar="ID", help="the server's Patient id")
    which.add_argument(
        "--all", action="store_true", help="every Patient on the server, as NDJSON of cases"
    )
    which.add_argument(
        "--search",
        metavar="CRITERIA",
        help="the Patients matching a search, e.g. 'Patient?identifier=SYSTEM|VALUE', as "
        "NDJSON of cases",
    )
    pull.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="CASE.json",
        help="where to write (with --all or --search: NDJSON, or - for standard output)",
    )
    pull.add_argument(
        "--expect",
        type=Path,
        metavar="CASE.json",
        help="with --patient: compare the pulled case with this one and print a round-trip "
        "verdict (exit 0 identical, 1 different); the order of list items is not compared, "
        "since a server returns resources in an order of its own",
    )
    pull.add_argument(
        "--compare-decimals",
        choices=("exact", "numeric"),
        default="exact",
        help="with --expect: 'exact' (default) counts 1.50 vs 1.5 as a difference; 'numeric' "
        "compares values only (for servers that do not keep decimal precision)",
    )
    pulls = pull.add_argument_group("bulk options (--all, --search)")
    pulls.add_argument(
        "--concurrency",
        type=_positive,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"patients pulled at once (default {DEFAULT_CONCURRENCY})",
    )
    pulls.add_argument(
        "--page-size",
        type=_positive,
        default=100,
        metavar="N",
        help="_count asked of the Patient search (default 100)",
    )
    pulls.add_argument(
        "--dead-letter",
        type=Path,
        metavar="PATH",
        help="NDJSON of the patients that failed (default: NAME.dead-letter.ndjson beside "
        "the output)",
    )
    pulls.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress line on stderr (it is shown only on a terminal anyway)",
    )
    pull.set_defaults(func=run_pull)


_positive = whole_number(1)
_limit = whole_number(0, " (no limit)")


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL", help=f"FHIR base URL (default: ${ENV_SERVER})")
    parser.add_argument(
        "--token",
        metavar="T",
        help=f"bearer token (default: ${ENV_TOKEN}; the variable keeps it out of `ps`)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        help=f"seconds to wait to connect and for each read (default: ${ENV_TIMEOUT} or 10/60)",
    )


# --------------------------------------------------------------------------- handlers


def run_push(args: argparse.Namespace) -> int:
    from fhir_plao.case import load_case

    try:
        cases = _bulk_input(args)
    except FhirError as exc:
        return _fail("push", exc)
    if cases is not None:
        return _run_bulk_push(args, cases)
    try:
        case = load_case(args.case)
        if args.validate:
            _validate(case)
        with _client(args) as fhir:
            server = fhir.base_url
            result = fhir.push(case)
    except FhirError as exc:
        return _fail("push", exc)
    for entry in result.entries:
        where = str(entry.server) if entry.server else "(no location given)"
        local = entry.local_ref or entry.local
        print(f"{local} -> {where}  [{entry.status}]")
    updated = len(result.entries) - result.created
    print(
        f"pushed {len(result.entries)} resources to {server}: "
        f"{result.created} created, {updated} updated"
    )
    if result.unresolved:
        print(
            f"warning: the server did not say where {len(result.unresolved)} entries went: "
            + ", ".join(result.unresolved),
            file=sys.stderr,
        )
    return EXIT_OK


def run_pull(args: argparse.Namespace) -> int:
    from fhir_plao.case import case_to_json, load_case
    from fhir_plao.compare import case_differences

    if args.patient is None:
        return _run_bulk_pull(args)
    try:
        expected = load_case(args.expect) if args.expect is not None else None
        with _client(args) as fhir:
            result = fhir.pull(args.patient)
        text = case_to_json(result.case)
        write_text(args.output, text)
    except FhirError as exc:
        return _fail("pull", exc)
    except OSError as exc:
        return _fail(
            "pull", InputError(f"cannot write: {exc.strerror}", location=str(exc.filename))
        )
    unmapped = list(result.unmapped)
    if unmapped:
        print(f"fhir-plao pull: {len(unmapped)} element(s) not mapped:", file=sys.stderr)
        for item in unmapped:
            print(f"  {item}", file=sys.stderr)
    print(f"wrote {args.output}")
    if expected is None:
        return EXIT_OK
    differences = case_differences(
        expected,
        result.case,
        ignore_order=True,
        exact_decimals=args.compare_decimals == "exact",
    )
    if not differences:
        print("round-trip verdict: identical")
        return EXIT_OK
    print("round-trip verdict: different")
    for line in differences:
        print(f"  {line}")
    return EXIT_DIFFERENT


# --------------------------------------------------------------------------- bulk

_BULK_OPTIONS = ("concurrency", "max_entries", "max_bytes", "dead_letter", "journal", "resume")


def _bulk_input(args: argparse.Namespace) -> CaseInput | None:
    """The bulk input, or None for the one-case push (a case file and no bulk option)."""
    from fhir_plao.bulk import open_cases

    path: Path = args.case
    if not path.exists():
        return None  # the one-case push says it cannot read it
    cases = open_cases(path)
    if cases.kind == "file" and all(getattr(args, n, None) is None for n in _BULK_OPTIONS):
        return None
    return cases


def _record_path(near: Path, kind: str) -> Path:
    """``NAME.<kind>.ndjson`` beside ``near`` (NAME: its name without suffix)."""
    resolved = near.resolve()
    name = resolved.name if resolved.is_dir() else resolved.stem
    return resolved.parent / f"{name or 'fhir-plao'}.{kind}.ndjson"


def _run_bulk_push(args: argparse.Namespace, cases: CaseInput) -> int:
    import anyio

    from fhir_plao.bulk import Progress, PushOptions, push_cases

    dead_letter: Path = args.dead_letter or _record_path(cases.path, "dead-letter")
    journal: Path = args.journal or dead_letter.with_name(_record_path(cases.path, "journal").name)
    progress = Progress(sys.stderr, label="push", enabled=None if args.progress else False)
    try:
        options = PushOptions(
            journal=journal,
            dead_letter=dead_letter,
            concurrency=args.concurrency or DEFAULT_CONCURRENCY,
            max_entries=_limit_or(args.max_entries, "max_entries"),
            max_bytes=_limit_or(args.max_bytes, "max_bytes"),
            validate=args.validate,
            resume=bool(args.resume),
        )
        if progress.enabled:
            progress.total = cases.count()

        async def push_all() -> PushSummary:
            async with _async_client(args) as fhir:
                return await push_cases(fhir, cases, options, progress=progress)

        summary = anyio.run(push_all)
    except FhirError as exc:
        return _fail("push", exc)
    print(f"fhir-plao push: {summary.line()}")
    if summary.failed:
        print(
            f"fhir-plao push: {summary.failed} case(s) failed; see {dead_letter}",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return EXIT_OK


def _limit_or(value: int | None, name: str) -> int | None:
    """An option's limit: its default when not given, None (no limit) for 0."""
    from fhir_plao.bulk import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

    if value is None:
        return DEFAULT_MAX_ENTRIES if name == "max_entries" else DEFAULT_MAX_BYTES
    return value or None


def _run_bulk_pull(args: argparse.Namespace) -> int:
    import anyio

    from fhir_plao.bulk import Progress, PullOptions, pull_cases

    if args.expect is not None:
        return _fail("pull", InputError("--expect works with --patient only"))
    to_stdout = str(args.output) == "-"
    dead_letter: Path = args.dead_letter or (
        Path("pull.dead-letter.ndjson") if to_stdout else _record_path(args.output, "dead-letter")
    )
    progress = Progress(
        sys.stderr, label="pull", noun="patients", enabled=None if args.progress else False
    )

    def report(result: PatientResult) -> None:
        if result.unmapped:
            progress.note(
                f"fhir-plao pull: Patient/{result.patient_id}: {len(result.unmapped)} "
                f"element(s) not mapped: "
                + "; ".join(str(u) for u in result.unmapped[:5])
                + (" ..." if len(result.unmapped) > 5 else "")
            )

    options = PullOptions(
        dead_letter=dead_letter, concurrency=args.concurrency, page_size=args.page_size
    )
    try:
        with atomic_output(args.output) as out:

            async def pull_all() -> PullSummary:
                async with _async_client(args) as fhir:
                    return await pull_cases(
                        fhir,
                        out.write,
                        options,
                        criteria=args.search,
                        progress=progress,
                        on_result=report,
                    )

            summary = anyio.run(pull_all)
    except FhirError as exc:
        return _fail("pull", exc)
    print(
        f"fhir-plao pull: {summary.line()}",
        file=sys.stderr if to_stdout else sys.stdout,
    )
    if not to_stdout:
        print(f"wrote {args.output}")
    if summary.failed:
        print(
            f"fhir-plao pull: {summary.failed} patient(s) failed; see {dead_letter}",
            file=sys.stderr,
        )
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


# --------------------------------------------------------------------------- helpers


def _connection(args: argparse.Namespace) -> tuple[str, BearerAuth | None, Timeout | float]:
    server = args.server or os.environ.get(ENV_SERVER)
    if not server:
        raise InputError(f"no FHIR server given: pass --server URL or set {ENV_SERVER}")
    token = args.token or os.environ.get(ENV_TOKEN)
    raw_timeout = args.timeout or os.environ.get(ENV_TIMEOUT)
    timeout: Timeout | float = Timeout()
    if raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise InputError(
                f"the timeout must be a number of seconds, not {raw_timeout!r}"
            ) from None
        if timeout <= 0:
            raise InputError(f"the timeout must be positive, not {raw_timeout!r}")
    return server, BearerAuth(token) if token else None, timeout


def _client(args: argparse.Namespace) -> FhirClient:
    server, auth, timeout = _connection(args)
    return FhirClient(server, auth=auth, timeout=timeout)


def _async_client(args: argparse.Namespace) -> AsyncFhirClient:
    server, auth, timeout = _connection(args)
    return AsyncFhirClient(server, auth=auth, timeout=timeout)


def _validate(case: Case) -> None:
    """Validate the case's Bundle against base R4 and the profiles; raise on any error."""
    from fhir_plao.mapping import to_fhir
    from fhir_plao.validation import ensure_valid, errors_in

    try:
        warnings = ensure_valid(to_fhir(case))
    except ValidationError as exc:
        errors = errors_in(exc.issues)
        listing = "\n".join(f"  {issue}" for issue in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise ValidationError(
            f"the case's FHIR Bundle has {len(errors)} validation error(s); nothing was sent "
            f"(--no-validate sends anyway):\n{listing}{more}",
            exc.issues,
        ) from None
    if warnings:
        print(f"fhir-plao push: validation: {len(warnings)} warning(s)", file=sys.stderr)


def _fail(command: str, exc: FhirError) -> int:
    print(f"fhir-plao {command}: error: {exc}", file=sys.stderr)
    return EXIT_ERROR
