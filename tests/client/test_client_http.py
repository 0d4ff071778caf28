"""The client's HTTP behaviour, pinned with respx. Every test runs for FhirClient and for
AsyncFhirClient (the ``flavour`` fixture), from this one body."""

from __future__ import annotations

import email.utils
import gzip
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from client_fakes import (
    BASE,
    FHIR_JSON,
    capability_statement,
    fhir_response,
    hapi,
    outcome,
    searchset,
    url,
)

from fhir_plao import jsonio
from fhir_plao.client import (
    BearerAuth,
    Conflict,
    Gone,
    InputError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    RetryPolicy,
    ServerError,
    StaleVersion,
    TimeoutError_,
    TransportError,
    UnexpectedResponse,
    Unprocessable,
)
from fhir_plao.outbound import prepare_fhir

pytestmark = pytest.mark.anyio

PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}, "gender": "female"}


def body_of(request: httpx.Request) -> Any:
    return jsonio.loads(request.content)


# --------------------------------------------------------------------------- retries


async def test_429_with_retry_after_waits_as_asked_then_succeeds(make_fhir, router, sleeps):
    route = router.get(url("Patient/p1")).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), fhir_response(200, PATIENT)]
    )
    fhir = make_fhir()

    patient = await fhir.read("Patient", "p1")

    assert patient["id"] == "p1"
    assert route.call_count == 2
    assert sleeps == [7.0]


async def test_retry_after_as_http_date_is_honoured(make_fhir, router, sleeps):
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 30, usegmt=True)
    router.get(url("Patient/p1")).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": when}),
            fhir_response(200, PATIENT),
        ]
    )
    fhir = make_fhir(clock=lambda: now)

    await fhir.read("Patient", "p1")

    assert sleeps == [30.0]


async def test_retry_after_beyond_the_policy_cap_is_not_waited_for(make_fhir, router, sleeps):
    route = router.get(url("Patient/p1")).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "3600"})
    )
    fhir = make_fhir()

    with pytest.raises(RateLimited) as caught:
        await fhir.read("Patient", "p1")

    assert caught.value.retry_after == 3600.0
    assert "3600" in str(caught.value) and "max_retry_after" in str(caught.value)
    assert route.call_count == 1
    assert sleeps == []


async def test_503_storm_on_an_update_gives_up_after_the_attempt_limit(make_fhir, router, sleeps):
    route = router.put(url("Patient/p1")).mock(return_value=fhir_response(503, outcome("busy")))
    fhir = make_fhir(retry=RetryPolicy(attempts=4, base_delay=0.5, max_delay=1.5, jitter=0.0))

    with pytest.raises(ServerError) as caught:
        await fhir.update(PATIENT)

    assert caught.value.status == 503
    assert "gave up after 4 attempts" in str(caught.value)
    assert "busy" in str(caught.value)
    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 1.5]  # exponential, capped by max_delay


async def test_503_on_a_plain_create_is_not_retried_no_duplicate_write(make_fhir, router, sleeps):
    route = router.post(url("Patient")).mock(return_value=httpx.Response(503))
    fhir = make_fhir()

    with pytest.raises(ServerError) as caught:
        await fhir.create({"resourceType": "Patient"})

    assert caught.value.status == 503
    assert "not retried" in str(caught.value)
    assert route.call_count == 1
    assert sleeps == []


async def test_jitter_shortens_the_backoff_within_bounds(make_fhir, router, sleeps):
    router.get(url("Patient/p1")).mock(return_value=httpx.Response(502))
    fhir = make_fhir(retry=RetryPolicy(attempts=5, base_delay=1.0, max_delay=60.0, jitter=0.5))

    with pytest.raises(ServerError):
        await fhir.read("Patient", "p1")

    assert len(sleeps) == 4
    for n, wait in enumerate(sleeps, start=1):
        assert 0.5 * 2 ** (n - 1) <= wait <= 2 ** (n - 1)


async def test_read_timeout_on_a_non_idempotent_post_is_not_retried(make_fhir, router, sleeps):
    route = router.post(url("Observation")).mock(side_effect=httpx.ReadTimeout("timed out"))
    fhir = make_fhir()

    with pytest.raises(TimeoutError_) as caught:
        await fhir.create({"resourceType": "Observation", "status": "final"})

    assert route.call_count == 1
    assert sleeps == []
    assert "not retried" in str(caught.value) and "may already have been applied" in str(
        caught.value
    )


async def test_read_timeout_on_a_get_is_retried(make_fhir, router, sleeps):
    route = router.get(url("Patient/p1")).mock(
        side_effect=[httpx.ReadTimeout("timed out"), fhir_response(200, PATIENT)]
    )
    fhir = make_fhir()

    assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert route.call_count == 2
    assert sleeps == [0.1]


async def test_connect_errors_past_the_limit_raise_a_transport_error(make_fhir, router, sleeps):
    route = router.get(url("metadata")).mock(side_effect=httpx.ConnectError("refused"))
    fhir = make_fhir()

    with pytest.raises(TransportError) as caught:
        await fhir.capabilities()

    assert not isinstance(caught.value, TimeoutError_)
    assert "could not connect" in str(caught.value) and "gave up after 3 attempts" in str(
        caught.value
    )
    assert route.call_count == 3
    assert sleeps == [0.1, 0.2]


