"""``python -m bench``: run the benchmarks, print the table of ratios, write ``bench/RESULTS.md``.

Every knob has an environment variable (``make bench`` passes them through), e.g. a quick run::

    make bench BENCH_MEMORY_CASES=2000 BENCH_RUNS=1

The server benchmarks (push, pull, memory) start the server (``--server``: SEKMET by default, or
HAPI FHIR) on a free 127.0.0.1 port with its own state directory under a temporary directory,
and stop it at the end, also on failure or SIGTERM. ``--server hapi`` runs push and pull unless
told otherwise. ``bench/RESULTS.md`` keeps the latest run on each server: a run replaces its own
server's section and keeps the other's.
Exit status: 0 when every benchmark ran and did the work it claims (targets missed do not count),
1 otherwise; the results are written either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import server
from bench._common import REPO_ROOT, progress
from bench.report import TARGETS, Report, describe_machine, load_average, merge_runs

ALL = ("mapping", "validation", "push", "pull", "memory")
SERVER_BENCHMARKS = ("push", "pull", "memory")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs",
        type=int,
        default=_env_int("BENCH_RUNS", 3),
        help="runs per contender for mapping and push ($BENCH_RUNS, 3)",
    )
    p.add_argument(
        "--mapping-cases",
        type=int,
        default=_env_int("BENCH_MAPPING_CASES", 1000),
        help="cases for the mapping benchmark ($BENCH_MAPPING_CASES, 1000)",
    )
    p.add_argument(
        "--validation-runs",
        type=int,
        default=_env_int("BENCH_VALIDATION_RUNS", 30),
        help="warm validations of the example Bundle ($BENCH_VALIDATION_RUNS, 30)",
    )
    p.add_argument(
        "--push-cases",
        type=int,
        default=_env_int("BENCH_PUSH_CASES", 200),
        help="cases for the push benchmark ($BENCH_PUSH_CASES, 200)",
    )
    p.add_argument(
        "--pull-observations",
        type=int,
        default=_env_int("BENCH_PULL_OBSERVATIONS", 1000),
        help="Observations of the pulled patient ($BENCH_PULL_OBSERVATIONS, 1000)",
    )
    p.add_argument(
        "--pull-runs",
        type=int,
        default=_env_int("BENCH_PULL_RUNS", 21),
        help="runs per pull contender ($BENCH_PULL_RUNS, 21)",
    )
    p.add_argument(
        "--memory-cases",
        type=int,
        default=_env_int("BENCH_MEMORY_CASES", 10_000),
        help="cases of the large bulk push ($BENCH_MEMORY_CASES, 10000)",
    )
    p.add_argument(
        "--memory-base",
        type=int,
        default=_env_int("BENCH_MEMORY_BASE", 0),
        help="cases of the small one ($BENCH_MEMORY_BASE, default a tenth)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=_env_int("BENCH_CONCURRENCY", 4),
        help="cases in flight when pushing ($BENCH_CONCURRENCY, 4)",
    )
    p.add_argument(
        "--server",
        choices=tuple(server.LABELS),
        default=os.environ.get("BENCH_SERVER", "sekmet"),
        help="the FHIR server of push, pull and memory ($BENCH_SERVER, sekmet)",
    )
    p.add_argument(
        "--only",
        default=os.environ.get("BENCH_ONLY"),
        help=f"comma-separated subset of {','.join(ALL)} ($BENCH_ONLY; default: all on SEKMET, "
        "push,pull on HAPI)",
    )
    p.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default=os.environ.get("BENCH_PROFILE", "auto"),
        help="profile the mapping pipeline: when its target is missed (auto)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path(os.environ.get("BENCH_OUTPUT", str(REPO_ROOT / "bench" / "RESULTS.md"))),
        help="the Markdown report ($BENCH_OUTPUT, bench/RESULTS.md)",
    )
    args = p.parse_args(argv)
    if args.only is None:
        args.only = ",".join(ALL) if args.server == "sekmet" else "push,pull"
    args.only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: the server is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    settings: dict[str, Any] = {
        "server": args.server,
        "benchmarks": "+".join(args.only),
        "runs": args.runs,
    }
    if "mapping" in args.only:
        settings["mapping_cases"] = args.mapping_cases
    if "validation" in args.only:
        settings["validation_runs"] = args.validation_runs
    if "push" in args.only:
        settings["push_cases"] = args.push_cases
    if "pull" in args.only:
        settings |= {"pull_observations": args.pull_observations, "pull_runs": args.pull_runs}
    memory_base = args.memory_base or max(1, args.memory_cases // 10)
    if "memory" in args.only:
        settings["memory_cases"] = f"{memory_base} and {args.memory_cases}"
    if set(args.only) & {"push", "memory"}:
        settings["concurrency"] = args.concurrency
    report = Report(
        machine=describe_machine(server.LABELS[args.server], server.version(args.server)),
        settings=settings,
        started=started.strftime("%Y-%m-%d %H:%M"),
        server=server.LABELS[args.server],
    )
    progress(f"fhir-plao bench: {', '.join(args.only)}; {settings}")

    def attempt(name: str, run: Callable[[], Any]) -> Any:
        try:
            report.results[name] = run()
        except Exception as exc:
            report.errors[name] = f"{type(exc).__name__}: {exc}"
            progress(f"{name} FAILED: {exc}")
            traceback.print_exc(file=sys.stderr)
        return report.results.get(name)

    try:
        _run(args, report, attempt, memory_base)
    finally:
        report.seconds = time.monotonic() - t0
        report.machine["load_end"] = load_average()
        table = report.table()
        print("\n" + table + "\n", flush=True)
        for note in report.notes():
            print(f"- {note}\n", flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        previous = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        args.output.write_text(
            merge_runs(previous, args.server, report.markdown()), encoding="utf-8"
        )
        raw = {name: result.to_json() for name, result in report.results.items()} | {
            "machine": report.machine,
            "settings": settings,
            "errors": report.errors,
        }
        name = "results.json" if args.server == "sekmet" else f"results-{args.server}.json"
        args.output.with_name(name).write_text(json.dumps(raw, indent=2) + "\n")
        progress(f"wrote {args.output} and results.json in {report.seconds / 60:.1f} min")
    return 1 if report.errors else 0


def _run(
    args: argparse.Namespace,
    report: Report,
    attempt: Callable[[str, Callable[[], Any]], Any],
    memory_base: int,
) -> None:
    from bench import mapping, memory, pull, push, validation

    if "mapping" in args.only:
        result = attempt("mapping", lambda: mapping.benchmark(args.mapping_cases, args.runs))
        missed = result is not None and (
            result.ours["total"].median / result.fhir_resources.median > TARGETS["mapping"]
        )
        if args.profile == "always" or (args.profile == "auto" and missed):
            from bench.profile import profile_mapping

            attempt("profile", lambda: profile_mapping(min(200, args.mapping_cases)))
    if "validation" in args.only:
        attempt("validation", lambda: validation.benchmark(args.validation_runs))
    if not set(args.only) & set(SERVER_BENCHMARKS):
        return
    workdir = Path(tempfile.mkdtemp(prefix="fhir-plao-bench-"))
    try:
        with server.running(args.server, workdir / args.server) as handle:
            cases_per_second = None
            if "push" in args.only:
                done = attempt(
                    "push",
                    lambda: push.benchmark(handle, args.push_cases, args.runs, args.concurrency),
                )
                if done is not None:
                    cases_per_second = done.cases_per_second("ours")
            if "pull" in args.only:
                attempt(
                    "pull",
                    lambda: pull.benchmark(handle, args.pull_observations, args.pull_runs),
                )
                server.reset(handle)
            if "memory" in args.only:
                attempt(
                    "memory",
                    lambda: memory.benchmark(
                        handle,
                        workdir,
                        args.memory_cases,
                        memory_base,
                        args.concurrency,
                        cases_per_second,
                    ),
                )
    except Exception as exc:
        report.errors["server"] = f"{type(exc).__name__}: {exc}"
        progress(f"server FAILED: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
