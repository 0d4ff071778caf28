#!/usr/bin/env python3
"""Manage the local FHIR R4 servers of the tests, the demo and the bench: SEKMET and HAPI.

Two real, third-party servers, both on 127.0.0.1 only:

* ``sekmet``: SEKMET (``sekmet-fhir==0.1.1``, Python), in its own virtualenv
  ``.fhir-server/venv`` at the repository root, because it pins its own fastapi, pydantic and
  fhir.resources (< 9), which must not leak into the project's venv.
* ``hapi``: the HAPI FHIR JPA server 8.8.0 (Java), through our own small Spring Boot launcher in
  ``servers/hapi`` (H2 in memory). Built by Maven on first use (``mvn compile``; its dependencies
  land in the local Maven repository), rebuilt only when ``servers/hapi`` changes, so later runs
  need no network. Needs Java 17+ and Maven; without them ``install`` fails in one line.

Standard library only: this file runs under any Python >= 3.11 and needs no package.

Command line (run from anywhere; relative ``--state-dir`` paths are taken from the current
directory; ``--server`` defaults to ``$FHIR_SERVER_KIND`` or ``sekmet``)::

    python scripts/fhir_server.py install [--server hapi]
    python scripts/fhir_server.py start --server hapi --state-dir .fhir-server/demo --fresh
    python scripts/fhir_server.py status --state-dir .fhir-server/demo
    python scripts/fhir_server.py reset  --state-dir .fhir-server/demo
    python scripts/fhir_server.py stop   --state-dir .fhir-server/demo

``start`` prints only the base URL (``http://127.0.0.1:PORT/fhir``) on stdout; everything else
goes to stderr. ``status``, ``reset`` and ``stop`` read the kind of server from the state dir.

Python API (load this file by path, e.g. with ``importlib.util.spec_from_file_location``)::

    install("hapi")                                        # idempotent, instant once stamped
    handle = start(port=0, state_dir=path, server="hapi")  # -> ServerHandle(base_url, pid, ...)
    reset(handle)                                          # empties the database
    stop(handle)                                           # idempotent
    hapi_classpath()                                       # what the HAPI validator runs with

Every wait in here is bounded; failures raise :class:`ServerError` whose message carries the tail
of the relevant log.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_HOME = REPO_ROOT / ".fhir-server"
VENV_DIR = SERVER_HOME / "venv"
CONSTRAINTS = REPO_ROOT / "scripts" / "sekmet-constraints.txt"
REQUIREMENT = "sekmet-fhir==0.1.1"
STAMP = VENV_DIR / ".sekmet-installed"
INSTALL_LOG = SERVER_HOME / "install.log"
DEFAULT_STATE_DIR = SERVER_HOME / "server"
SERVERS = ("sekmet", "hapi")

HAPI_DIR = REPO_ROOT / "servers" / "hapi"
HAPI_TARGET = HAPI_DIR / "target"
HAPI_STAMP = HAPI_TARGET / ".fhir-plao-built"
HAPI_BUILD_LOG = SERVER_HOME / "hapi-build.log"
HAPI_MAIN = "org.fhirplao.hapi.HapiServer"
HAPI_VALIDATOR_MAIN = "org.fhirplao.hapi.ValidateCommand"
HAPI_HEAP = "-Xmx768m"
HAPI_BUILD_TIMEOUT = 1800.0  # s, first build downloads ~370 MB of Maven artifacts
HAPI_START_TIMEOUT = 300.0  # s, 30 s warm on 2 cores; the first start creates the schema

HOST = "127.0.0.1"
FHIR_PATH = "/fhir"  # SEKMET's FHIR routes are fixed under /fhir

SETTINGS_FILE = "settings.yaml"
PID_FILE = "server.pid"
INFO_FILE = "server.json"
LOG_FILE = "server.log"
DB_FILE = "sekmet.db"

INSTALL_TIMEOUT = 900.0  # s, venv + pip install (about 20 s on a warm machine)
START_TIMEOUT = 60.0  # s, until /metadata answers 200 with fhirVersion 4.0.x
STOP_TIMEOUT = 15.0  # s, after SIGTERM, before SIGKILL
KILL_TIMEOUT = 5.0  # s, after SIGKILL
PORT_FREE_TIMEOUT = 10.0  # s, for a just-stopped server's port to be bindable again
RESET_TIMEOUT = 120.0  # s, `sekmet reset`
POLL_INTERVAL = 0.2  # s

# Environment variables SEKMET reads as overrides of the settings file: never inherit them.
_SEKMET_ENV = ("SEKMET_CONFIG", "SEKMET_BASE_URL", "SEKMET_DB", "SEKMET_PUBLIC_URL", "SEKMET_PORT")


class ServerError(RuntimeError):
    """A server could not be installed, built, started, reset or stopped."""


@dataclasses.dataclass
class ServerHandle:
    """A running (or once running) server: ``kind`` is ``sekmet`` or ``hapi``."""

    base_url: str
    pid: int
    port: int
    state_dir: Path
    settings_path: Path
    log_path: Path
    db_path: Path
    kind: str = "sekmet"
    process: subprocess.Popen[bytes] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    start_seconds: float = dataclasses.field(default=0.0, compare=False)


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[fhir-server] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _base_python() -> str:
    """The interpreter this one was created from (outside any venv), to make SEKMET's venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if base and os.path.exists(base) else sys.executable


