"""``fhir-plao validate FILE``: validate a resource, a Bundle or NDJSON and print the issues.

Output: one issue a line, ``severity path: message`` (NDJSON: ``severity line N path: message``),
then a summary line. Exit 0 when there is no error (warnings allowed), 1 on any error, 2 when the
input cannot be read or is not FHIR JSON / NDJSON (``InputError``, turned into 2 by the CLI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao.errors import InputError

__all__ = ["add_validate_command", "run_validate"]


def add_validate_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="validate a FHIR resource, Bundle or NDJSON against R4 and the PLAO profiles",
        description="Validate FHIR R4 JSON -- a resource, a Bundle, or NDJSON (one resource a "
        "line) -- against base R4 and the fhir-plao profiles its meta.profile names. Prints one "
        "issue a line (severity path: message) and a summary; exits 1 on any error, 2 when the "
        "input cannot be read.",
    )
    parser.add_argument("file", help="input file, or - for standard input")
    parser.add_argument(
        "--errors-only", action="store_true", help="print errors only (warnings still counted)"
    )
    parser.add_argument(
        "--engine",
        choices=("plao", "hapi"),
        default="plao",
        help="plao (default): fhir-plao's own validator; hapi: HAPI FHIR's instance validator "
        "(the HL7 engine; needs Java 17+ and a fhir-plao checkout, whose servers/hapi it "
        "builds with Maven on first use), with the same profiles and the same issue paths",
    )
    parser.add_argument(
        "--format",
        choices=("text", "outcome"),
        default="text",
        help="text (default): one issue a line; outcome: a FHIR OperationOutcome as JSON",
    )
    parser.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from fhir_plao.validation import (
        count_resources,
        issues_to_operation_outcome,
        read_documents,
        validate_parsed,
    )

    if args.file == "-":
        raw = sys.stdin.buffer.read()
        source = "<stdin>"
    else:
        try:
            raw = Path(args.file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", location=args.file) from None
        source = args.file
    docs = read_documents(raw, source=source)  # parsed once, for either engine
    if args.engine == "hapi":
        from fhir_plao._validation.hapi import validate_with_hapi

        issues = validate_parsed(docs, check=validate_with_hapi)
    else:
        issues = validate_parsed(docs)
    errors = sum(1 for i in issues if i.severity == "error")
    warnings = sum(1 for i in issues if i.severity == "warning")
    if args.format == "outcome":
        sys.stdout.write(jsonio.dumps(issues_to_operation_outcome(issues), indent=2) + "\n")
    else:
        for issue in issues:
            if args.errors_only and issue.severity != "error":
                continue
            print(issue)
        resources = count_resources(docs)
        verdict = "invalid" if errors else "valid"
        print(
            f"{source}: {verdict}: {errors} error(s), {warnings} warning(s) "
            f"in {resources} resource(s)"
        )
    return 1 if errors else 0
