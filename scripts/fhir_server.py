#!/usr/bin/env python3
"""Manage a local SEKMET FHIR R4 server (``sekmet-fhir==0.1.1``) for tests and the demo.

Standard library only: this file runs under any Python >= 3.11 and needs no package. SEKMET lives
in its own virtualenv, ``.fhir-server/venv`` at the repository root, because it pins its own
fastapi, pydantic and fhir.resources (< 9), which must not leak into the project's venv.

Command line (run from anywhere; relative ``--state-dir`` paths are taken from the current
directory)::

    python scripts/fhir_server.py install
    python scripts/fhir_server.py start --port auto --state-dir .fhir-server/demo --fresh
    python scripts/fhir_server.py status --state-dir .fhir-server/demo
    python scripts/fhir_server.py reset  --state-dir .fhir-server/demo
    python scripts/fhir_server.py stop   --state-dir .fhir-server/demo

``start`` prints only the base URL (``http://127.0.0.1:PORT/fhir``) on stdout; everything else
goes to stderr. The server listens on 127.0.0.1 only.

Python API (load this file by path, e.g. with ``importlib.util.spec_from_file_location``)::

    install()                                  # idempotent, instant once stamped
    handle = start(port=0, state_dir=path)     # -> ServerHandle(base_url, pid, port, ...)
    reset(handle)                              # empties the database
    stop(handle)                               # idempotent

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

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_HOME = REPO_ROOT / ".fhir-server"
VENV_DIR = SERVER_HOME / "venv"
CONSTRAINTS = REPO_ROOT / "scripts" / "sekmet-constraints.txt"
REQUIREMENT = "sekmet-fhir==0.1.1"
STAMP = VENV_DIR / ".sekmet-installed"
INSTALL_LOG = SERVER_HOME / "install.log"
DEFAULT_STATE_DIR = SERVER_HOME / "server"

HOST = "127.0.0.1"
FHIR_PATH = "/fhir"  # SEKMET's FHIR routes are fixed under /fhir

SETTINGS_FILE = "settings.yaml"
PID_FILE = "sekmet.pid"
INFO_FILE = "server.json"
LOG_FILE = "sekmet.log"
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
    """The SEKMET server could not be installed, started, reset or stopped."""


@dataclasses.dataclass
class ServerHandle:
    """A running (or once running) SEKMET server."""

    base_url: str
    pid: int
    port: int
    state_dir: Path
    settings_path: Path
    log_path: Path
    db_path: Path
    process: subprocess.Popen[bytes] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )


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


def _is_sekmet(pid: int) -> bool:
    """Guard against a recycled pid: the process must be a `sekmet serve`."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"sekmet" in part for part in cmd) and b"serve" in cmd


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


def installed() -> bool:
    """True when SEKMET's venv is installed for the current constraints (no process spawned)."""
    try:
        return (
            STAMP.read_text() == _stamp_content()
            and _venv_bin("sekmet").exists()
            and _venv_bin("python").exists()  # follows the symlink to the base interpreter
        )
    except OSError:
        return False


