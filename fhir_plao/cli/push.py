"""``push``: send what an interface engine has to a FHIR R4 server, through the one outbound
pipeline (:mod:`fhir_plao.outbound`).

The input (a file, or ``-`` for standard input) is told by its content:

* **a case** (``CASE.json``): mapped once, validated, split, sent; every resource's server id
  printed;
* **FHIR**: a transaction Bundle (sent as it is), a batch Bundle (sent as a batch), a collection
  or other Bundle, a single resource, or NDJSON of them (their resources gathered into one
  transaction);
* **many cases** -- a directory of ``*.json`` case files, NDJSON of cases, or any bulk option
  (``--concurrency``, ``--max-entries``, ``--max-bytes``, ``--dead-letter``, ``--journal``,
  ``--resume``): bulk mode (:mod:`fhir_plao.bulk`), with bounded concurrency, a journal of
  confirmed cases, a dead letter of failed ones, progress on a terminal and a summary.

``--dry-run`` does everything but send (no server is contacted) and prints the transaction(s)
it would send: one Bundle (or, split, a JSON array of them; bulk: NDJSON, a Bundle a line).
``--format json`` prints one JSON result document: per entry the case field, the server id and
version, and whether it was created or updated (bulk: the summary). ``--ids server`` lets the
server assign the ids (see :mod:`fhir_plao.outbound`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_plao import jsonio
from fhir_plao.cli._exit import CannotRun, ExitCode
from fhir_plao.cli._io import (
    STDIN,
    add_format_option,
    add_progress_option,
    parse_fhir,
    print_json,
    read_bytes,
    read_case,
    record_path,
    say,
    whole_number,
)
from fhir_plao.cli._server import add_server_options, async_client, connected
from fhir_plao.errors import FhirError, InputError

if TYPE_CHECKING:
    from fhir_plao.bulk import CaseInput, CaseSource, PushSummary
    from fhir_plao.client import PushResult
    from fhir_plao.outbound import Outbound

__all__ = ["register"]

DEFAULT_CONCURRENCY = 4
_BULK_OPTIONS = ("concurrency", "max_entries", "max_bytes", "dead_letter", "journal", "resume")
_positive = whole_number(1)
_limit = whole_number(0, " (no limit)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from fhir_plao.outbound import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

    push = sub.add_parser(
        "push",
        parents=[common],
        help="send a case, FHIR (Bundle, resource, NDJSON) or many cases to a FHIR R4 server",
        description="Send to a FHIR R4 server: a case (mapped, validated, sent as a "
        "transaction; resource ids derive from the case, so pushing again updates in place), "
        "FHIR JSON (a transaction, batch or collection Bundle, a resource, or NDJSON of them), "
        "or many cases (a directory of *.json case files or NDJSON of cases: streamed with "
        "bounded concurrency, a journal and a dead-letter file, and a summary). Any refusal "
        "names the case field, the resource and the FHIR element.",
    )
    push.add_argument(
        "input",
        metavar="INPUT",
        help="a case file, FHIR JSON or NDJSON, a directory of case files, or - for stdin",
    )
    add_server_options(push)
    push.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="send without validating against R4 and the profiles first",
    )
    push.add_argument(
        "--ids",
        choices=("client", "server"),
        default="client",
        help="client (default): PUT Type/plao-... with ids derived from the case; server: the "
        "server assigns ids (conditional updates on our item identifiers; idempotent), for "
        "servers that refuse client-assigned ids",
    )
    push.add_argument(
        "--prune",
        action="store_true",
        help="delete the patient's resources that an earlier push of this case wrote and the "
        "case no longer has (found by our item identifier; never another system's); without "
        "it, a one-case push says how many remain",
    )
    push.add_argument(
        "--settle",
        type=_seconds,
        metavar="SECONDS",
        help="after an attempt that got no answer (it may still land late, over newer data), "
        "wait this long, read the versions back and push again if they moved (default: the "
        "read timeout; bulk: at the end of the run)",
    )
    push.add_argument(
        "--dry-run",
        action="store_true",
        help="do everything but send (no server is contacted); print the transaction(s)",
    )
    add_format_option(push, "per entry: case field, server id, version, created/updated")
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
        help=f"split a Bundle into transactions of at most N entries (default "
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
    add_progress_option(push)
    push.set_defaults(func=run_push)


def run_push(args: argparse.Namespace) -> int:
    kind, payload = _classify(args)
    if kind == "bulk":
        return _bulk(args, payload)
    if kind == "fhir":
        from fhir_plao.outbound import prepare_fhir

        outbounds = prepare_fhir(payload, **_prepare_options(args))
    else:
        from fhir_plao.outbound import prepare

        outbounds = [prepare(payload, **_prepare_options(args))]
    for outbound in outbounds:
        _warn(outbound)
    if args.dry_run:
        return _dry_run(args, outbounds)
    results: list[PushResult] = []
    with connected(args) as fhir:
        server = fhir.base_url
        for outbound in outbounds:
            try:
                leftovers = outbound.case is not None
                settle = {} if args.settle is None else {"settle": args.settle}
                results.append(
                    fhir.push(outbound, prune=args.prune, look_for_leftovers=leftovers, **settle)
                )
            except FhirError as exc:
                if args.ids == "client" and _refuses_client_ids(exc) and exc.args:
                    hint = "(this server assigns its own ids: push with --ids server)"
                    exc.args = (f"{exc.args[0]} {hint}", *exc.args[1:])
                raise
    return _report(args, server, results)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, not {text}")
    return value


def _refuses_client_ids(exc: FhirError) -> bool:
    """HAPI's "client-assigned IDs are not enabled" (HAPI-0959), or a server saying the like."""
    text = str(exc).lower()
    return getattr(exc, "hapi_code", None) == "HAPI-0959" or "client-assigned id" in text


