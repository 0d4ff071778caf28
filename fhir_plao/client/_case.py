"""Case-level flows beside the sans-IO core: send an :class:`~fhir_plao.outbound.Outbound`, pull
a patient back into a case.

The core itself knows nothing of cases or the mapping; these flows are the one place where the
client meets them, used by ``FhirClient`` and ``AsyncFhirClient`` alike (bulk push sends through
``AsyncFhirClient.push``). Sending is :func:`push_flow`: the parts one after another (whatever an
entry refers to was sent in an earlier part or the same one), each answer paired entry by entry
with what was sent, and every failure traced to the case by the outbound before it is raised.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from fhir_plao._split import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from fhir_plao.client._core import (
    FhirProtocol,
    Flow,
    PushedEntry,
    PushResult,
    _issues,
    check_id,
    push_result,
)
from fhir_plao.errors import FhirError

if TYPE_CHECKING:
    from fhir_plao.case import Case
    from fhir_plao.mapping import MappingResult
    from fhir_plao.outbound import IdMode, Origin, Outbound

__all__ = ["PushSettings", "leftovers_flow", "outbound_of", "pull_flow", "push_case", "push_flow"]

log = logging.getLogger(__name__)


class PushSettings(TypedDict, total=False):
    """How ``push`` prepares a case (ignored for an Outbound already prepared).

    ``validate`` (default True): check the Bundle against R4 and the profiles first (an error
    raises :class:`~fhir_plao.errors.ValidationError`, traced; nothing is sent). ``ids``:
    ``"client"`` (default, ``PUT Type/plao-...``) or ``"server"`` (conditional updates on our
    identifiers, for servers that assign their own ids). ``max_entries`` / ``max_bytes``: the
    limits of one transaction (defaults 500 entries, 8 MiB; None: no limit). ``prune``: delete
    the resources of this patient that an earlier push wrote and the case no longer has (found
    by our item identifier, never another system's); ``look_for_leftovers``: only count them
    (``PushResult.left_behind``).
    """

    validate: bool
    ids: IdMode
    max_entries: int | None
    max_bytes: int | None
    prune: bool
    look_for_leftovers: bool


def push_case(
    protocol: FhirProtocol, what: Case | Outbound, **settings: Unpack[PushSettings]
) -> Flow[PushResult]:
    """Prepare (unless prepared), send, and look for or prune what the case no longer has."""
    outbound = outbound_of(what, **settings)
    result = yield from push_flow(protocol, outbound)
    if settings.get("prune") or settings.get("look_for_leftovers"):
        result = yield from leftovers_flow(
            protocol, outbound, result, prune=bool(settings.get("prune"))
        )
    return result


def outbound_of(what: Case | Outbound, **settings: Unpack[PushSettings]) -> Outbound:
    """An Outbound as given, or the case prepared (``to_fhir`` once, validated, split)."""
    from fhir_plao.outbound import Outbound, prepare

    if isinstance(what, Outbound):
        return what
    return prepare(
        what,
        validate=settings.get("validate", True),
        ids=settings.get("ids", "client"),
        max_entries=settings.get("max_entries", DEFAULT_MAX_ENTRIES),
        max_bytes=settings.get("max_bytes", DEFAULT_MAX_BYTES),
    )


def push_flow(protocol: FhirProtocol, outbound: Outbound) -> Flow[PushResult]:
    """Send every part of ``outbound`` in order; the result maps each entry to its server id.

    A transaction is all or nothing: when one is refused, the ones before it stay applied (the
    error's ``parts_applied`` says how many) and the error is raised, traced. A batch entry that
    fails is in the result (``PushedEntry.problem``), the others applied.
    """
    yield from protocol.capabilities()
    entries: list[PushedEntry] = []
    response: dict[str, Any] = {}
    for n, part in enumerate(outbound.parts):
        try:
            if outbound.kind == "batch":
                response = yield from protocol.batch(part.bundle)
            else:
                response = yield from protocol.transaction(part.bundle)
            result = push_result(part.bundle, response)
        except FhirError as exc:
            outbound.trace(exc, n)
            raise
        entries.extend(
            _annotated(outbound, n, i, entry, origin, response)
            for i, (entry, origin) in enumerate(zip(result.entries, part.origins, strict=True))
        )
    pushed = PushResult(tuple(entries), response, parts=len(outbound.parts))
    log.info(
        "pushed %d resources in %d transaction(s) to %s: %d created, %d updated, %d failed",
        len(pushed.entries),
        pushed.parts,
        protocol.base_url,
        pushed.created,
        pushed.updated,
        len(pushed.failed),
    )
    return pushed


def _annotated(
    outbound: Outbound,
    part: int,
    index: int,
    entry: PushedEntry,
    origin: Origin,
    response: dict[str, Any],
) -> PushedEntry:
    problem = None
    if entry.failed:
        answer = (response.get("entry") or [{}])[index].get("response") or {}
        outcome = answer.get("outcome") if isinstance(answer, dict) else None
        issues = _issues(outcome) if isinstance(outcome, dict) else []
        problem = outbound.locate_entry(part, index, issues, entry.status)
    return PushedEntry(
        entry.local,
        entry.local_ref,
        entry.server,
        entry.status,
        field=origin.field,
        item=origin.item if origin.field else None,
        resource=origin.resource,
        problem=problem,
    )


def leftovers_flow(
    protocol: FhirProtocol, outbound: Outbound, result: PushResult, *, prune: bool
) -> Flow[PushResult]:
    """The patient's resources on the server that this adapter wrote earlier (our item
    identifier under this patient) and the pushed case no longer has; deleted in one
    transaction when ``prune``. Resources other systems wrote are never touched."""
    patient = next((e.server for e in result.entries if e.field == "patient"), None)
    if outbound.case is None or patient is None:
        return result
    resources = yield from protocol.patient_resources(patient.id)
    keep = outbound.keys
    stale = [
        f"{r['resourceType']}/{r['id']}"
        for r in resources
        if r.get("resourceType") != "Patient"
        and isinstance(r.get("id"), str)
        and (key := outbound.ours(r)) is not None
        and key not in keep
    ]
    if not prune or not stale:
        return replace(result, left_behind=tuple(stale))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": ref}} for ref in stale],
    }
    yield from protocol.transaction(bundle)
    log.info("pruned %d resource(s) the case no longer has", len(stale))
    return replace(result, left_behind=(), pruned=tuple(stale))


def pull_flow(protocol: FhirProtocol, patient_id: str) -> Flow[MappingResult]:
    """Fetch the patient's resources (one copy of each) and map them back with ``from_fhir``."""
    from fhir_plao.mapping import from_fhir

    check_id(patient_id, "patient id")
    resources = yield from protocol.patient_resources(patient_id)
    return from_fhir(resources)
