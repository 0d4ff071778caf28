"""The sans-IO core's pure rules, without any client: URLs, locations, retries, error mapping,
and how a flow is stepped."""

from __future__ import annotations

import email.utils
import inspect
from decimal import Decimal

import pytest
from client_fakes import BASE, hapi
from hypothesis import given
from hypothesis import strategies as st

import fhir_plao.client as client_package
from fhir_plao.client import (
    AsyncFhirClient,
    FhirClient,
    InputError,
    PendingRequest,
    Response,
    RetryPolicy,
    ServerId,
    Timeout,
)
from fhir_plao.client._core import (
    FhirProtocol,
    FlowRunner,
    Sleep,
    encode_params,
    error_for,
    is_idempotent_bundle,
    is_on_server,
    normalise_base_url,
    parse_etag,
    parse_location,
    parse_retry_after,
    push_result,
    resolve_link,
    sanitize_url,
)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("Patient/152755/_history/1", ServerId("Patient", "152755", "1")),
        (f"{BASE}/Observation/plao-1/_history/2", ServerId("Observation", "plao-1", "2")),
        ("http://fhir.test/fhir/Patient/x/_history/7?foo=bar", ServerId("Patient", "x", "7")),
        (  # a UUID version id (Medplum)
            "Patient/p1/_history/1b3c5d7e-0000-4000-8000-000000000000",
            ServerId("Patient", "p1", "1b3c5d7e-0000-4000-8000-000000000000"),
        ),
        ("Patient/p1", ServerId("Patient", "p1", None)),
        (f"{BASE}/Patient/p1", ServerId("Patient", "p1", None)),
        ("", None),
        (None, None),
        ("_history/1", None),
        ("http://fhir.test/", None),
    ],
)
def test_parse_location(location: str | None, expected: ServerId | None) -> None:
    assert parse_location(location) == expected


def test_parse_etag() -> None:
    assert parse_etag('W/"3"') == "3"
    assert parse_etag('"3"') == "3"
    assert parse_etag("3") == "3"
    assert parse_etag(None) is None


def test_sanitize_url_redacts_values_and_user_info() -> None:
    assert (
        sanitize_url(
            "http://user:pw@fhir.test/fhir/Patient?family=Virtanen&birthdate=1990&_count=5"
        )
        == "http://fhir.test/fhir/Patient?family=***&birthdate=***&_count=5"
    )


@pytest.mark.parametrize(
    ("link", "on_server"),
    [
        (f"{BASE}?_getpages=x", True),
        (f"{BASE}/Patient?page=2", True),
        ("HTTP://FHIR.TEST:80/fhir?_getpages=x", True),
        ("http://fhir.test/fhir2?_getpages=x", False),
        ("http://fhir.test/?_getpages=x", False),
        ("http://fhir.test.evil.test/fhir", False),
        ("http://evil.test/fhir?next=http://fhir.test/fhir", False),
        ("https://fhir.test/fhir", False),
    ],
)
def test_is_on_server_compares_origin_and_path_segments(link: str, on_server: bool) -> None:
    assert is_on_server(link, BASE) is on_server


def test_relative_links_resolve_against_the_base() -> None:
    assert resolve_link("?_getpages=a", BASE) == f"{BASE}/?_getpages=a"
    assert resolve_link("Patient?page=2", BASE) == f"{BASE}/Patient?page=2"
    assert resolve_link("/fhir/Patient?page=2", BASE) == f"{BASE}/Patient?page=2"
    assert resolve_link(f"{BASE}?_getpages=a", BASE) == f"{BASE}?_getpages=a"


def test_base_url_is_checked_and_normalised() -> None:
    assert normalise_base_url("http://fhir.test/fhir/") == BASE
    for bad in ("fhir.test/fhir", "ftp://fhir.test", "http://fhir.test/fhir?x=1"):
        with pytest.raises(InputError):
            normalise_base_url(bad)


def test_encode_params_repeats_names_and_keeps_fhir_punctuation() -> None:
    assert (
        encode_params({"code": "http://loinc.org|2777-1", "_include": ["A:b", "C:d"], "n": 3})
        == "code=http://loinc.org%7C2777-1&_include=A:b&_include=C:d&n=3"
    )
    assert encode_params([("date", "ge2023-01-01"), ("date", "le2023-12-31")]) == (
        "date=ge2023-01-01&date=le2023-12-31"
    )
    assert encode_params({"value": Decimal("1.50")}) == "value=1.50"
    assert encode_params("?a=b") == "a=b"
    assert encode_params({"name": "A&B=C"}) == "name=A%26B%3DC"


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@given(retry=st.integers(1, 20), draw=st.floats(0, 1), jitter=st.floats(0, 1))
def test_backoff_stays_within_its_bounds(retry: int, draw: float, jitter: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=jitter)
    full = min(30.0, 0.5 * 2 ** (retry - 1))
    assert full * (1 - jitter) - 1e-9 <= policy.backoff(retry, lambda: draw) <= full + 1e-9


