"""Where bulk cases come from: one case file, a directory of case files, or NDJSON.

Each is read lazily, one case at a time, so memory does not grow with the number of cases:

* a **directory**: its ``*.json`` files (names starting with ``.`` left out), sorted by name;
  each file is one case; the source key is the file's path;
* an **NDJSON** file: one case per line, blank lines skipped; the key is ``path:LINE`` (lines
  counted from 1, blank ones included). A file is NDJSON when it is named ``*.ndjson`` or
  ``*.jsonl``, or when its first non-blank line is a whole JSON object on its own and another
  non-blank line follows (a pretty-printed case starts with a lone ``{``);
* otherwise the file is **one case** (pretty-printed or on one line); the key is its path.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from fhir_plao import jsonio
from fhir_plao.errors import InputError

__all__ = ["CaseInput", "CaseSource", "InputKind", "open_cases"]

InputKind: TypeAlias = Literal["file", "directory", "ndjson"]

_NDJSON_SUFFIXES = (".ndjson", ".jsonl")


@dataclass(frozen=True, eq=False)
class CaseSource:
    """One case as read, before parsing.

    ``key`` names it for people and in the journal (``cases.ndjson:17``, ``cases/p1.json``);
    ``path`` is the file and ``line`` the NDJSON line (None for a whole file). ``raw`` is the
    JSON text; ``error`` is set instead when the file could not be read.
    """

    key: str
    path: Path
    line: int | None
    raw: bytes
    error: str | None = None


@dataclass(frozen=True)
class CaseInput:
    """A bulk input: iterate it for :class:`CaseSource` items, in order."""

    path: Path
    kind: InputKind

    def __iter__(self) -> Iterator[CaseSource]:
        if self.kind == "directory":
            for file in self._files():
                yield _read_file(file)
        elif self.kind == "ndjson":
            yield from _ndjson_lines(self.path)
        else:
            yield _read_file(self.path)

    def count(self) -> int:
        """How many cases there are (a quick pass: file names, or non-blank lines)."""
        if self.kind == "directory":
            return len(self._files())
        if self.kind == "file":
            return 1
        n = 0
        with _open(self.path) as handle:
            for line in handle:
                if line.strip():
                    n += 1
        return n

    def _files(self) -> list[Path]:
        try:
            return sorted(
                p
                for p in self.path.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".") and p.is_file()
            )
        except OSError as exc:
            raise InputError(f"cannot list: {exc.strerror}", location=str(self.path)) from None


def open_cases(path: str | Path) -> CaseInput:
    """The bulk input at ``path``, its kind decided as the module docstring says."""
    p = Path(path)
    if p.is_dir():
        return CaseInput(p, "directory")
    if not p.exists():
        raise InputError("no such file or directory", location=str(p))
    if p.suffix.lower() in _NDJSON_SUFFIXES:
        return CaseInput(p, "ndjson")
    return CaseInput(p, "ndjson" if _looks_like_ndjson(p) else "file")


def _open(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(path)) from None


def _looks_like_ndjson(path: Path) -> bool:
    with _open(path) as handle:
        first = None
        for line in handle:
            if not line.strip():
                continue
            if first is not None:
                return True  # a second non-blank line after a whole object
            try:
                first = jsonio.loads(line)
            except jsonio.JsonError:
                return False
            if not isinstance(first, dict):
                return False
    return False


def _read_file(path: Path) -> CaseSource:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return CaseSource(str(path), path, None, b"", f"cannot read: {exc.strerror}")
    return CaseSource(str(path), path, None, raw)


def _ndjson_lines(path: Path) -> Iterator[CaseSource]:
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield CaseSource(f"{path}:{number}", path, number, line.rstrip(b"\r\n"))
