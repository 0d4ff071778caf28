"""What every command shares: reading inputs (``-`` is standard input), writing outputs (``-`` is
standard output, a file is written all or nothing), JSON results, and logging on stderr.

When standard output carries the payload (a Bundle, a case, a JSON result), nothing else is
written there: messages go to standard error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fhir_plao import jsonio
from fhir_plao._files import write_lines, write_text
from fhir_plao.errors import FhirError, InputError

__all__ = [
    "STDIN",
    "add_format_option",
    "add_progress_option",
    "configure_logging",
    "error_document",
    "print_json",
    "read_bytes",
    "read_case",
    "read_fhir",
    "record_path",
    "say",
    "where",
    "whole_number",
    "write_lines",
    "write_text",
]

STDIN = "-"

log = logging.getLogger("fhir_plao")


def where(path: str | Path) -> str:
    """How a message names an input: its path, or ``<stdin>``."""
    return "<stdin>" if str(path) == STDIN else str(path)


def read_bytes(path: str | Path) -> bytes:
    if str(path) == STDIN:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError("is a directory, not a file", location=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(path)) from None


def read_case(path: str | Path, raw: bytes | None = None) -> Any:
    """The case in a file (or standard input); errors name the file and the field."""
    from fhir_plao.case import case_from_json

    text = read_bytes(path) if raw is None else raw
    try:
        return case_from_json(text, source=where(path))
    except jsonio.JsonError as exc:
        raise InputError(str(exc), location=where(path)) from None


def read_fhir(path: str | Path, raw: bytes | None = None) -> list[Any]:
    """FHIR JSON (a resource or Bundle) or NDJSON (one a line) as a list of documents."""
    data = read_bytes(path) if raw is None else raw
    return parse_fhir(data, where(path))


def parse_fhir(raw: bytes, source: str) -> list[Any]:
    try:
        parsed = jsonio.loads(raw)
    except jsonio.JsonError as exc:
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise InputError(str(exc), location=source) from None
        documents = []
        for n, line in enumerate(lines, start=1):
            try:
                documents.append(jsonio.loads(line))
            except jsonio.JsonError as line_exc:
                raise InputError(f"NDJSON line {n}: {line_exc}", location=source) from None
        parsed = documents
    documents = parsed if isinstance(parsed, list) else [parsed]
    for n, doc in enumerate(documents):
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            at = f" (document {n + 1})" if len(documents) > 1 else ""
            raise InputError(f"not FHIR JSON{at}: no resourceType", location=source)
    return documents


def print_json(document: Any, *, indent: int | None = 2) -> None:
    """One JSON result document on standard output."""
    sys.stdout.write(jsonio.dumps(document, indent=indent) + "\n")
    sys.stdout.flush()


def say(message: str, *, to_stderr: bool = False) -> None:
    """A line for people: on stdout, or on stderr when stdout carries the payload."""
    print(message, file=sys.stderr if to_stderr else sys.stdout)


def error_document(exc: BaseException, code: int) -> dict[str, Any]:
    """The JSON result of a command that failed (``--format json``)."""
    error: dict[str, Any] = {"kind": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, FhirError) and exc.locations:
        error["locations"] = [loc.as_json() for loc in exc.locations]
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        error["status"] = status
    return {"ok": False, "exit": code, "error": error}


def report_unmapped(unmapped: Iterable[object], *, prefix: str = "fhir-plao") -> None:
    items = list(unmapped)
    if not items:
        return
    print(f"{prefix}: {len(items)} element(s) not mapped:", file=sys.stderr)
    for item in items:
        print(f"  {item}", file=sys.stderr)


# --------------------------------------------------------------------------- logging


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.levelno >= logging.ERROR:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, ensure_ascii=False)


def configure_logging(verbosity: int, log_format: str) -> None:
    """Our loggers (``fhir_plao.*``) on stderr: warnings by default, ``-v`` info, ``-vv`` debug,
    ``-q`` errors only. Other libraries' loggers (httpx logs full URLs, whose search parameters
    may hold patient data) are not shown at any level; our own messages never carry patient data
    or credentials (URLs are sanitised, bodies and headers never logged)."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("fhir-plao: %(levelname)s: %(message)s"))
    for existing in list(log.handlers):
        log.removeHandler(existing)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def add_format_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--format text|json``; ``what`` says what the JSON result document holds."""
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help=f"json: one JSON result ({what})"
    )


def add_progress_option(parser: argparse.ArgumentParser | Any) -> None:
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress line on stderr (it is shown only on a terminal anyway)",
    )


def record_path(near: Path, kind: str) -> Path:
    """``NAME.<kind>.ndjson`` beside ``near`` (NAME: its name without suffix)."""
    if str(near) == "<stdin>":
        return Path(f"stdin.{kind}.ndjson").resolve()
    resolved = near.resolve()
    name = resolved.name if resolved.is_dir() else resolved.stem
    return resolved.parent / f"{name or 'fhir-plao'}.{kind}.ndjson"


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
