"""Resource ids, urn:uuid references, the transaction Bundle and its inverse (the reference index).

Each resource has a *local id*: the id of the case item it comes from, or, for a resource derived
from part of an item (a DXA score of a scan, a finding of a study, a delivery), a name built
from the item's id with ``#`` -- a character item ids cannot hold, so the two never collide.

Ids are deterministic: uuid5 over the patient's identifier (system and value), the resource
type and the item's local id. The same case gives the same ids on every run and every machine,
so pushing it twice updates (PUT) instead of creating duplicates; the ``plao-`` prefix keeps
ids non-numeric (HAPI refuses all-digit client ids).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from fhir_plao.case import Case
from fhir_plao.errors import MappingError
from fhir_plao.mapping._fhir import ITEM_SYSTEM, JSON, PROFILE, Reader, Unmapped, prune

T = TypeVar("T")

#: uuid5 namespace of fhir-plao resource ids (uuid5 of the project's base URL)
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://fhir-plao.example.org/fhir")


def patient_namespace(system: str | None, value: str) -> uuid.UUID:
    """The uuid5 namespace of one patient's resource ids (from her identifier)."""
    return uuid.uuid5(ID_NAMESPACE, f"{system or ''}|{value}")


def series_uid(namespace: uuid.UUID, study_local: str, n: int) -> str:
    """The DICOM UID of the ``n``-th series (from 0) of an imaging study: ``2.25.`` and the
    decimal of a uuid5 (the UUID-derived UID form of DICOM PS3.5 B.2), the same on every run."""
    return f"2.25.{uuid.uuid5(namespace, f'ImagingStudy/{study_local}#series-{n + 1}').int}"


