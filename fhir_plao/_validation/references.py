"""Bundle-level rules: entries, fullUrls, request lines, and references that must resolve.

Inside a Bundle a reference is resolved the way a FHIR server resolves it in a transaction:
``urn:uuid:`` / ``urn:oid:`` references must be the ``fullUrl`` of an entry; a relative
``Type/id`` names an entry whose resource has that type and id (or whose ``request.url`` is that
``Type/id``), and may otherwise name a resource the server already has (a warning, since this
file cannot show it); ``#id`` names a contained resource.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_plao._validation.issues import Issue
from fhir_plao._validation.structure import R4_RESOURCE_TYPES

__all__ = ["BundleIndex", "check_bundle", "check_references", "contained_ids"]

_RELATIVE = re.compile(
    r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_ABSOLUTE = re.compile(
    r"^(https?://\S+/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_TRANSACTIONAL = frozenset({"transaction", "batch"})


@dataclass
class BundleIndex:
    """What references inside one Bundle can point at."""

    bundle_type: str | None = None
    by_full_url: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    by_type_id: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, bundle: Mapping[str, Any] | None) -> BundleIndex:
        index = cls()
        if bundle is None:
            return index
        btype = bundle.get("type")
        index.bundle_type = btype if isinstance(btype, str) else None
        for entry in _entries(bundle):
            resource = entry.get("resource")
            if not isinstance(resource, Mapping):
                continue
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                index.by_full_url.setdefault(full_url, resource)
                m = _ABSOLUTE.match(full_url)
                if m:
                    index.by_type_id.setdefault(f"{m.group(2)}/{m.group(3)}", resource)
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                index.by_type_id.setdefault(f"{rtype}/{rid}", resource)
            request = entry.get("request")
            if isinstance(request, Mapping) and isinstance(request.get("url"), str):
                m = _RELATIVE.match(request["url"])
                if m:
                    index.by_type_id.setdefault(f"{m.group(1)}/{m.group(2)}", resource)
        return index

    def resolve(self, reference: str) -> Mapping[str, Any] | None:
        hit = self.by_full_url.get(reference)
        if hit is not None:
            return hit
        m = _RELATIVE.match(reference) or None
        if m:
            return self.by_type_id.get(f"{m.group(1)}/{m.group(2)}")
        m2 = _ABSOLUTE.match(reference)
        if m2:
            return self.by_type_id.get(f"{m2.group(2)}/{m2.group(3)}")
        return None


def _entries(bundle: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, Mapping)]


def contained_ids(resource: Mapping[str, Any]) -> set[str]:
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return set()
    return {str(c["id"]) for c in contained if isinstance(c, Mapping) and "id" in c}


def _references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path of the Reference, reference string) for every Reference under ``value``; contained
    resources are walked too (their references resolve against the same Bundle)."""
    if isinstance(value, Mapping):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield path, ref
        for key, item in value.items():
            if key in ("reference", "resourceType") or key.startswith("_"):
                continue
            if isinstance(item, list):
                for i, sub in enumerate(item):
                    if isinstance(sub, Mapping):
                        yield from _references(sub, f"{path}.{key}[{i}]")
            elif isinstance(item, Mapping):
                yield from _references(item, f"{path}.{key}")


