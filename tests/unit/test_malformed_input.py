"""A seeded mutation test of what ``convert`` and ``validate`` are fed: 300 mutants of the example
case and 300 of its Bundle, over every class of malformed input an interface engine meets.

For each mutant: an exit code from the table (0, 1, 2), a reason on stderr when it is not 0, no
traceback and no "internal error" (a bug), no output file and no temporary file unless the run
succeeded, and every Bundle ``convert`` writes passes ``validate``. The same seed gives the same
mutants; the counts per class are asserted, so a class cannot silently drop out.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fhir_plao import jsonio
from fhir_plao.cli import main

from ..conftest import EXAMPLE

SEED = 20261202
MUTANTS = 300
SENTINEL = "__mutant__"

# values that break a field by their JSON type (a list where a code belongs, a number where an
# object belongs, ...) or by their range (integers over 32 bits)
WRONG_VALUES: list[Any] = [
    [],
    {},
    ["a", "b"],
    {"nested": {"deeper": [1]}},
    2**31,
    2**63,
    10**30,
    -1,
    0,
    "",
    "x" * 300,
    "\u0000\u0007 control",
    None,
    True,
    [[[]]],
]
# tokens written into the text in place of a value
TOKENS = ["NaN", "Infinity", "-Infinity", '"\\ud800"', '"a\\udfff"', '"\\u0000"', "1e999999"]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(paths(value, (*prefix, i)))
    return out


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def put(node: Any, path: tuple[Any, ...], value: Any) -> None:
    get(node, path[:-1])[path[-1]] = value


def leaf_paths(tree: Any) -> list[tuple[Any, ...]]:
    return [p for p in paths(tree) if p and not isinstance(get(tree, p), dict | list)]


def with_token(tree: Any, path: tuple[Any, ...], token: str) -> bytes:
    put(tree, path, SENTINEL)
    return jsonio.dumps(tree, indent=1).replace(f'"{SENTINEL}"', token, 1).encode()


def wrong_type(tree: Any, rng: random.Random) -> bytes:
    put(tree, rng.choice([p for p in paths(tree) if p]), rng.choice(WRONG_VALUES))
    return jsonio.dumps(tree, indent=1).encode()


def missing_key(tree: Any, rng: random.Random) -> bytes:
    path = rng.choice([p for p in paths(tree) if p and isinstance(p[-1], str)])
    del get(tree, path[:-1])[path[-1]]
    return jsonio.dumps(tree, indent=1).encode()


def bad_token(tree: Any, rng: random.Random) -> bytes:
    return with_token(tree, rng.choice(leaf_paths(tree)), rng.choice(TOKENS))


def deep(tree: Any, rng: random.Random) -> bytes:
    depth = rng.choice([150, 1_000, 5_000])
    return with_token(tree, rng.choice(leaf_paths(tree)), "[" * depth + "1" + "]" * depth)


def duplicate_key(tree: Any, rng: random.Random) -> bytes:
    objects = [p for p in paths(tree) if isinstance(get(tree, p), dict) and get(tree, p)]
    path = rng.choice(objects)
    target = get(tree, path)
    key = rng.choice(list(target))
    target[SENTINEL] = rng.choice(WRONG_VALUES[:6])
    return jsonio.dumps(tree, indent=1).replace(f'"{SENTINEL}"', jsonio.dumps(key), 1).encode()


def truncated(tree: Any, rng: random.Random) -> bytes:
    text = jsonio.dumps(tree, indent=1).encode()
    return text[: rng.randrange(1, len(text) - 1)]


def not_utf8(tree: Any, rng: random.Random) -> bytes:
    text = jsonio.dumps(tree, indent=1).encode()
    at = rng.randrange(len(text))
    return text[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + text[at:]


def dates_reversed(tree: Any, rng: random.Random) -> bytes:
    pairs = [
        p
        for p in paths(tree)
        if isinstance(get(tree, p), dict)
        and any(k in get(tree, p) for k in ("start", "end", "stopped"))
    ]
    if pairs:
        node = get(tree, rng.choice(pairs))
        node["start"], node["end" if "end" in node else "stopped"] = "2030-01-01", "1990-01-01"
    return jsonio.dumps(tree, indent=1).encode()


def bad_unit(tree: Any, rng: random.Random) -> bytes:
    units = [
        p
        for p in paths(tree)
        if p and p[-1] in ("unit", "dose_unit", "code") and isinstance(get(tree, p), str)
    ]
    put(tree, rng.choice(units), rng.choice(["cm", "mg/dLx", "kg/m2", "mg/dL", "[iU]x", ""]))
    return jsonio.dumps(tree, indent=1).encode()


MUTATIONS: dict[str, Callable[[Any, random.Random], bytes]] = {
    "wrong type": wrong_type,
    "missing key": missing_key,
    "NaN, Infinity, bad escapes": bad_token,
    "deep nesting": deep,
    "duplicate key": duplicate_key,
    "truncated": truncated,
    "not UTF-8": not_utf8,
    "dates reversed": dates_reversed,
    "bad unit": bad_unit,
}


def mutants(original: Any, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    names = list(MUTATIONS)
    out = []
    for n in range(MUTANTS):
        name = names[n % len(names)]
        tree = jsonio.loads(jsonio.dumps(original))
        out.append((name, MUTATIONS[name](tree, rng)))
    return out


def example_bundle() -> Any:
    from fhir_plao.case import load_case
    from fhir_plao.mapping import to_fhir

    return to_fhir(load_case(EXAMPLE))


def check_run(
    argv: list[str], out: Path | None, capsys: pytest.CaptureFixture[str], label: str
) -> int:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code in (0, 1, 2), f"{label}: exit {code}"
    assert "Traceback" not in err and "internal error" not in err, f"{label}: {err[-500:]}"
    if code == 2 or (code == 1 and argv[0] != "validate"):
        assert err.strip(), f"{label}: exit {code} without a reason"
    if code == 1 and argv[0] == "validate":  # the issues are its output
        assert " error(s)" in captured.out and "error " in captured.out, label
    if out is not None:
        assert out.exists() == (code == 0), f"{label}: exit {code}, output exists: {out.exists()}"
        assert not list(out.parent.glob(".*.tmp")), f"{label}: a temporary file was left"
    return code


@pytest.mark.timeout(900)
def test_mutants_of_the_case_never_crash_and_convert_writes_only_valid_bundles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = jsonio.loads(EXAMPLE.read_bytes())
    codes: Counter[tuple[str, int]] = Counter()
    for n, (name, raw) in enumerate(mutants(original, SEED)):
        source = tmp_path / f"case-{n}.json"
        source.write_bytes(raw)
        out = tmp_path / f"bundle-{n}.json"
        label = f"case mutant {n} ({name})"
        code = check_run(["convert", str(source), "-o", str(out)], out, capsys, label)
        codes[(name, code)] += 1
        if code == 0:
            assert check_run(["validate", str(out)], None, capsys, label) == 0, label
    by_class = Counter(name for name, _ in codes.elements())
    assert sum(by_class.values()) == MUTANTS and len(by_class) == len(MUTATIONS)
    refused = sum(c for (name, code), c in codes.items() if code != 0)
    assert refused > MUTANTS // 2  # most mutants are refused; the rest are still valid cases


@pytest.mark.timeout(900)
def test_mutants_of_the_bundle_never_crash_validate_or_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codes: Counter[tuple[str, str, int]] = Counter()
    for n, (name, raw) in enumerate(mutants(example_bundle(), SEED + 1)):
        source = tmp_path / f"bundle-{n}.json"
        source.write_bytes(raw)
        label = f"Bundle mutant {n} ({name})"
        codes[("validate", name, check_run(["validate", str(source)], None, capsys, label))] += 1
        out = tmp_path / f"case-{n}.json"
        argv = ["convert", str(source), "--to", "case", "-o", str(out)]
        codes[("convert", name, check_run(argv, out, capsys, label))] += 1
    assert sum(c for (cmd, _, _), c in codes.items() if cmd == "validate") == MUTANTS
    assert (
        sum(c for (cmd, _, code), c in codes.items() if cmd == "validate" and code) > MUTANTS // 2
    )