def _venv_bin(name: str) -> Path:
    return VENV_DIR / "bin" / name


def _stamp_content() -> str:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    return f"{REQUIREMENT}\nconstraints-sha256={digest}\n"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SEKMET_ENV}
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(k, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run_logged(
    cmd: list[str],
    log: IO[bytes],
    *,
    env: dict[str, str],
    timeout: float,
    cwd: Path | None = None,
) -> int:
    """Run ``cmd`` with its output appended to ``log``; its exit code, -1 if it timed out or
    could not start (said in the log)."""
    log.write(f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    try:
        rc = subprocess.run(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        rc = -1
        log.write(f"\n[timed out after {timeout:.0f} s]\n".encode())
    except OSError as exc:
        rc = -1
        log.write(f"\n[could not run: {exc}]\n".encode())
    log.flush()
    return rc


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive advisory lock (bounded wait), so concurrent installs do not collide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"timed out after {timeout:.0f} s waiting for lock {path}"
                    ) from None
                time.sleep(POLL_INTERVAL)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead; our own zombie children are reaped)."""
    if pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _is_server(pid: int, kind: str) -> bool:
    """Guard against a recycled pid: the process must be a `sekmet serve` or our HAPI launcher."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if kind == "hapi":
        return HAPI_MAIN.encode() in cmd
    return any(b"sekmet" in part for part in cmd) and b"serve" in cmd


def _check_kind(kind: str) -> str:
    if kind not in SERVERS:
        raise ServerError(f"unknown server {kind!r}: choose one of {', '.join(SERVERS)}")
    return kind


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as uvicorn sets it: TIME_WAIT leftovers do not block a restart.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if _port_free(port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


def _parse_port(port: int | str | None) -> int:
    if port is None or str(port).strip().lower() in ("", "0", "auto"):
        return 0
    try:
        value = int(str(port))
    except ValueError:
        raise ServerError(f"invalid port {port!r}: give a number or 'auto'") from None
    if not 0 <= value <= 65535:
        raise ServerError(f"invalid port {value}")
    return value


def _resolve_state_dir(state_dir: str | os.PathLike[str] | None) -> Path:
    return Path(state_dir).resolve() if state_dir else DEFAULT_STATE_DIR


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def metadata(base_url: str, timeout: float = 2.0) -> dict[str, object] | None:
    """GET ``{base_url}/metadata``; the CapabilityStatement if it answers 200 with JSON."""
    req = urllib.request.Request(
        f"{base_url}/metadata", headers={"Accept": "application/fhir+json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            body = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _ready(base_url: str) -> bool:
    cap = metadata(base_url)
    return cap is not None and str(cap.get("fhirVersion", "")).startswith("4.0.")


# --------------------------------------------------------------------------- install


def installed(server: str = "sekmet") -> bool:
    """True when the server is installed (SEKMET's venv, HAPI's build) for the current sources."""
    if _check_kind(server) == "hapi":
        return _hapi_built()
    try:
        return (
            STAMP.read_text() == _stamp_content()
            and _venv_bin("sekmet").exists()
            and _venv_bin("python").exists()  # follows the symlink to the base interpreter
        )
    except OSError:
        return False


def install(server: str = "sekmet", force: bool = False) -> Path:
    """Install ``server``; instant when already done. Returns what is run to start it.

    SEKMET: create ``.fhir-server/venv`` and pip-install it (returns the ``sekmet`` executable).
    HAPI: build ``servers/hapi`` with Maven (returns ``servers/hapi/target``). Raises
    :class:`ServerError` with the tail of the install or build log when anything fails.
    """
    if _check_kind(server) == "hapi":
        return build_hapi(force=force)
    if not force and installed():
        return _venv_bin("sekmet")
    if not CONSTRAINTS.exists():
        raise ServerError(f"constraints file missing: {CONSTRAINTS}")
    with _file_lock(SERVER_HOME / "install.lock", timeout=INSTALL_TIMEOUT):
        if not force and installed():  # another process finished it while we waited
            return _venv_bin("sekmet")
        _log(f"installing {REQUIREMENT} into {VENV_DIR} (first run: ~20 s)")
        if VENV_DIR.exists():
            shutil.rmtree(VENV_DIR)  # a partial or outdated venv: start over
        SERVER_HOME.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + INSTALL_TIMEOUT
        steps = [
            [_base_python(), "-m", "venv", str(VENV_DIR)],
            [
                str(_venv_bin("python")),
                "-m",
                "pip",
                "install",
                "--no-input",
                "-c",
                str(CONSTRAINTS),
                REQUIREMENT,
            ],
        ]
        with open(INSTALL_LOG, "wb") as log:
            for cmd in steps:
                remaining = max(1.0, deadline - time.monotonic())
                rc = _run_logged(cmd, log, env=_clean_env(), timeout=remaining)
                if rc != 0:
                    raise ServerError(
                        f"SEKMET install failed (exit {rc}) running: {' '.join(cmd)}\n"
                        f"--- tail of {INSTALL_LOG} ---\n{tail(INSTALL_LOG)}"
                    )
        if not _venv_bin("sekmet").exists():
            raise ServerError(f"SEKMET installed but {_venv_bin('sekmet')} is missing")
        STAMP.write_text(_stamp_content())
        _log("SEKMET installed")
    return _venv_bin("sekmet")


# --------------------------------------------------------------------------- HAPI build


def java_executable() -> str:
    """The ``java`` to run HAPI with (``$JAVA_HOME/bin/java``, else ``java`` on PATH), 17+."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise ServerError(f"Java not found ({where}): the HAPI server needs Java 17 or newer")
    try:
        res = subprocess.run(
            [java, "-version"],
            capture_output=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"cannot run {java} -version: {exc}") from None
    text = (res.stderr + res.stdout).decode("utf-8", "replace")
    found = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_x": Java 8
        major = int(found.group(2))
    if major < 17:
        raise ServerError(f"{java} is Java {major or '?'}: the HAPI server needs Java 17 or newer")
    return java


def _hapi_sources_digest() -> str:
    digest = hashlib.sha256()
    files = [HAPI_DIR / "pom.xml", *sorted(p for p in (HAPI_DIR / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(HAPI_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _hapi_built() -> bool:
    try:
        return (
            HAPI_STAMP.read_text() == _hapi_sources_digest()
            and (HAPI_TARGET / "classpath.txt").is_file()
        )
    except OSError:
        return False


def build_hapi(force: bool = False) -> Path:
    """Compile ``servers/hapi`` with Maven unless it is built for the current sources.

    The first build downloads HAPI FHIR, Spring Boot and their dependencies into the local Maven
    repository (a few minutes); a later build of changed sources needs no network. Returns
    ``servers/hapi/target``.
    """
    java = java_executable()  # checked even when built: the server cannot start without it
    if not force and _hapi_built():
        return HAPI_TARGET
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServerError("Maven not found (no mvn on PATH): the HAPI server is built with Maven")
    with _file_lock(SERVER_HOME / "hapi-build.lock", timeout=HAPI_BUILD_TIMEOUT):
        if not force and _hapi_built():
            return HAPI_TARGET
        _log(f"building the HAPI FHIR launcher in {HAPI_DIR} (first run: a few minutes)")
        env = _clean_env()
        env["JAVA_HOME"] = str(Path(java).resolve().parent.parent)
        cmd = [mvn, "-B", "-q", "-f", str(HAPI_DIR / "pom.xml"), "compile"]
        SERVER_HOME.mkdir(parents=True, exist_ok=True)
        HAPI_STAMP.unlink(missing_ok=True)
        with open(HAPI_BUILD_LOG, "wb") as log:
            rc = _run_logged(cmd, log, env=env, timeout=HAPI_BUILD_TIMEOUT, cwd=HAPI_DIR)
        if rc != 0 or not (HAPI_TARGET / "classpath.txt").is_file():
            raise ServerError(
                f"HAPI launcher build failed (exit {rc}): {' '.join(cmd)}\n"
                f"--- tail of {HAPI_BUILD_LOG} ---\n{tail(HAPI_BUILD_LOG)}"
            )
        HAPI_STAMP.write_text(_hapi_sources_digest())
        _log("HAPI FHIR launcher built")
    return HAPI_TARGET


def hapi_classpath() -> str:
    """The Java classpath of the built launcher and validator (builds them first if needed)."""
    target = build_hapi()
    deps = (target / "classpath.txt").read_text().strip()
    return f"{target / 'classes'}{os.pathsep}{deps}"


def hapi_expunge_everything(base_url: str, timeout: float = RESET_TIMEOUT) -> None:
    """Empty a HAPI server: ``POST [base]/$expunge`` with ``expungeEverything`` (enabled by us)."""
    body = json.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "expungeEverything", "valueBoolean": True}],
        }
    ).encode()
    req = urllib.request.Request(
        f"{base_url}/$expunge",
        data=body,
        method="POST",
        headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")[-2000:]
        raise ServerError(f"$expunge at {base_url} answered {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"$expunge at {base_url} failed: {exc}") from None


# --------------------------------------------------------------------------- state


def _paths(state: Path) -> dict[str, Path]:
    return {
        "settings": state / SETTINGS_FILE,
        "pid": state / PID_FILE,
        "info": state / INFO_FILE,
        "log": state / LOG_FILE,
        "db": state / DB_FILE,
    }


def write_settings(state: Path, port: int) -> Path:
    """Write SEKMET's settings YAML (keys checked against sekmet/config.py of 0.1.1)."""
    p = _paths(state)
    base_url = f"http://{HOST}:{port}{FHIR_PATH}"
    text = "\n".join(
        [
            "# Written by scripts/fhir_server.py; regenerated on every start.",
            f"base_url: {_yaml_str(base_url)}",  # Location, fullUrl and next links come from it
            f"host: {_yaml_str(HOST)}",
            f"port: {port}",
            f"data_dir: {_yaml_str(str(state / 'data'))}",
            f"db_path: {_yaml_str(str(p['db']))}",
            f"own_private_key_path: {_yaml_str(str(state / 'keys' / 'sekmet_private.pem'))}",
            "simulator:",
            "  enabled: false",  # on by default: it would create Tasks/Observations of its own
            "validation:",
            "  inbound: strict",
            "log_inbound: false",
            "",
        ]
    )
    state.mkdir(parents=True, exist_ok=True)
    p["settings"].write_text(text)
    return p["settings"]


def _read_info(state: Path) -> dict[str, object] | None:
    try:
        info = json.loads(_paths(state)["info"].read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _read_pid(state: Path) -> int | None:
    try:
        return int(_paths(state)["pid"].read_text().strip())
    except (OSError, ValueError):
        return None


def _handle_from_state(state: Path) -> ServerHandle | None:
    pid = _read_pid(state)
    info = _read_info(state) or {}
    if pid is None:
        return None
    p = _paths(state)
    port = int(str(info.get("port", 0)))
    kind = str(info.get("server", "sekmet"))
    return ServerHandle(
        base_url=str(info.get("base_url", f"http://{HOST}:{port}{FHIR_PATH}")),
        pid=pid,
        port=port,
        state_dir=state,
        settings_path=p["settings"],
        log_path=p["log"],
        db_path=p["db"],
        kind=kind if kind in SERVERS else "sekmet",
    )


def running(state_dir: str | os.PathLike[str] | None = None) -> ServerHandle | None:
    """The handle of the server recorded in ``state_dir`` if it is alive, else None."""
    state = _resolve_state_dir(state_dir)
    handle = _handle_from_state(state)
    if handle and _pid_alive(handle.pid) and _is_server(handle.pid, handle.kind):
        return handle
    return None


# --------------------------------------------------------------------------- start / stop


def _command(
    kind: str, state: Path, port: int, base_url: str, options: dict[str, str]
) -> list[str]:
    """The server's command line (SEKMET reads its settings file, HAPI its arguments)."""
    if options and kind != "hapi":
        raise ServerError(f"options {sorted(options)} are for the HAPI launcher only")
    if kind == "hapi":
        extra = [f"--fhirplao.{key}={value}" for key, value in sorted(options.items())]
        return [
            java_executable(),
            HAPI_HEAP,
            "-XX:+UseSerialGC",  # two cores: no parallel collector threads competing with requests
            "-Djava.io.tmpdir=" + str(state),
            "-cp",
            hapi_classpath(),
            HAPI_MAIN,
            f"--server.address={HOST}",
            f"--server.port={port}",
            f"--fhirplao.server-address={base_url}",
            *extra,
        ]
    write_settings(state, port)
    return [str(_venv_bin("sekmet")), "serve", "-c", str(_paths(state)["settings"])]


def _label(kind: str) -> str:
    return "HAPI FHIR" if kind == "hapi" else "SEKMET"


def start(
    port: int | str | None = 0,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    server: str = "sekmet",
    fresh: bool = False,
    timeout: float | None = None,
    options: dict[str, str] | None = None,
) -> ServerHandle:
    """Start ``server`` detached on 127.0.0.1 and wait until ``/metadata`` says FHIR 4.0.x.

    ``port`` 0, None or "auto" picks a free port. ``fresh`` starts from an empty database
    (SEKMET's file is deleted; HAPI's H2 database lives in memory and is always new). If the
    state dir already has a live server of that kind on a compatible port, its handle is
    returned. ``options`` are settings of our HAPI launcher (``{"search-cache-millis": "60000"}``
    turns HAPI's search cache on). Raises :class:`ServerError` with the log tail when the server
    does not come up.
    """
    kind = _check_kind(server)
    install(kind)
    if timeout is None:
        timeout = HAPI_START_TIMEOUT if kind == "hapi" else START_TIMEOUT
    state = _resolve_state_dir(state_dir)
    wanted = _parse_port(port)

    existing = running(state)
    if existing is not None:
        if (
            existing.kind == kind
            and wanted in (0, existing.port)
            and not fresh
            and not options
            and _ready(existing.base_url)
        ):
            _log(f"already running (pid {existing.pid}) at {existing.base_url}")
            return existing
        _log(f"stopping the server already running from {state} (pid {existing.pid})")
        stop(existing)

    p = _paths(state)
    state.mkdir(parents=True, exist_ok=True)
    if fresh:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(p["db"]) + suffix).unlink()

    if wanted == 0:
        wanted = free_port()
    elif not _wait_port_free(wanted, PORT_FREE_TIMEOUT):
        raise ServerError(f"port {HOST}:{wanted} is in use by another process")

    base_url = f"http://{HOST}:{wanted}{FHIR_PATH}"
    cmd = _command(kind, state, wanted, base_url, dict(options or {}))
    label = _label(kind)
    began = time.monotonic()
    with open(p["log"], "wb") as log:
        log.write(f"$ {' '.join(cmd[:3])} ... {' '.join(cmd[-4:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=state,  # SEKMET resolves scenarios/, reports/, keys/ from its cwd
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            start_new_session=True,  # detached: survives the CLI, gets no terminal signals
            close_fds=True,
        )
    p["pid"].write_text(f"{proc.pid}\n")
    p["info"].write_text(
        json.dumps(
            {"pid": proc.pid, "port": wanted, "base_url": base_url, "server": kind}, indent=2
        )
        + "\n"
    )
    handle = ServerHandle(
        base_url=base_url,
        pid=proc.pid,
        port=wanted,
        state_dir=state,
        settings_path=p["settings"],
        log_path=p["log"],
        db_path=p["db"],
        kind=kind,
        process=proc,
    )

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _forget(state)
            raise ServerError(
                f"{label} exited with code {proc.returncode} before answering on {base_url}\n"
                f"--- tail of {p['log']} ---\n{tail(p['log'])}"
            )
        if _ready(base_url):
            break
        if time.monotonic() > deadline:
            log_tail = tail(p["log"])
            stop(handle)
            raise ServerError(
                f"{label} did not answer {base_url}/metadata with fhirVersion 4.0.x within "
                f"{timeout:.0f} s\n--- tail of {p['log']} ---\n{log_tail}"
            )
        time.sleep(POLL_INTERVAL)
    handle.start_seconds = time.monotonic() - began
    _log(
        f"{label} running (pid {proc.pid}) at {base_url}, ready in {handle.start_seconds:.1f} s;"
        f" log: {p['log']}"
    )
    return handle


def _forget(state: Path) -> None:
    p = _paths(state)
    for key in ("pid", "info"):
        with contextlib.suppress(FileNotFoundError):
            p[key].unlink()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            if os.getpgid(pid) == pid:  # our own session leader: take its children too
                os.killpg(pid, sig)
                return
        except ProcessLookupError:
            return
        os.kill(pid, sig)


def _wait_dead(handle: ServerHandle, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if handle.process is not None:
            try:
                handle.process.wait(timeout=POLL_INTERVAL)
                return True
            except subprocess.TimeoutExpired:
                pass
        elif not _pid_alive(handle.pid):
            return True
        else:
            time.sleep(POLL_INTERVAL)
        if time.monotonic() > deadline:
            return False


def _target(
    target: ServerHandle | str | os.PathLike[str] | None,
) -> tuple[ServerHandle | None, Path]:
    """The server a command is about (a handle, or what a state dir records) and its state dir."""
    if isinstance(target, ServerHandle):
        return target, target.state_dir
    state = _resolve_state_dir(target)
    return _handle_from_state(state), state


def stop(target: ServerHandle | str | os.PathLike[str] | None = None) -> bool:
    """Stop a server (by handle or state dir), wait for it to exit, free its port.

    Idempotent: returns False when nothing was running. Raises :class:`ServerError` if the
    process survives SIGTERM and SIGKILL.
    """
    handle, state = _target(target)
    if handle is None:
        _forget(state)
        return False

    label = _label(handle.kind)
    alive = (
        handle.process.poll() is None
        if handle.process is not None
        else (_pid_alive(handle.pid) and _is_server(handle.pid, handle.kind))
    )
    if alive:
        _signal(handle.pid, signal.SIGTERM)
        if not _wait_dead(handle, STOP_TIMEOUT):
            _log(f"pid {handle.pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; sending SIGKILL")
            _signal(handle.pid, signal.SIGKILL)
            if not _wait_dead(handle, KILL_TIMEOUT):
                raise ServerError(f"{label} pid {handle.pid} did not exit")
        if handle.port and not _wait_port_free(handle.port, PORT_FREE_TIMEOUT):
            _log(f"warning: port {handle.port} still busy {PORT_FREE_TIMEOUT:.0f} s after stop")
        _log(f"{label} (pid {handle.pid}) stopped")
    elif handle.process is not None:
        handle.process.wait(timeout=KILL_TIMEOUT)  # reap
    if _read_pid(state) == handle.pid:
        _forget(state)
    return alive


def reset(target: ServerHandle | str | os.PathLike[str] | None = None) -> None:
    """Empty the server's database: ``sekmet reset`` for SEKMET, ``$expunge`` for HAPI."""
    handle, state = _target(target)
    if handle is not None and handle.kind == "hapi":
        hapi_expunge_everything(handle.base_url)
        return
    settings = _paths(state)["settings"]
    if not settings.exists():
        raise ServerError(f"no settings at {settings}: start the server first")
    cmd = [str(_venv_bin("sekmet")), "reset", "--yes", "-c", str(settings)]
    try:
        res = subprocess.run(
            cmd,
            cwd=state,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_clean_env(),
            timeout=RESET_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServerError(f"`{' '.join(cmd)}` timed out after {RESET_TIMEOUT:.0f} s") from None
    if res.returncode != 0:
        out = (res.stdout + res.stderr).decode("utf-8", "replace")
        raise ServerError(f"`{' '.join(cmd)}` failed (exit {res.returncode}):\n{out[-4000:]}")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fhir_server.py",
        description="Manage the local FHIR R4 servers SEKMET and HAPI FHIR (127.0.0.1 only).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default_kind = os.environ.get("FHIR_SERVER_KIND") or "sekmet"
    server_help = f"which server: {' or '.join(SERVERS)} (default: {default_kind})"
    p_inst = sub.add_parser(
        "install", help="install SEKMET's venv or build the HAPI launcher (idempotent)"
    )
    p_inst.add_argument("--server", choices=SERVERS, default=default_kind, help=server_help)
    p_inst.add_argument("--force", action="store_true", help="reinstall even if stamped")
    state_help = f"state directory (default: {DEFAULT_STATE_DIR.relative_to(REPO_ROOT)})"
    p_start = sub.add_parser("start", help="start the server; prints its base URL on stdout")
    p_start.add_argument("--server", choices=SERVERS, default=default_kind, help=server_help)
    p_start.add_argument("--port", default="auto", help="TCP port, or 0/auto for a free one")
    p_start.add_argument("--state-dir", default=None, help=state_help)
    p_start.add_argument("--fresh", action="store_true", help="start from an empty database")
    p_start.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    for name, text in (
        ("stop", "stop the server (idempotent)"),
        ("reset", "empty the server's database (sekmet reset; HAPI $expunge)"),
        ("status", "print the base URL if running, exit 1 otherwise"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--state-dir", default=None, help=state_help)
    sub.add_parser("classpath", help="print the HAPI launcher's Java classpath (builds it)")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(install(args.server, force=args.force))
        elif args.command == "start":
            handle = start(
                args.port,
                args.state_dir,
                server=args.server,
                fresh=args.fresh,
                timeout=args.timeout,
            )
            print(handle.base_url, flush=True)
        elif args.command == "stop":
            if not stop(args.state_dir):
                _log("no server running")
        elif args.command == "reset":
            reset(args.state_dir)
            _log("database emptied")
        elif args.command == "status":
            current = running(args.state_dir)
            if current is None:
                _log("not running")
                return 1
            print(current.base_url)
        elif args.command == "classpath":
            print(hapi_classpath())
    except ServerError as exc:
        print(f"fhir_server.py {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
