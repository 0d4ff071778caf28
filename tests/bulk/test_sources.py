"""open_cases: which kind of input a path is, and what each case's source key says."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_plao import jsonio
from fhir_plao.bulk import open_cases
from fhir_plao.errors import InputError


def test_a_directory_gives_its_json_files_sorted_by_name(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "c.json", ".hidden.json", "notes.txt", "x.ndjson"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()

    cases = open_cases(tmp_path)

    assert cases.kind == "directory"
    assert [s.key for s in cases] == [str(tmp_path / n) for n in ("a.json", "b.json", "c.json")]
    assert all(s.line is None and s.raw == b"{}" for s in cases)
    assert cases.count() == 3


def test_ndjson_lines_are_numbered_from_one_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "cases.ndjson"
    path.write_text('{"a": 1}\n\n{"a": 2}\n   \n{"a": 3}')

    cases = open_cases(path)

    assert cases.kind == "ndjson"
    sources = list(cases)
    assert [(s.line, s.key) for s in sources] == [
        (1, f"{path}:1"),
        (3, f"{path}:3"),
        (5, f"{path}:5"),
    ]
    assert [jsonio.loads(s.raw) for s in sources] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert cases.count() == 3


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("case.json", '{\n  "patient": {}\n}\n', "file"),  # pretty-printed: one case
        ("case.json", '{"patient": {}}\n', "file"),  # one line, one case
        ("cases.json", '{"a": 1}\n{"a": 2}\n', "ndjson"),  # several whole objects
        ("cases.jsonl", '{"a": 1}\n', "ndjson"),  # by name
        ("cases.ndjson", "not json at all\n", "ndjson"),  # by name, whatever is inside
        ("broken.json", "{not json\n{}\n", "file"),  # first line not JSON: one (bad) case
        ("list.json", "[1]\n[2]\n", "file"),  # arrays are not cases
    ],
)
def test_the_kind_of_a_file(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert open_cases(path).kind == kind


def test_a_single_file_is_one_source_keyed_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    path.write_text('{\n  "patient": {}\n}\n')
    (source,) = list(open_cases(path))
    assert source.key == str(path) and source.line is None


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        open_cases(tmp_path / "nope.ndjson")


def test_a_file_that_cannot_be_read_is_a_source_with_an_error(tmp_path: Path) -> None:
    for name in ("a.json", "b.json", "c.json"):
        (tmp_path / name).write_text("{}")
    sources = iter(open_cases(tmp_path))  # files are listed first, read one at a time
    first = next(sources)
    (tmp_path / "b.json").unlink()
    second, third = list(sources)
    assert first.error is None and third.error is None
    assert second.key == str(tmp_path / "b.json")
    assert second.error == "cannot read: No such file or directory"