def check_references(
    resource: Mapping[str, Any], path: str, index: BundleIndex | None
) -> list[Issue]:
    """Every reference in ``resource`` resolves (inside the Bundle, when there is one)."""
    issues: list[Issue] = []
    local = contained_ids(resource)
    referenced_local: set[str] = set()
    for where, ref in _references(resource, path):
        at = f"{where}.reference"
        if ref.startswith("#"):
            if ref != "#" and ref[1:] not in local:
                issues.append(
                    Issue(
                        "error",
                        at,
                        f"{ref} names no contained resource (contained ids: "
                        f"{', '.join(sorted(local)) or 'none'})",
                        "reference",
                    )
                )
            referenced_local.add(ref[1:])
            continue
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            if ref.startswith("urn:uuid:") and not _is_uuid(ref[len("urn:uuid:") :]):
                issues.append(Issue("error", at, f"{ref!r} is not a valid urn:uuid", "reference"))
                continue
            if index is None:
                issues.append(
                    Issue(
                        "warning",
                        at,
                        f"{ref} can only be resolved inside a Bundle: send this resource in the "
                        "Bundle that holds it, or use a Type/id reference",
                        "reference",
                    )
                )
            elif ref not in index.by_full_url:
                issues.append(
                    Issue(
                        "error",
                        at,
                        f"{ref} is not the fullUrl of any entry in this Bundle (broken reference)",
                        "reference",
                    )
                )
            continue
        m = _RELATIVE.match(ref)
        if m:
            rtype = m.group(1)
            if rtype not in R4_RESOURCE_TYPES:
                issues.append(
                    Issue(
                        "error", at, f"{rtype!r} in {ref} is not an R4 resource type", "reference"
                    )
                )
            elif (
                index is not None
                and index.bundle_type in _TRANSACTIONAL
                and index.resolve(ref) is None
            ):
                issues.append(
                    Issue(
                        "warning",
                        at,
                        f"{ref} is not in this Bundle: the receiving server must already have it",
                        "reference",
                    )
                )
            continue
        if _ABSOLUTE.match(ref) or ref.startswith(("http://", "https://", "urn:")):
            continue  # an absolute reference to another server: cannot be checked here
        issues.append(
            Issue(
                "error",
                at,
                f"{ref!r} is not a valid reference (expected Type/id, an absolute URL, "
                "urn:uuid:... or #contained-id)",
                "reference",
            )
        )
    for cid in sorted(local - referenced_local):
        issues.append(
            Issue(
                "error",
                f"{path}.contained",
                f"contained resource '{cid}' is not referenced from the resource (dom-3)",
                "invariant:dom-3",
            )
        )
    return issues


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def check_bundle(bundle: Mapping[str, Any], path: str) -> list[Issue]:
    """Entry-level rules of a Bundle (bdl-3, bdl-5, bdl-7, request lines, fullUrl forms)."""
    issues: list[Issue] = []
    btype = bundle.get("type")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return issues
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"{path}.entry[{i}]"
        if not isinstance(entry, Mapping):
            continue
        resource = entry.get("resource")
        request = entry.get("request")
        full_url = entry.get("fullUrl")
        if resource is None and request is None and entry.get("response") is None:
            issues.append(
                Issue(
                    "error",
                    where,
                    "an entry needs a resource, a request or a response (bdl-5)",
                    "invariant:bdl-5",
                )
            )
        if btype in _TRANSACTIONAL and request is None:
            issues.append(
                Issue(
                    "error",
                    f"{where}.request",
                    f"every entry of a {btype} needs request (method and url) (bdl-3)",
                    "invariant:bdl-3",
                )
            )
        if isinstance(full_url, str):
            if full_url.startswith("urn:uuid:") and not _is_uuid(full_url[9:]):
                issues.append(
                    Issue(
                        "error",
                        f"{where}.fullUrl",
                        f"{full_url!r} is not a valid urn:uuid",
                        "bundle",
                    )
                )
            if "/_history/" in full_url:
                issues.append(
                    Issue(
                        "error",
                        f"{where}.fullUrl",
                        "fullUrl cannot be a version-specific reference (bdl-8)",
                        "invariant:bdl-8",
                    )
                )
            if isinstance(resource, Mapping):
                issues.extend(_check_restful_full_url(full_url, resource, f"{where}.fullUrl"))
            version = None
            if isinstance(resource, Mapping) and isinstance(resource.get("meta"), Mapping):
                version = resource["meta"].get("versionId")
            key = f"{full_url}|{version}"
            if key in seen:
                issues.append(
                    Issue(
                        "error",
                        f"{where}.fullUrl",
                        f"{full_url} is also the fullUrl of entry[{seen[key]}]: fullUrls must be "
                        "unique (bdl-7)",
                        "invariant:bdl-7",
                    )
                )
            else:
                seen[key] = i
        if isinstance(request, Mapping) and isinstance(resource, Mapping):
            issues.extend(_check_request(request, resource, where))
    return issues


_RESTFUL_TAIL = re.compile(r"/(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")


def _check_restful_full_url(full_url: str, resource: Mapping[str, Any], where: str) -> list[Issue]:
    """A fullUrl that is a RESTful URL ([base]/Type/id) must name its own resource: R4 says the
    fullUrl "SHALL NOT disagree with the id in the resource" (Bundle.entry.fullUrl)."""
    if not full_url.startswith(("http://", "https://")):
        return []
    tail = _RESTFUL_TAIL.search(full_url)
    if tail is None or tail.group("type") not in R4_RESOURCE_TYPES:
        return []
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if tail.group("type") == rtype and (rid is None or tail.group("id") == rid):
        return []
    return [
        Issue(
            "error",
            where,
            f"{full_url} is a RESTful URL, so it must end with its resource's type and id "
            f"({rtype}/{rid}): a fullUrl must not disagree with the resource's id",
            "bundle",
        )
    ]


def _check_request(
    request: Mapping[str, Any], resource: Mapping[str, Any], where: str
) -> list[Issue]:
    method, url = request.get("method"), request.get("url")
    if not isinstance(url, str):
        return []
    rtype, rid = resource.get("resourceType"), resource.get("id")
    base = url.split("?", 1)[0]
    if method == "PUT":
        m = _RELATIVE.match(base)
        if m is None and "?" not in url:
            return [
                Issue(
                    "error",
                    f"{where}.request.url",
                    f"a PUT needs a Type/id url (or a conditional Type?search), found {url!r}",
                    "bundle",
                )
            ]
        if m is not None and (m.group(1) != rtype or (rid is not None and m.group(2) != rid)):
            return [
                Issue(
                    "error",
                    f"{where}.request.url",
                    f"{url!r} does not match the resource ({rtype}/{rid}): a server rejects a PUT "
                    "whose url and body disagree",
                    "bundle",
                )
            ]
    elif method == "POST" and base != rtype and "$" not in base:
        return [
            Issue(
                "error",
                f"{where}.request.url",
                f"a POST of a {rtype} goes to {rtype!r}, found {url!r}",
                "bundle",
            )
        ]
    return []
