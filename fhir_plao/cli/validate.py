"""``validate``: a resource, a Bundle or NDJSON checked against R4 and the PLAO profiles.

Output: one issue a line, ``severity path: message`` (NDJSON: ``severity line N path: message``),
then a summary line; ``--format json`` prints a FHIR ``OperationOutcome`` instead. Exit 0 when
there is no error (warnings allowed), 1 on any error, 2 when the input cannot be read or is not
FHIR JSON / NDJSON, or the HAPI engine cannot run.
"""

from __future__ import annotations

import argparse
from typing import Any

from fhir_plao.cli._exit import ExitCode
from fhir_plao.cli._io import print_json, read_bytes, say, where

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "validate",
        parents=[common],
        help="validate a FHIR resource, Bundle or NDJSON against R4 and the PLAO profiles",
        description="Validate FHIR R4 JSON -- a resource, a Bundle, or NDJSON (one resource a "
        "line) -- against base R4 and the fhir-plao profiles its meta.profile names. Prints one "
        "issue a line (severity path: message) and a summary, or with --format json an "
        "OperationOutcome.",
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
        choices=("text", "json", "outcome"),
        default="text",
        help="text (default): one issue a line; json (or outcome): a FHIR OperationOutcome",
    )
    parser.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from fhir_plao.validation import (
        count_resources,
        issues_to_operation_outcome,
        read_documents,
        validate_parsed,
    )

    source = where(args.file)
    docs = read_documents(read_bytes(args.file), source=source)  # parsed once, for either engine
    if args.engine == "hapi":
        from fhir_plao._validation.hapi import validate_with_hapi

        issues = validate_parsed(docs, check=validate_with_hapi)
    else:
        issues = validate_parsed(docs)
    errors = sum(1 for i in issues if i.severity == "error")
    warnings = sum(1 for i in issues if i.severity == "warning")
    if args.format in ("json", "outcome"):
        print_json(issues_to_operation_outcome(issues))
    else:
        for issue in issues:
            if args.errors_only and issue.severity != "error":
                continue
            say(str(issue))
        verdict = "invalid" if errors else "valid"
        say(
            f"{source}: {verdict}: {errors} error(s), {warnings} warning(s) "
            f"in {count_resources(docs)} resource(s)"
        )
    return ExitCode.PROBLEM if errors else ExitCode.OK
