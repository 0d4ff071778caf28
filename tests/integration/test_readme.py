"""The README's Python section runs as written, against the real servers.

Its ``python`` code blocks (between ``## Python`` and the next ``## `` heading) are run in order,
in one namespace, from the repository's root (they read ``examples/plao-case.json``), with
``FHIR_SERVER_URL`` set to the server of this run, emptied first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_a_python_section_with_the_whole_library() -> None:
    code = "\n".join(python_blocks(README.read_text(encoding="utf-8")))
    for name in (
        "to_fhir",
        "validate",
        "FhirClient",
        "AsyncFhirClient",
        ".pull(",
        "unmapped_report",
        "except",
    ):
        assert name in code, name


def test_the_readmes_python_blocks_run_as_written(
    fresh_fhir_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_SERVER_URL", fresh_fhir_server_url)
    monkeypatch.chdir(README.parent)
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    for n, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md python block {n}", "exec"), namespace)
