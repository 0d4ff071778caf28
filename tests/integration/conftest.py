"""Integration fixtures: real FHIR R4 servers on 127.0.0.1, SEKMET and HAPI FHIR.

Every test that uses a server runs once per server (``[sekmet]`` and ``[hapi]`` in its id): the
server fixtures are parametrised, session-scoped per server. A test whose behaviour exists on one
server only says so with ``@pytest.mark.servers("hapi", reason="...")``; it is then generated for
that server alone (never skipped).

``fhir_server_handle`` (session, per server): installs the server on first use (SEKMET's venv,
or the Maven build of ``servers/hapi``), starts it on a free port with a fresh temporary state
dir, and stops it at the end. ``fhir_server_url``: its base URL, ``http://127.0.0.1:PORT/fhir``.
``fresh_fhir_server_url`` (function): empties the database first (``sekmet reset``, HAPI
``$expunge``), then yields the same URL. ``fhir_server_kind``: ``"sekmet"`` or ``"hapi"``.

If a server cannot be installed or started (no Java, a failed build) the tests FAIL with the
reason and the log tail; they never skip. Every test in this directory gets the ``integration``
marker.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
_SCRIPT = _HERE.parent.parent / "scripts" / "fhir_server.py"
_MODULE_NAME = "plao_fhir_server_script"


def _load_server_module() -> ModuleType:
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _SCRIPT)
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {_SCRIPT}", pytrace=False)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


fhir_server = _load_server_module()


#: every server the integration suite runs on, in the order the runs happen
SERVERS: tuple[str, ...] = tuple(fhir_server.SERVERS)
#: ``FHIR_TEST_SERVERS=hapi`` narrows a local run to some of them (CI runs all)
_SELECTED = tuple(
    s for s in os.environ.get("FHIR_TEST_SERVERS", ",".join(SERVERS)).split(",") if s.strip()
)


def pytest_configure(config: pytest.Config) -> None:
    unknown = set(_SELECTED) - set(SERVERS)
    if unknown:
        raise pytest.UsageError(f"FHIR_TEST_SERVERS names unknown servers: {sorted(unknown)}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fhir_server_handle" not in metafunc.fixturenames:
        return
    wanted = SERVERS
    marker = metafunc.definition.get_closest_marker("servers")
    if marker is not None:
        if not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: servers() needs a reason")
        wanted = tuple(marker.args)
    names = [s for s in wanted if s in _SELECTED]
    metafunc.parametrize("fhir_server_handle", names, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _label(kind: str) -> str:
    return "HAPI FHIR" if kind == "hapi" else "SEKMET"


@pytest.fixture(scope="session")
def fhir_server_handle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The running server's ``ServerHandle`` (base_url, pid, port, kind, log_path, ...)."""
    kind = str(request.param)
    try:
        fhir_server.install(kind)
    except fhir_server.ServerError as exc:
        pytest.fail(f"could not install the {_label(kind)} server:\n{exc}", pytrace=False)
    state_dir = tmp_path_factory.mktemp(kind)
    try:
        handle = fhir_server.start(0, state_dir, server=kind, fresh=True)
    except fhir_server.ServerError as exc:
        pytest.fail(f"could not start the {_label(kind)} server:\n{exc}", pytrace=False)
    try:
        yield handle
    finally:
        fhir_server.stop(handle)


@pytest.fixture(scope="session")
def fhir_server_kind(fhir_server_handle: Any) -> str:
    """``"sekmet"`` or ``"hapi"``: which server this run of the test talks to."""
    return str(fhir_server_handle.kind)


@pytest.fixture(scope="session")
def fhir_server_url(fhir_server_handle: Any) -> str:
    """Base URL of the session's server, e.g. ``http://127.0.0.1:PORT/fhir``."""
    return str(fhir_server_handle.base_url)


@pytest.fixture
def fresh_fhir_server_url(fhir_server_handle: Any) -> str:
    """The same base URL, with the server's database emptied first."""
    try:
        fhir_server.reset(fhir_server_handle)
    except fhir_server.ServerError as exc:
        pytest.fail(
            f"could not reset the {_label(fhir_server_handle.kind)} server:\n{exc}\n"
            f"--- tail of {fhir_server_handle.log_path} ---\n"
            f"{fhir_server.tail(fhir_server_handle.log_path)}",
            pytrace=False,
        )
    return str(fhir_server_handle.base_url)