async def test_conditional_create_is_retried_because_it_is_idempotent(make_fhir, router, sleeps):
    route = router.post(url("Patient")).mock(
        side_effect=[
            httpx.Response(503),
            fhir_response(201, PATIENT, Location=url("Patient/p1/_history/1")),
        ]
    )
    fhir = make_fhir()

    result = await fhir.create(
        {"resourceType": "Patient"}, if_none_exist={"identifier": "urn:example:plao|X1"}
    )

    assert result.created and result.id == "p1"
    assert route.call_count == 2


async def test_transaction_of_puts_is_retried(make_fhir, router, sleeps, stand_in_mapping):
    route = router.post(BASE).mock(
        side_effect=[
            httpx.Response(504),
            fhir_response(
                200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
            ),
        ]
    )
    fhir = make_fhir()

    await fhir.transaction(stand_in_mapping.bundle)

    assert route.call_count == 2


async def test_transaction_with_a_plain_post_is_not_retried(make_fhir, router, sleeps):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}},
            {
                "resource": {"resourceType": "Observation"},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    route = router.post(BASE).mock(return_value=httpx.Response(503))
    fhir = make_fhir()

    with pytest.raises(ServerError):
        await fhir.transaction(bundle)

    assert route.call_count == 1
    assert sleeps == []


# --------------------------------------------------------------------------- paging


def _three_pages(total: int) -> dict[str, dict[str, Any]]:
    """Recorded HAPI pages 1 and 2, rewritten to our server; page 1 links absolutely, page 2
    relatively (HAPI's `?_getpages=` form), page 3 is the last."""
    page1 = hapi("search-results-page-1.json")
    page2 = hapi("search-results-page-2.json")
    page1["total"] = page2["total"] = total
    page1["link"] = [
        {"relation": "self", "url": url("Patient?gender=female&_count=3")},
        {
            "relation": "next",
            "url": f"{BASE}?_getpages=678cd733&_getpagesoffset=3&_count=3&_bundletype=searchset",
        },
    ]
    page2["link"] = [
        {
            "relation": "next",
            "url": "?_getpages=678cd733&_getpagesoffset=6&_count=3&_bundletype=searchset",
        }
    ]
    page3 = searchset(
        [{"resourceType": "Patient", "id": "last-1"}, {"resourceType": "Patient", "id": "last-2"}],
        total=total,
    )
    return {"0": page1, "3": page2, "6": page3}


def _serve_pages(router: respx.MockRouter, pages: dict[str, dict[str, Any]]) -> list[str]:
    asked: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        offset = request.url.params.get("_getpagesoffset", "0")
        return fhir_response(200, pages[offset])

    router.get(url__startswith=BASE).mock(side_effect=serve)
    return asked


def _ids(pages: dict[str, dict[str, Any]]) -> list[str]:
    return [e["resource"]["id"] for key in ("0", "3", "6") for e in pages[key]["entry"]]


async def test_search_follows_absolute_and_relative_next_links_in_order(make_fhir, router):
    pages = _three_pages(total=8)
    asked = _serve_pages(router, pages)
    fhir = make_fhir()

    results = await fhir.search("Patient", {"gender": "female", "_count": 3})
    resources = await fhir.collect(results)

    assert [r["id"] for r in resources] == _ids(pages)
    assert len(resources) == 8
    assert asked == [
        url("Patient?gender=female&_count=3"),
        f"{BASE}?_getpages=678cd733&_getpagesoffset=3&_count=3&_bundletype=searchset",
        f"{BASE}/?_getpages=678cd733&_getpagesoffset=6&_count=3&_bundletype=searchset",
    ]
    assert results.total == 8 and results.pages_read == 3
    assert not results.truncated and results.note is None


async def test_search_pages_yields_the_bundles(make_fhir, router):
    pages = _three_pages(total=8)
    _serve_pages(router, pages)
    fhir = make_fhir()

    bundles = await fhir.collect((await fhir.search("Patient", {"gender": "female"})).pages())

    assert [b["type"] for b in bundles] == ["searchset"] * 3
    assert bundles[0]["id"] == pages["0"]["id"]


async def test_max_resources_stops_early_and_says_so(make_fhir, router, caplog):
    pages = _three_pages(total=829)
    asked = _serve_pages(router, pages)
    fhir = make_fhir()

    results = await fhir.search("Patient", {"gender": "female"}, max_resources=4)
    with caplog.at_level(logging.WARNING):
        resources = await fhir.collect(results)

    assert [r["id"] for r in resources] == _ids(pages)[:4]
    assert len(asked) == 2
    assert results.truncated
    assert "max_resources=4" in results.note and "829" in results.note
    assert "max_resources=4" in caplog.text


async def test_max_pages_stops_early_and_says_so(make_fhir, router):
    pages = _three_pages(total=829)
    asked = _serve_pages(router, pages)
    fhir = make_fhir()

    results = await fhir.search("Patient", {"gender": "female"}, max_pages=2)
    resources = await fhir.collect(results)

    assert len(resources) == 6 and len(asked) == 2
    assert results.truncated and "max_pages=2" in results.note


async def test_a_cap_that_is_not_reached_reports_nothing(make_fhir, router):
    _serve_pages(router, _three_pages(total=8))
    fhir = make_fhir()

    results = await fhir.search("Patient", {"gender": "female"}, max_resources=8)
    assert len(await fhir.collect(results)) == 8
    assert not results.truncated


async def test_server_that_stops_before_total_is_reported_as_truncated(make_fhir, router):
    _serve_pages(router, _three_pages(total=829))  # recorded total: 829, only 8 sent
    fhir = make_fhir()

    results = await fhir.search("Patient", {"gender": "female"})
    assert len(await fhir.collect(results)) == 8
    assert results.truncated and "total=829" in results.note


async def test_include_entries_are_yielded_too(make_fhir, router):
    obs = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}}
    route = router.get(url("Observation")).mock(
        return_value=fhir_response(200, searchset([obs], includes=[PATIENT], total=1))
    )
    fhir = make_fhir()

    results = await fhir.search(
        "Observation", [("patient", "p1"), ("_include", "Observation:patient")]
    )
    resources = await fhir.collect(results)

    assert [r["resourceType"] for r in resources] == ["Observation", "Patient"]
    assert route.calls.last.request.url.query == b"patient=p1&_include=Observation:patient"
    assert not results.truncated


