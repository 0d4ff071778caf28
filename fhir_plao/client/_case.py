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
    Sleep,
    _issues,
    check_id,
    parse_etag,
    push_result,
)
from fhir_plao.errors import FhirError, StaleData, UnexpectedResponse

if TYPE_CHECKING:
    from fhir_plao.case import Case
    from fhir_plao.mapping import MappingResult
    from fhir_plao.outbound import IdMode, Origin, Outbound

__all__ = [
    "PushSettings",
    "leftovers_flow",
    "moved_flow",
    "outbound_of",
    "pull_flow",
    "push_case",
    "push_flow",
    "verify_flow",
]

#: how often a case is pushed again when its resources keep moving after it was confirmed
VERIFY_ROUNDS = 3
#: GETs per verifying batch
_READS_PER_BATCH = 500

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
    (``PushResult.left_behind``). ``settle``: when an answer came only after an attempt of
    unknown fate (``PushResult.uncertain``), wait this many seconds, read the versions back and
    push again if they moved (see :func:`verify_flow`); None: do not verify (bulk push verifies
    at the end of its run). The clients default it to their read timeout.
    """

    validate: bool
    ids: IdMode
    max_entries: int | None
    max_bytes: int | None
    prune: bool
    look_for_leftovers: bool
    settle: float | None


def push_case(
    protocol: FhirProtocol, what: Case | Outbound, **settings: Unpack[PushSettings]
) -> Flow[PushResult]:
    """Prepare (unless prepared), send, and look for or prune what the case no longer has."""
    outbound = outbound_of(what, **settings)
    result = yield from _send(protocol, outbound, settings)
    settle = settings.get("settle")
    if result.uncertain and settle is not None:
        result = yield from verify_flow(protocol, outbound, result, wait=settle, **settings)
    return result


def _send(protocol: FhirProtocol, outbound: Outbound, settings: PushSettings) -> Flow[PushResult]:
    result = yield from push_flow(protocol, outbound)
    if settings.get("prune") or settings.get("look_for_leftovers"):
        result = yield from leftovers_flow(
            protocol, outbound, result, prune=bool(settings.get("prune"))
        )
    return result


def verify_flow(
    protocol: FhirProtocol,
    outbound: Outbound,
    result: PushResult,
    *,
    wait: float,
    **settings: Unpack[PushSettings],
) -> Flow[PushResult]:
    """Make sure no late write has overtaken a confirmed push.

    An attempt whose answer never came (a timeout, a reset after sending, a gateway's 504) may
    still be on its way and land after the push was confirmed -- or after a newer version of
    the case was pushed -- and overwrite it. So: wait ``wait`` seconds for such an attempt to
    land, read back the version of every resource the push confirmed, and when one moved (or
    is gone), push the case again; repeat while the push again meets attempts of unknown fate,
    at most :data:`VERIFY_ROUNDS` times. Returns the result (``uncertain`` False, ``repushed``
    counted); raises :class:`~fhir_plao.errors.StaleData` naming the patient when the
    resources still move.
    """
    repushed = result.repushed
    patient = next(
        (
            f"{e.server.type}/{e.server.id}"
            for e in result.entries
            if e.server and e.field == "patient"
        ),
        None,
    )
    stale = f"{patient or 'the case'}: the server may hold older data than this push confirmed"
    moved: tuple[str, ...] = ()
    for _ in range(VERIFY_ROUNDS):
        if wait > 0:
            yield Sleep(wait)
        moved = yield from moved_flow(protocol, result)
        if not moved:
            return replace(result, uncertain=False, repushed=repushed)
        log.warning(
            "%d resource(s) changed on the server after the push was confirmed (a late write of "
            "an earlier attempt?): pushing the case again",
            len(moved),
        )
        try:
            result = yield from _send(protocol, outbound, settings)
        except FhirError as exc:
            raise StaleData(
                f"{stale}: {len(moved)} resource(s) changed after it was confirmed "
                f"(e.g. {moved[0]}) and pushing it again failed: {exc}",
                patient=patient,
                moved=moved,
            ) from exc
        repushed += 1
        if not result.uncertain:
            return replace(result, repushed=repushed)
    raise StaleData(
        f"{stale}: {len(moved)} resource(s) kept changing after it was confirmed "
        f"(e.g. {moved[0]}); push the case again once nothing else writes it",
        patient=patient,
        moved=moved,
    )


def moved_flow(protocol: FhirProtocol, result: PushResult) -> Flow[tuple[str, ...]]:
    """The confirmed resources (``Type/id``) whose version on the server is no longer the one
    the push was answered with, or that are gone; read back in batches of GETs. A resource
    whose confirmed version the server never said counts as moved (it cannot be checked)."""
    confirmed = {
        f"{e.server.type}/{e.server.id}": e.server.version
        for e in result.entries
        if e.server is not None and not e.failed
    }
    refs = list(confirmed)
    moved: list[str] = []
    for start in range(0, len(refs), _READS_PER_BATCH):
        chunk = refs[start : start + _READS_PER_BATCH]
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": ref}} for ref in chunk],
        }
        answer = yield from protocol.batch(bundle)
        entries = [e for e in answer.get("entry") or [] if isinstance(e, dict)]
        if len(entries) != len(chunk):
            raise UnexpectedResponse(
                f"reading back {len(chunk)} resources: the batch-response has "
                f"{len(entries)} entries"
            )
        for ref, entry in zip(chunk, entries, strict=True):
            version = _version_of(entry)
            if version is None or version != confirmed[ref]:
                moved.append(ref)
    return tuple(moved)


def _version_of(entry: dict[str, Any]) -> str | None:
    """The version a batch-response entry of a GET reports; None when the read failed."""
    response = entry.get("response")
    status = str(response.get("status", "")) if isinstance(response, dict) else ""
    if not status.strip().startswith("2"):
        return None
    resource = entry.get("resource")
    meta = resource.get("meta") if isinstance(resource, dict) else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    if isinstance(version, str) and version:
        return version
    return parse_etag(response.get("etag")) if isinstance(response, dict) else None


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
    uncertain = False
    for n, part in enumerate(outbound.parts):
        try:
            if outbound.kind == "batch":
                response = yield from protocol.batch(part.bundle)
            else:
                response = yield from protocol.transaction(part.bundle)
            result = push_result(part.bundle, response)
        except FhirError as exc:
            exc.uncertain = exc.uncertain or uncertain
            outbound.trace(exc, n)
            raise
        uncertain = uncertain or result.uncertain
        entries.extend(
            _annotated(outbound, n, i, entry, origin, response)
            for i, (entry, origin) in enumerate(zip(result.entries, part.origins, strict=True))
        )
    pushed = PushResult(tuple(entries), response, parts=len(outbound.parts), uncertain=uncertain)
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
