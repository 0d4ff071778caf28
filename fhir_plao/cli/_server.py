"""Server, timeout and authentication options, shared by ``push``, ``pull`` and ``plot``.

Each option falls back to an environment variable, so an interface engine can keep secrets out
of the process list (``ps`` shows arguments, not the environment):

==========================  ===========================  =====================================
option                      variable                     meaning
==========================  ===========================  =====================================
``--server URL``            ``FHIR_SERVER_URL``          the FHIR base URL
``--timeout S``             ``FHIR_TIMEOUT``             seconds to connect and for each read
``--token T``               ``FHIR_TOKEN``               a bearer token
``--user U``                ``FHIR_USER``                HTTP Basic user name ...
``--password-file F``       ``FHIR_PASSWORD``            ... and password (the file's first
                                                         line, or the variable)
``--smart-client-id ID``    ``FHIR_SMART_CLIENT_ID``     SMART Backend Services: client id,
``--smart-token-url URL``   ``FHIR_SMART_TOKEN_URL``     token endpoint,
``--smart-key FILE``        ``FHIR_SMART_KEY_FILE``      private key (PEM),
``--smart-kid KID``         ``FHIR_SMART_KID``           the key's id in the JWKS,
``--smart-scope S``         ``FHIR_SMART_SCOPE``         scopes (default ``system/*.*``),
``--smart-alg A``           ``FHIR_SMART_ALG``           RS384 (default) or ES384
==========================  ===========================  =====================================

One kind of authentication at a time; none is fine for an open server.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_plao.cli._exit import CannotRun
from fhir_plao.errors import FhirError, InputError

if TYPE_CHECKING:
    from fhir_plao.client import AsyncFhirClient, FhirClient, Timeout
    from fhir_plao.client._core import AuthLike

__all__ = ["add_server_options", "async_client", "connected", "connection"]

ENV = {
    "server": "FHIR_SERVER_URL",
    "timeout": "FHIR_TIMEOUT",
    "token": "FHIR_TOKEN",
    "user": "FHIR_USER",
    "password": "FHIR_PASSWORD",
    "smart_client_id": "FHIR_SMART_CLIENT_ID",
    "smart_token_url": "FHIR_SMART_TOKEN_URL",
    "smart_key": "FHIR_SMART_KEY_FILE",
    "smart_kid": "FHIR_SMART_KID",
    "smart_scope": "FHIR_SMART_SCOPE",
    "smart_alg": "FHIR_SMART_ALG",
}
DEFAULT_SMART_SCOPE = "system/*.*"


#: (option, metavar, what it is) for each option of :data:`ENV`, in --help order
_OPTIONS = (
    ("server", "URL", "FHIR base URL"),
    ("timeout", "S", "seconds to wait to connect and for each read (default 10/60)"),
    ("token", "T", "bearer token"),
    ("user", "U", "HTTP Basic user"),
    ("smart_client_id", "ID", "SMART Backend Services client id"),
    ("smart_token_url", "URL", "its token endpoint"),
    ("smart_key", "FILE", "its private key, PEM"),
    ("smart_kid", "KID", "the key's id in the JWKS"),
    ("smart_scope", "S", f"scopes asked for (default {DEFAULT_SMART_SCOPE})"),
    ("smart_alg", "ALG", "signing algorithm, RS384 (default) or ES384"),
)


def add_server_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group(
        "server and authentication (each option falls back to the variable named)"
    )
    for name, metavar, what in _OPTIONS:
        need = " (only with --server)" if name == "server" and not required else ""
        group.add_argument(
            f"--{name.replace('_', '-')}", metavar=metavar, help=f"{what} (${ENV[name]}){need}"
        )
    group.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"HTTP Basic password: the file's first line (else ${ENV['password']})",
    )


def _value(args: argparse.Namespace, name: str) -> str | None:
    given = getattr(args, name, None)
    if given:
        return str(given)
    from_env = os.environ.get(ENV[name], "").strip()
    return from_env or None


def connection(args: argparse.Namespace) -> tuple[str, AuthLike | None, Timeout | float]:
    """The base URL, the authentication and the timeout the options (or variables) give."""
    from fhir_plao.client import Timeout

    server = _value(args, "server")
    if not server:
        raise InputError(f"no FHIR server given: pass --server URL or set {ENV['server']}")
    raw_timeout = _value(args, "timeout")
    timeout: Timeout | float = Timeout()
    if raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise InputError(
                f"the timeout must be a number of seconds, not {raw_timeout!r}",
                location="--timeout",
            ) from None
        if not 0 < timeout < float("inf"):
            raise InputError(
                f"the timeout must be positive, not {raw_timeout!r}", location="--timeout"
            )
    return server, _auth(args), timeout


def _auth(args: argparse.Namespace) -> AuthLike | None:
    from fhir_plao.client import BasicAuth, BearerAuth, SmartBackendAuth

    token = _value(args, "token")
    user = _value(args, "user")
    smart = {name: _value(args, name) for name in ENV if name.startswith("smart_")}
    kinds = [
        kind
        for kind, given in (
            ("a bearer token", token),
            ("Basic", user),
            ("SMART", smart["smart_client_id"] or smart["smart_token_url"] or smart["smart_key"]),
        )
        if given
    ]
    if len(kinds) > 1:
        raise InputError(f"give one kind of authentication, not {' and '.join(kinds)}")
    if token:
        return BearerAuth(token)
    if user:
        return BasicAuth(user, _password(args))
    if not kinds:
        return None
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("smart_client_id", "smart_token_url", "smart_key", "smart_kid")
        if not smart[name]
    ]
    if missing:
        raise InputError(f"SMART Backend Services also needs {', '.join(missing)}")
    key_file = Path(str(smart["smart_key"]))
    try:
        key = key_file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the key: {exc.strerror}", location=str(key_file)) from None
    return SmartBackendAuth(
        str(smart["smart_token_url"]),
        str(smart["smart_client_id"]),
        key,
        str(smart["smart_kid"]),
        smart["smart_scope"] or DEFAULT_SMART_SCOPE,
        smart["smart_alg"] or "RS384",
    )


def _password(args: argparse.Namespace) -> str:
    path = getattr(args, "password_file", None)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError(f"cannot read the password: {reason}", location=str(path)) from None
        return lines[0] if lines else ""
    password = os.environ.get(ENV["password"])
    if password is None:
        raise InputError(f"--user needs a password: --password-file FILE or {ENV['password']}")
    return password


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[FhirClient]:
    """A client whose server answered ``/metadata`` as FHIR R4; failing that, the job cannot
    run (exit 2)."""
    from fhir_plao.client import FhirClient

    server, auth, timeout = connection(args)
    with FhirClient(server, auth=auth, timeout=timeout) as fhir:
        try:
            fhir.capabilities()
        except FhirError as exc:
            raise CannotRun(exc) from None
        yield fhir


def async_client(args: argparse.Namespace) -> AsyncFhirClient:
    from fhir_plao.client import AsyncFhirClient

    server, auth, timeout = connection(args)
    return AsyncFhirClient(server, auth=auth, timeout=timeout)
