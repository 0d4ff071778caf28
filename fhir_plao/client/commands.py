"""``fhir-plao push`` and ``fhir-plao pull``: the client's CLI subcommands.

``fhir_plao/cli.py`` calls :func:`register` with its subparsers; each subcommand sets
``func=handler`` where ``handler(args) -> int`` is the exit status:

* 0: done (for ``pull --expect``: the pulled case is identical to the expected one);
* 1: ``pull --expect``: the pulled case differs (the differences are printed);
* 2: an error (the message says what and where); nothing half-written is left behind.

Server, token and timeout come from the options, else from ``FHIR_SERVER_URL``, ``FHIR_TOKEN``,
``FHIR_TIMEOUT`` (seconds, for connecting and for each read).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_plao.client._core import Timeout
from fhir_plao.client.auth import BearerAuth
from fhir_plao.client.sync import FhirClient
from fhir_plao.errors import FhirError, InputError, ValidationError

if TYPE_CHECKING:
    from fhir_plao.case import Case

__all__ = ["register", "run_pull", "run_push"]

ENV_SERVER = "FHIR_SERVER_URL"
ENV_TOKEN = "FHIR_TOKEN"
ENV_TIMEOUT = "FHIR_TIMEOUT"

EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``push`` and ``pull`` subcommands."""
    push = subparsers.add_parser(
        "push",
        help="send a case to a FHIR R4 server as one transaction",
        description="Convert CASE.json to FHIR, validate it, and send it as one transaction. "
        "Resource ids are derived from the case, so pushing again updates in place. Prints "
        "where the server keeps each resource.",
    )
    push.add_argument("case", metavar="CASE.json", type=Path, help="the case file")
    _server_options(push)
    push.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="send without validating the Bundle against the profiles first",
    )
    push.set_defaults(func=run_push)

    pull = subparsers.add_parser(
        "pull",
        help="fetch a patient's resources from a FHIR R4 server back into a case",
        description="Fetch the patient's resources (Patient/$everything, else searches), map "
        "them back to a case and write it. What could not be mapped is reported on stderr.",
    )
    _server_options(pull)
    pull.add_argument("--patient", required=True, metavar="ID", help="the server's Patient id")
    pull.add_argument(
        "-o", "--output", required=True, type=Path, metavar="CASE.json", help="where to write"
    )
    pull.add_argument(
        "--expect",
        type=Path,
        metavar="CASE.json",
        help="compare the pulled case with this one and print a round-trip verdict "
        "(exit 0 identical, 1 different); the order of list items is not compared, since "
        "a server returns resources in an order of its own",
    )
    pull.add_argument(
        "--compare-decimals",
        choices=("exact", "numeric"),
        default="exact",
        help="with --expect: 'exact' (default) counts 1.50 vs 1.5 as a difference; 'numeric' "
        "compares values only (for servers that do not keep decimal precision)",
    )
    pull.set_defaults(func=run_pull)


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

    try:
        expected = load_case(args.expect) if args.expect is not None else None
        with _client(args) as fhir:
            result = fhir.pull(args.patient)
        text = case_to_json(result.case)
        _write_atomically(args.output, text)
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


# --------------------------------------------------------------------------- helpers


def _client(args: argparse.Namespace) -> FhirClient:
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
    return FhirClient(server, auth=BearerAuth(token) if token else None, timeout=timeout)


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


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
