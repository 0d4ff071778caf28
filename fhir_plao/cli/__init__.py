"""The ``fhir-plao`` command: one module per command group, imported here by name.

* :mod:`~fhir_plao.cli.convert`: ``convert`` (and its ``--ndjson`` stream), ``roundtrip``,
  ``synth``;
* :mod:`~fhir_plao.cli.validate`: ``validate``;
* :mod:`~fhir_plao.cli.push`: ``push`` (one case, FHIR, bulk);
* :mod:`~fhir_plao.cli.pull`: ``pull`` (one patient, bulk);
* :mod:`~fhir_plao.cli.plot`: ``plot``.

Every command: ``-`` for standard input and output; messages on stderr whenever stdout carries
the payload; one exit-code table (:mod:`fhir_plao.cli._exit`); a one-line error, never a
traceback; an output file written only on success, atomically. Global options (before or after
the command): ``--version``, ``-v`` / ``-q``, ``--log-format json``. Each module imports what it
needs when its command runs, so ``fhir-plao convert`` does not load the client.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fhir_plao.cli import convert, plot, pull, push, validate
from fhir_plao.cli._exit import EXIT_CODES_HELP, CannotRun, ExitCode, code_for
from fhir_plao.cli._io import configure_logging, error_document, print_json
from fhir_plao.errors import FhirError, ValidationError

__all__ = ["ExitCode", "build_parser", "main"]

_COMMAND_MODULES = (convert, validate, push, pull, plot)

log = logging.getLogger("fhir_plao.cli")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("fhir-plao")
    except PackageNotFoundError:  # a checkout that was not installed
        return "unknown"


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """-v / -q / --log-format, accepted before the command and after it."""
    common = argparse.ArgumentParser(add_help=False)
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    group = common.add_argument_group("logging (on stderr; never patient data or credentials)")
    group.add_argument(
        "-v", "--verbose", action="count", default=default(0), help="more: -v info, -vv debug"
    )
    group.add_argument("-q", "--quiet", action="count", default=default(0), help="errors only")
    group.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default("text"),
        help="text (default) or json: one JSON object a line",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-plao",
        description="Convert PLAO / osteoporosis cases to FHIR R4 and back, validate them, and "
        "move them to and from FHIR servers.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"fhir-plao {version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    common = _common_options(top=False)
    for module in _COMMAND_MODULES:
        module.register(sub, common)
    for command in sub.choices.values():
        command.epilog = EXIT_CODES_HELP
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or bad arguments (2)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.CANNOT_RUN
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.CANNOT_RUN
    configure_logging(args.verbose - args.quiet, args.log_format)
    command = argv_command(args)
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        return ExitCode.PROBLEM
    except (FhirError, CannotRun) as exc:
        return _failed(args, command, exc)
    except Exception as exc:  # a bug: one line, the traceback only with -vv
        log.debug("internal error", exc_info=True)
        return _failed(args, command, exc, internal=True)


def argv_command(args: argparse.Namespace) -> str:
    func = getattr(args, "func", None)
    name = getattr(func, "__name__", "")
    return name.removeprefix("run_") if name.startswith("run_") else ""


def _failed(
    args: argparse.Namespace, command: str, exc: BaseException, *, internal: bool = False
) -> int:
    error = exc.error if isinstance(exc, CannotRun) else exc
    code = code_for(exc)
    prefix = f"fhir-plao {command}" if command else "fhir-plao"
    text = " ".join(str(error).split()) or type(error).__name__
    if internal:
        text = f"internal error ({type(error).__name__}: {text}); please report it"
    print(f"{prefix}: error: {text}", file=sys.stderr)
    if isinstance(error, ValidationError) and len(error.locations) > 1:
        for location in error.locations:
            print(f"  {location}", file=sys.stderr)
    if getattr(args, "format", "text") == "json":
        print_json(error_document(error, code))
    return code
