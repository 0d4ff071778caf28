"""Peak memory of pushing N generated cases from NDJSON, against that of N/10.

The cases come from ``fhir-plao synth N --seed 2`` (the smaller file is the first N/10 lines of the
same series). Each push runs in its own process against an emptied server; its peak resident set
is the figure: ``VmHWM`` of that very process, sampled every 50 ms until it exits. Not
``ru_maxrss``: Linux carries the high-water mark of the memory a process had before ``exec`` into
it, so a child forked from the bench process (some 400 MiB after the mapping benchmark) reports
the bench's size, not its own. The pusher is the bulk
``fhir-plao push FILE.ndjson --server URL --concurrency C`` with its defaults (it validates every
case) when the installed CLI has it (its ``--help`` lists ``--concurrency``), else
:mod:`bench.push_stream`, the same streaming loop over ``AsyncFhirClient``. Afterwards every
resource type is counted on the server, which must hold exactly what the cases map to. One run
per size (a run of 10,000 cases takes minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import server
from bench._common import REPO_ROOT, BenchError, progress

SEED = 2
SAMPLE_INTERVAL = 0.05  # s between readings of the pusher's VmHWM


@dataclass
class MemoryRun:
    cases: int
    peak_rss_kib: int
    seconds: float
    exit_code: int
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "peak_rss_kib": self.peak_rss_kib,
            "seconds": self.seconds,
            "exit_code": self.exit_code,
            "counts": self.counts,
        }


@dataclass
class MemoryResult:
    pusher: str
    command: list[str]
    concurrency: int
    runs: list[MemoryRun] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        small, large = self.runs[0], self.runs[-1]
        return large.peak_rss_kib / small.peak_rss_kib

    def to_json(self) -> dict[str, Any]:
        return {
            "pusher": self.pusher,
            "command": self.command,
            "concurrency": self.concurrency,
            "runs": [run.to_json() for run in self.runs],
        }


def _cli() -> Path:
    return Path(sys.executable).parent / "fhir-plao"


def bulk_cli_available() -> bool:
    """True when ``fhir-plao push`` takes an NDJSON file with ``--concurrency`` (issue 5)."""
    try:
        done = subprocess.run(
            [str(_cli()), "push", "--help"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "--concurrency" in done.stdout


def pusher_command(ndjson: Path, url: str, concurrency: int) -> tuple[str, list[str]]:
    if bulk_cli_available():
        cmd = [str(_cli()), "push", str(ndjson), "--server", url, "--concurrency", str(concurrency)]
        return "fhir-plao push (bulk CLI)", cmd
    cmd = [sys.executable, "-m", "bench.push_stream", str(ndjson), "--server", url]
    return "bench.push_stream (bulk CLI not available)", [*cmd, "--concurrency", str(concurrency)]


def write_cases(path: Path, n: int) -> None:
    """``fhir-plao synth n`` into ``path``."""
    done = subprocess.run(
        [str(_cli()), "synth", str(n), "--seed", str(SEED), "-o", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"fhir-plao synth {n} failed:\n{done.stderr[-2000:]}")


def expected_counts(path: Path) -> dict[str, int]:
    """Resources per type that the NDJSON's cases map to (streamed, one case at a time)."""
    from fhir_plao import case_from_json, to_fhir

    counts: dict[str, int] = {}
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                for entry in to_fhir(case_from_json(line))["entry"]:
                    rtype = entry["resource"]["resourceType"]
                    counts[rtype] = counts.get(rtype, 0) + 1
    return dict(sorted(counts.items()))


def _high_water_kib(pid: int) -> int | None:
    """``VmHWM`` of a live process (its own peak resident set, in KiB), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run_measured(cmd: list[str], log: Path, cwd: Path, timeout: float) -> tuple[int, int, float]:
    """Run ``cmd``; its exit code, its own peak RSS in KiB, and wall seconds.

    The peak is the process's ``VmHWM``, read every :data:`SAMPLE_INTERVAL` s until it exits (it
    only grows, so the last reading is the peak but for the final instant). Not ``ru_maxrss``:
    Linux carries the high-water mark of the memory a process had before ``exec`` into it, so a
    child forked from this (large) bench process would report the bench's own size.

    Its stdout goes to ``log``, its stderr to ours (progress). Killed after ``timeout`` s, or when
    we are interrupted.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)  # for `-m bench.push_stream` from another cwd
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, env=env)
    peak = 0
    deadline = time.monotonic() + timeout
    try:
        # sample until the process has exited, without reaping it (WNOWAIT): its pid cannot be
        # reused by another process while we still read /proc/<pid>/status
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            value = _high_water_kib(proc.pid)
            if value is not None:
                peak = max(peak, value)
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(cmd[:3])} ... did not finish within {timeout:.0f} s")
            time.sleep(SAMPLE_INTERVAL)
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise
    code = proc.wait(timeout=30)
    return code, peak, time.perf_counter() - t0


def benchmark(
    handle: Any,
    workdir: Path,
    n: int = 10_000,
    base: int | None = None,
    concurrency: int = 4,
    cases_per_second: float | None = None,
) -> MemoryResult:
    url = str(handle.base_url)
    base = base if base is not None else max(1, n // 10)
    sizes = [base, n] if base != n else [n]
    files: dict[int, Path] = {}
    progress(f"memory: writing {n} synthetic cases as NDJSON (fhir-plao synth)")
    full = workdir / f"cases-{n}.ndjson"
    write_cases(full, n)
    files[n] = full
    if base != n:
        files[base] = workdir / f"cases-{base}.ndjson"
        with full.open("rb") as src, files[base].open("wb") as dst:
            for _, line in zip(range(base), src, strict=False):
                dst.write(line)
    pusher, command = pusher_command(full, url, concurrency)
    result = MemoryResult(pusher=pusher, command=command, concurrency=concurrency)
    for size in sizes:
        progress(f"memory: counting what {size} cases map to")
        expected = expected_counts(files[size])
        server.reset(handle)
        _, cmd = pusher_command(files[size], url, concurrency)
        estimate = f", about {size / cases_per_second / 60:.1f} min" if cases_per_second else ""
        progress(f"memory: pushing {size} cases with {pusher}{estimate}")
        timeout = 300 + size * 0.5
        code, peak, seconds = run_measured(cmd, workdir / f"push-{size}.log", workdir, timeout)
        if code != 0:
            tail = (workdir / f"push-{size}.log").read_text(errors="replace")[-2000:]
            raise BenchError(f"pushing {size} cases failed (exit {code}):\n{tail}")
        counts = server.check_counts(url, expected, f"memory push of {size} cases")
        result.runs.append(MemoryRun(size, peak, seconds, code, counts))
        cases_per_second = size / seconds  # the next, larger run's estimate
        progress(
            f"memory: {size} cases in {seconds:.0f} s ({size / seconds:.1f} cases/s), "
            f"peak RSS {peak / 1024:.0f} MiB; server holds {sum(counts.values())} resources"
        )
    return result  # the server is left full: emptying 400,000 resources takes half a minute