async def test_next_link_leaving_the_origin_is_refused(make_fhir, router):
    first = searchset([PATIENT], next_link="http://elsewhere.test/fhir?_getpages=x", total=2)
    router.get(url("Patient")).mock(return_value=fhir_response(200, first))
    foreign = router.get(url__startswith="http://elsewhere.test").mock(
        return_value=fhir_response(200, searchset([]))
    )
    fhir = make_fhir(auth=BearerAuth("s3cret"))

    results = await fhir.search("Patient")
    with pytest.raises(UnexpectedResponse) as caught:
        await fhir.collect(results)

    assert "leads off the server" in str(caught.value)
    assert "follow_foreign_links" in str(caught.value)
    assert foreign.call_count == 0


@pytest.mark.parametrize(
    "link",
    [
        "http://fhir.test/fhir2?_getpages=x",  # same host, a path that merely starts alike
        "http://fhir.test.evil.test/fhir?_getpages=x",  # a host that merely starts alike
        "https://fhir.test/fhir?_getpages=x",  # another scheme
        "http://fhir.test:8080/fhir?_getpages=x",  # another port
    ],
)
async def test_lookalike_links_are_not_on_the_server(make_fhir, router, link):
    first = searchset([PATIENT], next_link=link, total=2)
    router.get(url("Patient")).mock(return_value=fhir_response(200, first))
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse):
        await fhir.collect(await fhir.search("Patient"))


async def test_foreign_link_followed_without_credentials_when_allowed(make_fhir, router):
    first = searchset([PATIENT], next_link="http://elsewhere.test/fhir?_getpages=x", total=2)
    home = router.get(url("Patient")).mock(return_value=fhir_response(200, first))
    foreign = router.get(url__startswith="http://elsewhere.test").mock(
        return_value=fhir_response(
            200, searchset([{"resourceType": "Patient", "id": "p2"}], total=2)
        )
    )
    fhir = make_fhir(
        auth=BearerAuth("s3cret"), headers={"X-Api-Key": "k"}, follow_foreign_links=True
    )

    resources = await fhir.collect(await fhir.search("Patient"))

    assert [r["id"] for r in resources] == ["p1", "p2"]
    assert home.calls.last.request.headers["Authorization"] == "Bearer s3cret"
    assert home.calls.last.request.headers["X-Api-Key"] == "k"
    assert "Authorization" not in foreign.calls.last.request.headers
    assert "X-Api-Key" not in foreign.calls.last.request.headers


async def test_a_next_link_that_loops_is_stopped(make_fhir, router):
    loop = searchset([PATIENT], next_link=url("Patient?page=2"), total=5)
    router.get(url__startswith=BASE).mock(return_value=fhir_response(200, loop))
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match="repeats a page"):
        await fhir.collect(await fhir.search("Patient", {"page": "1"}))


async def test_expired_paging_id_is_gone(make_fhir, router):
    first = searchset([PATIENT], next_link=f"{BASE}?_getpages=old&_getpagesoffset=1", total=2)
    router.get(url("Patient")).mock(return_value=fhir_response(200, first))
    router.get(BASE, params={"_getpages": "old"}).mock(
        return_value=fhir_response(
            410, outcome('Search ID "old" does not exist and may have expired')
        )
    )
    fhir = make_fhir()

    with pytest.raises(Gone, match="may have expired"):
        await fhir.collect(await fhir.search("Patient"))


