"""Decimals keep their digits through a real server: HAPI FHIR, compared as text.

HAPI parses decimals as BigDecimal and writes their lexical form back, so what we send is what
we read: ``1.50`` stays ``1.50``, ``0.700`` stays ``0.700``. SEKMET is the exception and is left
out here: it re-serialises every resource through fhir.resources' floats (``1.50`` -> ``1.5``), so
through SEKMET only the value survives (``test_push_pull.py`` shows that loss on SEKMET alone).

One loss is HAPI's own and is pinned, not hidden: Java's BigDecimal has no negative zero, so a
posted ``-0.0`` comes back ``0.0`` (numerically equal, and a valid FHIR decimal either way).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from fhir_plao import jsonio
from fhir_plao.case import Case
from fhir_plao.client import FhirClient
from fhir_plao.compare import case_differences
from fhir_plao.mapping import to_fhir

pytestmark = pytest.mark.servers(
    "hapi", reason="SEKMET rewrites decimals through floats (1.50 -> 1.5): see the module text"
)

#: the decimals the issue names, as JSON text, and the case items they are put in
TWENTY_DIGITS = "1234567890.1234567890"
PLANTED = {
    ("dxa", 0, 0): "1.50",
    ("dxa", 0, 1): "-0.0",
    ("labs", "lab-phosphorus"): "0.700",
    ("vitals", "vital-weight"): "19",
    ("vitals", "vital-bmi"): TWENTY_DIGITS,
}


def _case_with_planted_decimals(example_case_data: dict[str, Any]) -> Case:
    data = example_case_data
    for key, text in PLANTED.items():
        if key[0] == "dxa":
            data["dxa_scans"][key[1]]["scores"][key[2]]["value"] = Decimal(text)
        else:
            (item,) = [item for item in data[key[0]] if item["id"] == key[1]]
            item["value"] = Decimal(text)
            item.pop("reference_range", None)  # the planted value lies outside the printed range
            item.pop("interpretation", None)
    return Case.model_validate(jsonio.loads(jsonio.dumps(data)))


def _observation_values(bundle: dict[str, Any]) -> dict[str, str]:
    """Observation id -> the literal text of its ``valueQuantity.value`` in our own JSON."""
    values: dict[str, str] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        quantity = resource.get("valueQuantity")
        if resource["resourceType"] == "Observation" and quantity:
            values[resource["id"]] = str(quantity["value"])
    return values


def _raw_value_text(body: bytes) -> str:
    """The characters of ``"valueQuantity":{..."value":<number>`` as the server sent them."""
    text = body.decode("utf-8")
    start = text.index('"valueQuantity"')
    value_at = text.index('"value":', start) + len('"value":')
    end = value_at
    while end < len(text) and text[end] not in ",}":
        end += 1
    return text[value_at:end].strip()


def test_decimals_come_back_from_hapi_as_written_raw_and_through_pull(
    fresh_fhir_server_url: str, example_case_data: dict[str, Any]
) -> None:
    case = _case_with_planted_decimals(example_case_data)
    sent = _observation_values(jsonio.loads(jsonio.dumps(to_fhir(case))))
    planted = {rid: text for rid, text in sent.items() if text in PLANTED.values()}
    assert sorted(planted.values()) == sorted(PLANTED.values())  # our writer kept every digit

    with FhirClient(fresh_fhir_server_url) as client:
        pushed = client.push(case)
        (patient,) = [s.id for s in pushed.ids.values() if s.type == "Patient"]

    with httpx.Client(headers={"Accept": "application/fhir+json"}, timeout=30) as http:
        for rid, text in planted.items():
            response = http.get(f"{fresh_fhir_server_url}/Observation/{rid}")
            assert response.status_code == 200, response.text
            expected = "0.0" if text == "-0.0" else text  # BigDecimal has no negative zero
            assert _raw_value_text(response.content) == expected, rid

    with FhirClient(fresh_fhir_server_url) as client:
        pulled = client.pull(patient)
    assert pulled.unmapped == []
    differences = case_differences(case, pulled.case, ignore_order=True)  # exact: no numeric mode
    assert len(differences) == 1
    assert differences[0].endswith(".value: -0.0 != 0.0")
    pulled_values = {
        str(score.value) for scan in pulled.case.dxa_scans for score in scan.scores
    } | {str(item.value) for item in (*pulled.case.labs, *pulled.case.vitals)}
    assert {"1.50", "0.700", "19", TWENTY_DIGITS} <= pulled_values
