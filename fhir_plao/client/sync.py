"""``FhirClient``: the blocking shell over one pooled ``httpx.Client``.

Every rule lives in :mod:`fhir_plao.client._core`; this module only sends requests, sleeps, and
hands out what a search emits. ``aio.py`` is the same shell with ``await``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import httpx

from fhir_plao._closing import Closing
from fhir_plao.client._base import (
    DEFAULT_TIMEOUT,
    ClientBase,
    PagedResultsBase,
    httpx_request,
)
from fhir_plao.client._case import PushSettings, pull_flow, push_case, verify_flow
from fhir_plao.client._core import (
    AuthLike,
    Emit,
    Flow,
    FlowRunner,
    Limits,
    PagedQuery,
    PendingRequest,
    Prefer,
    PushResult,
    Response,
    RetryPolicy,
    SearchParams,
    Sleep,
    Timeout,
    WriteResult,
)

if TYPE_CHECKING:
    from fhir_plao.case import Case
    from fhir_plao.mapping import MappingResult
    from fhir_plao.outbound import Outbound

__all__ = ["FhirClient", "SearchResults"]

T = TypeVar("T")


class FhirClient(ClientBase, Closing):
    """A FHIR R4 REST client (blocking). Use it as a context manager, or call :meth:`close`.

    ``timeout``: a :class:`Timeout` (connect and read apart) or seconds for both; ``retry``: a
    :class:`RetryPolicy` (default: 4 attempts); ``transport`` or ``client``: an httpx transport
    or a ready ``httpx.Client`` (not closed by us); ``sleep`` and ``clock``: replace
    ``time.sleep`` / ``time.time`` (tests); ``follow_foreign_links``: follow paging links that
    leave the server, without credentials (default: refuse them).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthLike | None = None,
        timeout: Timeout | float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        follow_foreign_links: bool = False,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            auth=auth,
            timeout=timeout,
            retry=retry,
            headers=headers,
            transport=transport,
            client=client,
            follow_foreign_links=follow_foreign_links,
            clock=clock,
        )
        self._sleep = sleep or time.sleep
        self._http = (
            client
            if client is not None
            else httpx.Client(transport=transport, timeout=self._timeout)
        )

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the connection pool (unless it was handed in with ``client=``)."""
        if self._owns_http:
            self._http.close()

    # ----------------------------------------------------------------- I/O only

    def _perform(self, runner: FlowRunner[Any], action: PendingRequest | Sleep) -> None:
        if isinstance(action, Sleep):
            self._sleep(action.seconds)
            runner.reply(None)
            return
        try:
            sent = self._http.send(httpx_request(self._http, action, self._timeout))
        except httpx.HTTPError as exc:
            runner.fail(exc)
        else:
            runner.reply(Response.from_httpx(sent))

    def _run(self, flow: Flow[T]) -> T:
        runner = FlowRunner(flow)
        while (action := runner.next_action()) is not None:
            if isinstance(action, Emit):
                runner.close()
                raise RuntimeError("internal error: a result emitted outside a search")
            self._perform(runner, action)
        return runner.result

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        runner = FlowRunner(flow)
        try:
            while (action := runner.next_action()) is not None:
                if isinstance(action, Emit):
                    yield action.item
                else:
                    self._perform(runner, action)
        finally:
            runner.close()

    # ----------------------------------------------------------------- operations

    def capabilities(self) -> dict[str, Any]:
        """The CapabilityStatement (fetched once); raises unless the server is FHIR 4.0.x."""
        return self._run(self._protocol.capabilities())

    def create(
        self,
        resource: Mapping[str, Any],
        *,
        if_none_exist: SearchParams | str | None = None,
        prefer: Prefer | None = "representation",
    ) -> WriteResult:
        """POST a resource; with ``if_none_exist`` a conditional create (If-None-Exist)."""
        return self._run(
            self._protocol.create(resource, if_none_exist=if_none_exist, prefer=prefer)
        )

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self._run(self._protocol.read(resource_type, resource_id))

    def vread(self, resource_type: str, resource_id: str, version: str) -> dict[str, Any]:
        return self._run(self._protocol.vread(resource_type, resource_id, version))

    def update(
        self,
        resource: Mapping[str, Any],
        *,
        if_match: bool | str = True,
        prefer: Prefer | None = "representation",
    ) -> WriteResult:
        """PUT ``Type/id``. ``if_match=True`` sends If-Match from ``meta.versionId``."""
        return self._run(self._protocol.update(resource, if_match=if_match, prefer=prefer))

    def conditional_update(
        self,
        resource: Mapping[str, Any],
        criteria: SearchParams | str,
        *,
        prefer: Prefer | None = "representation",
    ) -> WriteResult:
        """PUT ``Type?criteria``."""
        return self._run(self._protocol.conditional_update(resource, criteria, prefer=prefer))

    def delete(self, resource_type: str, resource_id: str) -> None:
        return self._run(self._protocol.delete(resource_type, resource_id))

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        max_pages: int | None = None,
        max_resources: int | None = None,
    ) -> SearchResults:
        """The versions of one resource, or of a type (lazy, newest first as the server sends)."""
        limits = Limits(max_pages, max_resources)
        return SearchResults(self, self._protocol.history_query(resource_type, resource_id, limits))

    def search(
        self,
        resource_type: str,
        params: SearchParams | str | None = None,
        *,
        max_pages: int | None = None,
        max_resources: int | None = None,
    ) -> SearchResults:
        """A lazy search: iterate for resources (``_include``d ones too), ``.pages()`` for
        Bundles. The caps stop it early and set ``.truncated`` and ``.note``."""
        limits = Limits(max_pages, max_resources)
        return SearchResults(self, self._protocol.search_query(resource_type, params, limits))

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; returns the transaction-response Bundle."""
        return self._run(self._protocol.transaction(bundle))

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a batch Bundle; returns the batch-response (failed entries carry outcomes)."""
        return self._run(self._protocol.batch(bundle))

    def everything(
        self,
        patient_id: str,
        *,
        max_pages: int | None = None,
        max_resources: int | None = None,
    ) -> SearchResults:
        """``Patient/[id]/$everything``, lazily, page after page."""
        limits = Limits(max_pages, max_resources)
        return SearchResults(self, self._protocol.everything_query(patient_id, limits))

    def count(self, resource_type: str, params: SearchParams | str | None = None) -> int:
        """How many resources match (``_summary=count``)."""
        return self._run(self._protocol.count(resource_type, params))

    def push(self, case: Case | Outbound, **settings: Unpack[PushSettings]) -> PushResult:
        """Send a case (mapped once, validated, split; see :class:`PushSettings`) or an Outbound;
        a failure is raised traced to the case field, resource and element (``exc.locations``).
        An answer that came after an attempt of unknown fate is verified (``settle``)."""
        settings.setdefault("settle", self.settle_default)
        return self._run(push_case(self._protocol, case, **settings))

    def verify(
        self,
        outbound: Outbound,
        result: PushResult,
        *,
        wait: float = 0.0,
        **settings: Unpack[PushSettings],
    ) -> PushResult:
        """Read back what ``result`` confirmed; push ``outbound`` again if it moved (a late write
        of an earlier attempt). Raises :class:`~fhir_plao.errors.StaleData` when it keeps moving.
        """
        return self._run(verify_flow(self._protocol, outbound, result, wait=wait, **settings))

    def pull(self, patient_id: str) -> MappingResult:
        """Fetch the patient's resources and return ``from_fhir``'s case and unmapped report."""
        return self._run(pull_flow(self._protocol, patient_id))


class SearchResults(PagedResultsBase):
    """A lazy search: ``for resource in results``, or ``for bundle in results.pages()``."""

    def __init__(self, client: FhirClient, query: PagedQuery) -> None:
        super().__init__(query)
        self._client = client

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._client._iterate(self._query.start("resources"))

    def pages(self) -> Iterator[dict[str, Any]]:
        return self._client._iterate(self._query.start("pages"))
