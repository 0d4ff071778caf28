"""HAPI's instance validator (the HL7 validation engine) as a second opinion beside ours.

``servers/hapi`` holds a small Java command of ours over HAPI FHIR 8.8's ``FhirInstanceValidator``
(``org.fhirplao.hapi.ValidateCommand``): R4 core definitions from
``hapi-fhir-validation-resources-r4``, our StructureDefinitions and ValueSets on top, no
terminology server and no network. :class:`HapiValidator` runs it once as a subprocess, feeds it
one document a line and reads one result a line back, so many documents pay the JVM's start-up
(about 8 s) once.

Its findings come back as our :class:`Issue`, in our path shape: HAPI's ``/*Type/id*/``
comments are dropped, and ``value.ofType(Quantity)`` reads ``valueQuantity``.

Where the Java runs from: ``FHIR_PLAO_HAPI_CLASSPATH`` when set, else the repository this package
is checked out in (``scripts/fhir_server.py classpath``, which builds ``servers/hapi`` with
Maven on first use). Without Java or a checkout, :class:`ValidatorUnavailable` says so in one
line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from fhir_plao import jsonio
from fhir_plao._closing import Closing
from fhir_plao._validation.conformance import DATA_FILE
from fhir_plao._validation.issues import Issue, Severity
from fhir_plao.errors import ValidatorUnavailable

__all__ = [
    "HapiValidator",
    "ValidatorUnavailable",
    "hapi_path",
    "same_element",
    "validate_with_hapi",
]

_REPO = Path(__file__).resolve().parents[2]
_MANAGER = _REPO / "scripts" / "fhir_server.py"
_MAIN = "org.fhirplao.hapi.ValidateCommand"
_CLASSPATH_ENV = "FHIR_PLAO_HAPI_CLASSPATH"
_BUILD_TIMEOUT = 1800.0  # s: the first build downloads HAPI from the Maven repository
_START_TIMEOUT = 180.0  # s: JVM start and loading the R4 definitions (about 8 s)

_COMMENT = re.compile(r"/\*.*?\*/")
_OF_TYPE = re.compile(r"\.([A-Za-z]+)\.ofType\(([A-Za-z]+)\)")
_SEVERITIES: dict[str, Severity] = {
    "error": "error",
    "warning": "warning",
    "information": "information",
}


#: HAPI reports an element that is missing or unknown at its parent, naming it in the message:
#: ``Observation.status: minimum required = 1, but only found 0``, ``Slice
#: 'Observation.category:imaging': a matching slice is required``, ``Unrecognized property 'x'``
_NAMED_CHILD = (
    re.compile(r"^(?P<element>[A-Z][A-Za-z]*(?:\.[^:\s]+|:[^.\s:]+)+): minimum required = "),
    re.compile(r"^Slice '(?P<element>[A-Z][A-Za-z]*\.[^']+)': a matching slice is required"),
    re.compile(r"^Unrecognized property '(?P<name>[^']+)'"),
    re.compile(r"^The (?P<name>fullUrl) '[^']*' looks like a RESTful server URL"),
)


def _child_named(message: str) -> str | None:
    for pattern in _NAMED_CHILD:
        found = pattern.match(message)
        if found is None:
            continue
        if "name" in found.groupdict():
            return found.group("name")
        element = found.group("element")  # Observation.value[x]:valueQuantity.unit
        last = element.rsplit(".", 1)[-1]  # "unit", "status", "category:imaging"
        return last.split(":", 1)[0]
    return None


def hapi_path(location: str, message: str = "") -> str:
    """HAPI's FHIRPath location in our shape: ``/*Type/id*/`` comments out, ``x.ofType(T)`` as
    ``xT``, and an element HAPI reports at its parent (missing, unknown, an absent slice) named
    as itself, as ours does: ``Observation.status`` rather than ``Observation``."""
    path = _COMMENT.sub("", location)
    path = _OF_TYPE.sub(lambda m: f".{m.group(1)}{m.group(2)[0].upper()}{m.group(2)[1:]}", path)
    child = _child_named(message)
    if child and not path.endswith(f".{child}"):
        path = f"{path}.{child}" if path else child
    return path


def _same_segment(hapi: str, ours: str) -> bool:
    if hapi == ours:
        return True
    if hapi.endswith("[x]"):  # HAPI names a choice element, we name its typed form
        stem = hapi[:-3]
        return ours.startswith(stem) and ours[len(stem) : len(stem) + 1].isupper()
    return False


_CODING_PART = re.compile(r"^coding\[\d+\]$")


def same_element(hapi: str, ours: str) -> bool:
    """Whether a HAPI issue path and ours name the same element: equal, up to a choice element
    (``value[x]`` is ``valueQuantity``), a Reference named by itself rather than its
    ``.reference``, or a CodeableConcept rather than one of its codings (HAPI reports a wrong
    target at the Reference and a wrong code at the CodeableConcept, we at the part at fault)."""
    theirs, mine = hapi.split("."), ours.split(".")
    if len(mine) == len(theirs) + 1 and mine[-1] == "reference":
        mine = mine[:-1]
    elif len(mine) > len(theirs) and _CODING_PART.match(mine[len(theirs)]):
        mine = mine[: len(theirs)]
    return len(theirs) == len(mine) and all(map(_same_segment, theirs, mine))


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise ValidatorUnavailable(
            "HAPI's validator needs Java 17 or newer: no java found (set JAVA_HOME or PATH)"
        )
    return java


def _classpath() -> str:
    given = os.environ.get(_CLASSPATH_ENV)
    if given:
        return given
    if not _MANAGER.is_file() or not (_REPO / "servers" / "hapi" / "pom.xml").is_file():
        raise ValidatorUnavailable(
            f"HAPI's validator is built from a fhir-plao checkout (servers/hapi), and there is "
            f"none at {_REPO}; set {_CLASSPATH_ENV}"
        )
    try:
        res = subprocess.run(
            [sys.executable, str(_MANAGER), "classpath"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValidatorUnavailable(f"cannot build HAPI's validator: {exc}") from None
    if res.returncode != 0:
        lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[0] if lines else f"exit {res.returncode}"
        raise ValidatorUnavailable(f"cannot build HAPI's validator: {reason}")
    return res.stdout.decode().strip()


def _write_profiles(profiles: Path, folder: Path) -> None:
    """Our StructureDefinitions and ValueSets (the package's collection Bundle of them), one
    file each, for the Java side to load."""
    bundle = jsonio.loads(profiles.read_bytes())
    for number, entry in enumerate(bundle.get("entry", [])):
        resource = entry["resource"]
        name = f"{number:03d}-{resource['resourceType']}-{resource.get('id', 'x')}.json"
        (folder / name).write_text(jsonio.dumps(resource), encoding="utf-8")


class HapiValidator(Closing):
    """One running HAPI validator process; validate documents one after another.

    Use as a context manager (the process is stopped on exit). Not thread-safe: one document
    in flight at a time.
    """

    def __init__(self, profiles: Path = DATA_FILE) -> None:
        self._profiles = profiles
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def _open(self) -> None:
        self.start()

    def start(self) -> None:
        if self._process is not None:
            return
        command = [_java(), "-Xmx1g", "-XX:+UseSerialGC", "-cp", _classpath(), _MAIN]
        self._folder = tempfile.TemporaryDirectory(prefix="fhir-plao-hapi-")
        try:
            folder = Path(self._folder.name)
            _write_profiles(self._profiles, folder)
            command += ["--profiles", str(folder), "--ndjson"]
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except OSError as exc:
            self.close()
            raise ValidatorUnavailable(f"cannot start HAPI's validator: {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin:
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _died(self, what: str) -> ValidatorUnavailable:
        detail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            detail = f": {lines[-1]}" if lines else ""
        return ValidatorUnavailable(f"HAPI's validator {what}{detail}")

    def validate(self, document: Any, source: str | None = None) -> list[Issue]:
        """HAPI's findings on one resource or Bundle (any JSON value), in our :class:`Issue`."""
        self.start()
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        line = jsonio.dumps(document).replace("\n", " ").encode("utf-8") + b"\n"
        try:
            process.stdin.write(line)
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("stopped") from None
        answer = process.stdout.readline()
        if not answer:
            raise self._died("stopped without an answer")
        try:
            result = jsonio.loads(answer)
            found = result["issues"]
        except (jsonio.JsonError, KeyError, TypeError):
            raise self._died("answered something that is not its result line") from None
        return [
            Issue(
                _SEVERITIES.get(str(item.get("severity")), "error"),
                hapi_path(str(item.get("path", "")), str(item.get("message", ""))),
                str(item.get("message", "")),
                rule=str(item.get("rule", "hapi")),
                source=source,
            )
            for item in found
        ]

    def validate_all(self, documents: Iterable[tuple[str | None, Any]]) -> list[Issue]:
        issues: list[Issue] = []
        for source, document in documents:
            issues.extend(self.validate(document, source))
        return issues


def validate_with_hapi(documents: Sequence[tuple[str | None, Any]]) -> list[Issue]:
    """Validate ``(source, document)`` pairs with one HAPI validator process."""
    with HapiValidator() as validator:
        return validator.validate_all(documents)
