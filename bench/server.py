"""The local FHIR server for the bench (SEKMET or HAPI FHIR), through ``scripts/fhir_server.py``.

The script is stdlib-only and is loaded by path, as ``tests/integration/conftest.py`` does. The
bench's server gets its own state directory and a free 127.0.0.1 port, and is always stopped.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench._common import REPO_ROOT, BenchError, progress

_SCRIPT = REPO_ROOT / "scripts" / "fhir_server.py"
_MODULE_NAME = "plao_fhir_server_script"


def server_module() -> ModuleType:
    """``scripts/fhir_server.py`` as a module (install, start, stop, reset, REQUIREMENT)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _SCRIPT)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


#: what the report calls each server, with its version
LABELS = {"sekmet": "SEKMET", "hapi": "HAPI FHIR"}


def version(kind: str) -> str:
    """The server's version as the report gives it."""
    if kind == "hapi":
        return "8.8.0 (JPA, H2 in memory; servers/hapi)"
    return str(server_module().REQUIREMENT).split("==", 1)[-1]


@contextmanager
def running(kind: str, state_dir: Path) -> Iterator[Any]:
    """Install (if needed) and start the server with a fresh database; stop it however we
    leave."""
    fhir_server = server_module()
    fhir_server.install(kind)
    handle = fhir_server.start(0, state_dir, server=kind, fresh=True)
    progress(f"{LABELS[kind]} running at {handle.base_url} (state in {state_dir})")
    try:
        yield handle
    finally:
        fhir_server.stop(handle)
        progress(f"{LABELS[kind]} stopped")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/PID/stat``), 0 if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return 0.0
    return ticks / os.sysconf("SC_CLK_TCK")


def reset(handle: Any) -> None:
    """Empty the server's database."""
    server_module().reset(handle)


def count_types(base_url: str, types: Iterable[str]) -> dict[str, int]:
    """``_summary=count`` for each resource type, with our own client."""
    from fhir_plao import FhirClient

    with FhirClient(base_url) as client:
        return {rtype: client.count(rtype) for rtype in sorted(set(types))}


def check_counts(base_url: str, expected: dict[str, int], what: str) -> dict[str, int]:
    """Count every type on the server; raise :class:`BenchError` unless it is ``expected``."""
    found = count_types(base_url, expected)
    if found != expected:
        raise BenchError(f"{what}: the server holds {found}, expected {expected}")
    return found
