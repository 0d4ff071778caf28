"""Our fault-injecting HTTP/1.1 proxy: a few dozen lines of sockets on 127.0.0.1 between the
client and a real FHIR server (SEKMET or HAPI). It is no FHIR server: every request it does not
fault goes to the real one, byte for byte, and comes back the same way.

A test gives it a rule: for each request, the fault to apply (or None). The faults are what a
real network and real gateways do, on demand:

* ``reset``: the connection is reset before the request goes anywhere;
* ``lost``: the server applies the request, the answer is lost (the connection reset);
* ``stall(s)``: the request is held ``s`` seconds before it goes on -- past the client's timeout,
  so the client retries while the first attempt is still on its way (a late write);
* ``unavailable``: 503 with ``Retry-After: 0``, the server not asked;
* ``cut``: the server's answer cut in half, with a Content-Length that matches the half;
* ``html``: the server applies the request, a gateway answers 200 with an HTML page;
* ``echo``: a gateway's 502 page that echoes the request's headers (its Authorization included).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Fault", "FaultProxy", "ProxiedRequest"]


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0.0


RESET = Fault("reset")
LOST = Fault("lost")
UNAVAILABLE = Fault("unavailable")
CUT = Fault("cut")
HTML = Fault("html")
ECHO = Fault("echo")


def stall(seconds: float) -> Fault:
    return Fault("stall", seconds)


@dataclass
class ProxiedRequest:
    method: str
    target: str
    head: bytes  # request line and headers, as sent
    body: bytes
    fault: Fault | None = None
    status: int | None = None  # the server's status when it was asked
    forwarded_at: float | None = None


@dataclass
class FaultProxy:
    """``FaultProxy(upstream_base_url, rule)``; ``url`` is the base URL to give the client."""

    upstream: str
    rule: Callable[[ProxiedRequest], Fault | None] = lambda request: None
    seen: list[ProxiedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._host, self._port, self._path = (
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            parts.path,
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}{self._path}"

    def __enter__(self) -> FaultProxy:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until every held request has gone on (late writes included), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(not t.is_alive() for t in self._threads[1:]):
                return
            time.sleep(0.05)

    # ----------------------------------------------------------------- serving

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(120)
            try:
                request = _read_request(client)
            except (OSError, ValueError):
                return
            if request is None:
                return
            with self._lock:
                request.fault = self.rule(request)
                self.seen.append(request)
            self._apply(client, request)

    def _apply(self, client: socket.socket, request: ProxiedRequest) -> None:
        fault = request.fault
        kind = fault.kind if fault else "pass"
        if kind == "reset":
            return _reset(client)
        if kind == "unavailable":
            body = (
                b'{"resourceType":"OperationOutcome","issue":'
                b'[{"severity":"error","code":"transient","diagnostics":"busy"}]}'
            )
            return _send(client, 503, body, "application/fhir+json", extra=b"Retry-After: 0\r\n")
        if kind == "echo":
            page = (
                b"<html><head><title>502 Bad Gateway</title></head><body><pre>"
                + request.head
                + b"</pre></body></html>"
            )
            return _send(client, 502, page, "text/html")
        if kind == "stall" and fault is not None:
            time.sleep(fault.seconds)
        status, headers, body = self._forward(request)
        if kind == "lost":
            return _reset(client)
        if kind == "cut":
            return _send(client, status, body[: len(body) // 2], _content_type(headers))
        if kind == "html":
            return _send(
                client,
                200,
                b"<html><head><title>Gateway</title></head><body>ok</body></html>",
                "text/html",
            )
        # the client may have given up (a stalled request): the server has applied it anyway
        with contextlib.suppress(OSError):
            _send(client, status, body, _content_type(headers), extra=_kept(headers))

    def _forward(self, request: ProxiedRequest) -> tuple[int, dict[str, str], bytes]:
        request.forwarded_at = time.monotonic()
        lines = request.head.split(b"\r\n")
        dropped = (b"host:", b"connection:", b"accept-encoding:")  # identity bodies, to cut them
        kept = [h for h in lines[1:] if h and not h.lower().startswith(dropped)]
        head = b"\r\n".join(
            [lines[0], f"Host: {self._host}:{self._port}".encode(), b"Connection: close", *kept]
        )
        with socket.create_connection((self._host, self._port), timeout=120) as upstream:
            upstream.sendall(head + b"\r\n\r\n" + request.body)
            raw = _read_all(upstream)
        status, headers, body = _parse_response(raw)
        request.status = status
        return status, headers, body


# --------------------------------------------------------------------------- HTTP/1.1 bits


def _read_request(sock: socket.socket) -> ProxiedRequest | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("the request was cut short")
        rest += chunk
    method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return ProxiedRequest(method, target, head, rest[:length])


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return status, headers, body


def _unchunk(body: bytes) -> bytes:
    out = []
    at = 0
    while at < len(body):
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[end + 2 : end + 2 + size])
        at = end + 2 + size + 2
    return b"".join(out)


def _content_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "application/fhir+json")


def _kept(headers: dict[str, str]) -> bytes:
    """The server's headers a client reads (where the resource is, its version)."""
    out = b""
    for name in ("location", "content-location", "etag", "last-modified", "retry-after"):
        if name in headers:
            out += f"{name}: {headers[name]}\r\n".encode("latin-1")
    return out


def _send(
    client: socket.socket, status: int, body: bytes, content_type: str, extra: bytes = b""
) -> None:
    head = (
        f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode("latin-1")
    client.sendall(head + extra + b"\r\n" + body)


def _reset(client: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
