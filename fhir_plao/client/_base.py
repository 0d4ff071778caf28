"""What the two shells share that is not protocol: configuration, and the httpx conversions.

Nothing here sends or sleeps; ``sync.py`` and ``aio.py`` do that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import httpx

from fhir_plao.client._core import (
    AuthLike,
    FhirProtocol,
    PagedQuery,
    PendingRequest,
    RetryPolicy,
    SearchState,
    Timeout,
    sanitize_url,
)
from fhir_plao.errors import InputError

DEFAULT_TIMEOUT = Timeout()
DEFAULT_RETRY = RetryPolicy()


def httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    return httpx.Timeout(
        connect=timeout.connect, read=timeout.read, write=timeout.read, pool=timeout.connect
    )


def httpx_request(
    http: httpx.Client | httpx.AsyncClient, request: PendingRequest, timeout: httpx.Timeout
) -> httpx.Request:
    """The ``httpx.Request`` for a pending request: URL as given, headers, body bytes."""
    return http.build_request(
        request.method,
        request.url,
        headers=dict(request.headers),
        content=request.body,
        timeout=timeout,
    )


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; FHIR search strings carry patient data.

    Installed on the ``httpx`` logger by the first client made: it rewrites the URL argument of
    httpx's records with search parameter values redacted. Nothing else is changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                sanitize_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


def _install_httpx_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxUrls) for f in logger.filters):
        logger.addFilter(_RedactHttpxUrls())


class ClientBase:
    """Configuration shared by :class:`FhirClient` and :class:`AsyncFhirClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthLike | None,
        timeout: Timeout | float | None,
        retry: RetryPolicy | None,
        headers: Mapping[str, str] | None,
        transport: object | None,
        client: object | None,
        follow_foreign_links: bool,
        clock: Callable[[], float] | None,
    ) -> None:
        if transport is not None and client is not None:
            raise InputError("pass transport= or client=, not both")
        self._protocol = FhirProtocol(
            base_url,
            auth=auth,
            retry=retry,
            headers=headers,
            follow_foreign_links=follow_foreign_links,
            clock=clock or time.time,
        )
        self._timeout = httpx_timeout(Timeout.of(timeout))
        self._owns_http = client is None
        _install_httpx_redaction()

    @property
    def base_url(self) -> str:
        return self._protocol.base_url

    @property
    def retry(self) -> RetryPolicy:
        return self._protocol.retry

    @property
    def settle_default(self) -> float:
        """How long a push waits for an attempt of unknown fate to land before it verifies:
        the read timeout (a request the server has not answered by then was held somewhere)."""
        read = self._timeout.read
        return float(read) if read is not None else 60.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class PagedResultsBase:
    """What a search (history, $everything) has seen so far; iteration is in the shells.

    Each iteration runs the search again from its first page.
    """

    def __init__(self, query: PagedQuery) -> None:
        self._query = query

    @property
    def state(self) -> SearchState:
        return self._query.state

    @property
    def total(self) -> int | None:
        """``Bundle.total`` from the first page that had one (None: the server did not say)."""
        return self.state.total

    @property
    def truncated(self) -> bool:
        """True when resources were left unread (a cap, or a server that stopped early)."""
        return self.state.truncated

    @property
    def note(self) -> str | None:
        """Why the results are incomplete, when they are."""
        return self.state.note

    @property
    def pages_read(self) -> int:
        return self.state.pages

    @property
    def resources_read(self) -> int:
        return self.state.resources

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._query.request!r}, pages_read={self.pages_read}, "
            f"resources_read={self.resources_read}, truncated={self.truncated})"
        )


__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "ClientBase",
    "PagedResultsBase",
    "httpx_request",
    "httpx_timeout",
]