async def test_history_and_everything_are_paged_too(make_fhir, router):
    router.get(url("Patient/p1/_history")).mock(
        return_value=fhir_response(
            200, {"resourceType": "Bundle", "type": "history", "entry": [{"resource": PATIENT}]}
        )
    )
    router.get(url("Patient/p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT], total=1))
    )
    fhir = make_fhir()

    assert len(await fhir.collect(await fhir.history("Patient", "p1"))) == 1
    assert len(await fhir.collect(await fhir.everything("p1"))) == 1


async def test_count_uses_summary_count(make_fhir, router):
    route = router.get(url("Observation")).mock(
        return_value=fhir_response(
            200, {"resourceType": "Bundle", "type": "searchset", "total": 12}
        )
    )
    fhir = make_fhir()

    assert await fhir.count("Observation", {"patient": "p1"}) == 12
    assert route.calls.last.request.url.query == b"patient=p1&_summary=count"


# --------------------------------------------------------------------------- errors


async def test_hapi_412_maps_to_precondition_failed_with_the_code(make_fhir, router):
    diagnostics = (
        'HAPI-0958: Failed to CREATE resource with match URL "Patient?identifier=X1" because '
        "this search matched 2 resources"
    )
    router.post(url("Patient")).mock(return_value=fhir_response(412, outcome(diagnostics)))
    fhir = make_fhir()

    with pytest.raises(PreconditionFailed) as caught:
        await fhir.create({"resourceType": "Patient"}, if_none_exist="identifier=X1")

    error = caught.value
    assert error.status == 412 and error.hapi_code == "HAPI-0958"
    assert error.issues[0].diagnostics == diagnostics
    assert error.outcome is not None and error.outcome["resourceType"] == "OperationOutcome"
    assert "matched 2 resources" in str(error)


async def test_hapi_409_maps_to_conflict_with_the_code(make_fhir, router):
    router.put(url("Patient/p1")).mock(
        return_value=fhir_response(
            409,
            outcome(
                "HAPI-0989: Trying to update Patient/p1/_history/3 but this is not the current "
                "version"
            ),
        )
    )
    fhir = make_fhir()

    with pytest.raises(Conflict) as caught:
        await fhir.update(PATIENT)

    assert caught.value.hapi_code == "HAPI-0989"
    assert "not the current version" in str(caught.value)


COLLISION = (
    "HAPI-0550: HAPI-0825: Error flushing transaction with resource types: [Patient] - The "
    "operation has failed with a client-assigned ID constraint failure. This typically means that "
    "multiple client threads are trying to create a new resource with the same client-assigned ID "
    "at the same time, and this thread was chosen to be rejected."
)


async def test_a_transaction_of_puts_that_collides_with_a_concurrent_write_is_sent_again(
    make_fhir, router, sleeps, stand_in_mapping
):
    """HAPI's answer when an earlier attempt of the same PUTs is still being applied."""
    route = router.post(BASE).mock(
        side_effect=[
            fhir_response(409, outcome(COLLISION)),
            fhir_response(
                200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
            ),
        ]
    )
    fhir = make_fhir()

    await fhir.transaction(stand_in_mapping.bundle)

    assert route.call_count == 2 and sleeps == [0.1]


async def test_a_conflict_that_persists_is_raised_after_the_retries(make_fhir, router, sleeps):
    route = router.put(url("Patient/p1")).mock(return_value=fhir_response(409, outcome(COLLISION)))
    fhir = make_fhir()

    with pytest.raises(Conflict) as caught:
        await fhir.update(PATIENT, if_match=False)

    assert route.call_count == 3 and "after 3 attempts" in str(caught.value)


async def test_a_stale_if_match_is_not_retried(make_fhir, router, sleeps):
    route = router.put(url("Patient/p1")).mock(return_value=fhir_response(409, outcome(COLLISION)))
    fhir = make_fhir()

    with pytest.raises(StaleVersion):
        await fhir.update(PATIENT)  # If-Match from meta.versionId: a lost update, not a race

    assert route.call_count == 1 and sleeps == []


async def test_a_conflict_on_a_plain_create_is_not_retried(make_fhir, router, sleeps):
    route = router.post(url("Patient")).mock(return_value=fhir_response(409, outcome(COLLISION)))
    fhir = make_fhir()

    with pytest.raises(Conflict):
        await fhir.create({"resourceType": "Patient"})

    assert route.call_count == 1 and sleeps == []


async def test_hapi_422_maps_to_unprocessable_with_the_code_and_expression(make_fhir, router):
    body = outcome("HAPI-0450: Failed to validate", code="invalid")
    body["issue"].append(
        {
            "severity": "error",
            "code": "value",
            "diagnostics": "Observation.status: minimum required = 1, but only found 0",
            "expression": ["Observation.status"],
        }
    )
    router.post(url("Observation")).mock(return_value=fhir_response(422, body))
    fhir = make_fhir()

    with pytest.raises(Unprocessable) as caught:
        await fhir.create({"resourceType": "Observation"})

    assert caught.value.hapi_code == "HAPI-0450"
    assert [i.expression for i in caught.value.issues] == [[], ["Observation.status"]]
    assert "1 more issue" in str(caught.value)


async def test_recorded_hapi_404_maps_to_not_found(make_fhir, router):
    router.get(url("Patient/abcdefg")).mock(
        return_value=fhir_response(404, hapi("patient-not-found.json"))
    )
    fhir = make_fhir()

    with pytest.raises(NotFound) as caught:
        await fhir.read("Patient", "abcdefg")

    assert "Resource Patient/abcdefg is not known" in str(caught.value)
    assert caught.value.hapi_code is None


async def test_html_502_page_gives_a_useful_message(make_fhir, router):
    page = (
        b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>p{}</style></head>"
        b"<body><h1>Bad Gateway</h1><p>The proxy could not reach the upstream FHIR server.</p>"
        b"<hr><address>nginx/1.25</address></body></html>"
    )
    route = router.get(url("Patient/p1")).mock(
        return_value=httpx.Response(502, content=page, headers={"Content-Type": "text/html"})
    )
    fhir = make_fhir(retry=RetryPolicy(attempts=2, base_delay=0.1, jitter=0.0))

    with pytest.raises(ServerError) as caught:
        await fhir.read("Patient", "p1")

    message = str(caught.value)
    assert caught.value.status == 502 and route.call_count == 2
    assert "HTML page" in message and "502 Bad Gateway" in message
    assert "could not reach the upstream" in message
    assert "<" not in caught.value.body_excerpt and "p{}" not in caught.value.body_excerpt
    assert "gave up after 2 attempts" in message


async def test_truncated_json_success_body_is_a_transport_error(make_fhir, router):
    router.get(url("Patient/p1")).mock(
        return_value=httpx.Response(
            200,
            content=b'{"resourceType": "Patient", "id": "p1", "name": [{"fam',
            headers={"Content-Type": FHIR_JSON},
        )
    )
    fhir = make_fhir()

    with pytest.raises(TransportError) as caught:
        await fhir.read("Patient", "p1")

    assert "not valid JSON" in str(caught.value) and "cut off" in str(caught.value)
    assert '"resourceType": "Patient"' in str(caught.value)


async def test_truncated_json_error_body_keeps_status_and_excerpt(make_fhir, router):
    router.delete(url("Patient/p1")).mock(
        return_value=httpx.Response(
            500,
            content=b'{"resourceType": "OperationOutcome", "issue": [{"sever',
            headers={"Content-Type": FHIR_JSON},
        )
    )
    fhir = make_fhir()

    with pytest.raises(ServerError) as caught:
        await fhir.delete("Patient", "p1")

    assert caught.value.status == 500
    assert "not valid JSON" in str(caught.value)
    assert caught.value.body_excerpt.startswith('{"resourceType": "OperationOutcome"')


async def test_html_in_a_success_response_is_unexpected(make_fhir, router):
    router.get(url("Patient/p1")).mock(
        return_value=httpx.Response(200, content=b"<html><title>Log in</title></html>")
    )
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match="HTML page instead of FHIR JSON: Log in"):
        await fhir.read("Patient", "p1")


