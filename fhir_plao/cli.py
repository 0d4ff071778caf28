"""The ``fhir-plao`` command.

Exit codes: 0 success; 1 the job ran and found a problem (differences, validation errors,
server errors); 2 unusable input or arguments. An output file is written only on success,
atomically (a temporary file renamed into place), so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao._files import write_lines, write_text
from fhir_plao.case import Case, case_from_json, case_to_json, load_case
from fhir_plao.compare import case_differences
from fhir_plao.errors import FhirError, InputError, ValidatorUnavailable

__all__ = ["main", "read_fhir_file", "whole_number"]

#: modules that add subcommands with a ``register(subparsers)`` function
_COMMAND_MODULES = ("fhir_plao.client.commands", "fhir_plao.validation")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except (InputError, ValidatorUnavailable) as exc:  # the job could not run
        print(f"fhir-plao: error: {exc}", file=sys.stderr)
        return 2
    except FhirError as exc:
        print(f"fhir-plao: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-plao",
        description="Convert PLAO / osteoporosis cases to FHIR R4 and back, and move them "
        "to and from FHIR servers.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    convert = sub.add_parser(
        "convert",
        help="case JSON -> FHIR transaction Bundle, or FHIR -> case JSON (--to case)",
        description="Convert a case file to a FHIR R4 transaction Bundle, or (--to case) FHIR "
        "JSON -- a Bundle of any type, a single resource, or NDJSON -- to a case file.",
    )
    convert.add_argument("input", help="input file, or - for standard input")
    convert.add_argument("--to", choices=("fhir", "case"), default="fhir", help="output kind")
    convert.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    convert.add_argument(
        "--unmapped-report",
        metavar="FILE",
        help="with --to case: also write what could not be mapped as JSON "
        "(count, per resource type, every path and reason)",
    )
    convert.set_defaults(func=_convert)

    roundtrip = sub.add_parser(
        "roundtrip",
        help="case -> FHIR -> case; print any difference (exit 0 only when none)",
    )
    roundtrip.add_argument("input", help="case file, or - for standard input")
    roundtrip.set_defaults(func=_roundtrip)

    synth = sub.add_parser(
        "synth",
        help="write N synthetic PLAO / osteoporosis cases as NDJSON (for load tests)",
        description="Write N made-up, varied cases (one JSON case per line). The same seed "
        "gives the same cases. Never real patients.",
    )
    synth.add_argument("count", type=whole_number(0), metavar="N", help="how many cases")
    synth.add_argument("--seed", type=int, default=0, help="series seed (default 0)")
    synth.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    synth.set_defaults(func=_synth)

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


# --------------------------------------------------------------------------- commands


def _convert(args: argparse.Namespace) -> int:
    if args.unmapped_report is not None and args.to != "case":
        raise InputError("--unmapped-report goes with --to case", location="arguments")
    if args.to == "fhir":
        from fhir_plao.mapping import to_fhir

        case = _read_case(args.input)
        write_text(args.output, jsonio.dumps(to_fhir(case), indent=2) + "\n")
        return 0
    from fhir_plao.mapping import from_fhir, unmapped_report

    resources = read_fhir_file(args.input)
    result = from_fhir(resources)
    text = case_to_json(result.case)
    report = None
    if args.unmapped_report is not None:
        if args.unmapped_report in ("-", args.output):
            raise InputError(
                "--unmapped-report needs a file of its own (not - or the output)",
                location="arguments",
            )
        report = jsonio.dumps(unmapped_report(result.unmapped), indent=2) + "\n"
    write_text(args.output, text)
    if report is not None:
        write_text(args.unmapped_report, report)
    _report_unmapped(result.unmapped)
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    from fhir_plao.mapping import from_fhir, to_fhir

    case = _read_case(args.input)
    bundle = to_fhir(case)
    # through JSON text, as a receiving system would see it
    result = from_fhir(jsonio.loads(jsonio.dumps(bundle)))
    differences = case_differences(case, result.case)
    _report_unmapped(result.unmapped)
    entries = len(bundle["entry"])
    if differences:
        for line in differences:
            print(line)
        print(f"round trip: {len(differences)} difference(s) over {entries} resources")
        return 1
    print(f"round trip: identical ({entries} resources)")
    return 0


def whole_number(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (``what`` says what 0 means)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum}{what} or more, not {value}")
        return value

    return parse


def _synth(args: argparse.Namespace) -> int:
    from fhir_plao.synth import synth_cases

    lines = (case_to_json(case, indent=None) for case in synth_cases(args.count, args.seed))
    write_lines(args.output, lines)
    return 0


# --------------------------------------------------------------------------- input & output


def _read_text(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=path) from None


def _read_case(path: str) -> Case:
    if path == "-":
        try:
            return case_from_json(_read_text(path), source="<stdin>")
        except jsonio.JsonError as exc:
            raise InputError(str(exc), location="<stdin>") from None
    return load_case(path)


def read_fhir_file(path: str) -> list[Any]:
    """A FHIR JSON file (resource or Bundle) or NDJSON (one resource per line) as documents."""
    raw = _read_text(path)
    where = "<stdin>" if path == "-" else path
    try:
        data = jsonio.loads(raw)
    except jsonio.JsonError as exc:
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise InputError(str(exc), location=where) from None
        docs = []
        for n, line in enumerate(lines, start=1):
            try:
                docs.append(jsonio.loads(line))
            except jsonio.JsonError as line_exc:
                raise InputError(f"NDJSON line {n}: {line_exc}", location=where) from None
        data = docs
    documents = data if isinstance(data, list) else [data]
    for n, doc in enumerate(documents):
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            at = f" (document {n + 1})" if len(documents) > 1 else ""
            raise InputError(f"not FHIR JSON{at}: no resourceType", location=where)
    return documents


def _report_unmapped(unmapped: Iterable[object]) -> None:
    items = list(unmapped)
    if not items:
        return
    print(f"fhir-plao: {len(items)} element(s) not mapped:", file=sys.stderr)
    for item in items:
        print(f"  {item}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
