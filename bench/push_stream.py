"""A streaming push of an NDJSON file of cases: what the memory benchmark runs when the bulk
``fhir-plao push FILE.ndjson --concurrency N`` is not there yet.

It reads one line at a time, and for each case: ``case_from_json``, ``to_fhir``, validation (as
``fhir-plao push`` does unless ``--no-validate``), one transaction with ``AsyncFhirClient``. At
most ``--concurrency`` cases are in flight; nothing is kept per case but three counters, so
memory should not grow with the number of cases.

    python -m bench.push_stream CASES.ndjson --server URL [--concurrency 4] [--no-validate]

Prints a one-line JSON summary (sent, failed, seconds) on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import run_pool

PROGRESS_EVERY = 1000


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield line


async def push_ndjson(
    path: Path, url: str, concurrency: int = 4, *, validate: bool = True
) -> dict[str, Any]:
    from fhir_plao import AsyncFhirClient, case_from_json, to_fhir
    from fhir_plao.validation import Validator, errors_in

    validator = Validator() if validate else None
    summary = {"sent": 0, "failed": 0}
    t0 = time.perf_counter()

    async with AsyncFhirClient(url, timeout=120) as client:

        async def one(line: bytes) -> None:
            bundle = to_fhir(case_from_json(line))
            if validator is not None and errors_in(validator.validate(bundle)):
                summary["failed"] += 1
                return
            await client.transaction(bundle)
            summary["sent"] += 1
            done = summary["sent"] + summary["failed"]
            if done % PROGRESS_EVERY == 0:
                print(
                    f"  push_stream: {done} cases, {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

        await run_pool(_lines(path), one, concurrency)
    return {**summary, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.push_stream", description=__doc__)
    parser.add_argument("ndjson", type=Path)
    parser.add_argument("--server", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-validate", dest="validate", action="store_false")
    args = parser.parse_args(argv)
    summary = asyncio.run(
        push_ndjson(args.ndjson, args.server, args.concurrency, validate=args.validate)
    )
    print(json.dumps(summary), flush=True)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
