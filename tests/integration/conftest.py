"""Integration fixtures: a real SEKMET FHIR R4 server on 127.0.0.1.

``fhir_server_url`` (session): installs SEKMET on first use (``.fhir-server/venv``), starts it on a
free port with a fresh temporary state dir, yields ``http://127.0.0.1:PORT/fhir`` and stops it at
the end. ``fresh_fhir_server_url`` (function): empties the database first, then yields the same URL.

If the server cannot be installed or started the tests FAIL with the log tail; they never skip.
Every test in this directory gets the ``integration`` marker.
"""

from __future__ import annotations

import importlib.util
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def fhir_server_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running server's ``ServerHandle`` (base_url, pid, port, state_dir, log_path, ...)."""
    try:
        fhir_server.install()
    except fhir_server.ServerError as exc:
        pytest.fail(f"could not install the SEKMET FHIR server:\n{exc}", pytrace=False)
    state_dir = tmp_path_factory.mktemp("sekmet")
    try:
        handle = fhir_server.start(0, state_dir, fresh=True)
    except fhir_server.ServerError as exc:
        pytest.fail(f"could not start the SEKMET FHIR server:\n{exc}", pytrace=False)
    try:
        yield handle
    finally:
        fhir_server.stop(handle)


@pytest.fixture(scope="session")
def fhir_server_url(fhir_server_handle: Any) -> str:
    """Base URL of the session's SEKMET server, e.g. ``http://127.0.0.1:PORT/fhir``."""
    return str(fhir_server_handle.base_url)


@pytest.fixture
def fresh_fhir_server_url(fhir_server_handle: Any) -> str:
    """The same base URL, with the server's database emptied (``sekmet reset``) first."""
    try:
        fhir_server.reset(fhir_server_handle)
    except fhir_server.ServerError as exc:
        pytest.fail(
            f"could not reset the SEKMET FHIR server:\n{exc}\n"
            f"--- tail of {fhir_server_handle.log_path} ---\n"
            f"{fhir_server.tail(fhir_server_handle.log_path)}",
            pytrace=False,
        )
    return str(fhir_server_handle.base_url)
