"""The machine's description, the table of ratios, and ``bench/RESULTS.md``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._common import REPO_ROOT

PACKAGES = (
    "fhir-plao",
    "fhir.resources",
    "fhir-core",
    "pydantic",
    "pydantic-core",
    "fhirpathpy",
    "httpx",
    "simplejson",
    "anyio",
    "orjson",
    "fhirpy",
    "aiohttp",
    "pyinstrument",
)

TARGETS = {
    "mapping": 1.5,  # ours / fhir.resources floor, at most
    "push": 5.0,  # ours / fhirpy one by one (throughput), at least
    "pull": 1.25,  # ours / raw httpx (time), at most
    "memory": 1.5,  # peak RSS N / N/10, at most
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _git() -> str:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def describe_machine(server: str | None = None, version: str | None = None) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if server and version:
        versions[f"{server} (server)"] = version
    return {
        "load_start": load_average(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory": _memory(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": versions,
        "commit": _git(),
    }


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    benchmark: str
    figure: str  # what the ratio compares
    value: str  # the ratio (or the figure) as shown
    basis: str  # the medians behind it
    target: str = "-"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("met" if self.met else "MISSED")


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    started: str
    server: str = "SEKMET"  # the server of the push, pull and memory rows
    seconds: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    # ----------------------------------------------------------------- ratios

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        mapping = self.results.get("mapping")
        if mapping is not None:
            floor = mapping.fhir_resources.median
            total = mapping.ours["total"].median
            n, runs = mapping.cases, mapping.fhir_resources.runs
            rows.append(
                Row(
                    "1 mapping",
                    f"ours / fhir.resources floor (time, {n} cases)",
                    f"{total / floor:.2f}x",
                    f"{total:.2f} s / {floor:.2f} s, median of {runs}",
                    f"<= {TARGETS['mapping']}x",
                    total / floor <= TARGETS["mapping"],
                )
            )
            for stage in ("to_fhir", "validate", "json"):
                part = mapping.ours[stage].median
                rows.append(
                    Row(
                        "1 mapping",
                        f"  {stage} alone / fhir.resources floor",
                        f"{part / floor:.2f}x",
                        f"{part:.2f} s / {floor:.2f} s",
                    )
                )
            if mapping.orjson is not None:
                raw = mapping.orjson.median
                rows.append(
                    Row(
                        "1 mapping",
                        "ours / orjson floor (time)",
                        f"{total / raw:.0f}x",
                        f"{total:.2f} s / {raw:.3f} s, median of {mapping.orjson.runs}",
                    )
                )
                rows.append(
                    Row(
                        "1 mapping",
                        "fhir.resources floor / orjson floor (time)",
                        f"{floor / raw:.0f}x",
                        f"{floor:.2f} s / {raw:.3f} s",
                    )
                )
        validation = self.results.get("validation")
        if validation is not None:
            warm = validation.warm
            rows.append(
                Row(
                    "2 validation",
                    f"example Bundle ({validation.resources} resources), warm",
                    f"{validation.resources_per_second:.0f} resources/s",
                    f"{warm.median * 1000:.1f} ms per Bundle, median of {warm.runs}",
                )
            )
            first = validation.first_call.get("first_validate")
            if first is not None:
                rows.append(
                    Row(
                        "2 validation",
                        "first call / warm call (fresh process)",
                        f"{first.median / warm.median:.0f}x",
                        f"{first.median:.2f} s / {warm.median * 1000:.1f} ms, "
                        f"median of {first.runs} processes",
                    )
                )
        push = self.results.get("push")
        if push is not None:
            secs = push.seconds

            def speed(a: str, b: str) -> tuple[float, str]:
                ratio = secs[b].median / secs[a].median
                basis = (
                    f"{push.resources_per_second(a):.0f} / {push.resources_per_second(b):.0f} "
                    f"resources/s, median of {secs[a].runs}"
                )
                return ratio, basis

            if "fhirpy_one_by_one" in secs:
                ratio, basis = speed("ours", "fhirpy_one_by_one")
                rows.append(
                    Row(
                        f"3 push ({self.server})",
                        f"ours / fhirpy one by one (throughput, {push.cases} cases)",
                        f"{ratio:.2f}x",
                        basis,
                        f">= {TARGETS['push']}x",
                        ratio >= TARGETS["push"],
                    )
                )
            if "httpx_transaction" in secs:
                ratio, basis = speed("ours", "httpx_transaction")
                rows.append(
                    Row(
                        f"3 push ({self.server})",
                        "ours / plain httpx transaction (the ceiling)",
                        f"{ratio:.2f}x",
                        basis,
                    )
                )
            if {"httpx_one_by_one", "fhirpy_one_by_one"} <= set(secs):
                ratio, basis = speed("httpx_one_by_one", "fhirpy_one_by_one")
                rows.append(
                    Row(
                        f"3 push ({self.server})",
                        "plain httpx one by one / fhirpy one by one",
                        f"{ratio:.2f}x",
                        basis,
                    )
                )
                ratio, basis = speed("httpx_transaction", "httpx_one_by_one")
                rows.append(
                    Row(
                        f"3 push ({self.server})",
                        "plain httpx: transaction / one by one (server)",
                        f"{ratio:.2f}x",
                        basis,
                    )
                )
            for name in ("ours", "fhirpy_one_by_one"):
                cpu = push.server_cpu.get(name)
                if cpu is not None and cpu.values and name in secs:
                    rows.append(
                        Row(
                            f"3 push ({self.server})",
                            f"{self.server} CPU / wall time, {name}",
                            f"{cpu.median / secs[name].median:.2f}",
                            f"{cpu.median:.1f} s CPU / {secs[name].median:.1f} s",
                        )
                    )
        pull = self.results.get("pull")
        if pull is not None:
            ours, raw = pull.seconds["ours"], pull.seconds["raw_httpx"]
            rows.append(
                Row(
                    f"4 pull ({self.server})",
                    f"ours / raw httpx (time, {pull.observations} Observations, "
                    f"_count={pull.page_size})",
                    f"{pull.ratio:.2f}x",
                    f"{ours.median:.3f} s / {raw.median:.3f} s, median of {ours.runs}",
                    f"<= {TARGETS['pull']}x",
                    pull.ratio <= TARGETS["pull"],
                )
            )
        memory = self.results.get("memory")
        if memory is not None and len(memory.runs) >= 2:
            small, large = memory.runs[0], memory.runs[-1]
            rows.append(
                Row(
                    f"5 memory ({self.server})",
                    f"peak RSS {large.cases} / {small.cases} cases pushed",
                    f"{memory.ratio:.2f}x",
                    f"{large.peak_rss_kib / 1024:.0f} MiB / {small.peak_rss_kib / 1024:.0f} MiB, "
                    "one run each",
                    f"<= {TARGETS['memory']}x",
                    memory.ratio <= TARGETS["memory"],
                )
            )
        return rows

    def table(self) -> str:
        header = ["benchmark", "ratio of medians", "value", "medians behind it", "target", "met"]
        lines = [_md_row(header), _md_row(["---"] * len(header))]
        for row in self.rows():
            lines.append(
                _md_row([row.benchmark, row.figure, row.value, row.basis, row.target, row.verdict])
            )
        return "\n".join(lines)

    # ----------------------------------------------------------------- details

    def details(self) -> str:
        out: list[str] = []
        mapping = self.results.get("mapping")
        if mapping is not None:
            out += [
                f"### 1. Mapping ({mapping.cases} synthetic cases, {mapping.resources} resources)",
                "",
                _md_row(["contender", "median s", "ms / case", "resources / s", "runs (s)"]),
                _md_row(["---"] * 5),
            ]
            named = [(f"ours: {k}", v) for k, v in mapping.ours.items()]
            named.append(("fhir.resources floor", mapping.fhir_resources))
            if mapping.orjson is not None:
                named.append(("orjson floor", mapping.orjson))
            for name, series in named:
                out.append(
                    _md_row(
                        [
                            name,
                            f"{series.median:.3f}",
                            f"{series.median / mapping.cases * 1000:.2f}",
                            f"{mapping.resources / series.median:.0f}",
                            ", ".join(f"{v:.3f}" for v in series.values),
                        ]
                    )
                )
            sizes = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in mapping.bytes_out.items())
            out += ["", f"JSON bytes produced per run: {sizes}.", ""]
        validation = self.results.get("validation")
        if validation is not None:
            out += [
                "### 2. Validation of the example Bundle",
                "",
                f"- {validation.resources} resources; warm: median "
                f"{validation.warm.median * 1000:.2f} ms per Bundle over {validation.warm.runs} "
                f"runs = **{validation.resources_per_second:.0f} resources/s**.",
            ]
            for name, series in validation.first_call.items():
                out.append(
                    f"- first call, `{name}`: median {series.median:.3f} s over {series.runs} "
                    f"fresh processes ({', '.join(f'{v:.3f}' for v in series.values)})"
                )
            out.append("")
        push = self.results.get("push")
        if push is not None:
            out += [
                f"### 3. Push ({push.cases} cases, {push.resources} resources, "
                f"concurrency {push.concurrency})",
                "",
                _md_row(
                    [
                        "contender",
                        "median s",
                        "resources / s",
                        "cases / s",
                        "server CPU s",
                        "client CPU s",
                        "runs (s)",
                    ]
                ),
                _md_row(["---"] * 7),
            ]
            from bench.push import LABELS

            for name, series in push.seconds.items():
                out.append(
                    _md_row(
                        [
                            LABELS.get(name, name),
                            f"{series.median:.2f}",
                            f"{push.resources_per_second(name):.0f}",
                            f"{push.cases_per_second(name):.1f}",
                            _median_of(push.server_cpu.get(name)),
                            _median_of(push.client_cpu.get(name)),
                            ", ".join(f"{v:.2f}" for v in series.values),
                        ]
                    )
                )
            counts = next(iter(push.counts.values()), {})
            out += [
                "",
                f"After every contender the server held exactly {sum(counts.values())} "
                f"resources: {_counts(counts)}.",
                "",
            ]
        pull = self.results.get("pull")
        if pull is not None:
            out += [
                f"### 4. Pull ({pull.observations} Observations of one patient, "
                f"_count={pull.page_size})",
                "",
            ]
            for name, series in pull.seconds.items():
                out.append(
                    f"- {name}: median {series.median:.3f} s "
                    f"({pull.observations / series.median:.0f} resources/s); runs: "
                    f"{', '.join(f'{v:.3f}' for v in series.values)}"
                )
            out.append("")
        memory = self.results.get("memory")
        if memory is not None:
            out += [
                "### 5. Peak memory of a bulk push from NDJSON",
                "",
                f"Pusher: {memory.pusher}, concurrency {memory.concurrency}: "
                f"`{' '.join(Path(c).name if c.startswith('/') else c for c in memory.command)}`",
                "",
                _md_row(["cases", "peak RSS", "seconds", "cases / s", "server holds"]),
                _md_row(["---"] * 5),
            ]
            for run in memory.runs:
                out.append(
                    _md_row(
                        [
                            str(run.cases),
                            f"{run.peak_rss_kib / 1024:.1f} MiB",
                            f"{run.seconds:.0f}",
                            f"{run.cases / run.seconds:.1f}",
                            f"{sum(run.counts.values())} resources",
                        ]
                    )
                )
            out.append("")
        prof = self.results.get("profile")
        if prof is not None:
            out += [
                f"### Where the mapping time goes (pyinstrument, {prof.cases} cases, "
                f"{prof.total:.2f} s sampled)",
                "",
                "By library (self time; a builtin is charged to its caller's library):",
                "",
            ]
            out += [f"- {h.share * 100:.1f}% {h.name} ({h.seconds:.2f} s)" for h in prof.by_library]
            out += ["", "Functions with the most self time:", ""]
            out += [f"- {h.share * 100:.1f}% `{h.name}` ({h.where})" for h in prof.self_time]
            out += ["", "fhir_plao functions by inclusive time:", ""]
            out += [f"- {h.share * 100:.1f}% `{h.name}` ({h.where})" for h in prof.ours_inclusive]
            out.append("")
        return "\n".join(out)

    def notes(self) -> list[str]:
        """What the numbers say about each missed target (derived, not hand-written)."""
        notes: list[str] = []
        push = self.results.get("push")
        names = {"ours", "fhirpy_one_by_one", "httpx_transaction", "httpx_one_by_one"}
        if push is not None and names <= set(push.seconds):
            med = {name: series.median for name, series in push.seconds.items()}
            ours_vs_fhirpy = med["fhirpy_one_by_one"] / med["ours"]
            server_bound = med["httpx_one_by_one"] / med["httpx_transaction"]
            if ours_vs_fhirpy < TARGETS["push"]:
                cpu = push.server_cpu["ours"].median / med["ours"]
                verdict = (
                    f"The bound is the server: plain httpx sending the same transactions is only "
                    f"{server_bound:.2f}x faster than plain httpx PUTting the same resources one "
                    f"by one, so no client reaches {TARGETS['push']}x here"
                    if server_bound < TARGETS["push"]
                    else f"The server allows {server_bound:.2f}x (plain httpx, transactions "
                    "against one by one), so the gap is in the clients"
                )
                notes.append(
                    f"Push: ours is {ours_vs_fhirpy:.2f}x fhirpy, short of {TARGETS['push']}x. "
                    f"{verdict}; ours runs at "
                    f"{med['httpx_transaction'] / med['ours']:.2f} of the plain-httpx transaction "
                    f"speed, fhirpy at {med['httpx_one_by_one'] / med['fhirpy_one_by_one']:.2f} "
                    f"of the plain-httpx one-by-one speed, and {self.server}'s process is busy "
                    f"{cpu:.0%} of the wall time while ours pushes (one process on "
                    f"{self.machine.get('cores', '?')} cores, sharing them with the client). "
                    "Over a real network each one-by-one request also pays a round trip, "
                    "which loopback does not show."
                )
        mapping = self.results.get("mapping")
        if mapping is not None:
            ratio = mapping.ours["total"].median / mapping.fhir_resources.median
            if ratio > TARGETS["mapping"]:
                notes.append(
                    f"Mapping: ours is {ratio:.2f}x the fhir.resources floor, over "
                    f"{TARGETS['mapping']}x; the stage rows and the profile below say where."
                )
        pull = self.results.get("pull")
        if pull is not None and pull.ratio > TARGETS["pull"]:
            notes.append(
                f"Pull: ours is {pull.ratio:.2f}x raw httpx, over {TARGETS['pull']}x "
                "(`python -m bench.profile` does not cover it; profile `pull_ours`)."
            )
        memory = self.results.get("memory")
        if memory is not None and len(memory.runs) >= 2 and memory.ratio > TARGETS["memory"]:
            notes.append(
                f"Memory: the peak grows {memory.ratio:.2f}x from {memory.runs[0].cases} to "
                f"{memory.runs[-1].cases} cases: the pusher keeps something per case."
            )
        return notes

    def markdown(self) -> str:
        m = self.machine
        packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        parts = [
            "# fhir-plao benchmark results",
            "",
            "Written by `make bench` (`python -m bench`); do not edit by hand. Every figure is the",
            "median of several runs in one process on one machine, contenders alternating; the",
            "ratios compare contenders measured side by side in the same run.",
            "",
            f"- date: {self.started} (UTC); total run time {self.seconds / 60:.1f} min",
            f"- machine: {m['cpu']}, {m['cores']} logical cores, {m['memory']} memory; {m['os']}",
            f"- load average (1/5/15 min) at start: {m.get('load_start', '?')}; at the end: "
            f"{m.get('load_end', '?')} (other work on the machine shows here)",
            f"- Python: {m['python']}",
            f"- packages: {packages}",
            f"- commit: {m['commit']}",
            f"- settings: {settings}",
            "",
            "## Ratios",
            "",
            self.table(),
            "",
        ]
        notes = self.notes()
        if notes:
            parts += ["## Targets missed: what the numbers say", ""]
            parts += [f"- {note}" for note in notes]
            parts.append("")
        if self.errors:
            parts += ["## Errors", ""]
            parts += [f"- **{name}**: {msg}" for name, msg in self.errors.items()]
            parts.append("")
        parts += ["## Details", "", self.details(), "## How each figure is made", ""]
        parts += [_method(name) for name in self.results if _method(name)]
        return "\n".join(parts).rstrip() + "\n"


def _median_of(series: Any) -> str:
    return f"{series.median:.1f}" if series is not None and series.values else "?"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {rtype}" for rtype, n in counts.items())


def _method(name: str) -> str:
    import importlib

    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError:
        return ""
    doc = (module.__doc__ or "").strip()
    if not doc:
        return ""
    return f"**{name}** ({f'bench/{name}.py'}): {doc}\n"


_RUN_START = "<!-- bench-run server={server} -->"
_RUN_END = "<!-- /bench-run -->"


def merge_runs(previous: str, server: str, markdown: str) -> str:
    """``bench/RESULTS.md`` with this run's report for ``server`` and the latest earlier run of
    every other server kept below it (a file without run markers is one SEKMET run)."""
    kept: list[str] = []
    if previous.strip():
        blocks = previous.split(_RUN_END)
        if len(blocks) == 1:  # written before the markers: a SEKMET run
            blocks = [_RUN_START.format(server="sekmet") + "\n" + previous]
        for block in blocks:
            _, marker, body = block.partition("<!-- bench-run server=")
            if not marker:
                continue
            name, _, body = body.partition(" -->")
            if name != server and body.strip():
                kept.append(_RUN_START.format(server=name) + body.rstrip() + "\n" + _RUN_END)
    own = _RUN_START.format(server=server) + "\n" + markdown.rstrip() + "\n" + _RUN_END
    return "\n\n".join([own, *kept]) + "\n"