def install(force: bool = False) -> Path:
    """Create ``.fhir-server/venv`` and pip-install SEKMET into it; instant when already done.

    Returns the path of the ``sekmet`` executable. Raises :class:`ServerError` with the tail of
    ``.fhir-server/install.log`` when anything fails.
    """
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
                log.write(f"$ {' '.join(cmd)}\n".encode())
                log.flush()
                remaining = max(1.0, deadline - time.monotonic())
                try:
                    rc = subprocess.run(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_clean_env(),
                        timeout=remaining,
                        check=False,
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = -1
                    log.write(f"\n[timed out after {INSTALL_TIMEOUT:.0f} s]\n".encode())
                except OSError as exc:
                    rc = -1
                    log.write(f"\n[could not run: {exc}]\n".encode())
                if rc != 0:
                    log.flush()
                    raise ServerError(
                        f"SEKMET install failed (exit {rc}) running: {' '.join(cmd)}\n"
                        f"--- tail of {INSTALL_LOG} ---\n{tail(INSTALL_LOG)}"
                    )
        if not _venv_bin("sekmet").exists():
            raise ServerError(f"SEKMET installed but {_venv_bin('sekmet')} is missing")
        STAMP.write_text(_stamp_content())
        _log("SEKMET installed")
    return _venv_bin("sekmet")


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
    return ServerHandle(
        base_url=str(info.get("base_url", f"http://{HOST}:{port}{FHIR_PATH}")),
        pid=pid,
        port=port,
        state_dir=state,
        settings_path=p["settings"],
        log_path=p["log"],
        db_path=p["db"],
    )


def running(state_dir: str | os.PathLike[str] | None = None) -> ServerHandle | None:
    """The handle of the server recorded in ``state_dir`` if it is alive, else None."""
    state = _resolve_state_dir(state_dir)
    handle = _handle_from_state(state)
    if handle and _pid_alive(handle.pid) and _is_sekmet(handle.pid):
        return handle
    return None


# --------------------------------------------------------------------------- start / stop


def start(
    port: int | str | None = 0,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    fresh: bool = False,
    timeout: float = START_TIMEOUT,
) -> ServerHandle:
    """Start SEKMET detached on 127.0.0.1 and wait until ``/metadata`` says FHIR 4.0.x.

    ``port`` 0, None or "auto" picks a free port. ``fresh`` deletes the state dir's database
    first. If the state dir already has a live server on a compatible port, its handle is
    returned. Raises :class:`ServerError` with the log tail when the server does not come up.
    """
    install()
    state = _resolve_state_dir(state_dir)
    wanted = _parse_port(port)

    existing = running(state)
    if existing is not None:
        if wanted in (0, existing.port) and not fresh and _ready(existing.base_url):
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

    write_settings(state, wanted)
    base_url = f"http://{HOST}:{wanted}{FHIR_PATH}"
    cmd = [str(_venv_bin("sekmet")), "serve", "-c", str(p["settings"])]
    with open(p["log"], "wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
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
        json.dumps({"pid": proc.pid, "port": wanted, "base_url": base_url}, indent=2) + "\n"
    )
    handle = ServerHandle(
        base_url=base_url,
        pid=proc.pid,
        port=wanted,
        state_dir=state,
        settings_path=p["settings"],
        log_path=p["log"],
        db_path=p["db"],
        process=proc,
    )

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _forget(state)
            raise ServerError(
                f"SEKMET exited with code {proc.returncode} before answering on {base_url}\n"
                f"--- tail of {p['log']} ---\n{tail(p['log'])}"
            )
        if _ready(base_url):
            break
        if time.monotonic() > deadline:
            log_tail = tail(p["log"])
            stop(handle)
            raise ServerError(
                f"SEKMET did not answer {base_url}/metadata with fhirVersion 4.0.x within "
                f"{timeout:.0f} s\n--- tail of {p['log']} ---\n{log_tail}"
            )
        time.sleep(POLL_INTERVAL)
    _log(f"SEKMET running (pid {proc.pid}) at {base_url}; log: {p['log']}")
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


def stop(target: ServerHandle | str | os.PathLike[str] | None = None) -> bool:
    """Stop a server (by handle or state dir), wait for it to exit, free its port.

    Idempotent: returns False when nothing was running. Raises :class:`ServerError` if the
    process survives SIGTERM and SIGKILL.
    """
    if isinstance(target, ServerHandle):
        handle: ServerHandle | None = target
        state = target.state_dir
    else:
        state = _resolve_state_dir(target)
        handle = _handle_from_state(state)
    if handle is None:
        _forget(state)
        return False

    alive = (
        handle.process.poll() is None
        if handle.process is not None
        else (_pid_alive(handle.pid) and _is_sekmet(handle.pid))
    )
    if alive:
        _signal(handle.pid, signal.SIGTERM)
        if not _wait_dead(handle, STOP_TIMEOUT):
            _log(f"pid {handle.pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; sending SIGKILL")
            _signal(handle.pid, signal.SIGKILL)
            if not _wait_dead(handle, KILL_TIMEOUT):
                raise ServerError(f"SEKMET pid {handle.pid} did not exit")
        if handle.port and not _wait_port_free(handle.port, PORT_FREE_TIMEOUT):
            _log(f"warning: port {handle.port} still busy {PORT_FREE_TIMEOUT:.0f} s after stop")
        _log(f"SEKMET (pid {handle.pid}) stopped")
    elif handle.process is not None:
        handle.process.wait(timeout=KILL_TIMEOUT)  # reap
    if _read_pid(state) == handle.pid:
        _forget(state)
    return alive


def reset(target: ServerHandle | str | os.PathLike[str] | None = None) -> None:
    """Empty the server's database with ``sekmet reset --yes -c settings.yaml``."""
    state = target.state_dir if isinstance(target, ServerHandle) else _resolve_state_dir(target)
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
        prog="fhir_server.py", description="Manage a local SEKMET FHIR R4 server (127.0.0.1)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_inst = sub.add_parser("install", help="install SEKMET into .fhir-server/venv (idempotent)")
    p_inst.add_argument("--force", action="store_true", help="reinstall even if stamped")
    state_help = f"state directory (default: {DEFAULT_STATE_DIR.relative_to(REPO_ROOT)})"
    p_start = sub.add_parser("start", help="start the server; prints its base URL on stdout")
    p_start.add_argument("--port", default="auto", help="TCP port, or 0/auto for a free one")
    p_start.add_argument("--state-dir", default=None, help=state_help)
    p_start.add_argument("--fresh", action="store_true", help="delete the database first")
    p_start.add_argument("--timeout", type=float, default=START_TIMEOUT, help="seconds to wait")
    for name, text in (
        ("stop", "stop the server (idempotent)"),
        ("reset", "empty the server's database (sekmet reset)"),
        ("status", "print the base URL if running, exit 1 otherwise"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--state-dir", default=None, help=state_help)
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(install(force=args.force))
        elif args.command == "start":
            handle = start(args.port, args.state_dir, fresh=args.fresh, timeout=args.timeout)
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
    except ServerError as exc:
        print(f"fhir_server.py {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