async def test_a_resource_of_the_wrong_type_is_unexpected(make_fhir, router):
    router.get(url("Patient/p1")).mock(return_value=fhir_response(200, {"resourceType": "Group"}))
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match="expected a Patient, got a Group"):
        await fhir.read("Patient", "p1")


async def test_bad_ids_are_refused_before_sending(make_fhir, router):
    fhir = make_fhir()
    with pytest.raises(InputError):
        await fhir.read("Patient", "../metadata")
    with pytest.raises(InputError):
        await fhir.read("patient", "p1")
    assert router.calls.call_count == 0


# --------------------------------------------------------------------------- writes & headers


async def test_decimals_survive_create_and_read_exactly(make_fhir, router):
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "phosphate"},
        "valueQuantity": {"value": Decimal("1.50"), "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": Decimal("0.80")}, "high": {"value": 2}}],
    }
    stored = {**observation, "id": "o1", "meta": {"versionId": "1"}}
    create = router.post(url("Observation")).mock(
        return_value=fhir_response(201, stored, Location=url("Observation/o1/_history/1"))
    )
    router.get(url("Observation/o1")).mock(return_value=fhir_response(200, stored))
    fhir = make_fhir()

    written = await fhir.create(observation)
    read = await fhir.read("Observation", "o1")

    sent = create.calls.last.request.content
    assert b'"value":1.50' in sent and b'"value":0.80' in sent and b'"value":2}' in sent
    for resource in (written.resource, read):
        value = resource["valueQuantity"]["value"]
        assert isinstance(value, Decimal) and str(value) == "1.50"
        assert resource["referenceRange"][0]["high"]["value"] == 2
        assert isinstance(resource["referenceRange"][0]["high"]["value"], int)


async def test_requests_carry_the_fhir_headers(make_fhir, router):
    route = router.post(url("Patient")).mock(return_value=fhir_response(201, PATIENT))
    fhir = make_fhir(headers={"X-Request-Source": "tests"})

    await fhir.create({"resourceType": "Patient"})

    headers = route.calls.last.request.headers
    assert headers["Accept"] == FHIR_JSON
    assert headers["Content-Type"] == FHIR_JSON
    assert headers["Prefer"] == "return=representation"
    assert "gzip" in headers["Accept-Encoding"]
    assert headers["X-Request-Source"] == "tests"


async def test_gzip_responses_are_decoded(make_fhir, router):
    router.get(url("Patient/p1")).mock(
        return_value=httpx.Response(
            200,
            content=gzip.compress(jsonio.dumps_bytes(PATIENT)),
            headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"},
        )
    )
    fhir = make_fhir()

    assert (await fhir.read("Patient", "p1"))["gender"] == "female"


async def test_return_minimal_reads_the_location(make_fhir, router):
    route = router.post(url("Patient")).mock(
        return_value=httpx.Response(
            201, headers={"Location": url("Patient/123abc/_history/1"), "ETag": 'W/"1"'}
        )
    )
    fhir = make_fhir()

    result = await fhir.create({"resourceType": "Patient"}, prefer="minimal")

    assert route.calls.last.request.headers["Prefer"] == "return=minimal"
    assert (result.type, result.id, result.version) == ("Patient", "123abc", "1")
    assert result.resource is None and result.created


async def test_return_operation_outcome_is_kept_apart(make_fhir, router):
    info = outcome("Successfully created resource", code="informational", severity="information")
    router.post(url("Patient")).mock(
        return_value=fhir_response(201, info, Location="Patient/p9/_history/1")
    )
    fhir = make_fhir()

    result = await fhir.create({"resourceType": "Patient"}, prefer="OperationOutcome")

    assert result.outcome == info and result.resource is None
    assert (result.id, result.version) == ("p9", "1")


