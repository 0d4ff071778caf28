"""``convert``, ``roundtrip`` and ``synth``: the commands that need no server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fhir_plao import jsonio
from fhir_plao.cli._exit import ExitCode
from fhir_plao.cli._io import (
    STDIN,
    add_format_option,
    parse_fhir,
    print_json,
    read_case,
    read_fhir,
    report_unmapped,
    whole_number,
    write_lines,
    write_text,
)
from fhir_plao.errors import FhirError, InputError

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="case JSON -> FHIR transaction Bundle, or FHIR -> case JSON (--to case)",
        description="Convert a case file to a FHIR R4 transaction Bundle, or (--to case) FHIR "
        "JSON -- a Bundle of any type, a single resource, or NDJSON -- to a case file. With "
        "--ndjson, a stream: one case or FHIR document a line in, one result a line out "
        "(flushed), each converted the way its content asks unless --to is given.",
    )
    convert.add_argument("input", help="input file, or - for standard input")
    convert.add_argument(
        "--to", choices=("fhir", "case"), default=None, help="output kind (default: fhir)"
    )
    convert.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    convert.add_argument(
        "--unmapped-report",
        metavar="FILE",
        help="with --to case: also write what could not be mapped as JSON "
        "(count, per resource type, every path and reason); - for stdout when -o is a file",
    )
    convert.add_argument(
        "--strict",
        action="store_true",
        help="with --to case: exit 1 when anything could not be mapped (the case is still written)",
    )
    convert.add_argument(
        "--ndjson",
        action="store_true",
        help="stream mode: read one case or FHIR document a line, write one result a line",
    )
    add_format_option(convert, "with --to case the unmapped report; with -o - the document too")
    convert.set_defaults(func=run_convert)

    roundtrip = sub.add_parser(
        "roundtrip",
        parents=[common],
        help="case -> FHIR -> case; print any difference (exit 0 only when none)",
    )
    roundtrip.add_argument("input", help="case file, or - for standard input")
    roundtrip.set_defaults(func=run_roundtrip)

    synth = sub.add_parser(
        "synth",
        parents=[common],
        help="write N synthetic PLAO / osteoporosis cases as NDJSON (for load tests)",
        description="Write N made-up, varied cases (one JSON case per line). The same seed "
        "gives the same cases. Never real patients.",
    )
    synth.add_argument("count", type=whole_number(0), metavar="N", help="how many cases")
    synth.add_argument("--seed", type=int, default=0, help="series seed (default 0)")
    synth.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    synth.set_defaults(func=run_synth)


# --------------------------------------------------------------------------- convert


def run_convert(args: argparse.Namespace) -> int:
    if args.unmapped_report is not None and args.to != "case":
        raise InputError("--unmapped-report goes with --to case", location="arguments")
    if args.strict and args.to != "case" and not args.ndjson:
        raise InputError("--strict goes with --to case", location="arguments")
    if args.ndjson:
        if args.unmapped_report is not None:
            raise InputError(
                "--unmapped-report is for one document; --ndjson writes each line's report "
                "with --format json",
                location="arguments",
            )
        return _stream(args)
    if args.to != "case":
        return _case_to_bundle(args)
    return _fhir_to_case(args)


def _valid_bundle(case: Any) -> dict[str, Any]:
    """The case's Bundle through the one outbound pipeline: mapped once and validated (an
    invalid Bundle raises, traced to the case field; nothing is written); never split."""
    from fhir_plao.outbound import prepare

    outbound = prepare(case, max_entries=None, max_bytes=None)
    (bundle,) = outbound.bundles
    return bundle


def _case_to_bundle(args: argparse.Namespace) -> int:
    bundle = _valid_bundle(read_case(args.input))
    text = jsonio.dumps(bundle, indent=2) + "\n"
    if args.format == "json":
        result: dict[str, Any] = {"ok": True, "output": _output_name(args.output)}
        result["resources"] = len(bundle["entry"])
        if args.output == STDIN:
            result["bundle"] = bundle
        else:
            write_text(args.output, text)
        print_json(result)
        return ExitCode.OK
    write_text(args.output, text)
    return ExitCode.OK


def _fhir_to_case(args: argparse.Namespace) -> int:
    from fhir_plao.case import case_to_json
    from fhir_plao.mapping import from_fhir, unmapped_report

    report_to = args.unmapped_report
    if report_to is not None and (
        report_to == args.output or (report_to == STDIN and args.format == "json")
    ):
        raise InputError(
            "--unmapped-report needs a file of its own (not the output); with --format json the "
            "report is in the result",
            location="arguments",
        )
    if report_to == STDIN and args.output == STDIN:
        raise InputError(
            "--unmapped-report - needs -o FILE (stdout holds the case)", location="arguments"
        )
    result = from_fhir(read_fhir(args.input))
    text = case_to_json(result.case)
    report = unmapped_report(result.unmapped)
    code = ExitCode.PROBLEM if args.strict and result.unmapped else ExitCode.OK
    if args.format == "json":
        document: dict[str, Any] = {
            "ok": code == ExitCode.OK,
            "output": _output_name(args.output),
            "unmapped": report,
        }
        if args.output == STDIN:
            document["case"] = jsonio.loads(text)
        else:
            write_text(args.output, text)
        if report_to is not None:
            write_text(report_to, jsonio.dumps(report, indent=2) + "\n")
        print_json(document)
        return code
    write_text(args.output, text)
    if report_to is not None:
        write_text(report_to, jsonio.dumps(report, indent=2) + "\n")
    report_unmapped(result.unmapped)
    return code


def _output_name(path: str) -> str | None:
    return None if path == STDIN else path


def _stream(args: argparse.Namespace) -> int:
    """One result a line, flushed; a line that fails gives an error line and exit 1 at the end.

    Text format: the converted document (compact), or ``{"error": ..., "line": N}``. JSON
    format: ``{"line": N, "ok": true, "bundle"|"case": ..., "unmapped": ...}`` or
    ``{"line": N, "ok": false, "error": ...}``.
    """
    if args.output != STDIN:
        raise InputError("--ndjson writes to standard output (-o -)", location="--output")
    source = sys.stdin.buffer if args.input == STDIN else _open(args.input)
    failed = 0
    strict_failed = 0
    try:
        for number, raw in enumerate(source, start=1):
            if not raw.strip():
                continue
            try:
                result, unmapped = _convert_line(raw, args.to, number)
            except FhirError as exc:
                failed += 1
                line: dict[str, Any] = {"line": number, "ok": False, "error": str(exc)}
                print(f"fhir-plao convert: {exc}", file=sys.stderr)
                sys.stdout.write(jsonio.dumps(line) + "\n")
                sys.stdout.flush()
                continue
            if args.strict and unmapped:
                strict_failed += 1
            if args.format == "json":
                key = "bundle" if result.get("resourceType") == "Bundle" else "case"
                document: dict[str, Any] = {"line": number, "ok": True, key: result}
                if unmapped is not None:
                    document["unmapped"] = unmapped
                sys.stdout.write(jsonio.dumps(document) + "\n")
            else:
                sys.stdout.write(jsonio.dumps(result) + "\n")
                if unmapped and unmapped["count"]:
                    print(
                        f"fhir-plao convert: line {number}: {unmapped['count']} element(s) "
                        f"not mapped",
                        file=sys.stderr,
                    )
            sys.stdout.flush()
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return ExitCode.PROBLEM if failed or strict_failed else ExitCode.OK


def _open(path: str) -> Any:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=path) from None


def _convert_line(raw: bytes, to: str | None, number: int) -> tuple[dict[str, Any], Any]:
    """One line converted: (the result document, the unmapped report or None)."""
    from fhir_plao.case import Case, case_to_json
    from fhir_plao.mapping import from_fhir, unmapped_report

    where = f"line {number}"
    try:
        data = jsonio.loads(raw)
    except jsonio.JsonError as exc:
        raise InputError(str(exc).replace("line 1, column", "column"), location=where) from None
    is_fhir = isinstance(data, dict) and "resourceType" in data
    if to == "case" or (to is None and is_fhir):
        result = from_fhir(parse_fhir(raw, where))
        return jsonio.loads(case_to_json(result.case, indent=None)), unmapped_report(
            result.unmapped
        )
    from fhir_plao.case import case_from_json

    case: Case = case_from_json(raw, source=where)
    return _valid_bundle(case), None


# --------------------------------------------------------------------------- roundtrip, synth


def run_roundtrip(args: argparse.Namespace) -> int:
    from fhir_plao.compare import case_differences
    from fhir_plao.mapping import from_fhir, to_fhir

    case = read_case(args.input)
    bundle = to_fhir(case)
    # through JSON text, as a receiving system would see it
    result = from_fhir(jsonio.loads(jsonio.dumps(bundle)))
    differences = case_differences(case, result.case, names=("original", "round trip"))
    report_unmapped(result.unmapped)
    entries = len(bundle["entry"])
    if differences:
        for line in differences:
            print(line)
        print(f"round trip: {len(differences)} difference(s) over {entries} resources")
        return ExitCode.PROBLEM
    print(f"round trip: identical ({entries} resources)")
    return ExitCode.OK


def run_synth(args: argparse.Namespace) -> int:
    from fhir_plao.case import case_to_json
    from fhir_plao.synth import synth_cases

    lines = (case_to_json(case, indent=None) for case in synth_cases(args.count, args.seed))
    write_lines(args.output, lines)
    return ExitCode.OK
