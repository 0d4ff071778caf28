"""Output files written all or nothing, readable by their owner only.

Every command that writes a file writes it here: into a temporary file beside the target,
flushed to disk and renamed over the target only when the whole output was written. A failed
run leaves neither a half-written file nor the temporary one. ``-`` is standard output. Every
file is created 0600 (cases, Bundles, journals and dead letters hold patient data): the
temporary file is made so by ``mkstemp``, record files by :func:`open_private`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

from fhir_plao.errors import InputError

__all__ = ["atomic_output", "atomic_output_bytes", "open_private", "write_lines", "write_text"]


@contextmanager
def atomic_output(path: str | Path) -> Iterator[TextIO]:
    """A text stream for ``path`` that becomes the file only if the block ends without error."""
    with _atomic(path, binary=False) as handle:
        yield cast(TextIO, handle)


@contextmanager
def atomic_output_bytes(path: str | Path) -> Iterator[BinaryIO]:
    """The same for bytes (``-``: standard output's buffer)."""
    with _atomic(path, binary=True) as handle:
        yield cast(BinaryIO, handle)


@contextmanager
def _atomic(path: str | Path, *, binary: bool) -> Iterator[IO[Any]]:
    if str(path) == "-":
        stream: IO[Any] = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", location=str(target)) from None
    try:
        handle = (
            os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        )
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write: {exc.strerror}", location=str(target)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (or stdout for ``-``), all or nothing."""
    with atomic_output(path) as handle:
        handle.write(text)


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Stream ``lines`` to ``path`` (or stdout for ``-``), all or nothing."""
    with atomic_output(path) as handle:
        handle.writelines(lines)


def open_private(path: Path, mode: str) -> TextIO:
    """A text file opened for writing (``"w"``) or appending (``"a"``), created 0600; a file
    that was already there is made 0600 too."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return cast(TextIO, os.fdopen(fd, mode, encoding="utf-8", newline="\n"))
    except BaseException:
        os.close(fd)
        raise