async def test_conditional_create_sends_if_none_exist(make_fhir, router):
    route = router.post(url("Patient")).mock(return_value=fhir_response(200, PATIENT))
    fhir = make_fhir()

    result = await fhir.create(
        {"resourceType": "Patient"}, if_none_exist={"identifier": "urn:example:plao|X1"}
    )

    assert route.calls.last.request.headers["If-None-Exist"] == "identifier=urn:example:plao%7CX1"
    assert not result.created  # 200: it already existed, nothing written
    assert (result.id, result.version) == ("p1", "3")


async def test_update_sends_if_match_from_meta_version(make_fhir, router):
    route = router.put(url("Patient/p1")).mock(
        return_value=fhir_response(200, {**PATIENT, "meta": {"versionId": "4"}}, ETag='W/"4"')
    )
    fhir = make_fhir()

    result = await fhir.update(PATIENT)
    assert route.calls.last.request.headers["If-Match"] == 'W/"3"'
    assert result.version == "4"

    await fhir.update(PATIENT, if_match="7")
    assert route.calls.last.request.headers["If-Match"] == 'W/"7"'

    await fhir.update(PATIENT, if_match=False)
    assert "If-Match" not in route.calls.last.request.headers


async def test_update_without_a_version_refuses_a_blind_overwrite(make_fhir, router):
    fhir = make_fhir()

    with pytest.raises(InputError, match=r"no meta\.versionId"):
        await fhir.update({"resourceType": "Patient", "id": "p1"})
    assert router.calls.call_count == 0


async def test_conditional_update_puts_to_the_criteria(make_fhir, router):
    route = router.put(url("Patient")).mock(
        return_value=fhir_response(201, PATIENT, Location="Patient/p1/_history/1")
    )
    fhir = make_fhir()

    result = await fhir.conditional_update(
        {"resourceType": "Patient"}, {"identifier": "urn:example:plao|X1"}
    )

    assert route.calls.last.request.url.query == b"identifier=urn:example:plao%7CX1"
    assert result.id == "p1"


async def test_vread_and_delete(make_fhir, router):
    router.get(url("Patient/p1/_history/2")).mock(return_value=fhir_response(200, PATIENT))
    deleted = router.delete(url("Patient/p1")).mock(
        return_value=fhir_response(200, outcome("Successfully deleted", severity="information"))
    )
    fhir = make_fhir()

    assert (await fhir.vread("Patient", "p1", "2"))["id"] == "p1"
    assert await fhir.delete("Patient", "p1") is None
    assert deleted.call_count == 1


async def test_batch_returns_the_response_bundle(make_fhir, router):
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": "404 Not Found", "outcome": outcome("gone")}}],
    }
    router.post(BASE).mock(return_value=fhir_response(200, answer))
    fhir = make_fhir()

    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient/x"}}],
    }
    assert (await fhir.batch(bundle))["type"] == "batch-response"
    with pytest.raises(InputError, match=r"Bundle\.type 'transaction'"):
        await fhir.transaction(bundle)


# --------------------------------------------------------------------------- capabilities


async def test_a_non_r4_server_is_refused_clearly(make_fhir, router):
    router.get(url("metadata")).mock(
        return_value=fhir_response(200, hapi("valid-capability-statement.json"))
    )
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse) as caught:
        await fhir.capabilities()

    message = str(caught.value)
    assert "speaks FHIR 3.0.1 (STU3)" in message and "R4 (4.0.x)" in message


async def test_an_stu3_302_server_is_refused_clearly(make_fhir, router):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement("3.0.2")))
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match=r"speaks FHIR 3\.0\.2 \(STU3\), not R4"):
        await fhir.capabilities()


async def test_an_r4_server_is_accepted_once(make_fhir, router):
    route = router.get(url("metadata")).mock(
        return_value=fhir_response(200, capability_statement("4.0.1"))
    )
    fhir = make_fhir()

    assert (await fhir.capabilities())["fhirVersion"] == "4.0.1"
    await fhir.capabilities()
    assert route.call_count == 1


# --------------------------------------------------------------------------- auth


async def test_bearer_and_basic_auth_headers(make_fhir, router):
    from fhir_plao.client import BasicAuth

    route = router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))

    await make_fhir(auth=BearerAuth("tok")).read("Patient", "p1")
    assert route.calls.last.request.headers["Authorization"] == "Bearer tok"

    await make_fhir(auth=BasicAuth("ana", "pässword")).read("Patient", "p1")
    assert route.calls.last.request.headers["Authorization"] == "Basic YW5hOnDDpHNzd29yZA=="


async def test_a_401_with_a_fixed_token_is_an_error(make_fhir, router):
    route = router.get(url("Patient/p1")).mock(return_value=httpx.Response(401))
    fhir = make_fhir(auth=BearerAuth("stale"))

    with pytest.raises(ServerError) as caught:
        await fhir.read("Patient", "p1")
    assert caught.value.status == 401 and route.call_count == 1


async def test_logs_carry_no_tokens_and_no_search_values(make_fhir, router, caplog):
    router.get(url("Patient")).mock(return_value=fhir_response(200, searchset([PATIENT], total=1)))
    fhir = make_fhir(auth=BearerAuth("s3cret-token"))

    with caplog.at_level(logging.DEBUG):
        await fhir.collect(await fhir.search("Patient", {"family": "Virtanen", "_count": 5}))

    assert "s3cret-token" not in caplog.text
    assert "Virtanen" not in caplog.text
    assert "family=***" in caplog.text and "_count=5" in caplog.text


