"""The one outbound pipeline: a case made ready to send, and every failure traced to the case."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from fhir_plao import jsonio
from fhir_plao.case import Case
from fhir_plao.errors import (
    InputError,
    OutcomeIssue,
    PreconditionFailed,
    ServerError,
    TimeoutError_,
    ValidationError,
)
from fhir_plao.mapping import to_fhir
from fhir_plao.mapping._fhir import ITEM_SYSTEM
from fhir_plao.outbound import LIMITS, Outbound, prepare, prepare_fhir


def index_of(outbound: Outbound, field: str) -> int:
    return next(i for i, o in enumerate(outbound.parts[0].origins) if o.field == field)


def refusal(*issues: OutcomeIssue, status: int = 400) -> ServerError:
    return ServerError(status, f"POST /fhir -> {status}", issues=issues)


# --------------------------------------------------------------------------- preparing


def test_a_case_is_mapped_once_validated_and_kept_in_one_part(example_case: Case) -> None:
    outbound = prepare(example_case)

    assert len(outbound.parts) == 1
    assert outbound.bundles[0] == to_fhir(example_case)
    assert outbound.resources == len(to_fhir(example_case)["entry"]) == 124
    assert [i for i in outbound.warnings if i.severity == "error"] == []


def test_every_entry_knows_the_case_field_and_item_it_came_from(example_case: Case) -> None:
    origins = prepare(example_case).parts[0].origins
    by_field = {o.field: o for o in origins}

    assert origins[0].field == "patient" and origins[0].resource.startswith("Patient/plao-")
    lab = by_field["labs[3]"]
    assert lab.item == example_case.labs[3].id
    assert lab.resource_type == "Observation" and lab.resource.startswith("Observation/plao-")
    assert "dxa_scans[0].scores[0]" in by_field  # a score of a scan, not the scan alone
    assert "lactations[0]" in by_field
    assert sum(1 for o in origins if o.field is None) == 0


def test_a_case_over_the_limits_is_split_and_each_part_keeps_its_origins(
    example_case: Case,
) -> None:
    outbound = prepare(example_case, max_entries=10)

    assert len(outbound.parts) == 13
    for part in outbound.parts:
        assert len(part.origins) == len(part.bundle["entry"])
        for entry, origin in zip(part.bundle["entry"], part.origins, strict=True):
            assert origin.resource == entry["request"]["url"]


def test_a_bundle_that_cannot_be_split_names_the_limits(example_case: Case) -> None:
    with pytest.raises(InputError) as raised:
        prepare(example_case, ids="server", max_entries=10, max_bytes=2_000)
    assert raised.value.location == LIMITS


def test_an_invalid_bundle_is_refused_before_sending_naming_field_resource_element(
    example_case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fhir_plao.mapping

    real = fhir_plao.mapping.to_fhir

    def broken(case: Case) -> dict[str, Any]:
        """The Bundle with lab 1's status spoilt."""
        bundle = real(case)
        wanted = f"{case.patient.identifier}/{case.labs[1].id}"
        for entry in bundle["entry"]:
            if entry["resource"].get("identifier", [{}])[0].get("value") == wanted:
                entry["resource"]["status"] = "bogus"
        return bundle

    monkeypatch.setattr(fhir_plao.mapping, "to_fhir", broken)

    with pytest.raises(ValidationError) as raised:
        prepare(example_case)

    (location,) = raised.value.locations
    assert location.field == "labs[1].status"
    assert location.item == example_case.labs[1].id
    assert location.resource is not None and location.resource.startswith("Observation/plao-")
    assert location.element == "Observation.status"
    assert str(raised.value).startswith(f"labs[1].status (item {example_case.labs[1].id}, ")
    assert "nothing was sent" in str(raised.value)


# --------------------------------------------------------------------------- server ids