def _prepare_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "validate": args.validate,
        "ids": args.ids,
        "max_entries": _limit_or(args.max_entries, "max_entries"),
        "max_bytes": _limit_or(args.max_bytes, "max_bytes"),
    }


def _limit_or(value: int | None, name: str) -> int | None:
    """An option's limit: its default when not given, None (no limit) for 0."""
    from fhir_plao.outbound import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

    if value is None:
        return DEFAULT_MAX_ENTRIES if name == "max_entries" else DEFAULT_MAX_BYTES
    return value or None


def _warn(outbound: Outbound) -> None:
    warnings = [i for i in outbound.warnings if i.severity == "warning"]
    if warnings:
        print(f"fhir-plao push: validation: {len(warnings)} warning(s)", file=sys.stderr)


# --------------------------------------------------------------------------- the input


def _classify(args: argparse.Namespace) -> tuple[str, Any]:
    """("case", Case) | ("fhir", documents) | ("bulk", an iterable of case sources)."""
    from fhir_plao.bulk import open_cases

    bulk_option = any(getattr(args, n, None) is not None for n in _BULK_OPTIONS)
    if args.input == STDIN:
        return _classify_bytes(sys.stdin.buffer.read(), bulk_option)
    path = Path(args.input)
    if path.is_dir():
        return "bulk", open_cases(path)
    raw_first = _first_line(path)
    cases = open_cases(path)
    if cases.kind == "ndjson":
        if _is_fhir(raw_first):
            return "fhir", parse_fhir(read_bytes(path), str(path))
        return "bulk", cases
    raw = read_bytes(path)
    if _is_fhir(raw):
        return "fhir", parse_fhir(raw, str(path))
    if bulk_option:
        return "bulk", cases
    return "case", read_case(path, raw)


def _classify_bytes(raw: bytes, bulk_option: bool) -> tuple[str, Any]:
    if _is_fhir(raw) or _is_fhir(_first(raw.splitlines())):
        return "fhir", parse_fhir(raw, "<stdin>")
    try:
        jsonio.loads(raw)
    except jsonio.JsonError:
        if len([line for line in raw.splitlines() if line.strip()]) < 2:
            return "case", read_case(STDIN, raw)  # says what is wrong with it
        return "bulk", _stdin_sources(raw)  # NDJSON of cases
    if bulk_option:
        from fhir_plao.bulk import CaseSource

        return "bulk", [CaseSource("<stdin>", Path("<stdin>"), None, raw)]
    return "case", read_case(STDIN, raw)


def _stdin_sources(raw: bytes) -> list[CaseSource]:
    from fhir_plao.bulk import CaseSource

    return [
        CaseSource(f"<stdin>:{n}", Path("<stdin>"), n, line.rstrip(b"\r"))
        for n, line in enumerate(raw.split(b"\n"), start=1)
        if line.strip()
    ]


def _first_line(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    return line
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(path)) from None
    return b""


def _first(lines: Sequence[bytes]) -> bytes:
    return next((line for line in lines if line.strip()), b"")


def _is_fhir(raw: bytes) -> bool:
    """The text is one JSON document (or list of them) of FHIR."""
    try:
        data = jsonio.loads(raw)
    except jsonio.JsonError:
        return False
    first = data[0] if isinstance(data, list) and data else data
    return isinstance(first, dict) and "resourceType" in first


# --------------------------------------------------------------------------- results


def _dry_run(args: argparse.Namespace, outbounds: Sequence[Outbound]) -> int:
    bundles = [bundle for outbound in outbounds for bundle in outbound.bundles]
    if args.format == "json":
        print_json(
            {
                "ok": True,
                "dry_run": True,
                "resources": sum(o.resources for o in outbounds),
                "transactions": bundles,
            }
        )
    else:
        print_json(bundles[0] if len(bundles) == 1 else bundles)
    return ExitCode.OK


