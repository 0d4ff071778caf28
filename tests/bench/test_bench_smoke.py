"""Smoke test of ``make bench``'s code (offline, seconds): so that ``make test`` catches a broken
bench. The real run, with the server and the peers, is ``make bench``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import mapping, memory, push, report
from bench.__main__ import parse_args


def test_mapping_benchmark_runs_on_a_handful_of_cases() -> None:
    result = mapping.benchmark(n=3, runs=1, with_orjson=False)

    assert result.cases == 3
    assert result.resources > 3 * 20
    for name in ("total", *mapping.STAGES):
        assert result.ours[name].runs == 1
        assert result.ours[name].median > 0
    assert result.fhir_resources.median > 0
    assert result.bytes_out["ours"] > 0 and result.bytes_out["fhir_resources"] > 0


def test_the_report_renders_the_mapping_ratios() -> None:
    result = mapping.benchmark(n=2, runs=1, with_orjson=False)
    rep = report.Report(machine=report.describe_machine(), settings={"runs": 1}, started="now")
    rep.results["mapping"] = result

    text = rep.markdown()

    assert "ours / fhir.resources floor" in rep.table()
    assert "validate alone" in text
    assert "Python" in text and "fhir.resources" in text


def test_fhirpy_resources_refer_to_type_and_id_not_urn() -> None:
    inputs = push.prepare(2)

    resources = [r for case in inputs.one_by_one for r in case]
    assert len(resources) == inputs.resources
    refs = [ref for r in resources for ref in push._references(r)]
    assert refs and not [ref for ref in refs if ref.startswith("urn:")]
    ids = {f"{r['resourceType']}/{r['id']}" for r in resources}
    assert {ref for ref in refs if ref.split("/")[0][:1].isupper()} <= ids


def test_peak_rss_is_the_measured_process_own(tmp_path: Path) -> None:
    grow = (
        "x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(0.3)"
    )
    exit_code, peak_kib, seconds = memory.run_measured(
        [sys.executable, "-c", grow], log=tmp_path / "out.log", cwd=tmp_path, timeout=60
    )

    assert exit_code == 0
    assert peak_kib >= 64 * 1024
    assert seconds > 0


def test_peak_rss_is_not_the_forking_parent_s(tmp_path: Path) -> None:
    ballast = bytearray(192 * 2**20)
    ballast[::4096] = b"1" * len(ballast[::4096])  # this process is now 192 MiB larger
    small = "import time; time.sleep(0.3)"

    _, peak_kib, _ = memory.run_measured(
        [sys.executable, "-c", small], log=tmp_path / "out.log", cwd=tmp_path, timeout=60
    )

    assert peak_kib < 96 * 1024  # ru_maxrss would say about 192 MiB + this interpreter
    del ballast


def test_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_MEMORY_CASES", "2000")
    monkeypatch.setenv("BENCH_ONLY", "mapping,pull")

    args = parse_args([])

    assert args.memory_cases == 2000
    assert args.only == ("mapping", "pull")
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])


def test_results_keep_the_latest_run_of_each_server() -> None:
    legacy = "# fhir-plao benchmark results\n\nold SEKMET figures\n"
    with_hapi = report.merge_runs(legacy, "hapi", "# results\n\nHAPI figures\n")
    assert with_hapi.index("HAPI figures") < with_hapi.index("old SEKMET figures")

    again = report.merge_runs(with_hapi, "sekmet", "# results\n\nnew SEKMET figures\n")
    assert "old SEKMET figures" not in again
    assert "new SEKMET figures" in again and "HAPI figures" in again
    assert again.count("<!-- bench-run server=") == 2
