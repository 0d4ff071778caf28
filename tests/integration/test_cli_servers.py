"""The one push pipeline against the real servers: refusals they really make, traced to the case
on every push path; server-assigned ids (HAPI configured to refuse client ids, and SEKMET);
``--dry-run`` sending nothing; FHIR input pushed as it is.

The refusal: another system has stored the same lab twice under our item identifier, so a
conditional update keyed on it matches two resources and the server refuses the transaction
(R4: 412 on several matches; HAPI ``HAPI-2207``, SEKMET "criteria matched 2 resources").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from bulk_helpers import push as bulk_push
from bulk_helpers import read_ndjson, write_ndjson
from own_server import own_hapi

from fhir_plao import jsonio
from fhir_plao.case import Case, case_from_json, case_to_json
from fhir_plao.cli import main
from fhir_plao.client import AsyncFhirClient, FhirClient
from fhir_plao.compare import case_differences
from fhir_plao.errors import FhirError, Gone, Location, NotFound, PreconditionFailed
from fhir_plao.mapping import to_fhir
from fhir_plao.mapping._fhir import ITEM_SYSTEM

pytestmark = pytest.mark.timeout(600)

PATHS = ("cli", "library", "async-library", "bulk")


@pytest.fixture
def case_file(tmp_path: Path, example_case: Case) -> Path:
    path = tmp_path / "case.json"
    path.write_text(case_to_json(example_case))
    return path


def same_case(url: str, kind: str, patient_id: str, case: Case) -> bool:
    """The case the server gives back for the patient is ``case`` (SEKMET re-serialises 1.50 as
    1.5: compared by value there)."""
    with FhirClient(url) as fhir:
        pulled = fhir.pull(patient_id).case
    exact = kind == "hapi"
    return case_differences(case, pulled, ignore_order=True, exact_decimals=exact) == []


def plant_twice(url: str, case: Case, index: int) -> str:
    """Store lab ``index`` twice under our item identifier, as another system might; its id."""
    lab = case.labs[index]
    key = f"{case.patient.identifier}/{lab.id}"
    resource = next(
        e["resource"]
        for e in to_fhir(case)["entry"]
        if e["resource"].get("identifier", [{}])[0].get("value") == key
    )
    copy = {k: v for k, v in resource.items() if k not in ("id", "subject", "meta")}
    with FhirClient(url) as fhir:
        for _ in range(2):
            fhir.create(copy)
    return lab.id


def locations_by(
    path: str, url: str, case: Case, case_file: Path, tmp_path: Path, capsys: Any
) -> list[dict[str, Any]]:
    """Push the case with server ids along ``path``; the locations its refusal names."""
    if path == "cli":
        code = main(
            ["push", str(case_file), "--server", url, "--ids", "server", "--format", "json"]
        )
        captured = capsys.readouterr()
        assert code == 1
        (line,) = captured.err.splitlines()  # one line, on stderr
        assert line.startswith("fhir-plao push: error: labs[3] ")
        result = jsonio.loads(captured.out)
        assert result["ok"] is False and result["error"]["status"] == 412
        return list(result["error"]["locations"])
    if path == "library":
        with FhirClient(url) as fhir, pytest.raises(PreconditionFailed) as raised:
            fhir.push(case, ids="server")
        return [loc.as_json() for loc in raised.value.locations]
    if path == "async-library":

        async def go() -> FhirError:
            async with AsyncFhirClient(url) as fhir:
                try:
                    await fhir.push(case, ids="server")
                except FhirError as exc:
                    return exc
            raise AssertionError("the push was not refused")

        error = anyio.run(go)
        assert isinstance(error, PreconditionFailed)
        return [loc.as_json() for loc in error.locations]
    source = write_ndjson(tmp_path / "cases.ndjson", [case])
    summary, _ = bulk_push(url, source, tmp_path, ids="server")
    assert summary.failed == 1
    (dead,) = read_ndjson(tmp_path / "run.dead-letter.ndjson")
    assert dead["stage"] == "server" and dead["status"] == 412
    return list(dead["locations"])


@pytest.mark.parametrize("path", PATHS)
def test_a_lab_the_server_refuses_is_named_on_every_push_path(
    fresh_fhir_server_url: str,
    example_case: Case,
    case_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
) -> None:
    lab = plant_twice(fresh_fhir_server_url, example_case, 3)

    locations = locations_by(path, fresh_fhir_server_url, example_case, case_file, tmp_path, capsys)

    assert {
        "field": "labs[3]",
        "item": lab,
        "resource": f"Observation?identifier=…/{lab}",
        "element": "Observation.identifier",
    }.items() <= locations[0].items()
    assert example_case.patient.identifier not in jsonio.dumps(locations)  # masked
    with FhirClient(fresh_fhir_server_url) as fhir:  # the transaction was rolled back
        assert fhir.count("Patient") == 0


def test_the_refusal_in_the_library_reads_as_one_line(
    fresh_fhir_server_url: str, example_case: Case
) -> None:
    lab = plant_twice(fresh_fhir_server_url, example_case, 3)
    with FhirClient(fresh_fhir_server_url) as fhir, pytest.raises(PreconditionFailed) as raised:
        fhir.push(example_case, ids="server")

    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(
        f"labs[3] (item {lab}, Observation?identifier=…/{lab}, Observation.identifier): "
    )
    assert raised.value.locations[0] == Location(
        field="labs[3]",
        element="Observation.identifier",
        message=raised.value.locations[0].message,
        resource=f"Observation?identifier=…/{lab}",
        item=lab,
    )


# --------------------------------------------------------------------------- server ids


def test_server_ids_push_twice_updates_in_place_and_pulls_back_the_same_case(
    fresh_fhir_server_url: str,
    fhir_server_kind: str,
    example_case: Case,
    case_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["push", str(case_file), "--server", fresh_fhir_server_url, "--ids", "server"]
    assert main([*argv, "--format", "json"]) == 0
    first = jsonio.loads(capsys.readouterr().out)
    assert main([*argv, "--format", "json"]) == 0
    second = jsonio.loads(capsys.readouterr().out)

    assert (first["created"], first["updated"]) == (124, 0)
    assert (second["created"], second["updated"]) == (0, 124)
    ids = [e["server_id"] for e in first["entries"]]
    assert ids == [e["server_id"] for e in second["entries"]]
    with FhirClient(fresh_fhir_server_url) as fhir:
        assert fhir.count("Patient") == 1 and fhir.count("Observation") == 49
    patient = ids[0].split("/")[1]
    assert same_case(fresh_fhir_server_url, fhir_server_kind, patient, example_case)


@pytest.fixture(scope="module")
def hapi_refusing_client_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A HAPI that assigns every id itself (client-id strategy NOT_ALLOWED)."""
    with own_hapi(tmp_path_factory, "refusing client ids", {"client-ids": "NOT_ALLOWED"}) as url:
        yield url