# --------------------------------------------------------------------------- push & pull


async def test_push_maps_every_entry_to_its_server_id(make_fhir, router, stand_in_mapping):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    tx = router.post(BASE).mock(
        return_value=fhir_response(
            200,
            {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [
                    {
                        "response": {
                            "status": "201 Created",
                            "location": "Patient/plao-p1/_history/1",
                        }
                    },
                    {
                        "response": {
                            "status": "200 OK",
                            "location": url("Observation/plao-bmd1/_history/2"),
                        }
                    },
                    {"response": {"status": "200 OK", "etag": 'W/"5"'}},  # no location
                ],
            },
        )
    )
    fhir = make_fhir()

    result = await fhir.push(prepare_fhir([stand_in_mapping.bundle], validate=False)[0])

    ids = {key: str(server) for key, server in result.ids.items()}
    assert ids == {
        "urn:uuid:00000000-0000-5000-8000-000000000001": "Patient/plao-p1/_history/1",
        "urn:uuid:00000000-0000-5000-8000-000000000002": "Observation/plao-bmd1/_history/2",
        "urn:uuid:00000000-0000-5000-8000-000000000003": "Observation/plao-z1/_history/5",
    }
    assert [e.local_ref for e in result.entries] == [
        "Patient/plao-p1",
        "Observation/plao-bmd1",
        "Observation/plao-z1",
    ]
    assert result.created == 1 and result.unresolved == ()
    sent = body_of(tx.calls.last.request)
    assert sent["type"] == "transaction"
    assert b'"value":-1.80' in tx.calls.last.request.content


async def test_push_refuses_a_non_r4_server_before_sending(make_fhir, router, stand_in_mapping):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement("5.0.0")))
    tx = router.post(BASE).mock(return_value=httpx.Response(500))
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match=r"5\.0\.0 \(R5\)"):
        await fhir.push(prepare_fhir([stand_in_mapping.bundle], validate=False)[0])
    assert tx.call_count == 0


async def test_pull_uses_everything_follows_paging_and_dedupes(make_fhir, router, stand_in_mapping):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    obs = {"resourceType": "Observation", "id": "o1"}
    doctor = {"resourceType": "Practitioner", "id": "dr1"}
    page2 = f"{BASE}?_getpages=e1&_getpagesoffset=2"
    router.get(url("Patient/plao-p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT, obs], next_link=page2, total=4))
    )
    router.get(BASE, params={"_getpages": "e1"}).mock(
        return_value=fhir_response(200, searchset([obs, doctor], total=4))
    )
    searched: list[str] = []

    def nothing_more(request: httpx.Request) -> httpx.Response:
        searched.append(request.url.path.rsplit("/", 1)[1])
        return fhir_response(200, searchset([], total=0))

    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?subject=Patient/plao-p1").mock(
        side_effect=nothing_more
    )
    fhir = make_fhir()

    result = await fhir.pull("plao-p1")

    # types the server's $everything did not bring are searched for (its compartment may be
    # narrower than HAPI's); Observation came with $everything
    from fhir_plao.client._core import PULL_SEARCHES

    assert searched == [t for t, _ in PULL_SEARCHES if t != "Observation"]

    assert [(r["resourceType"], r["id"]) for r in stand_in_mapping.received] == [
        ("Patient", "p1"),
        ("Observation", "o1"),
        ("Practitioner", "dr1"),
    ]
    assert [str(u) for u in result.unmapped] == ["Practitioner/dr1: not part of a PLAO case"]


async def test_pull_falls_back_to_searches_when_everything_is_missing(
    make_fhir, router, stand_in_mapping
):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    router.get(url("Patient/p1/$everything")).mock(
        return_value=fhir_response(404, outcome("HAPI-0436: Unknown operation"))
    )
    router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    obs = {"resourceType": "Observation", "id": "o1"}
    med = {"resourceType": "Medication", "id": "m1"}
    statement = {"resourceType": "MedicationStatement", "id": "ms1"}
    searched: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        rtype = request.url.path.rsplit("/", 1)[1]
        searched.append(f"{rtype}?{request.url.query.decode()}")
        found = {
            "Observation": searchset([obs], total=1),
            "MedicationStatement": searchset([statement], includes=[med], total=1),
            "DiagnosticReport": searchset([], includes=[obs], total=0),
        }
        return fhir_response(200, found.get(rtype, searchset([], total=0)))

    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?").mock(side_effect=serve)
    fhir = make_fhir()

    await fhir.pull("p1")

    kinds = [(r["resourceType"], r["id"]) for r in stand_in_mapping.received]
    assert kinds == [
        ("Patient", "p1"),
        ("Observation", "o1"),
        ("MedicationStatement", "ms1"),
        ("Medication", "m1"),
    ]
    assert "Observation?subject=Patient/p1" in searched
    assert (
        "MedicationStatement?subject=Patient/p1&_include=MedicationStatement:medication" in searched
    )


async def test_pull_skips_everything_when_the_server_lists_operations_without_it(
    make_fhir, router, stand_in_mapping
):
    rest = [{"mode": "server", "resource": [{"type": "Patient", "operation": [{"name": "match"}]}]}]
    router.get(url("metadata")).mock(
        return_value=fhir_response(200, capability_statement(rest=rest))
    )
    everything = router.get(url("Patient/p1/$everything")).mock(return_value=httpx.Response(500))
    router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?").mock(
        return_value=fhir_response(200, searchset([], total=0))
    )
    fhir = make_fhir()

    await fhir.pull("p1")

    assert everything.call_count == 0
    assert stand_in_mapping.received == [PATIENT]