def _report(args: argparse.Namespace, server: str, results: Sequence[PushResult]) -> int:
    entries = [entry for result in results for entry in result.entries]
    created = sum(r.created for r in results)
    updated = sum(r.updated for r in results)
    failed = [entry for entry in entries if entry.failed]
    parts = sum(r.parts for r in results)
    left = [ref for r in results for ref in (r.left_behind or ())]
    pruned = [ref for r in results for ref in r.pruned]
    if args.format == "json":
        print_json(
            {
                "ok": not failed,
                "server": server,
                "resources": len(entries),
                "transactions": parts,
                "created": created,
                "updated": updated,
                "failed": len(failed),
                "left_behind": left,
                "pruned": pruned,
                "repushed": sum(r.repushed for r in results),
                "entries": [entry.as_json() for entry in entries],
            }
        )
    else:
        for entry in entries:
            to = str(entry.server) if entry.server else "(no location given)"
            what = entry.resource or entry.local_ref or entry.local
            label = f"{entry.field}  {what}" if entry.field else what
            state = f"FAILED {entry.status}" if entry.failed else entry.status
            say(f"{label} -> {to}  [{state}]")
        say(
            f"pushed {len(entries)} resources to {server} in {parts} transaction(s): "
            f"{created} created, {updated} updated" + (f", {len(failed)} failed" if failed else "")
        )
        if any(r.repushed for r in results):
            say(
                "pushed again: resources changed on the server after the push was confirmed "
                "(an earlier attempt, unanswered, landed late); now verified"
            )
        if pruned:
            say(f"pruned {len(pruned)} resource(s) of an earlier push that the case no longer has")
        if left:
            say(
                f"{len(left)} resource(s) of an earlier push that the case no longer has remain "
                f"on the server (push --prune deletes them): " + ", ".join(left[:10])
            )
    unresolved = [e.local for r in results for e in r.entries if e.server is None and not e.failed]
    if unresolved:
        print(
            f"fhir-plao push: warning: the server did not say where {len(unresolved)} entries "
            f"went: " + ", ".join(unresolved[:10]),
            file=sys.stderr,
        )
    for entry in failed:
        problem = entry.problem or entry.local
        print(f"fhir-plao push: refused: {problem}", file=sys.stderr)
    return ExitCode.PROBLEM if failed else ExitCode.OK


# --------------------------------------------------------------------------- bulk


def _bulk(args: argparse.Namespace, sources: CaseInput | list[CaseSource]) -> int:
    if args.dry_run:
        return _bulk_dry_run(args, sources)
    import anyio

    from fhir_plao.bulk import CaseInput, Progress, PushOptions, push_cases

    near = Path(args.input) if args.input != STDIN else Path("<stdin>")
    dead_letter: Path = args.dead_letter or record_path(near, "dead-letter")
    journal: Path = args.journal or dead_letter.with_name(record_path(near, "journal").name)
    progress = Progress(sys.stderr, label="push", enabled=None if args.progress else False)
    options = PushOptions(
        journal=journal,
        dead_letter=dead_letter,
        concurrency=args.concurrency or DEFAULT_CONCURRENCY,
        validate=args.validate,
        resume=bool(args.resume),
        ids=args.ids,
        prune=args.prune,
        settle=args.settle,
        **{k: v for k, v in _prepare_options(args).items() if k.startswith("max_")},
    )
    if progress.enabled:
        progress.total = sources.count() if isinstance(sources, CaseInput) else len(sources)

    async def push_all() -> PushSummary:
        async with async_client(args) as fhir:
            try:
                await fhir.capabilities()
            except FhirError as exc:
                raise CannotRun(exc) from None
            return await push_cases(fhir, sources, options, progress=progress)

    summary = anyio.run(push_all)
    if args.format == "json":
        document = {"ok": summary.ok, **dataclasses.asdict(summary)}
        document["dead_letter"] = str(dead_letter) if summary.failed else None
        document["journal"] = str(journal)
        print_json(document)
    else:
        say(f"fhir-plao push: {summary.line()}")
    if summary.failed:
        print(
            f"fhir-plao push: {summary.failed} case(s) failed; see {dead_letter}",
            file=sys.stderr,
        )
        return ExitCode.PROBLEM
    return ExitCode.OK


def _bulk_dry_run(args: argparse.Namespace, sources: Iterable[CaseSource]) -> int:
    """Each case prepared as a push would (parsed, mapped, validated, split); its transactions
    printed, one Bundle a line; a case that fails is named on stderr (exit 1)."""
    from fhir_plao.case import case_from_json
    from fhir_plao.outbound import prepare

    failed = 0
    for source in sources:
        try:
            if source.error is not None:
                raise InputError(source.error, location=source.key)
            outbound = prepare(
                case_from_json(source.raw, source=source.key), **_prepare_options(args)
            )
        except (FhirError, jsonio.JsonError) as exc:
            failed += 1
            print(f"fhir-plao push: {source.key}: {exc}", file=sys.stderr)
            continue
        for bundle in outbound.bundles:
            sys.stdout.write(jsonio.dumps(bundle) + "\n")
        sys.stdout.flush()
    return ExitCode.PROBLEM if failed else ExitCode.OK
