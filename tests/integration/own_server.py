"""A HAPI of a test module's own, started with launcher settings the shared one does not have
(its search cache on, client-assigned ids refused), stopped at the end of the module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def own_hapi(
    tmp_path_factory: pytest.TempPathFactory, what: str, options: dict[str, str]
) -> Iterator[str]:
    """HAPI started fresh with ``options`` (settings of our launcher); yields its base URL.
    ``what`` says, for the failure message, what this HAPI is."""
    fhir_server = sys.modules["plao_fhir_server_script"]  # loaded by conftest.py
    state = tmp_path_factory.mktemp("hapi-own")
    try:
        handle = fhir_server.start(0, state, server="hapi", fresh=True, options=options)
    except fhir_server.ServerError as exc:
        pytest.fail(f"could not start HAPI {what}:\n{exc}", pytrace=False)
    try:
        yield str(handle.base_url)
    finally:
        fhir_server.stop(handle)