def test_hapi_refusing_client_ids_names_the_resource_and_says_what_to_do(
    hapi_refusing_client_ids: str, case_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["push", str(case_file), "--server", hapi_refusing_client_ids])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("fhir-plao push: error: patient (Patient/plao-")
    assert ", Patient.id): " in line and "HAPI-0959" in line
    assert line.endswith("(this server assigns its own ids: push with --ids server)")


def test_with_hapi_refusing_client_ids_server_ids_push_twice_and_pull_identical(
    hapi_refusing_client_ids: str,
    example_case: Case,
    case_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = hapi_refusing_client_ids
    argv = ["push", str(case_file), "--server", url, "--ids", "server", "--format", "json"]
    assert main(argv) == 0
    first = jsonio.loads(capsys.readouterr().out)
    with FhirClient(url) as fhir:
        counts = {t: fhir.count(t) for t in ("Patient", "Observation", "Condition", "Procedure")}
    assert main(argv) == 0
    second = jsonio.loads(capsys.readouterr().out)

    assert (first["resources"], first["created"], first["updated"]) == (124, 124, 0)
    assert (second["resources"], second["created"], second["updated"]) == (124, 0, 124)
    with FhirClient(url) as fhir:
        assert {t: fhir.count(t) for t in counts} == counts  # nothing created the second time
    patient = first["entries"][0]["server_id"].split("/")[1]
    assert patient.isdigit()  # the server's own id
    out = tmp_path / "pulled.json"
    pull = ["pull", "--server", url, "--patient", patient, "-o", str(out)]
    assert main([*pull, "--expect", str(case_file)]) == 0
    assert "round-trip verdict: identical" in capsys.readouterr().out
    assert case_differences(example_case, case_from_json(out.read_bytes()), ignore_order=True) == []


# --------------------------------------------------------------------------- dry run, FHIR input


def test_dry_run_prints_the_transaction_and_the_server_receives_nothing(
    fresh_fhir_server_url: str,
    case_file: Path,
    example_case: Case,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = tmp = case_file.with_name("bundle.json")
    tmp.write_text(jsonio.dumps(to_fhir(example_case)))

    argv = ["push", str(bundle), "--server", fresh_fhir_server_url, "--dry-run", "--format", "json"]
    assert main(argv) == 0

    result = jsonio.loads(capsys.readouterr().out)
    assert result["dry_run"] is True and result["resources"] == 124
    assert result["transactions"] == [to_fhir(example_case)]
    with FhirClient(fresh_fhir_server_url) as fhir:
        assert fhir.count("Patient") == 0 and fhir.count("Observation") == 0


def test_a_converted_bundle_pushed_as_it_is_pulls_back_the_case(
    fresh_fhir_server_url: str,
    fhir_server_kind: str,
    example_case: Case,
    case_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = case_file.with_name("bundle.json")
    assert main(["convert", str(case_file), "-o", str(bundle)]) == 0

    assert main(["push", str(bundle), "--server", fresh_fhir_server_url]) == 0
    out = capsys.readouterr().out
    assert "pushed 124 resources" in out

    patient = to_fhir(example_case)["entry"][0]["resource"]["id"]
    assert same_case(fresh_fhir_server_url, fhir_server_kind, patient, example_case)


def test_resources_from_another_system_as_ndjson_are_pushed_in_one_transaction(
    fresh_fhir_server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {
            "resourceType": "Patient",
            "id": "ext-p1",
            "identifier": [{"system": "urn:ext", "value": "1"}],
        },
        {
            "resourceType": "Observation",
            "id": "ext-o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2947-0"}]},
            "subject": {"reference": "Patient/ext-p1"},
        },
    ]
    path = tmp_path / "export.ndjson"
    path.write_text("".join(jsonio.dumps(r) + "\n" for r in lines))

    assert main(["push", str(path), "--server", fresh_fhir_server_url, "--format", "json"]) == 0

    result = jsonio.loads(capsys.readouterr().out)
    assert result["transactions"] == 1 and result["created"] == 2
    with FhirClient(fresh_fhir_server_url) as fhir:
        stored = fhir.read("Observation", "ext-o1")
    assert stored["subject"]["reference"] == "Patient/ext-p1"
    assert ITEM_SYSTEM not in jsonio.dumps(stored)  # sent as the source wrote it


