"""Splitting a transaction Bundle into several that each stand on their own.

A server may refuse a very large transaction (a request size limit, a cap on entries, a time
limit), so a Bundle over ``max_entries`` entries or ``max_bytes`` bytes (as sent: compact JSON,
UTF-8) is cut into parts, each a transaction of its own. Each part must be *reference-closed*: no
entry in one part may refer to a ``urn:uuid`` fullUrl that is defined in another part, because a
``urn:uuid`` only means something inside the Bundle that defines it.

The approach:

1. Every ``reference`` in an entry's resource that names another entry's fullUrl is an edge
   "this entry depends on that one".
2. Our Bundles write each resource with ``PUT Type/id`` (a client-chosen, deterministic id), so
   such a target has a name outside the Bundle too: a reference to it from another part is
   rewritten from ``urn:uuid:X`` to ``Type/id``. With server-assigned ids each resource is a
   conditional ``PUT Type?identifier=SYSTEM|VALUE`` (one identifier: at most one match), and a
   reference from another part becomes that conditional reference, which the server resolves
   to the one resource it matches (R4 transactions, "conditional references"). A target without
   either name (a ``POST``, or a ``PUT`` on other criteria) only gets its id from the server, so
   every entry that refers to it is kept in its part (the edge counts both ways).
3. Entries that depend on each other in a cycle (or through such a kept edge) form one
   strongly connected group that is never cut. The groups are placed in dependency order --
   whatever an entry refers to goes in an earlier part or the same one -- because a server that
   checks referential integrity (HAPI does) refuses a reference to a resource it does not have
   yet; parts are meant to be sent one after another, in list order. Among groups that do not
   depend on each other the Bundle's own order is kept.
4. Groups are packed greedily, in that order, into parts under both limits. A group that alone
   breaks a limit cannot be split: :class:`~fhir_plao.errors.InputError` says which entries.

References inside one part keep their ``urn:uuid`` form, and a Bundle within the limits comes
back as it was (a one-element list), so splitting changes nothing for the usual case. The input
is never modified.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Mapping
from typing import Any

from fhir_plao import jsonio
from fhir_plao.errors import InputError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "split_transaction"]

#: Default cap on entries per transaction (HAPI handles far more; this keeps requests short).
DEFAULT_MAX_ENTRIES = 500
#: Default cap on the size of one transaction as sent (compact JSON, UTF-8).
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

_PLAIN_REF = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
_IDENTIFIER_URL = re.compile(r"^([A-Z][A-Za-z]{1,63})\?identifier=[^&]+$")


def split_transaction(
    bundle: Mapping[str, Any],
    max_entries: int | None = DEFAULT_MAX_ENTRIES,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> list[dict[str, Any]]:
    """Cut a transaction Bundle into reference-closed transactions under both limits.

    Returns the parts in the order they must be sent (a resource is never referred to from a
    part before its own). ``None`` switches a limit off. Raises :class:`InputError` for a
    Bundle that is not a transaction, for limits below 1, and when entries that cannot be
    separated (a reference cycle, or references to an entry without a client id) alone break a
    limit.
    """
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise InputError("split_transaction needs a Bundle resource")
    if bundle.get("type") != "transaction":
        raise InputError(f"split_transaction needs a transaction, not {bundle.get('type')!r}")
    for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a positive whole number or None, not {value!r}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("Bundle.entry must be a list of objects")
    top = {k: v for k, v in bundle.items() if k != "entry"}
    envelope = len(jsonio.dumps_bytes({**top, "entry": []}))
    fits = (max_entries is None or len(entries) <= max_entries) and (
        max_bytes is None or len(jsonio.dumps_bytes(bundle)) <= max_bytes
    )
    if fits or not entries:
        return [{**top, "entry": list(entries)}]

    graph = _ReferenceGraph(entries)
    groups = graph.groups_in_dependency_order()
    sizes = [graph.worst_case_size(i) for i in range(len(entries))]

    parts: list[list[int]] = []
    current: list[int] = []
    current_bytes = envelope
    for group in groups:
        group_bytes = sum(sizes[i] for i in group) + len(group)  # a comma per entry, at most
        if not _within(len(group), envelope + group_bytes, max_entries, max_bytes):
            raise InputError(
                f"cannot split the transaction: entries {_names(entries, group)} refer to each "
                f"other (a reference cycle, or references to an entry without a name outside "
                f"the Bundle) and together need {len(group)} entries / "
                f"{envelope + group_bytes} bytes, over max_entries={max_entries} / "
                f"max_bytes={max_bytes}"
            )
        if current and not _within(
            len(current) + len(group), current_bytes + group_bytes, max_entries, max_bytes
        ):
            parts.append(current)
            current, current_bytes = [], envelope
        current.extend(group)
        current_bytes += group_bytes
    if current:
        parts.append(current)

    out = []
    for members in parts:
        here = {graph.full_urls[i] for i in members if graph.full_urls[i] is not None}
        rewrite = {url: target for url, target in graph.plain_names.items() if url not in here}
        part_entries = [_rewritten(entries[i], rewrite) for i in members]
        out.append({**top, "entry": part_entries})
    return out


def _within(count: int, size: int, max_entries: int | None, max_bytes: int | None) -> bool:
    return (max_entries is None or count <= max_entries) and (
        max_bytes is None or size <= max_bytes
    )


def _names(entries: list[dict[str, Any]], group: list[int]) -> str:
    shown = [str(entries[i].get("fullUrl") or f"entry[{i}]") for i in group[:5]]
    more = f" and {len(group) - 5} more" if len(group) > 5 else ""
    return ", ".join(shown) + more


def _references(node: Any) -> Iterator[str]:
    """Every ``reference`` string in a resource, at any depth."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "reference" and isinstance(value, str):
                    yield value
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _rewritten(entry: dict[str, Any], rewrite: Mapping[str, str]) -> dict[str, Any]:
    """The entry with each reference found in ``rewrite`` replaced (a copy only where needed)."""
    resource = entry.get("resource")
    if not rewrite or not isinstance(resource, dict):
        return entry
    if not any(ref in rewrite for ref in _references(resource)):
        return entry
    return {**entry, "resource": _replace(resource, rewrite)}