def test_bad_policies_are_refused() -> None:
    with pytest.raises(InputError):
        RetryPolicy(attempts=0)
    with pytest.raises(InputError):
        RetryPolicy(jitter=2)
    assert RetryPolicy.off().attempts == 1
    assert Timeout.of(5) == Timeout(connect=5, read=5)


def test_which_bundles_are_idempotent() -> None:
    def bundle(*requests: dict[str, str]) -> dict[str, object]:
        return {"resourceType": "Bundle", "entry": [{"request": r} for r in requests]}

    put = {"method": "PUT", "url": "Patient/a"}
    conditional = {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x"}
    assert is_idempotent_bundle(bundle(put, {"method": "DELETE", "url": "Patient/b"}, conditional))
    assert not is_idempotent_bundle(bundle(put, {"method": "POST", "url": "Observation"}))
    assert not is_idempotent_bundle(bundle(put, {"method": "PATCH", "url": "Patient/a"}))


def test_recorded_transaction_response_maps_to_server_ids() -> None:
    received = hapi("transaction-results.json")
    sent = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "request": {"method": "POST", "url": "Patient"}},
            {
                "request": {"method": "PUT", "url": "Patient/bdbaa136-a8b5-4baa-8edb-72ab8fd7e83c"},
                "resource": {
                    "resourceType": "Patient",
                    "id": "bdbaa136-a8b5-4baa-8edb-72ab8fd7e83c",
                },
            },
            {"request": {"method": "PUT", "url": "Patient/152754"}},
            {"request": {"method": "GET", "url": "Patient?identifier=x"}},
        ][: len(received["entry"])],
    }
    result = push_result(sent, received)
    assert str(result.ids["urn:uuid:1"]) == "Patient/152755/_history/1"
    assert str(result.ids["Patient/bdbaa136-a8b5-4baa-8edb-72ab8fd7e83c"]).endswith("/_history/2")
    assert result.entries[0].created and not result.entries[1].created


def test_error_for_an_oauth_error_and_an_empty_body() -> None:
    request = PendingRequest("POST", "http://auth.test/token", label="SMART token request")
    oauth = Response(400, {}, b'{"error": "invalid_scope"}', "http://auth.test/token", "Bad")
    assert "invalid_scope" in str(error_for(oauth, request))
    empty = Response(500, {}, b"", BASE, "Internal Server Error")
    assert "no body" in str(error_for(empty, request))


def test_flow_runner_feeds_replies_and_throws_failures() -> None:
    protocol = FhirProtocol(BASE, retry=RetryPolicy(attempts=2, base_delay=1, jitter=0))
    runner = FlowRunner(protocol.read("Patient", "p1"))
    first = runner.next_action()
    assert isinstance(first, PendingRequest) and first.url == f"{BASE}/Patient/p1"
    import httpx

    runner.fail(httpx.ConnectError("refused"))
    assert runner.next_action() == Sleep(1.0)
    runner.reply(None)
    assert isinstance(runner.next_action(), PendingRequest)
    runner.reply(Response(200, {}, b'{"resourceType": "Patient", "id": "p1"}', BASE))
    assert runner.next_action() is None
    assert runner.result == {"resourceType": "Patient", "id": "p1"}


# --------------------------------------------------------------------------- the public face


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_sync_and_async_clients_have_the_same_methods_and_parameters() -> None:
    sync = _public_methods(FhirClient)
    aio = _public_methods(AsyncFhirClient)
    # The one deliberate difference: close() / aclose(), as in httpx.
    assert sync.pop("close") is not None and aio.pop("aclose") is not None
    assert sorted(sync) == sorted(aio)
    for name in sync:
        assert _shape(sync[name]) == _shape(aio[name]), name
    assert [p.name for p in inspect.signature(FhirClient).parameters.values()] == [
        p.name for p in inspect.signature(AsyncFhirClient).parameters.values()
    ]
    for name in aio:
        member = getattr(AsyncFhirClient, name)
        expected_async = name not in ("search", "history", "everything")
        assert inspect.iscoroutinefunction(member) is expected_async, name


def test_exported_members() -> None:
    exported = {
        name
        for name, value in vars(client_package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(client_package.__all__) == exported


def test_patient_search_params_follow_the_capability_statement() -> None:
    from fhir_plao.client._core import patient_search_params

    statement = {
        "rest": [
            {
                "resource": [
                    {
                        "type": "Observation",
                        "searchParam": [{"name": "subject"}, {"name": "patient"}],
                    },
                    {"type": "Condition", "searchParam": [{"name": "patient"}]},
                    {"type": "Basic", "searchParam": [{"name": "code"}]},
                    {"type": "Procedure"},
                ]
            }
        ]
    }
    assert patient_search_params(statement, "Observation") == ("subject", "patient")
    assert patient_search_params(statement, "Condition") == ("patient",)
    assert patient_search_params(statement, "Basic") == ()  # listed, but not by patient
    assert patient_search_params(statement, "ClinicalImpression") == ()  # not served at all
    assert patient_search_params(statement, "Procedure") == ("subject", "patient")  # not said
    assert patient_search_params({}, "Anything") == ("subject", "patient")