def test_plot_straight_from_the_server(
    fresh_fhir_server_url: str, example_case: Case, tmp_path: Path
) -> None:
    with FhirClient(fresh_fhir_server_url) as fhir:
        patient = fhir.push(example_case).entries[0].server
    assert patient is not None
    picture = tmp_path / "bmd.svg"

    argv = ["plot", "--server", fresh_fhir_server_url, "--patient", patient.id]
    assert main([*argv, "-o", str(picture)]) == 0

    svg = picture.read_text()
    assert (
        sum(
            body.count("<use")
            for body in re.findall(r'<g id="scores-[TZ]-\d">(.*?)</g>', svg, flags=re.S)
        )
        == 12
    )


# --------------------------------------------------------------------------- corrections


def test_a_corrected_case_pushed_with_prune_leaves_nothing_of_the_old_one(
    fresh_fhir_server_url: str,
    example_case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fresh_fhir_server_url
    foreign = {  # another system's note on the same patient: never ours to delete
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "a note from another system"},
        "subject": {"reference": f"Patient/{to_fhir(example_case)['entry'][0]['resource']['id']}"},
    }
    first = tmp_path / "first.json"
    first.write_text(case_to_json(example_case))
    assert main(["push", str(first), "--server", url]) == 0
    with FhirClient(url) as fhir:
        other = fhir.create(foreign)
        counts = {t: fhir.count(t) for t in ("Observation", "Condition")}
    corrected = example_case.model_copy(
        update={"labs": example_case.labs[2:], "fractures": example_case.fractures[1:]}
    )
    removed = [
        e["request"]["url"]
        for e in to_fhir(example_case)["entry"]
        if e["request"]["url"] not in {x["request"]["url"] for x in to_fhir(corrected)["entry"]}
    ]
    assert len(removed) == 3
    second = tmp_path / "second.json"
    second.write_text(case_to_json(corrected))
    capsys.readouterr()

    assert main(["push", str(second), "--server", url, "--format", "json"]) == 0
    kept = jsonio.loads(capsys.readouterr().out)
    assert sorted(kept["left_behind"]) == sorted(removed) and kept["pruned"] == []
    assert main(["push", str(second), "--server", url]) == 0
    assert (
        "3 resource(s) of an earlier push that the case no longer has remain"
        in capsys.readouterr().out
    )

    assert main(["push", str(second), "--server", url, "--prune", "--format", "json"]) == 0
    pruned = jsonio.loads(capsys.readouterr().out)

    assert sorted(pruned["pruned"]) == sorted(removed) and pruned["left_behind"] == []
    assert (pruned["created"], pruned["updated"]) == (0, len(to_fhir(corrected)["entry"]))
    with FhirClient(url) as fhir:
        for ref in removed:
            kind, rid = ref.split("/")
            with pytest.raises((NotFound, Gone)):
                fhir.read(kind, rid)
        assert (
            fhir.read("Observation", str(other.id))["code"]["text"] == "a note from another system"
        )
        assert fhir.count("Observation") == counts["Observation"] - 2
        assert fhir.count("Condition") == counts["Condition"] - 1