async def test_pull_of_an_unknown_patient_is_not_found(make_fhir, router, stand_in_mapping):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    router.get(url("Patient/nobody/$everything")).mock(
        return_value=fhir_response(404, hapi("patient-not-found.json"))
    )
    router.get(url("Patient/nobody")).mock(
        return_value=fhir_response(404, hapi("patient-not-found.json"))
    )
    fhir = make_fhir()

    with pytest.raises(NotFound):
        await fhir.pull("nobody")


async def test_pull_falls_back_when_everything_is_incomplete(make_fhir, router, stand_in_mapping):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    router.get(url("Patient/p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT], total=40))  # 1 of 40, no next
    )
    read = router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?").mock(
        return_value=fhir_response(200, searchset([], total=0))
    )
    fhir = make_fhir()

    await fhir.pull("p1")

    assert read.call_count == 1
    assert stand_in_mapping.received == [PATIENT]


async def test_pull_refuses_to_build_a_case_from_a_truncated_search(
    make_fhir, router, stand_in_mapping
):
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    router.get(url("Patient/p1/$everything")).mock(return_value=httpx.Response(404))
    router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    obs = {"resourceType": "Observation", "id": "o1"}
    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?").mock(
        return_value=fhir_response(200, searchset([obs], total=9))  # 1 of 9, no next link
    )
    fhir = make_fhir()

    with pytest.raises(UnexpectedResponse, match=r"total=9 .* results are incomplete"):
        await fhir.pull("p1")
    assert stand_in_mapping.received == []


async def test_an_unreachable_token_endpoint_is_named_in_the_error(make_fhir, router, sleeps):
    from cryptography.hazmat.primitives.asymmetric import ec

    from fhir_plao.client import SmartBackendAuth

    router.post("http://auth.test/token").mock(side_effect=httpx.ConnectError("refused"))
    resource = router.post(url("Observation")).mock(return_value=fhir_response(201, PATIENT))
    auth = SmartBackendAuth(
        "http://auth.test/token", "app", ec.generate_private_key(ec.SECP384R1()),
        kid="k1", scope="system/*.cruds", alg="ES384",
    )  # fmt: skip
    fhir = make_fhir(auth=auth)

    with pytest.raises(TransportError) as caught:
        await fhir.create({"resourceType": "Observation"})

    message = str(caught.value)
    assert message.startswith(
        "create Observation: SMART token request: POST http://auth.test/token"
    )
    assert "could not connect" in message
    assert resource.call_count == 0


async def test_an_injected_httpx_client_is_used_and_left_open(flavour, router):
    from fhir_plao.client import AsyncFhirClient, FhirClient

    route = router.get(url("Patient/p1")).mock(return_value=fhir_response(200, PATIENT))
    transport = httpx.MockTransport(router.handler)
    if flavour == "sync":
        with httpx.Client(transport=transport, headers={"X-Via": "injected"}) as http:
            with FhirClient(BASE, client=http) as fhir:
                fhir.read("Patient", "p1")
            assert not http.is_closed
    else:
        async with httpx.AsyncClient(transport=transport, headers={"X-Via": "injected"}) as http:
            async with AsyncFhirClient(BASE, client=http) as afhir:
                await afhir.read("Patient", "p1")
            assert not http.is_closed
    assert route.calls.last.request.headers["X-Via"] == "injected"


def test_transport_and_client_together_are_refused() -> None:
    from fhir_plao.client import FhirClient

    with httpx.Client() as http, pytest.raises(InputError, match="not both"):
        FhirClient(BASE, client=http, transport=httpx.MockTransport(lambda r: httpx.Response(200)))


async def test_patient_searches_are_strict_and_fall_back_from_subject_to_patient(
    make_fhir, router, stand_in_mapping
):
    """A server that ignores an unknown parameter would return every patient's resources:
    the searches ask for strict handling, and a type that refuses ``subject`` is asked by
    ``patient``."""
    router.get(url("metadata")).mock(return_value=fhir_response(200, capability_statement()))
    router.get(url("Patient/p1/$everything")).mock(
        return_value=fhir_response(200, searchset([PATIENT], total=1))
    )
    asked: list[tuple[str, str | None]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        rtype = request.url.path.rsplit("/", 1)[1]
        asked.append((f"{rtype}?{request.url.query.decode()}", request.headers.get("prefer")))
        if rtype == "ClinicalImpression" and "subject=" in request.url.query.decode():
            return fhir_response(400, outcome("Unknown search parameter 'subject'"))
        return fhir_response(200, searchset([], total=0))

    router.get(url__regex=rf"^{BASE}/[A-Z][A-Za-z]+\?").mock(side_effect=serve)
    fhir = make_fhir()

    await fhir.pull("p1")

    assert all(prefer == "handling=strict" for _, prefer in asked)
    queries = [q for q, _ in asked]
    assert "ClinicalImpression?subject=Patient/p1" in queries
    assert "ClinicalImpression?patient=p1" in queries
    assert queries.index("ClinicalImpression?patient=p1") == (
        queries.index("ClinicalImpression?subject=Patient/p1") + 1
    )
