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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_plao.case import Case
from fhir_plao.errors import MappingError
from fhir_plao.mapping._fhir import ITEM_SYSTEM, JSON, PROFILE, Reader, Unmapped, prune

#: uuid5 namespace of fhir-plao resource ids (uuid5 of the project's base URL)
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://fhir-plao.example.org/fhir")


class BundleWriter:
    """Collects the resources of one case into a transaction Bundle."""

    def __init__(self, case: Case) -> None:
        self.case = case
        p = case.patient
        self._ns = uuid.uuid5(ID_NAMESPACE, f"{p.identifier_system}|{p.identifier}")
        self._entries: list[JSON] = []
        self._seen: set[str] = set()

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

    def resolve(self, reference: Any) -> Parsed | None:
        if not isinstance(reference, str):
            return None
        hit = self.by_ref.get(reference)
        if hit is None:
            m = _REF_TAIL.search(reference)
            if m:
                hit = self.by_ref.get(f"{m.group(1)}/{m.group(2)}")
        return hit

    def of_type(self, *types: str) -> list[Parsed]:
        return [p for p in self.items if p.reader.type in types]


def flatten(data: Any, where: str = "input") -> Iterable[tuple[str, str | None, JSON]]:
    """Yield (path, fullUrl, resource) from a Bundle, a resource, or a list of either."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield from flatten(item, f"{where}[{i}]" if where != "input" else f"[{i}]")
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
                continue  # a transaction-response entry without a body carries no data
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                yield from flatten(resource, f"{path}.resource")
                continue
            if not isinstance(resource, dict) or "resourceType" not in resource:
                raise MappingError(
                    "not a FHIR resource (no resourceType)", location=f"{path}.resource"
                )
            full_url = entry.get("fullUrl")
            yield f"{path}.resource", full_url if isinstance(full_url, str) else None, resource
        return
    yield _name(where, data["resourceType"]), None, data


def _name(where: str, rtype: str) -> str:
    return rtype if where == "input" else where


def index_resources(data: Any) -> ResourceIndex:
    index = ResourceIndex()
    taken: set[tuple[str, str]] = set()
    for path, full_url, resource in flatten(data):
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
    return index


def _local_id(
    reader: Reader, rtype: str, rid: Any, full_url: str | None, taken: set[tuple[str, str]]
) -> str:
    own = None
    for i, ident in enumerate(reader.items("identifier")):
        if isinstance(ident, dict) and ident.get("system") == ITEM_SYSTEM:
            value = ident.get("value")
            if isinstance(value, str) and "/" in value:
                own = value.rsplit("/", 1)[1]
                reader.mark("identifier", i)
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