class BundleWriter:
    """Collects the resources of one case into a transaction Bundle."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self._ns = patient_namespace(case.patient.identifier_system, case.patient.identifier)
        self._entries: list[JSON] = []
        self._seen: set[str] = set()

    def series_uid(self, study_local: str, n: int) -> str:
        return series_uid(self._ns, study_local, n)

    def uuid(self, rtype: str, local: str) -> str:
        return str(uuid.uuid5(self._ns, f"{rtype}/{local}"))

    def id(self, rtype: str, local: str) -> str:
        return "plao-" + self.uuid(rtype, local)

    def ref(self, rtype: str, local: str) -> JSON:
        return {"reference": f"urn:uuid:{self.uuid(rtype, local)}"}

    @property
    def subject(self) -> JSON:
        return self.ref("Patient", "patient")

    def identifier(self, local: str) -> list[JSON]:
        return [{"system": ITEM_SYSTEM, "value": f"{self.case.patient.identifier}/{local}"}]

    def add(self, rtype: str, local: str, body: JSON, profile: str | None = None) -> None:
        """Add a resource; ``body`` holds its elements after resourceType/id/meta."""
        key = f"{rtype}/{local}"
        if key in self._seen:
            raise MappingError(f"two {rtype} resources from the same item {local!r}")
        self._seen.add(key)
        resource: JSON = {"resourceType": rtype, "id": self.id(rtype, local)}
        if profile is not None:
            resource["meta"] = {"profile": [PROFILE + profile]}
        if rtype != "Patient":
            resource["identifier"] = self.identifier(local)
        resource.update(body)
        self._entries.append(
            {
                "fullUrl": f"urn:uuid:{self.uuid(rtype, local)}",
                "resource": prune(resource),
                "request": {"method": "PUT", "url": f"{rtype}/{resource['id']}"},
            }
        )

    def bundle(self) -> JSON:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self._entries}


@cache
def _scratch_case() -> Case:
    from fhir_plao.case import Patient

    return Case(patient=Patient(identifier="scratch", sex="unknown"))


def written_alone(write: Callable[[BundleWriter, T], None], item: T) -> JSON:
    """The resource ``write`` makes of one item, written on its own (to compare with a
    source)."""
    w = BundleWriter(_scratch_case())
    write(w, item)
    resource: JSON = w._entries[-1]["resource"]
    return resource


# --------------------------------------------------------------------------- reading


_OUR_ID = re.compile(r"^plao-[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_REF_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@dataclass
class Parsed:
    """One resource being read: its reader and the local id it will have in the case."""

    reader: Reader
    local_id: str
    keys: tuple[str, ...]  # every string by which a reference may name it


@dataclass
class ResourceIndex:
    """All resources handed to ``from_fhir``, with reference resolution."""

    items: list[Parsed] = field(default_factory=list)
    by_ref: dict[str, Parsed] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    #: (id of the container's reader, "#id") -> a contained resource read on its own
    contained: dict[tuple[int, str], Parsed] = field(default_factory=dict)

    def resolve(self, reference: Any, within: Reader | None = None) -> Parsed | None:
        """The resource a reference names (``#id``: one contained in ``within``)."""
        if not isinstance(reference, str):
            return None
        if reference.startswith("#"):
            return self.contained.get((id(within), reference)) if within is not None else None
        hit = self.by_ref.get(reference)
        if hit is None:
            m = _REF_TAIL.search(reference)
            if m:
                hit = self.by_ref.get(f"{m.group(1)}/{m.group(2)}")
        return hit

    def of_type(self, *types: str) -> list[Parsed]:
        return [p for p in self.items if p.reader.type in types]


def flatten(
    data: Any, where: str = "input", skipped: list[Unmapped] | None = None
) -> Iterable[tuple[str, str | None, JSON]]:
    """Yield (path, fullUrl, resource) from a Bundle, a resource, or a list of either. An entry
    without a resource (a request or a response only) is added to ``skipped``."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield from flatten(item, f"{where}[{i}]" if where != "input" else f"[{i}]", skipped)
        return
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise MappingError("not a FHIR resource (no resourceType)", location=where)
    if data["resourceType"] == "Bundle":
        for i, entry in enumerate(data.get("entry") or []):
            path = f"{_name(where, 'Bundle')}.entry[{i}]"
            if not isinstance(entry, dict):
                raise MappingError("a Bundle entry must be an object", location=path)
            resource = entry.get("resource")
            if resource is None:
                if skipped is not None:
                    skipped.append(Unmapped(path, f"no resource to read ({_entry_shape(entry)})"))
                continue
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                yield from flatten(resource, f"{path}.resource", skipped)
                continue
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise MappingError(
                    "not a FHIR resource (no resourceType)", location=f"{path}.resource"
                )
            full_url = entry.get("fullUrl")
            yield f"{path}.resource", full_url if isinstance(full_url, str) else None, resource
        return
    yield _name(where, data["resourceType"]), None, data


def _entry_shape(entry: JSON) -> str:
    """What an entry without a resource holds, for the report (never its content)."""
    request, response = entry.get("request"), entry.get("response")
    if isinstance(request, dict):
        return f"only a request: {request.get('method')} {request.get('url')}"
    if isinstance(response, dict):
        return f"only a response: status {response.get('status')!r}"
    parts = sorted(k for k in entry if k != "fullUrl")
    return "an empty entry" if not parts else "only " + ", ".join(parts)


def _name(where: str, rtype: str) -> str:
    return rtype if where == "input" else where


def index_resources(data: Any) -> ResourceIndex:
    index = ResourceIndex()
    taken: set[tuple[str, str]] = set()
    for path, full_url, resource in flatten(data, skipped=index.unmapped):
        rtype = resource["resourceType"]
        rid = resource.get("id")
        where = f"{rtype}/{rid}" if isinstance(rid, str) else path
        reader = Reader(resource, where)
        local = _local_id(reader, rtype, rid, full_url, taken)
        keys = [k for k in (full_url, f"{rtype}/{rid}" if isinstance(rid, str) else None) if k]
        if full_url is None and isinstance(rid, str) and _OUR_ID.match(rid):
            # our ids are "plao-" + the uuid of the urn:uuid fullUrl that references name
            keys.append("urn:uuid:" + rid.removeprefix("plao-"))
        parsed = Parsed(reader, local, tuple(keys))
        index.items.append(parsed)
        for k in keys:
            index.by_ref.setdefault(k, parsed)
        _index_contained_patients(index, parsed, taken)
    return index


def _index_contained_patients(
    index: ResourceIndex, container: Parsed, taken: set[tuple[str, str]]
) -> None:
    """A Patient contained in a resource (its subject ``#id``) is read like any Patient; its
    reference resolves within that resource only."""
    r = container.reader
    for i, contained in enumerate(r.peek("contained") or []):
        if not isinstance(contained, dict) or contained.get("resourceType") != "Patient":
            continue
        cid = contained.get("id")
        if not isinstance(cid, str):
            continue
        reader = Reader(contained, r.path("contained", i))
        local = _local_id(reader, "Patient", cid, None, taken)
        parsed = Parsed(reader, local, ())
        index.items.append(parsed)
        index.contained[(id(r), f"#{cid}")] = parsed
        r.mark("contained", i)


def _local_id(
    reader: Reader, rtype: str, rid: Any, full_url: str | None, taken: set[tuple[str, str]]
) -> str:
    own = None
    found = reader.peek("identifier")
    # most resources hold a list; some (Composition, QuestionnaireResponse, ...) one Identifier
    identifiers = (
        [((), found)]
        if isinstance(found, dict)
        else enumerate(found if isinstance(found, list) else [])
    )
    for i, ident in identifiers:
        if isinstance(ident, dict) and ident.get("system") == ITEM_SYSTEM:
            value = ident.get("value")
            if isinstance(value, str) and "/" in value:
                own = value.rsplit("/", 1)[1]
                reader.mark("identifier", *((i,) if isinstance(i, int) else ()))
                break
    if own is None and rtype == "Patient":
        own = "patient"
    if own is None:
        base = rid if isinstance(rid, str) else (full_url or "item").rsplit(":", 1)[-1]
        own = re.sub(r"[^A-Za-z0-9\-.]", "-", f"{rtype.lower()}-{base}")[:64]
    candidate, n = own, 2
    while (rtype, candidate) in taken:
        candidate = f"{own[:60]}-{n}"
        n += 1
    taken.add((rtype, candidate))
    return candidate