def test_server_ids_are_conditional_updates_on_our_item_identifier(example_case: Case) -> None:
    outbound = prepare(example_case, ids="server")
    entries = outbound.bundles[0]["entry"]

    patient = entries[0]
    assert "id" not in patient["resource"]
    assert patient["request"]["method"] == "PUT"
    system = example_case.patient.identifier_system
    assert unquote(patient["request"]["url"]) == (
        f"Patient?identifier={system}|{example_case.patient.identifier}"
    )
    lab = entries[index_of(outbound, "labs[0]")]
    assert unquote(lab["request"]["url"]) == (
        f"Observation?identifier={ITEM_SYSTEM}|"
        f"{example_case.patient.identifier}/{example_case.labs[0].id}"
    )
    assert lab["resource"]["subject"] == {"reference": patient["fullUrl"]}  # urn:uuid in one part
    # the patient's identifier is not in what a message may show
    names = [o.resource for o in outbound.parts[0].origins]
    assert all(example_case.patient.identifier not in name for name in names)


def test_server_id_parts_refer_to_each_other_by_conditional_reference(example_case: Case) -> None:
    outbound = prepare(example_case, ids="server", max_entries=10)

    assert len(outbound.parts) > 1
    later = jsonio.dumps(outbound.bundles[1:])
    patient_url = outbound.bundles[0]["entry"][0]["request"]["url"]
    assert f'"reference":"{patient_url}"' in later
    assert outbound.bundles[0]["entry"][0]["fullUrl"] not in later


def test_search_escaping_in_an_identifier() -> None:
    resource = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:x", "value": "a|b,c$d\\e f&g"}],
        "status": "final",
        "code": {"text": "x"},
    }
    (outbound,) = prepare_fhir([resource], ids="server", validate=False)
    url = outbound.bundles[0]["entry"][0]["request"]["url"]
    assert unquote(url) == "Observation?identifier=urn:x|a\\|b\\,c\\$d\\\\e f&g"
    assert " " not in url and "&" not in url


# --------------------------------------------------------------------------- tracing


def test_an_outcome_expression_traces_to_the_case_field(example_case: Case) -> None:
    outbound = prepare(example_case)
    i = index_of(outbound, "labs[3]")
    error = refusal(
        OutcomeIssue("error", "invalid", "bad value", [f"Bundle.entry[{i}].resource.valueQuantity"])
    )

    outbound.trace(error, 0)

    (location,) = error.locations
    assert (location.field, location.element) == ("labs[3].value", "Observation.valueQuantity")
    assert location.resource == outbound.parts[0].origins[i].resource
    assert str(error).startswith(f"labs[3].value (item {example_case.labs[3].id}, Observation/")


def test_a_message_naming_a_resource_id_traces_to_its_item(example_case: Case) -> None:
    outbound = prepare(example_case)
    i = index_of(outbound, "fractures[2]")
    ref = outbound.parts[0].origins[i].resource
    error = refusal(
        OutcomeIssue(
            "error",
            "processing",
            f"HAPI-1094: Resource {ref} not valid, at Condition.onsetDateTime",
        )
    )

    outbound.trace(error, 0)

    (location,) = error.locations
    assert location.field == "fractures[2].onset"
    assert location.element == "Condition.onsetDateTime"


def test_a_message_quoting_our_identifier_traces_to_that_item_and_not_a_longer_one(
    example_case: Case,
) -> None:
    outbound = prepare(example_case, ids="server")
    i = index_of(outbound, "labs[1]")
    url = outbound.bundles[0]["entry"][i]["request"]["url"]
    error = refusal(
        OutcomeIssue(
            "error",
            "processing",
            f'HAPI-0988: Failed to UPDATE resource with match URL "{url}" because this search '
            f"matched 2 resources",
        ),
        status=412,
    )

    outbound.trace(error, 0)

    assert [loc.field for loc in error.locations] == ["labs[1]"]
    assert example_case.patient.identifier not in str(error)  # masked in what is shown


