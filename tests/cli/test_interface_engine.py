"""The CLI as an interface engine drives it: pipes, exit codes, JSON results, streams, logs,
``--version``, and the picture. Commands that talk to a server are here only where no server
is reached (bad arguments, an unreachable port); with a server they are in
``tests/client/test_cli_push_pull.py`` (respx) and ``tests/integration/test_cli_servers.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.cli import ExitCode, main

from ..conftest import EXAMPLE, FOREIGN_EXAMPLES

FOREIGN = FOREIGN_EXAMPLES / "us-core" / "observation-serum-creatinine.json"
NOWHERE = "http://127.0.0.1:9/fhir"  # the discard port: nothing listens there


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_plao.cli", *args],
        input=stdin,
        capture_output=True,
        check=False,
    )


def shell(command: str) -> subprocess.CompletedProcess[str]:
    cli = f"{sys.executable} -m fhir_plao.cli"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command.replace("fhir-plao", cli)],
        capture_output=True,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------- pipes


def test_a_case_piped_through_convert_into_validate_is_valid() -> None:
    result = shell(f"cat {EXAMPLE} | fhir-plao convert - -o - | fhir-plao validate -")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "<stdin>: valid: 0 error(s), 0 warning(s) in 124 resource(s)"


def test_only_the_payload_is_on_stdout(tmp_path: Path) -> None:
    result = run("convert", str(FOREIGN), "--to", "case", "-o", "-")

    assert result.returncode == 0
    jsonio.loads(result.stdout)  # the case, and nothing else
    assert b"element(s) not mapped" in result.stderr


def test_synth_and_plot_write_to_stdout_too() -> None:
    synth = run("synth", "2", "-o", "-")
    assert synth.returncode == 0 and len(synth.stdout.splitlines()) == 2

    picture = run("plot", str(EXAMPLE), "-o", "-")
    assert picture.returncode == 0
    assert picture.stdout.startswith(b"<?xml") and picture.stdout.rstrip().endswith(b"</svg>")
    assert b"plotted 12 scores" in picture.stderr


# --------------------------------------------------------------------------- the exit-code table


def invalid_bundle(tmp_path: Path) -> Path:
    from fhir_plao.case import load_case
    from fhir_plao.mapping import to_fhir

    bundle = to_fhir(load_case(EXAMPLE))
    bundle["entry"][1]["resource"]["status"] = "bogus"
    path = tmp_path / "invalid.json"
    path.write_text(jsonio.dumps(bundle))
    return path


def changed_case(tmp_path: Path) -> Path:
    data = jsonio.loads(EXAMPLE.read_bytes())
    data["labs"] = data["labs"][1:]
    path = tmp_path / "changed.json"
    path.write_text(jsonio.dumps(data))
    return path


# (command line, exit code); {tmp} is a temporary directory, {invalid} an invalid Bundle
TABLE: list[tuple[str, list[str], int]] = [
    ("convert ok", ["convert", str(EXAMPLE), "-o", "{tmp}/b.json"], 0),
    (
        "convert strict unmapped",
        ["convert", str(FOREIGN), "--to", "case", "-o", "{tmp}/c.json", "--strict"],
        1,
    ),
    ("convert unreadable", ["convert", "{tmp}/missing.json"], 2),
    ("convert bad option", ["convert", str(EXAMPLE), "--to", "xml"], 2),
    ("roundtrip ok", ["roundtrip", str(EXAMPLE)], 0),
    ("roundtrip unreadable", ["roundtrip", "{tmp}/missing.json"], 2),
    ("validate ok", ["validate", "{tmp}/b.json"], 0),
    ("validate invalid", ["validate", "{invalid}"], 1),
    ("validate not json", ["validate", str(Path(__file__))], 2),
    ("synth ok", ["synth", "1", "-o", "{tmp}/s.ndjson"], 0),
    ("synth negative", ["synth", "-1"], 2),
    ("push dry run", ["push", str(EXAMPLE), "--dry-run"], 0),
    ("push invalid", ["push", "{invalid}", "--server", NOWHERE], 1),
    ("push unreachable", ["push", str(EXAMPLE), "--server", NOWHERE, "--timeout", "1"], 2),
    ("push no server", ["push", str(EXAMPLE)], 2),
    ("pull unreachable", ["pull", "--patient", "p1", "--server", NOWHERE, "--timeout", "1"], 2),
    ("pull no patient", ["pull", "--server", NOWHERE], 2),
    ("plot ok", ["plot", str(EXAMPLE), "-o", "{tmp}/bmd.svg"], 0),
    ("plot bad suffix", ["plot", str(EXAMPLE), "-o", "{tmp}/bmd.gif"], 2),
    ("plot no scores", ["plot", "{tmp}/c.json", "-o", "{tmp}/none.svg"], 2),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("table")


@pytest.mark.parametrize(("argv", "code"), [pytest.param(a, c, id=n) for n, a, c in TABLE])
def test_every_command_keeps_to_the_exit_code_table(
    workdir: Path, argv: list[str], code: int, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("FHIR_SERVER_URL", raising=False)
    invalid = invalid_bundle(workdir)
    args = [a.format(tmp=workdir, invalid=invalid) for a in argv]

    assert main(args) == code

    err = capsys.readouterr().err
    if code == 2:
        assert "Traceback" not in err and err.strip(), "a reason is given"


def test_an_interrupted_command_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import fhir_plao.cli.convert as convert

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "run_roundtrip", interrupted)
    assert main(["roundtrip", str(EXAMPLE)]) == ExitCode.INTERRUPTED == 130


def test_a_bug_is_one_line_and_exit_2_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import fhir_plao.mapping

    def broken(case: Any) -> Any:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(fhir_plao.mapping, "to_fhir", broken)

    assert main(["convert", str(EXAMPLE)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "fhir-plao convert: error: internal error (TypeError: unhashable type: 'list'); "
        "please report it"
    )


def test_help_shows_the_exit_code_table_and_version_prints_the_version() -> None:
    from importlib.metadata import version

    helped = run("push", "--help")
    assert helped.returncode == 0
    assert b"exit codes (every command):" in helped.stdout and b"130  interrupted" in helped.stdout
    shown = run("--version")
    assert shown.returncode == 0
    assert shown.stdout.decode().strip() == f"fhir-plao {version('fhir-plao')}"


# --------------------------------------------------------------------------- JSON results


def test_convert_format_json_carries_the_case_and_the_unmapped_report() -> None:
    result = run("convert", str(FOREIGN), "--to", "case", "--format", "json")

    assert result.returncode == 0
    document = jsonio.loads(result.stdout)
    assert document["ok"] is True and document["output"] is None
    assert document["unmapped"]["count"] == len(document["unmapped"]["items"]) > 0
    assert document["case"]["patient"]["identifier"]


def test_validate_format_json_is_an_operation_outcome(tmp_path: Path) -> None:
    result = run("validate", str(invalid_bundle(tmp_path)), "--format", "json")

    assert result.returncode == 1
    outcome = jsonio.loads(result.stdout)
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(i["severity"] == "error" for i in outcome["issue"])


def test_a_failure_in_json_format_is_a_json_document_too(tmp_path: Path) -> None:
    result = run("convert", str(tmp_path / "missing.json"), "--format", "json")

    assert result.returncode == 2
    document = jsonio.loads(result.stdout)
    assert document == {
        "ok": False,
        "exit": 2,
        "error": {
            "kind": "InputError",
            "message": f"{tmp_path / 'missing.json'}: cannot read: No such file or directory",
        },
    }


# --------------------------------------------------------------------------- streaming


def test_convert_ndjson_answers_each_line_with_one_flushed_line() -> None:
    from fhir_plao.case import case_to_json, load_case
    from fhir_plao.mapping import to_fhir

    case = load_case(EXAMPLE)
    lines = [
        case_to_json(case, indent=None).strip(),
        "{not json",
        jsonio.dumps(to_fhir(case)),
        "",
        jsonio.dumps({"patient": {"identifier": "x"}}),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_plao.cli", "convert", "--ndjson", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((lines[0] + "\n").encode())
    proc.stdin.flush()
    first = jsonio.loads(proc.stdout.readline())  # answered before the next line is sent
    assert first["resourceType"] == "Bundle" and first == to_fhir(case)
    proc.stdin.write(("\n".join(lines[1:]) + "\n").encode())
    out, err = proc.communicate(timeout=120)

    results = [jsonio.loads(line) for line in out.splitlines()]
    assert proc.returncode == 1  # two lines failed
    assert results[0] == {"line": 2, "ok": False, "error": results[0]["error"]}
    assert results[0]["error"].startswith("line 2: malformed JSON at column")
    assert results[1]["patient"]["identifier"] == case.patient.identifier  # FHIR -> case
    assert results[2]["line"] == 5 and results[2]["ok"] is False and "sex" in results[2]["error"]
    assert len(results) == 3
    assert b"line 2:" in err and b"Traceback" not in err


def test_convert_ndjson_in_json_format_wraps_each_result() -> None:
    from fhir_plao.case import load_case
    from fhir_plao.mapping import to_fhir

    bundle = jsonio.dumps(to_fhir(load_case(EXAMPLE)))
    result = run("convert", "--ndjson", "-", "--format", "json", stdin=(bundle + "\n").encode())

    assert result.returncode == 0
    (line,) = result.stdout.splitlines()
    document = jsonio.loads(line)
    assert document["line"] == 1 and document["ok"] is True
    assert document["unmapped"]["count"] == 0 and "case" in document


# --------------------------------------------------------------------------- logs


def test_json_logs_on_stderr_carry_no_token_and_no_search_values(tmp_path: Path) -> None:
    result = run(
        "-v", "--log-format", "json",
        "pull", "--server", NOWHERE, "--patient", "p1", "--token", "s3cret-t0ken", "--timeout", "1",
    )  # fmt: skip

    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    logs = [json.loads(line) for line in lines if line.startswith("{")]
    assert logs and all({"time", "level", "logger", "message"} <= set(e) for e in logs)
    assert all(e["logger"].startswith("fhir_plao") for e in logs)
    assert b"s3cret-t0ken" not in result.stderr and b"s3cret-t0ken" not in result.stdout
    assert lines[-1].startswith("fhir-plao pull: error: ")


def test_quiet_shows_errors_only() -> None:
    result = run("-q", "pull", "--server", NOWHERE, "--patient", "p1", "--timeout", "1")

    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()  # no retry warnings, the error alone
    assert line.startswith("fhir-plao pull: error: ")


# --------------------------------------------------------------------------- plot


def test_plot_draws_twelve_scores_with_both_bands(tmp_path: Path) -> None:
    picture = tmp_path / "bmd.svg"

    assert main(["plot", str(EXAMPLE), "-o", str(picture)]) == 0

    svg = picture.read_text()
    lines = re.findall(r'<g id="scores-([TZ])-\d">(.*?)</g>', svg, flags=re.S)
    assert sorted(kind for kind, _ in lines) == ["T", "T", "Z", "Z"]  # two sites, T and Z
    assert sum(body.count("<use") for _, body in lines) == 12  # a marker per score
    for band in ("-1.0", "-2.5", "osteoporosis", "osteopenia"):
        assert band in svg
    assert main(["plot", str(EXAMPLE), "-o", str(tmp_path / "again.svg")]) == 0
    assert (tmp_path / "again.svg").read_text() == svg  # deterministic


def test_plot_writes_png_too(tmp_path: Path) -> None:
    assert main(["plot", str(EXAMPLE), "-o", str(tmp_path / "bmd.png")]) == 0
    assert (tmp_path / "bmd.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_the_plot_extra_the_command_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed

    assert main(["plot", str(EXAMPLE), "-o", str(tmp_path / "bmd.svg")]) == 2

    (line,) = capsys.readouterr().err.splitlines()
    assert line == "fhir-plao plot: error: plotting needs matplotlib: pip install 'fhir-plao[plot]'"
    assert not (tmp_path / "bmd.svg").exists()
