"""``pull``: patients' resources from a FHIR R4 server back into cases.

One patient (``--patient ID``): ``Patient/$everything`` where the server has it, else a read and
searches by patient; each resource kept once however many pages bring it (an ``_include``d
Medication, say); mapped back with ``from_fhir``; what could not be mapped reported on stderr
(``--strict``: exit 1). ``--expect CASE.json`` compares the pulled case with one and prints a
verdict; differences name each item by its id (``labs[lab-tsh]: only in the expected``).

Many (``--all``, ``--search``): NDJSON of cases in search order, bounded concurrency, a dead
letter for the patients that fail, and a summary (:mod:`fhir_plao.bulk`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_plao import jsonio
from fhir_plao._files import atomic_output
from fhir_plao.cli._exit import CannotRun, ExitCode
from fhir_plao.cli._io import (
    STDIN,
    add_format_option,
    add_progress_option,
    print_json,
    read_case,
    record_path,
    report_unmapped,
    say,
    whole_number,
    write_text,
)
from fhir_plao.cli._server import add_server_options, async_client, connected
from fhir_plao.errors import FhirError, InputError

if TYPE_CHECKING:
    from fhir_plao.bulk import PatientResult, PullSummary

__all__ = ["register"]

DEFAULT_CONCURRENCY = 4
_positive = whole_number(1)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pull = sub.add_parser(
        "pull",
        parents=[common],
        help="fetch patients' resources from a FHIR R4 server back into cases",
        description="Fetch a patient's resources (Patient/$everything, else searches), map "
        "them back to a case and write it; what could not be mapped is reported on stderr. "
        "With --all or --search, every matching patient, written as NDJSON (one case a line, "
        "in search order), with bounded concurrency, progress on a terminal, a dead-letter "
        "file for patients that fail, and a summary (exit 0 only when nothing failed).",
    )
    add_server_options(pull)
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
        default=STDIN,
        metavar="FILE",
        help="where to write the case (--all, --search: NDJSON); default - (standard output)",
    )
    pull.add_argument(
        "--expect",
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
    pull.add_argument(
        "--strict", action="store_true", help="exit 1 when anything could not be mapped"
    )
    add_format_option(pull, "output, unmapped report, verdict; --all/--search: the summary")
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
    add_progress_option(pulls)
    pull.set_defaults(func=run_pull)


def run_pull(args: argparse.Namespace) -> int:
    from fhir_plao.case import case_to_json
    from fhir_plao.compare import case_differences
    from fhir_plao.mapping import unmapped_report

    if args.patient is None:
        return _bulk(args)
    to_stdout = args.output == STDIN
    expected = read_case(args.expect) if args.expect is not None else None
    with connected(args) as fhir:
        result = fhir.pull(args.patient)
    text = case_to_json(result.case)
    unmapped = list(result.unmapped)
    differences = None
    if expected is not None:
        differences = case_differences(
            expected,
            result.case,
            ignore_order=True,
            exact_decimals=args.compare_decimals == "exact",
            names=("expected", "pulled"),
        )
    problem = bool(differences) or (args.strict and bool(unmapped))
    code = ExitCode.PROBLEM if problem else ExitCode.OK
    if args.format == "json":
        document: dict[str, Any] = {
            "ok": not problem,
            "patient": args.patient,
            "output": None if to_stdout else args.output,
            "unmapped": unmapped_report(unmapped),
        }
        if differences is not None:
            document["verdict"] = "different" if differences else "identical"
            document["differences"] = differences
        if to_stdout:
            document["case"] = jsonio.loads(text)
        else:
            write_text(args.output, text)
        print_json(document)
        return code
    write_text(args.output, text)
    report_unmapped(unmapped, prefix="fhir-plao pull")
    if not to_stdout:
        say(f"wrote {args.output}")
    if differences is None:
        return code
    if not differences:
        say("round-trip verdict: identical", to_stderr=to_stdout)
        return code
    say("round-trip verdict: different", to_stderr=to_stdout)
    for line in differences:
        say(f"  {line}", to_stderr=to_stdout)
    return code


# --------------------------------------------------------------------------- bulk


def _bulk(args: argparse.Namespace) -> int:
    import anyio

    from fhir_plao.bulk import Progress, PullOptions, patient_query, pull_cases

    if args.expect is not None:
        raise InputError("--expect works with --patient only", location="--expect")
    patient_query(args.search)  # criteria a bulk pull cannot use: said before connecting
    to_stdout = args.output == STDIN
    dead_letter: Path = args.dead_letter or (
        Path("pull.dead-letter.ndjson")
        if to_stdout
        else record_path(Path(args.output), "dead-letter")
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
    if args.format == "json" and to_stdout:
        raise InputError(
            "--format json with --all/--search needs -o FILE (stdout holds the cases)",
            location="--format",
        )
    with atomic_output(args.output) as out:

        async def pull_all() -> PullSummary:
            async with async_client(args) as fhir:
                try:  # per-patient failures go to the dead letter; what escapes stops the run
                    await fhir.capabilities()
                    return await pull_cases(
                        fhir,
                        out.write,
                        options,
                        criteria=args.search,
                        progress=progress,
                        on_result=report,
                    )
                except FhirError as exc:  # the server refused the search, or went away
                    raise CannotRun(exc) from None

        summary = anyio.run(pull_all)
    problem = not summary.ok or (args.strict and summary.unmapped > 0)
    if args.format == "json":
        document = {"ok": not problem, **dataclasses.asdict(summary), "output": args.output}
        document["dead_letter"] = str(dead_letter) if summary.failed else None
        print_json(document)
    else:
        say(f"fhir-plao pull: {summary.line()}", to_stderr=to_stdout)
        if not to_stdout:
            say(f"wrote {args.output}")
    if summary.failed:
        print(
            f"fhir-plao pull: {summary.failed} patient(s) failed; see {dead_letter}",
            file=sys.stderr,
        )
    return ExitCode.PROBLEM if problem else ExitCode.OK
