"""push_cases when there is no server to talk to, and its options.

Everything a bulk push does with a server is tested against the real SEKMET server in
``tests/integration/test_bulk.py`` (and its fault paths in ``test_bulk_faults.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import respx

from fhir_plao.bulk import CaseSource, PushOptions, PushSummary, open_cases, push_cases
from fhir_plao.case import case_to_json
from fhir_plao.client import AsyncFhirClient, RetryPolicy
from fhir_plao.errors import InputError, TransportError
from fhir_plao.synth import synth_cases

BASE = "http://fhir.test/r4"


def test_an_unreachable_server_stops_the_run_before_any_case_is_read(tmp_path: Path) -> None:
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    router.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))
    source = tmp_path / "cases.ndjson"
    source.write_text("".join(case_to_json(c, indent=None) for c in synth_cases(2, 5)))
    read: list[str] = []

    def sources() -> Iterator[CaseSource]:
        for item in open_cases(source):
            read.append(item.key)
            yield item

    options = PushOptions(
        journal=tmp_path / "run.journal.ndjson", dead_letter=tmp_path / "run.dead-letter.ndjson"
    )

    async def go() -> PushSummary:
        async with AsyncFhirClient(
            BASE, transport=httpx.MockTransport(router.handler), retry=RetryPolicy.off()
        ) as fhir:
            return await push_cases(fhir, sources(), options)

    with pytest.raises(TransportError, match="could not connect"):
        anyio.run(go)
    assert read == []
    assert not (tmp_path / "run.journal.ndjson").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("concurrency", 0), ("concurrency", 1.5), ("max_entries", 0), ("max_bytes", -1)],
)
def test_push_options_are_checked(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(InputError, match=option):
        PushOptions(journal=tmp_path / "j", dead_letter=tmp_path / "d", **{option: value})
