"""The one outbound pipeline: a case (or FHIR an engine already has) made ready to send, once.

::

    case ──to_fhir (once)──▶ Bundle ──validate──▶ server ids? ──split──▶ parts ──▶ client

:func:`prepare` does it for a case, :func:`prepare_fhir` for FHIR documents (a transaction, batch
or collection Bundle, single resources, NDJSON of them). ``fhir-plao push``, ``FhirClient.push``,
``AsyncFhirClient.push`` and bulk push all take an :class:`Outbound` from here and send its parts
with the one flow in :mod:`fhir_plao.client._case`.

An :class:`Outbound` remembers where every entry came from (:class:`Origin`: the case field, the
item's id, the resource), so any failure is traced back to the case by :meth:`Outbound.trace`:

* a validation issue (``Bundle.entry[5].resource.valueQuantity.value``);
* a server refusal: an ``OperationOutcome`` whose ``expression`` / ``location`` names an element
  (with or without the ``Bundle.entry[N]`` prefix), or whose diagnostics name a resource
  (``Observation/plao-...``), a fullUrl, or one of our item identifiers (as HAPI's conditional
  write errors quote the match URL);
* a failed entry of a batch (its ``response.outcome``);
* a transport failure after retries: the items of the transaction that was not confirmed.

The traced error is the original exception (same class, same status) with
:attr:`~fhir_plao.errors.FhirError.locations` filled in: ``str(exc)`` starts with
``labs[3].value (item lab-phosphate, Observation/plao-..., Observation.valueQuantity.value)``.

**Ids.** ``ids="client"`` (the default) writes ``PUT Type/plao-<uuid5>``: ids derived from the
case, so pushing again updates in place. ``ids="server"`` is for servers that refuse
client-assigned ids: each resource is a conditional update keyed by its item identifier
(``PUT Observation?identifier=SYSTEM|PATIENT/lab-x``, no ``id`` in the body), so the server assigns
the id the first time and finds the same resource every later time; references inside a
transaction stay ``urn:uuid`` (the server resolves them), references across split parts become
the same conditional reference. Both are idempotent, so a transaction of either is retried safely.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast
from urllib.parse import quote, unquote

from fhir_plao._split import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, split_transaction
from fhir_plao.errors import (
    FhirError,
    InputError,
    Location,
    OutcomeIssue,
    ServerError,
    ValidationError,
)

if TYPE_CHECKING:
    from fhir_plao._validation.issues import Issue
    from fhir_plao.case import Case

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "ID_MODES",
    "LIMITS",
    "IdMode",
    "Origin",
    "Outbound",
    "Part",
    "prepare",
    "prepare_fhir",
]

log = logging.getLogger(__name__)

IdMode: TypeAlias = Literal["client", "server"]
ID_MODES: tuple[IdMode, ...] = ("client", "server")

#: the location of the error raised when a Bundle cannot be cut under the limits
LIMITS = "max_entries/max_bytes"
#: at most this many locations on one traced error (a broken case can have hundreds)
MAX_LOCATIONS = 50
#: server diagnostics longer than this are cut in a location's message
MAX_MESSAGE = 300

_ENTRY_PATH = re.compile(r"^Bundle\.entry\[(\d+)\](?:\.resource(?:\.(.*))?)?$")
_REFERENCE = re.compile(r"\b([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})\b")
_URN = re.compile(r"urn:uuid:[0-9a-fA-F-]{36}")
_ENTRY_INDEX = re.compile(r"\bentry\s*(?:#|\[)?\s*(\d+)\b", re.IGNORECASE)
_ID_CHAR = re.compile(r"[A-Za-z0-9\-._/]")


@dataclass(frozen=True)
class Origin:
    """Where one entry came from: its resource (``Observation/plao-...``, or with server ids
    ``Observation?identifier=…/lab-x``, the patient's identifier left out), the case field
    (``labs[3]``, ``patient``) and the case item's local id, when the entry came from a case."""

    resource: str
    resource_type: str
    field: str | None = None
    item: str | None = None
    key: str | None = None  # our item identifier value, as the server may quote it


@dataclass(frozen=True)
class Part:
    """One transaction (or batch) to send, and the origin of each of its entries, in order."""

    bundle: dict[str, Any]
    origins: tuple[Origin, ...]


@dataclass(frozen=True)
class Outbound:
    """What will be sent: parts in order (a resource is never referred to from a part before
    its own), of ``kind`` transaction or batch; the case they came from (None for FHIR input),
    the validator's warnings, the id mode; ``masked``: values (the patient's identifier) kept
    out of every traced message."""

    parts: tuple[Part, ...]
    kind: Literal["transaction", "batch"] = "transaction"
    case: Case | None = None
    warnings: tuple[Issue, ...] = ()
    ids: IdMode = "client"
    masked: tuple[str, ...] = ()

    @property
    def bundles(self) -> list[dict[str, Any]]:
        return [part.bundle for part in self.parts]

    @property
    def resources(self) -> int:
        return sum(len(part.origins) for part in self.parts)

    # ----------------------------------------------------------------- tracing

    def trace(self, exc: FhirError, part: int, *, applied: int | None = None) -> FhirError:
        """``exc`` (raised sending part ``part``) with the locations it traces back to."""
        origins = self.parts[part].origins if 0 <= part < len(self.parts) else ()
        bundle = self.parts[part].bundle if 0 <= part < len(self.parts) else {}
        locations = _locations(exc, origins, bundle, self.case, self._mask)
        exc.traced(locations[:MAX_LOCATIONS])
        if exc.args and isinstance(exc.args[0], str):  # the server may quote the identifier
            exc.args = (self._mask(exc.args[0]), *exc.args[1:])
        if len(self.parts) > 1:
            exc.parts = len(self.parts)
            exc.parts_applied = part if applied is None else applied
        return exc

    def locate_entry(
        self, part: int, index: int, issues: Sequence[OutcomeIssue], status: str
    ) -> Location:
        """Where a failed batch entry points: its origin, the element its outcome names."""
        origin = self.parts[part].origins[index]
        serious = [i for i in issues if i.severity in ("fatal", "error")] or list(issues)
        first = serious[0] if serious else None
        element = None
        if first is not None and first.expression:
            element = _entry_element(first.expression[0], self.parts[part].origins)[1]
            if element is not None and not element.startswith(origin.resource_type):
                element = f"{origin.resource_type}.{element}"
        text = first.diagnostics if first is not None and first.diagnostics else status
        return _located(origin, element, self._mask(_cut(text)), self.case)

    def ours(self, resource: Mapping[str, Any]) -> str | None:
        """The item identifier of a resource this adapter wrote for this case's patient (in
        any push, this one or an earlier one), else None: resources other systems wrote have
        no identifier in our item system under this patient."""
        from fhir_plao.mapping._fhir import ITEM_SYSTEM

        if self.case is None:
            return None
        prefix = f"{self.case.patient.identifier}/"
        for identifier in resource.get("identifier") or ():
            if not isinstance(identifier, Mapping) or identifier.get("system") != ITEM_SYSTEM:
                continue
            value = identifier.get("value")
            if isinstance(value, str) and value.startswith(prefix):
                return value
        return None

    @property
    def keys(self) -> frozenset[str]:
        """The item identifiers of everything this outbound writes."""
        return frozenset(o.key for part in self.parts for o in part.origins if o.key)

    def _mask(self, text: str) -> str:
        for value in self.masked:
            if value:
                text = text.replace(value, "…").replace(quote(value, safe=""), "…")
        return text


# --------------------------------------------------------------------------- preparing a case


def prepare(
    case: Case,
    *,
    validate: bool = True,
    ids: IdMode = "client",
    max_entries: int | None = DEFAULT_MAX_ENTRIES,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Outbound:
    """The case ready to send: ``to_fhir`` once, validated (an error raises
    :class:`~fhir_plao.errors.ValidationError` traced to the case fields; nothing is sent), ids
    set for ``ids``, split into reference-closed parts under the limits (None: no limit)."""
    from fhir_plao.mapping import to_fhir

    _check_ids(ids)
    bundle = to_fhir(case)
    entries: list[dict[str, Any]] = bundle["entry"]
    origins = [_case_origin(entry, case, ids) for entry in entries]
    warnings: tuple[Issue, ...] = ()
    masked = (case.patient.identifier,)
    if validate:
        warnings = _validated(bundle, origins, case, masked)
    if ids == "server":
        bundle = {**bundle, "entry": [_conditional(entry) for entry in entries]}
    return Outbound(
        _split(bundle, origins, max_entries, max_bytes),
        case=case,
        warnings=warnings,
        ids=ids,
        masked=masked,
    )


def _validated(
    bundle: Mapping[str, Any],
    origins: Sequence[Origin],
    case: Case | None,
    masked: Sequence[str],
) -> tuple[Issue, ...]:
    from fhir_plao.validation import errors_in, validate

    issues = validate(bundle)
    errors = errors_in(issues)
    if not errors:
        return tuple(issues)
    locations = []
    for issue in errors[:MAX_LOCATIONS]:
        origin, element = _entry_element(issue.path, origins)
        locations.append(_located(origin, element, issue.message, case))
    what = "the case's FHIR Bundle" if case is not None else "the FHIR input"
    raise ValidationError(
        f"{what} has {len(errors)} validation error(s); nothing was sent", issues
    ).traced(locations)


def _check_ids(ids: str) -> None:
    if ids not in ID_MODES:
        raise InputError(f"ids must be 'client' or 'server', not {ids!r}", location="ids")


def _case_origin(entry: Mapping[str, Any], case: Case, ids: IdMode) -> Origin:
    from fhir_plao.mapping._fhir import ITEM_SYSTEM

    resource = entry["resource"]
    rtype = resource["resourceType"]
    if rtype == "Patient":
        name = "Patient?identifier=…" if ids == "server" else f"Patient/{resource['id']}"
        return Origin(name, rtype, "patient")
    prefix = f"{case.patient.identifier}/"
    local = None
    key = None
    for identifier in resource.get("identifier") or ():
        value = identifier.get("value")
        if identifier.get("system") == ITEM_SYSTEM and str(value).startswith(prefix):
            key = str(value)
            local = key[len(prefix) :]
            break
    if ids == "server":
        name = f"{rtype}?identifier=…/{local}" if local else rtype
    else:
        name = f"{rtype}/{resource['id']}"
    return Origin(name, rtype, _case_path(case, local) if local else None, local, key)


def _case_path(case: Case, local: str) -> str | None:
    """The case field of an item's local id (``labs[3]``; ``dxa_scans[0].scores[2]`` for a score,
    ``lactations[1]``, ``follow_up.outcomes[0]``)."""
    from fhir_plao.case import SECTIONS

    head, _, rest = local.partition("#")
    if not head:
        if rest == "follow-up":
            return "follow_up"
        number = _number(rest, "outcome-")
        return f"follow_up.outcomes[{number - 1}]" if number else None
    if rest.startswith("lactation-"):
        number = _number(rest, "lactation-")
        return f"lactations[{number - 1}]" if number else None
    for name in SECTIONS:
        for i, item in enumerate(getattr(case, name)):
            if getattr(item, "id", None) != head:
                continue
            path = f"{name}[{i}]"
            if name == "dxa_scans" and rest.count("#") == 1:
                site, kind = rest.split("#")
                for k, score in enumerate(item.scores):
                    if score.site == site and score.kind == kind:
                        return f"{path}.scores[{k}]"
            if name == "imaging" and rest.startswith("finding-"):
                number = _number(rest, "finding-")
                return f"{path}.findings[{number - 1}]" if number else path
            return path
    return None


def _number(text: str, prefix: str) -> int | None:
    tail = text.removeprefix(prefix)
    return int(tail) if text.startswith(prefix) and tail.isdigit() and int(tail) > 0 else None


def _conditional(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A ``PUT Type/id`` entry as a conditional update on its first identifier (no id)."""
    resource = {k: v for k, v in entry["resource"].items() if k != "id"}
    criteria = _identifier_criteria(resource)
    if criteria is None:  # to_fhir gives every resource an identifier; FHIR input may not
        log.warning("a %s without an identifier is created (POST)", resource["resourceType"])
        return {
            **entry,
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
    return {
        **entry,
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}?identifier={criteria}"},
    }


def _identifier_criteria(resource: Mapping[str, Any]) -> str | None:
    """``SYSTEM|VALUE`` of the resource's first identifier with a value (FHIR search escaping,
    then percent-encoding), or None."""
    for identifier in resource.get("identifier") or ():
        if not isinstance(identifier, Mapping):
            continue
        value = identifier.get("value")
        if not isinstance(value, str) or not value:
            continue
        system = identifier.get("system")
        token = _escape(value) if not system else f"{_escape(str(system))}|{_escape(value)}"
        return quote(token, safe=":/|\\")
    return None


def _escape(text: str) -> str:
    """FHIR search escaping of a token part: ``\\``, ``|``, ``,`` and ``$`` get a backslash."""
    return re.sub(r"([\\|,$])", r"\\\1", text)


def _split(
    bundle: dict[str, Any],
    origins: Sequence[Origin],
    max_entries: int | None,
    max_bytes: int | None,
) -> tuple[Part, ...]:
    by_url = {
        entry.get("fullUrl"): origin
        for entry, origin in zip(bundle["entry"], origins, strict=True)
        if entry.get("fullUrl")
    }
    try:
        parts = split_transaction(bundle, max_entries, max_bytes)
    except InputError as exc:
        raise InputError(exc.message, location=LIMITS) from None
    if len(parts) == 1:
        return (Part(parts[0], tuple(origins)),)
    return tuple(
        Part(part, tuple(by_url[entry["fullUrl"]] for entry in part["entry"])) for part in parts
    )


# --------------------------------------------------------------------------- FHIR input


def prepare_fhir(
    documents: Sequence[Any],
    *,
    validate: bool = True,
    ids: IdMode = "client",
    max_entries: int | None = DEFAULT_MAX_ENTRIES,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> list[Outbound]:
    """FHIR documents ready to send: each transaction Bundle as it is (ids set for ``ids``,
    split under the limits), each batch Bundle as a batch; the resources of collection (and
    other) Bundles and single resources gathered into one transaction: ``PUT Type/id`` for a
    resource with an id (client ids), a conditional update on its first identifier (server ids),
    else ``POST``. Each document is validated first (base R4 and the profiles it names)."""
    _check_ids(ids)
    out: list[Outbound] = []
    loose: list[tuple[str | None, dict[str, Any]]] = []
    for n, document in enumerate(documents):
        where = f"document {n + 1}" if len(documents) > 1 else "input"
        if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
            raise InputError("not FHIR JSON: no resourceType", location=where)
        kind = document.get("type") if document["resourceType"] == "Bundle" else None
        if kind in ("transaction", "batch"):
            out.append(
                _fhir_bundle(document, cast(str, kind), validate, ids, max_entries, max_bytes)
            )
            continue
        if document["resourceType"] == "Bundle":
            for i, entry in enumerate(document.get("entry") or ()):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict):
                    raise InputError(
                        "an entry without a resource", location=f"{where} Bundle.entry[{i}]"
                    )
                url = entry.get("fullUrl")
                loose.append((url if isinstance(url, str) else None, resource))
        else:
            loose.append((None, document))
    if loose:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_entry(u, r, ids) for u, r in loose],
        }
        out.append(_fhir_bundle(bundle, "transaction", validate, "client", max_entries, max_bytes))
    return out


def _entry(full_url: str | None, resource: dict[str, Any], ids: IdMode) -> dict[str, Any]:
    rtype = resource["resourceType"]
    rid = resource.get("id")
    if full_url is None:
        seed = f"{rtype}/{rid}" if isinstance(rid, str) else _canonical(resource)
        full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
    entry = {"fullUrl": full_url, "resource": resource}
    if ids == "server":
        return _conditional(entry)
    if isinstance(rid, str) and rid:
        return {**entry, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
    return {**entry, "request": {"method": "POST", "url": rtype}}


def _canonical(resource: Mapping[str, Any]) -> str:
    from fhir_plao import jsonio

    return jsonio.dumps(resource, sort_keys=True)


def _fhir_bundle(
    bundle: dict[str, Any],
    kind: str,
    validate: bool,
    ids: IdMode,
    max_entries: int | None,
    max_bytes: int | None,
) -> Outbound:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("Bundle.entry must be a list of objects", location="Bundle.entry")
    origins = [_fhir_origin(entry, i) for i, entry in enumerate(entries)]
    warnings = _validated(bundle, origins, None, ()) if validate else ()
    if ids == "server":
        entries = [_server_entry(e) for e in entries]
        bundle = {**bundle, "entry": entries}
    if kind == "batch":  # independent entries: nothing to keep together, nothing to split
        return Outbound((Part(bundle, tuple(origins)),), kind="batch", warnings=warnings, ids=ids)
    return Outbound(_split(bundle, origins, max_entries, max_bytes), warnings=warnings, ids=ids)


def _server_entry(entry: dict[str, Any]) -> dict[str, Any]:
    request = entry.get("request")
    resource = entry.get("resource")
    if (
        isinstance(request, dict)
        and isinstance(resource, dict)
        and str(request.get("method", "")).upper() == "PUT"
        and "?" not in str(request.get("url", ""))
    ):
        return _conditional(entry)
    return entry


def _fhir_origin(entry: Mapping[str, Any], index: int) -> Origin:
    resource = entry.get("resource")
    request = entry.get("request")
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    rid = resource.get("id") if isinstance(resource, dict) else None
    if isinstance(rtype, str) and isinstance(rid, str):
        name = f"{rtype}/{rid}"
    elif isinstance(request, dict) and isinstance(request.get("url"), str):
        name = f"{request.get('method', '')} {request['url']}".strip()
        rtype = rtype or request["url"].split("?")[0].split("/")[0]
    else:
        name = f"Bundle.entry[{index}]"
    return Origin(
        name, str(rtype or ""), item=str(entry.get("fullUrl")) if entry.get("fullUrl") else None
    )


# --------------------------------------------------------------------------- tracing


def _entry_element(path: str, origins: Sequence[Origin]) -> tuple[Origin | None, str | None]:
    """The entry and the resource's element that ``Bundle.entry[N].resource.x.y`` names."""
    match = _ENTRY_PATH.match(path)
    if match is None:
        return None, path or None
    index = int(match.group(1))
    origin = origins[index] if index < len(origins) else None
    tail = match.group(2)
    rtype = origin.resource_type if origin is not None else "Resource"
    return origin, f"{rtype}.{tail}" if tail else f"Bundle.entry[{index}]"


def _located(
    origin: Origin | None, element: str | None, message: str | None, case: Case | None
) -> Location:
    if origin is None:
        return Location(element=element, message=message)
    return Location(
        field=_field(origin, element, case),
        element=element,
        message=message,
        resource=origin.resource,
        item=origin.item if origin.field else None,
    )


# FHIR element (after the resource type) -> the case item's field it is written from; the first
# name the item's model has wins
_ELEMENT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("valueQuantity.unit", ("unit", "dose_unit")),
    ("valueQuantity.code", ("unit",)),
    ("valueQuantity.system", ("unit",)),
    ("valueQuantity", ("value",)),
    ("valueString", ("value_text", "value", "answer")),
    ("valueCodeableConcept", ("value", "answer")),
    ("valueInteger", ("value", "gravida")),
    ("valueDateTime", ("value",)),
    ("valueBoolean", ("value",)),
    ("effectiveDateTime", ("date",)),
    ("effectivePeriod", ("date",)),
    ("issued", ("issued",)),
    ("code", ("code", "concept", "test", "drug", "kind", "question")),
    ("status", ("status",)),
    ("category", ("category",)),
    ("interpretation", ("interpretation",)),
    ("referenceRange", ("reference_range",)),
    ("note", ("note",)),
    ("bodySite", ("body_site", "site")),
    ("onsetDateTime", ("onset",)),
    ("onsetPeriod", ("onset",)),
    ("recordedDate", ("recorded",)),
    ("abatementDateTime", ("abatement", "healed", "resolved")),
    ("clinicalStatus", ("clinical_status",)),
    ("verificationStatus", ("verification",)),
    ("severity", ("severity",)),
    ("conclusion", ("conclusion",)),
    ("dosage", ("dose", "dosage_text")),
    ("authoredOn", ("authored",)),
    ("intent", ("intent",)),
    ("medicationCodeableConcept", ("code", "drug")),
    ("performedDateTime", ("date",)),
    ("performedPeriod", ("date",)),
    ("period", ("period",)),
    ("reasonCode", ("reason_code", "reason")),
    ("birthDate", ("birth_date",)),
    ("gender", ("sex",)),
    ("identifier", ("identifier",)),
    ("series", ("series",)),
    ("started", ("date",)),
)


def _field(origin: Origin, element: str | None, case: Case | None) -> str | None:
    """``labs[3].value`` for ``Observation.valueQuantity.value`` of lab 3; the item alone when
    the element is not one a case field is written to."""
    if origin.field is None or element is None or case is None:
        return origin.field
    tail = element.split(".", 1)[1] if "." in element else ""
    tail = re.sub(r"\[\d+\]", "", tail)
    model = _model_at(case, origin.field)
    if model is None:
        return origin.field
    for prefix, names in _ELEMENT_FIELDS:
        if tail == prefix or tail.startswith(prefix + "."):
            for name in names:
                if name in type(model).model_fields:
                    return f"{origin.field}.{name}"
            break
    return origin.field


def _model_at(case: Case, path: str) -> Any:
    node: Any = case
    for part in re.findall(r"[a-z_]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else getattr(node, part, None)
        if node is None:
            return None
    return node if hasattr(type(node), "model_fields") else None


def _locations(
    exc: FhirError,
    origins: Sequence[Origin],
    bundle: Mapping[str, Any],
    case: Case | None,
    mask: Any,
) -> list[Location]:
    if isinstance(exc, ServerError):
        return _server_locations(exc, origins, bundle, case, mask)
    if isinstance(exc, ValidationError):
        return list(exc.locations)
    # a transport failure, a response that could not be used: nothing names one entry, so the
    # items of the transaction that was not confirmed are what to look at
    return [_located(o, None, None, case) for o in origins[:MAX_LOCATIONS]]


def _server_locations(
    exc: ServerError,
    origins: Sequence[Origin],
    bundle: Mapping[str, Any],
    case: Case | None,
    mask: Any,
) -> list[Location]:
    issues = [i for i in exc.issues if i.severity in ("fatal", "error")] or exc.issues
    out: list[Location] = []
    for issue in issues:
        text = issue.diagnostics or ""
        message = mask(_cut(text)) or None
        named = _named_entries(text, origins, bundle)
        for expression in issue.expression:
            origin, element = _entry_element(expression, origins)
            if origin is None and len(named) == 1:
                origin = origins[named[0]]
            out.append(_located(origin, element, message, case))
        if not issue.expression:
            element = _element_in(text, [origins[i] for i in named])
            if named:
                out.extend(
                    _located(
                        origins[i], element or _implied(text, bundle, i, origins[i]), message, case
                    )
                    for i in named
                )
            else:
                out.append(Location(element=element, message=message))
    return out


def _implied(text: str, bundle: Mapping[str, Any], index: int, origin: Origin) -> str | None:
    """The element a refusal that names none is about: the identifier a conditional write
    matched on (several matches), or the id a server will not take from a client."""
    request = (bundle.get("entry") or [{}])[index].get("request") or {}
    url = str(request.get("url", ""))
    lowered = text.lower()
    if "?identifier=" in url and ("match" in lowered or "conditional" in lowered):
        return f"{origin.resource_type}.identifier"
    if "?" not in url and any(
        words in lowered for words in ("client-assigned", "client assigned", "client id")
    ):
        return f"{origin.resource_type}.id"
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _named_entries(text: str, origins: Sequence[Origin], bundle: Mapping[str, Any]) -> list[int]:
    """The entries a server's message names: by ``Type/id``, fullUrl, or our item identifier."""
    if not text:
        return []
    decoded = unquote(text)
    entries = bundle.get("entry") or []
    found: list[int] = []
    refs = {f"{m.group(1)}/{m.group(2)}" for m in _REFERENCE.finditer(decoded)}
    urns = set(_URN.findall(decoded))
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rid = resource.get("id") if isinstance(resource, dict) else None
        name = (
            f"{resource.get('resourceType')}/{rid}" if isinstance(resource, dict) and rid else None
        )
        key = origins[i].key if i < len(origins) else None
        if (
            (name is not None and name in refs)
            or entry.get("fullUrl") in urns
            or (key is not None and _mentions(decoded, key))
            # an id alone, as HAPI writes it (``ID[plao-...]``): only ids too long to be a word
            or (isinstance(rid, str) and len(rid) >= 16 and _mentions(decoded, rid))
        ):
            found.append(i)
    if not found:  # "Entry 26 conditional update: ..." (SEKMET): an index, from 0 as in FHIRPath
        found = sorted({int(n) for n in _ENTRY_INDEX.findall(decoded) if int(n) < len(entries)})
    return found


def _mentions(text: str, key: str) -> bool:
    """``key`` occurs in ``text`` as a whole value (``P/lab-1`` is not in ``P/lab-10``)."""
    start = text.find(key)
    while start != -1:
        end = start + len(key)
        before_ok = "/" in key or start == 0 or not _ID_CHAR.match(text[start - 1])
        if before_ok and (end == len(text) or not _ID_CHAR.match(text[end])):
            return True
        start = text.find(key, start + 1)
    return False


def _element_in(text: str, origins: Iterable[Origin]) -> str | None:
    """An element path a message quotes (``specified in path: Observation.subject``)."""
    for origin in origins:
        match = re.search(rf"\b{re.escape(origin.resource_type)}\.[a-z][A-Za-z0-9.\[\]]*", text)
        if match:
            return match.group(0).rstrip(".")
    return None
