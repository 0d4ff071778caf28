"""``fhir-plao push`` / ``pull`` / ``plot`` against respx: what a real server will not do on
demand (a refusal with a chosen body, a 500 page, a token endpoint), and the exit-code table.

The same commands against the real servers are in ``tests/integration/test_cli_servers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from client_fakes import BASE, capability_statement, fhir_response, outcome, searchset, url
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fhir_plao import jsonio
from fhir_plao.case import Case, case_to_json
from fhir_plao.cli import main
from fhir_plao.mapping import to_fhir

CASE = {
    "comment": "synthetic test case",
    "patient": {
        "identifier_system": "urn:example:plao",
        "identifier": "X1",
        "birth_date": "1990-04",
        "sex": "female",
    },
    "labs": [
        {
            "id": "lab-ca",
            "test": "calcium-molar",
            "date": "2024-01-02",
            "value": 2.31,
            "unit": "mmol/L",
        },
        {
            "id": "lab-p",
            "test": "phosphate-molar",
            "date": "2024-01-02",
            "value": 1.10,
            "unit": "mmol/L",
        },
    ],
}


def answer_transaction(request: httpx.Request) -> httpx.Response:
    """A transaction-response for whatever was sent: every entry created where it was PUT."""
    sent = jsonio.loads(request.content)
    entries = []
    for n, entry in enumerate(sent["entry"]):
        where = entry["request"]["url"]
        if "?" in where or entry["request"]["method"] == "POST":
            where = f"{entry['resource']['resourceType']}/{100 + n}"
        entries.append({"response": {"status": "201 Created", "location": f"{where}/_history/1"}})
    return fhir_response(
        200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    )


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    path = tmp_path / "case.json"
    path.write_text(jsonio.dumps(CASE, indent=2))
    return path


@pytest.fixture
def case() -> Case:
    return Case.model_validate(CASE)


@pytest.fixture
def server() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
        mock.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?subject=Patient/").mock(
            return_value=fhir_response(200, searchset([], total=0))
        )
        yield mock


@pytest.fixture
def no_leftovers(server: respx.MockRouter) -> respx.MockRouter:
    """A one-case push then looks for what an earlier push left behind: nothing here."""
    server.get(url__regex=rf"^{BASE}/Patient/[^/]+/\$everything$").mock(
        return_value=fhir_response(200, searchset([], total=0))
    )
    server.get(url__regex=rf"^{BASE}/Patient/[^/?$]+$").mock(
        return_value=fhir_response(200, {"resourceType": "Patient", "id": "p"})
    )
    return server


# --------------------------------------------------------------------------- push


@pytest.mark.usefixtures("no_leftovers")
def test_push_prints_each_items_case_field_and_server_id(server, case_file, capsys) -> None:
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    code = main(["push", str(case_file), "--server", BASE, "--token", "t0k"])

    out = capsys.readouterr().out
    assert code == 0
    assert tx.call_count == 1
    assert "labs[1]  Observation/plao-" in out and "[201 Created]" in out
    assert "pushed 3 resources to http://fhir.test/fhir in 1 transaction(s): 3 created" in out
    assert tx.calls.last.request.headers["Authorization"] == "Bearer t0k"


@pytest.mark.usefixtures("no_leftovers")
def test_push_format_json_is_one_result_document(server, case_file, capsys) -> None:
    server.post(BASE).mock(side_effect=answer_transaction)

    assert main(["push", str(case_file), "--server", BASE, "--format", "json"]) == 0

    result = jsonio.loads(capsys.readouterr().out)
    assert (result["ok"], result["resources"], result["created"], result["updated"]) == (
        True,
        3,
        3,
        0,
    )
    lab = next(e for e in result["entries"] if e.get("item") == "lab-p")
    assert lab["field"] == "labs[1]" and lab["status"] == "created" and lab["version"] == "1"
    assert lab["server_id"] == lab["resource"]  # a client id: the server keeps it


@pytest.mark.usefixtures("no_leftovers")
def test_push_takes_server_token_and_timeout_from_the_environment(
    server, case_file, monkeypatch
) -> None:
    monkeypatch.setenv("FHIR_SERVER_URL", BASE)
    monkeypatch.setenv("FHIR_TOKEN", "env-token")
    monkeypatch.setenv("FHIR_TIMEOUT", "2.5")
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    assert main(["push", str(case_file)]) == 0
    request = tx.calls.last.request
    assert request.headers["Authorization"] == "Bearer env-token"
    assert request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


@pytest.mark.usefixtures("no_leftovers")
def test_push_with_basic_auth_reads_the_password_from_a_file(server, case_file, tmp_path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    argv = ["push", str(case_file), "--server", BASE, "--user", "engine"]
    assert main([*argv, "--password-file", str(secret)]) == 0

    assert tx.calls.last.request.headers["Authorization"] == "Basic ZW5naW5lOnMzY3JldA=="


@pytest.mark.usefixtures("no_leftovers")
def test_push_with_smart_backend_services_gets_a_token_first(server, case_file, tmp_path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    token = server.post("http://auth.test/token").mock(
        return_value=httpx.Response(
            200, json={"access_token": "smart-token", "token_type": "bearer", "expires_in": 300}
        )
    )
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    code = main(
        [
            "push", str(case_file), "--server", BASE,
            "--smart-client-id", "engine-1", "--smart-token-url", "http://auth.test/token",
            "--smart-key", str(key_file), "--smart-kid", "k1", "--smart-scope", "system/*.write",
        ]
    )  # fmt: skip

    assert code == 0
    form = dict(pair.split("=", 1) for pair in token.calls.last.request.content.decode().split("&"))
    assert form["grant_type"] == "client_credentials" and form["scope"] == "system%2F%2A.write"
    assert tx.calls.last.request.headers["Authorization"] == "Bearer smart-token"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--token", "t", "--user", "u"],
            "one kind of authentication, not a bearer token and Basic",
        ),
        (["--smart-client-id", "c"], "SMART Backend Services also needs --smart-token-url"),
        (["--user", "u"], "--user needs a password"),
        (["--timeout", "soon"], "the timeout must be a number of seconds"),
    ],
)
def test_bad_auth_or_timeout_options_exit_2_before_anything_is_sent(
    server, case_file, capsys, monkeypatch, extra, message
) -> None:
    monkeypatch.delenv("FHIR_PASSWORD", raising=False)
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    assert main(["push", str(case_file), "--server", BASE, *extra]) == 2

    assert message in capsys.readouterr().err and tx.call_count == 0


def test_a_refused_lab_exits_1_naming_its_field_resource_and_element(
    server, case_file, case, capsys
) -> None:
    bundle = to_fhir(case)
    i = next(
        n
        for n, e in enumerate(bundle["entry"])
        if e["resource"]["identifier"][0]["value"].endswith("/lab-p")
    )
    server.post(BASE).mock(
        return_value=fhir_response(
            400,
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "value",
                        "diagnostics": "HAPI-0450: value out of range",
                        "expression": [f"Bundle.entry[{i}].resource.valueQuantity.value"],
                    }
                ],
            },
        )
    )

    code = main(["push", str(case_file), "--server", BASE])

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    (line,) = captured.err.splitlines()
    rid = bundle["entry"][i]["resource"]["id"]
    assert line.startswith(
        f"fhir-plao push: error: labs[1].value (item lab-p, Observation/{rid}, "
        f"Observation.valueQuantity.value): transaction: POST {BASE} -> 400 Bad Request"
    )
    assert line.endswith("HAPI-0450: value out of range")


def test_a_refusal_in_json_format_is_also_a_json_document(server, case_file, capsys) -> None:
    server.post(BASE).mock(return_value=fhir_response(409, outcome("HAPI-0550: conflict")))

    assert main(["push", str(case_file), "--server", BASE, "--format", "json"]) == 1

    result = jsonio.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["exit"] == 1
    assert result["error"]["status"] == 409 and "HAPI-0550" in result["error"]["message"]


def test_an_unreachable_server_exits_2(case_file, capsys) -> None:
    with respx.mock() as mock:
        mock.get(url("metadata")).mock(side_effect=httpx.ConnectError("refused"))
        code = main(["push", str(case_file), "--server", BASE, "--timeout", "1"])
    assert code == 2 and "fhir-plao push: error:" in capsys.readouterr().err


def test_push_without_a_server_says_how_to_give_one(case_file, capsys, monkeypatch) -> None:
    monkeypatch.delenv("FHIR_SERVER_URL", raising=False)
    assert main(["push", str(case_file)]) == 2
    assert "--server URL or set FHIR_SERVER_URL" in capsys.readouterr().err


def test_push_of_a_bad_case_file_names_it(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient": {"sexx": "female"}}')
    assert main(["push", str(bad), "--server", BASE]) == 2
    assert str(bad) in capsys.readouterr().err


def test_dry_run_prints_the_transaction_and_contacts_no_server(case_file, case, capsys) -> None:
    with respx.mock() as mock:  # any request would fail the test: no route is set
        assert main(["push", str(case_file), "--server", BASE, "--dry-run"]) == 0
        assert not mock.calls
    assert jsonio.loads(capsys.readouterr().out) == to_fhir(case)


def test_dry_run_with_server_ids_shows_the_conditional_updates(case_file, capsys) -> None:
    assert main(["push", str(case_file), "--dry-run", "--ids", "server", "--format", "json"]) == 0

    result = jsonio.loads(capsys.readouterr().out)
    (bundle,) = result["transactions"]
    assert result["dry_run"] is True and result["resources"] == 3
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "PUT", "PUT"]
    assert all("?identifier=" in e["request"]["url"] for e in bundle["entry"])
    assert all("id" not in e["resource"] for e in bundle["entry"])


@pytest.mark.usefixtures("no_leftovers")
def test_push_reads_a_case_on_standard_input(server, case, monkeypatch, capsys) -> None:
    tx = server.post(BASE).mock(side_effect=answer_transaction)
    monkeypatch.setattr("sys.stdin", _stdin(case_to_json(case).encode()))

    assert main(["push", "-", "--server", BASE]) == 0
    assert len(jsonio.loads(tx.calls.last.request.content)["entry"]) == 3


@pytest.mark.parametrize("shape", ["transaction", "collection", "resources-ndjson", "resource"])
@pytest.mark.usefixtures("no_leftovers")
def test_push_accepts_the_fhir_an_engine_already_has(server, case, tmp_path, shape, capsys) -> None:
    bundle = to_fhir(case)
    resources = [e["resource"] for e in bundle["entry"]]
    path = tmp_path / "input.json"
    if shape == "transaction":
        path.write_text(jsonio.dumps(bundle))
    elif shape == "collection":
        path.write_text(
            jsonio.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [
                        {"fullUrl": e["fullUrl"], "resource": e["resource"]}
                        for e in bundle["entry"]
                    ],
                }
            )
        )
    elif shape == "resources-ndjson":  # as a FHIR export writes them: references by Type/id
        by_id = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
        }
        text = jsonio.dumps(resources)
        for urn, ref in by_id.items():
            text = text.replace(urn, ref)
        path.write_text("\n".join(jsonio.dumps(r) for r in jsonio.loads(text)) + "\n")
    else:
        path.write_text(jsonio.dumps(resources[0]))
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    assert main(["push", str(path), "--server", BASE]) == 0, capsys.readouterr().err

    sent = jsonio.loads(tx.calls.last.request.content)
    assert sent["type"] == "transaction"
    expected = 1 if shape == "resource" else 3
    assert [e["request"]["url"] for e in sent["entry"]] == [
        f"{r['resourceType']}/{r['id']}" for r in resources[:expected]
    ]


@pytest.mark.usefixtures("no_leftovers")
def test_a_batch_is_sent_as_a_batch_and_its_failed_entry_named(
    server, case, tmp_path, capsys
) -> None:
    bundle = {**to_fhir(case), "type": "batch"}
    path = tmp_path / "batch.json"
    path.write_text(jsonio.dumps(bundle))

    def answer(request: httpx.Request) -> httpx.Response:
        sent = jsonio.loads(request.content)
        assert sent["type"] == "batch"
        entries: list[dict[str, Any]] = [
            {"response": {"status": "200 OK", "location": f"{e['request']['url']}/_history/2"}}
            for e in sent["entry"]
        ]
        entries[2] = {
            "response": {
                "status": "422 Unprocessable Entity",
                "outcome": outcome("bad unit code"),
            }
        }
        return fhir_response(
            200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    server.post(BASE).mock(side_effect=answer)

    assert main(["push", str(path), "--server", BASE]) == 1

    captured = capsys.readouterr()
    refused = bundle["entry"][2]["resource"]
    assert f"Observation/{refused['id']}" in captured.err and "bad unit code" in captured.err
    assert "2 updated, 1 failed" in captured.out


# --------------------------------------------------------------------------- pull


def test_pull_writes_the_case_to_stdout_and_reports_unmapped_on_stderr(
    server, case, capsys
) -> None:
    resources = [e["resource"] for e in to_fhir(case)["entry"]]
    doctor = {"resourceType": "Practitioner", "id": "dr1"}
    pid = resources[0]["id"]
    server.get(url(f"Patient/{pid}/$everything")).mock(
        return_value=fhir_response(200, searchset([*resources, doctor, resources[1]], total=5))
    )

    code = main(["pull", "--server", BASE, "--patient", pid])

    captured = capsys.readouterr()
    assert code == 0
    pulled = Case.model_validate(jsonio.loads(captured.out))
    assert pulled == case.model_copy(update={"comment": None})  # the repeat is kept once
    assert "1 element(s) not mapped" in captured.err


def test_pull_strict_exits_1_when_something_was_not_mapped(server, case, tmp_path, capsys) -> None:
    resources = [e["resource"] for e in to_fhir(case)["entry"]]
    pid = resources[0]["id"]
    server.get(url(f"Patient/{pid}/$everything")).mock(
        return_value=fhir_response(
            200, searchset([*resources, {"resourceType": "Practitioner", "id": "d"}], total=4)
        )
    )
    out = tmp_path / "case.json"

    assert main(["pull", "--server", BASE, "--patient", pid, "-o", str(out), "--strict"]) == 1
    assert out.exists()  # the case is written; the exit code says something was left out


def test_pull_expect_names_a_missing_item_by_its_id(
    server, case, case_file, tmp_path, capsys
) -> None:
    resources = [e["resource"] for e in to_fhir(case)["entry"]]
    pid = resources[0]["id"]
    without_calcium = [
        r
        for r in resources
        if not r.get("identifier", [{}])[0].get("value", "").endswith("/lab-ca")
    ]
    server.get(url(f"Patient/{pid}/$everything")).mock(
        return_value=fhir_response(200, searchset(without_calcium, total=2))
    )

    argv = ["pull", "--server", BASE, "--patient", pid, "-o", str(tmp_path / "p.json")]
    code = main([*argv, "--expect", str(case_file)])

    out = capsys.readouterr().out
    assert code == 1
    assert "round-trip verdict: different" in out
    assert "labs[lab-ca]: only in the expected" in out
    assert "lab-p" not in out  # the item after it is not shifted into a difference


def test_pull_failure_exits_1_and_leaves_no_file_behind(server, tmp_path, capsys) -> None:
    server.get(url("Patient/plao-p1/$everything")).mock(
        return_value=httpx.Response(500, content=b"<html><title>Oops</title></html>")
    )
    out_file = tmp_path / "pulled.json"
    out_file.write_text("previous content")

    code = main(["pull", "--server", BASE, "--patient", "plao-p1", "-o", str(out_file)])

    assert code == 1
    assert "Oops" in capsys.readouterr().err
    assert out_file.read_text() == "previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled.json"]


def test_pull_format_json_holds_the_case_and_the_unmapped_report(server, case, capsys) -> None:
    resources = [e["resource"] for e in to_fhir(case)["entry"]]
    pid = resources[0]["id"]
    server.get(url(f"Patient/{pid}/$everything")).mock(
        return_value=fhir_response(200, searchset(resources, total=3))
    )

    assert main(["pull", "--server", BASE, "--patient", pid, "--format", "json"]) == 0

    result = jsonio.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["unmapped"]["count"] == 0
    assert Case.model_validate(result["case"]) == case.model_copy(update={"comment": None})


# --------------------------------------------------------------------------- plot


def test_plot_straight_from_a_server(server, tmp_path, example_case, capsys) -> None:
    resources = [e["resource"] for e in to_fhir(example_case)["entry"]]
    pid = resources[0]["id"]
    server.get(url(f"Patient/{pid}/$everything")).mock(
        return_value=fhir_response(200, searchset(resources, total=len(resources)))
    )
    picture = tmp_path / "bmd.svg"

    assert main(["plot", "--server", BASE, "--patient", pid, "-o", str(picture)]) == 0

    assert "12 scores plotted" in capsys.readouterr().out
    assert picture.read_text().count("<svg") == 1


def _stdin(data: bytes) -> Any:
    import io

    return io.TextIOWrapper(io.BytesIO(data))


# --------------------------------------------------------------------------- credentials


ECHOED_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><pre>\n"
    b"POST /fhir HTTP/1.1\nAuthorization: Bearer s3cret-t0ken-123\nCookie: session=abcdef123456\n"
    b"upstream: https://engine:pa55word@10.0.0.1/fhir?access_token=s3cret-t0ken-123\n"
    b"</pre></body></html>"
)


@pytest.mark.parametrize(
    "body",
    [
        ECHOED_PAGE,
        jsonio.dumps(
            outcome("rejected request with header Authorization: Bearer s3cret-t0ken-123")
        ).encode(),
        jsonio.dumps(
            {"error": "invalid_token", "error_description": "token s3cret-t0ken-123 expired"}
        ).encode(),
    ],
    ids=["html page", "operation outcome", "oauth error"],
)
def test_a_server_echoing_the_token_never_gets_it_printed_or_dead_lettered(
    server, case_file, tmp_path, capsys, body
) -> None:
    server.post(BASE).mock(return_value=httpx.Response(400, content=body))
    dead_letter = tmp_path / "dead.ndjson"

    single = main(
        [
            "push",
            str(case_file),
            "--server",
            BASE,
            "--token",
            "s3cret-t0ken-123",
            "--format",
            "json",
        ]
    )
    bulk = main(
        ["push", str(case_file), "--server", BASE, "--token", "s3cret-t0ken-123",
         "--dead-letter", str(dead_letter), "--journal", str(tmp_path / "j.ndjson")]
    )  # fmt: skip

    captured = capsys.readouterr()
    assert (single, bulk) == (1, 1)
    for text in (captured.out, captured.err, dead_letter.read_text()):
        assert "s3cret-t0ken-123" not in text
        assert "abcdef123456" not in text and "pa55word" not in text
    assert "[redacted]" in captured.err
    assert dead_letter.stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- broken inputs


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--user", "u", "--password-file", "/nonexistent/password"],
            "/nonexistent/password: cannot read the password",
        ),
        (
            ["--smart-client-id", "c", "--smart-token-url", "http://auth.test/token",
             "--smart-key", "/nonexistent/key.pem", "--smart-kid", "k"],
            "/nonexistent/key.pem: cannot read the key",
        ),
    ],
)  # fmt: skip
def test_an_unreadable_secret_file_is_named_and_nothing_is_sent(
    server, case_file, capsys, extra, message
) -> None:
    tx = server.post(BASE).mock(side_effect=answer_transaction)

    assert main(["push", str(case_file), "--server", BASE, *extra]) == 2

    (line,) = capsys.readouterr().err.splitlines()
    assert message in line and tx.call_count == 0


def test_a_smart_key_that_is_not_pem_is_refused(server, case_file, tmp_path, capsys) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    argv = ["push", str(case_file), "--server", BASE, "--smart-client-id", "c"]
    argv += ["--smart-token-url", "http://auth.test/token", "--smart-key", str(key)]

    assert main([*argv, "--smart-kid", "k"]) == 2
    assert "not a usable PEM key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b'[{"resourceType": "Patient"}, {"name": 1}]', "no resourceType"),
        (b'{"patient": {"identifier": "x"}}', "sex"),
        (b"", "malformed JSON"),
    ],
    ids=["not json", "not fhir", "bad case", "empty"],
)
def test_broken_input_on_stdin_exits_2_naming_it(
    server, monkeypatch, capsys, data, message
) -> None:
    tx = server.post(BASE).mock(side_effect=answer_transaction)
    monkeypatch.setattr("sys.stdin", _stdin(data))

    assert main(["push", "-", "--server", BASE]) == 2

    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and tx.call_count == 0


# --------------------------------------------------------------------------- late writes


def a_late_write(rest: list[Any]) -> Any:
    """The server side of a push whose first attempt timed out: the retry is answered; the
    read-back (a batch of GETs) finds the first entry at version 2 -- the timed-out attempt
    landed after it; then each of ``rest`` answers a further POST."""

    def read_back(request: httpx.Request) -> httpx.Response:
        sent = jsonio.loads(request.content)
        assert sent["type"] == "batch"
        entries = [
            {"response": {"status": "200 OK", "etag": f'W/"{2 if n == 0 else 1}"'}}
            for n, _ in enumerate(sent["entry"])
        ]
        return fhir_response(
            200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    answers = iter([httpx.ReadTimeout("held"), answer_transaction, read_back, *rest])

    def respond(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer(request)

    return respond


@pytest.mark.usefixtures("no_leftovers")
def test_a_push_whose_first_attempt_may_land_late_is_read_back_and_pushed_again(
    server, case_file, capsys
) -> None:
    posts = server.post(BASE).mock(side_effect=a_late_write([answer_transaction]))

    code = main(["push", str(case_file), "--server", BASE, "--settle", "0", "--format", "json"])

    assert code == 0
    methods = [jsonio.loads(c.request.content)["type"] for c in posts.calls]
    assert methods == ["transaction", "transaction", "batch", "transaction"]
    result = jsonio.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["repushed"] == 1


@pytest.mark.usefixtures("no_leftovers")
def test_a_push_that_cannot_be_made_the_newest_again_names_the_patient(
    server, case_file, capsys
) -> None:
    refused = lambda request: fhir_response(500, outcome("database unavailable"))  # noqa: E731
    server.post(BASE).mock(side_effect=a_late_write([refused] * 4))

    code = main(["push", str(case_file), "--server", BASE, "--settle", "0"])

    assert code == 1
    *warnings, line = capsys.readouterr().err.splitlines()
    assert "pushing the case again" in warnings[-1]
    assert line.startswith("fhir-plao push: error: Patient/plao-")
    assert ": the server may hold older data than this push confirmed: 1 resource(s)" in line
