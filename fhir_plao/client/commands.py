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
import importlib
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao.client._core import Timeout
from fhir_plao.client.auth import BearerAuth
from fhir_plao.client.sync import FhirClient
from fhir_plao.errors import FhirError, InputError, ValidationError

__all__ = ["case_differences", "register", "run_pull", "run_push"]

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
        "(exit 0 identical, 1 different)",
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
    print(f"unmapped: {len(unmapped) or 'none'}", file=sys.stderr)
    for path, reason in unmapped:
        print(f"  {path}: {reason}", file=sys.stderr)
    print(f"wrote {args.output}")
    if expected is None:
        return EXIT_OK
    differences = case_differences(
        expected, result.case, numeric=args.compare_decimals == "numeric"
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


def _validate(case: Any) -> None:
    """Validate the case's Bundle with ``fhir_plao.validation.validate`` before sending it.

    Contract: ``validate(resource) -> Sequence[issue]``, each issue with a ``severity``
    ("fatal", "error", "warning", "information") and a readable ``str()``.
    """
    try:
        validation = importlib.import_module("fhir_plao.validation")
    except ModuleNotFoundError as exc:
        if exc.name != "fhir_plao.validation":
            raise
        raise InputError(
            "validation is not available in this installation; push with --no-validate "
            "to send without it"
        ) from None
    bundle = importlib.import_module("fhir_plao.mapping").to_fhir(case)
    issues = list(validation.validate(bundle))
    errors = [i for i in issues if str(getattr(i, "severity", "error")) in ("fatal", "error")]
    if errors:
        listing = "\n".join(f"  {issue}" for issue in errors)
        raise ValidationError(
            f"the case's FHIR Bundle has {len(errors)} validation error(s); nothing was sent "
            f"(--no-validate sends anyway):\n{listing}",
            errors,
        )


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


# --------------------------------------------------------------------------- comparing cases

_MISSING = object()


def case_differences(expected: Any, actual: Any, *, numeric: bool = False) -> list[str]:
    """Where two cases differ, one line per difference (``comment`` is ignored: it is a note
    about the file and is not sent to FHIR). Decimals are compared digit for digit unless
    ``numeric``."""
    out: list[str] = []
    _diff(_plain(expected), _plain(actual), "", out, numeric)
    return out


def _plain(case: Any) -> Any:
    return case.model_dump(mode="python", exclude={"comment"})


def _diff(a: Any, b: Any, path: str, out: list[str], numeric: bool) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            _diff(a.get(key, _MISSING), b.get(key, _MISSING), _join(path, str(key)), out, numeric)
        return
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for i in range(max(len(a), len(b))):
            _diff(
                a[i] if i < len(a) else _MISSING,
                b[i] if i < len(b) else _MISSING,
                f"{path}[{i}]",
                out,
                numeric,
            )
        return
    if not _same(a, b, numeric):
        out.append(f"{path or '(case)'}: expected {_show(a)}, pulled {_show(b)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any, numeric: bool) -> bool:
    if numeric and _is_number(a) and _is_number(b):
        return Decimal(str(a)) == Decimal(str(b))
    if a is _MISSING or b is _MISSING:
        return a is b
    return _text(a) == _text(b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    try:
        return jsonio.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    text = _text(value)
    return text if len(text) <= 80 else text[:79] + "…"