def _replace(node: Any, rewrite: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: rewrite.get(v, v)
            if k == "reference" and isinstance(v, str)
            else _replace(v, rewrite)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_replace(v, rewrite) for v in node]
    return node


class _ReferenceGraph:
    """Which entry refers to which, and what each target is called outside the Bundle."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.full_urls: list[str | None] = []
        by_url: dict[str, int] = {}
        for i, entry in enumerate(entries):
            url = entry.get("fullUrl")
            self.full_urls.append(url if isinstance(url, str) and url else None)
            if isinstance(url, str) and url:
                if url in by_url:
                    raise InputError(f"two entries share the fullUrl {url!r}")
                by_url[url] = i
        #: fullUrl -> ``Type/id`` for entries written with PUT to a client id
        self.plain_names: dict[str, str] = {}
        for url, i in by_url.items():
            name = _plain_name(entries[i])
            if name is not None:
                self.plain_names[url] = name
        #: for each entry, the entries it refers to (in first-seen order, no duplicates)
        self.depends: list[list[int]] = []
        self.ref_growth: list[int] = []
        for i, entry in enumerate(entries):
            targets: list[int] = []
            growth = 0
            for ref in _references(entry.get("resource")):
                j = by_url.get(ref)
                if j is None or j == i:
                    continue
                if j not in targets:
                    targets.append(j)
                name = self.plain_names.get(ref)
                if name is not None:  # JSON-escaped lengths: what the rewrite may add at most
                    growth += max(0, len(jsonio.dumps(name)) - len(jsonio.dumps(ref)))
            self.depends.append(targets)
            self.ref_growth.append(growth)

    def worst_case_size(self, i: int) -> int:
        """Bytes of entry ``i`` with every reference that might be rewritten rewritten."""
        return len(jsonio.dumps_bytes(self.entries[i])) + self.ref_growth[i]

    def groups_in_dependency_order(self) -> list[list[int]]:
        """Strongly connected groups, dependencies first, else in Bundle order."""
        n = len(self.entries)
        edges: list[list[int]] = [list(d) for d in self.depends]
        for i, targets in enumerate(self.depends):
            for j in targets:
                url = self.full_urls[j]
                if url is None or url not in self.plain_names:
                    edges[j].append(i)  # no name outside the Bundle: keep them together
        groups = _strongly_connected(n, edges)
        group_of = [0] * n
        for g, members in enumerate(groups):
            for i in members:
                group_of[i] = g
        waiting_on = [0] * len(groups)  # how many other groups each group refers to
        dependents: list[set[int]] = [set() for _ in groups]
        for i, targets in enumerate(self.depends):
            for j in targets:
                gi, gj = group_of[i], group_of[j]
                if gi != gj and gi not in dependents[gj]:
                    dependents[gj].add(gi)
                    waiting_on[gi] += 1
        ready = [(members[0], g) for g, members in enumerate(groups) if waiting_on[g] == 0]
        heapq.heapify(ready)
        ordered: list[list[int]] = []
        while ready:
            _, g = heapq.heappop(ready)
            ordered.append(groups[g])
            for d in dependents[g]:
                waiting_on[d] -= 1
                if waiting_on[d] == 0:
                    heapq.heappush(ready, (groups[d][0], d))
        assert len(ordered) == len(groups), "the groups' graph has no cycles by construction"
        return ordered


def _plain_name(entry: Mapping[str, Any]) -> str | None:
    """``Type/id`` when the entry is a PUT to a client id matching its resource; the URL of a
    conditional PUT on one identifier (a conditional reference finds it); else None."""
    request = entry.get("request")
    resource = entry.get("resource")
    if not isinstance(request, dict) or not isinstance(resource, dict):
        return None
    if str(request.get("method", "")).upper() != "PUT":
        return None
    url = request.get("url")
    if not isinstance(url, str):
        return None
    conditional = _IDENTIFIER_URL.match(url.strip("/"))
    if conditional is not None and resource.get("resourceType") == conditional.group(1):
        return url.strip("/")
    match = _PLAIN_REF.match(url.strip("/"))
    if match is None:
        return None
    rtype, rid = match.groups()
    if resource.get("resourceType") != rtype or resource.get("id", rid) != rid:
        return None
    return f"{rtype}/{rid}"


def _strongly_connected(n: int, edges: list[list[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative; each group's members sorted by Bundle position."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    groups: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, k = work[-1]
            if k < len(edges[v]):
                work[-1] = (v, k + 1)
                w = edges[v][k]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                members = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    members.append(w)
                    if w == v:
                        break
                groups.append(sorted(members))
    return groups