def test_an_element_path_without_the_entry_prefix_uses_the_entry_the_message_names(
    example_case: Case,
) -> None:
    outbound = prepare(example_case)
    i = index_of(outbound, "labs[0]")
    ref = outbound.parts[0].origins[i].resource
    error = refusal(
        OutcomeIssue("error", "value", f"{ref}: unknown unit", ["Observation.valueQuantity.code"])
    )

    outbound.trace(error, 0)

    assert [loc.field for loc in error.locations] == ["labs[0].unit"]


def test_a_failure_without_a_name_lists_the_items_of_the_unconfirmed_transaction(
    example_case: Case,
) -> None:
    outbound = prepare(example_case, max_entries=10)

    error = outbound.trace(TimeoutError_("POST /fhir: timed out (gave up after 3 attempts)"), 2)

    fields = [loc.field for loc in error.locations]
    assert fields == [o.field for o in outbound.parts[2].origins]
    assert (error.parts, error.parts_applied) == (13, 2)
    assert "(2 of 13 transactions applied before it)" in str(error)


def test_a_refusal_naming_nothing_keeps_the_servers_words(example_case: Case) -> None:
    outbound = prepare(example_case)
    error = refusal(OutcomeIssue("error", "too-costly", "the server is busy"))

    outbound.trace(error, 0)

    assert [(loc.field, loc.message) for loc in error.locations] == [(None, "the server is busy")]


def test_a_failed_batch_entry_is_located(example_case: Case) -> None:
    bundle = to_fhir(example_case)
    bundle["type"] = "batch"
    (outbound,) = prepare_fhir([bundle], validate=False)
    i = 5
    issue = OutcomeIssue("error", "invalid", "no", [f"Bundle.entry[{i}].resource.code"])

    location = outbound.locate_entry(0, i, [issue], "400 Bad Request")

    entry = bundle["entry"][i]["resource"]
    assert location.resource == f"{entry['resourceType']}/{entry['id']}"
    assert location.element == f"{entry['resourceType']}.code"
    assert location.message == "no"


# --------------------------------------------------------------------------- FHIR input


def test_loose_resources_become_one_transaction_put_by_id_or_posted() -> None:
    with_id = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    without = {"resourceType": "Patient", "gender": "male"}

    (outbound,) = prepare_fhir([with_id, without])

    entries = outbound.bundles[0]["entry"]
    assert [e["request"] for e in entries] == [
        {"method": "PUT", "url": "Patient/p1"},
        {"method": "POST", "url": "Patient"},
    ]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in entries)
    assert prepare_fhir([with_id, without])[0].bundles == outbound.bundles  # the same each time


def test_a_transaction_bundle_is_sent_as_it_is_and_a_batch_as_a_batch(example_case: Case) -> None:
    bundle = to_fhir(example_case)
    batch = {**bundle, "type": "batch"}

    transaction, as_batch = prepare_fhir([bundle, batch], validate=False)

    assert transaction.kind == "transaction" and transaction.bundles == [bundle]
    assert as_batch.kind == "batch" and as_batch.bundles == [batch]


def test_invalid_fhir_input_is_refused_naming_the_resource_and_element() -> None:
    resource = {"resourceType": "Observation", "id": "o1", "status": "bogus", "code": {"text": "x"}}

    with pytest.raises(ValidationError) as raised:
        prepare_fhir([resource])

    assert any(
        loc.resource == "Observation/o1" and loc.element == "Observation.status"
        for loc in raised.value.locations
    )


def test_a_document_that_is_not_fhir_is_named() -> None:
    with pytest.raises(InputError, match="document 2"):
        prepare_fhir([{"resourceType": "Patient"}, {"name": "x"}])


def test_a_refusal_of_fhir_input_names_the_resource() -> None:
    (outbound,) = prepare_fhir([{"resourceType": "Patient", "id": "p1"}], validate=False)
    error = PreconditionFailed(
        412, "x", issues=[OutcomeIssue("error", "conflict", "Patient/p1 is stale")]
    )

    outbound.trace(error, 0)

    assert [loc.resource for loc in error.locations] == ["Patient/p1"]
