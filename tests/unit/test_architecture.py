"""The package's shape: no import circle, no discovery by name, the client core free of the
mapping, and one place that maps a case on its way to a server."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fhir_plao"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The fhir_plao modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports nothing
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fhir_plao"))
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fhir_plao")
        ):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def graph(*, top_level_only: bool) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {
            m for m in imports(path, top_level_only=top_level_only) if m in modules and m != name
        }
        for name, path in modules.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its own modules is not a circle of imports: drop
    the edges from a module to the package that contains it."""
    return {
        name: {m for m in targets if not name.startswith(m + ".")}
        for name, targets in edges.items()
    }


def test_no_import_circle_at_module_level() -> None:
    assert cycles(without_package_inits(graph(top_level_only=True))) == []


def test_no_import_circle_even_through_imports_inside_functions() -> None:
    assert cycles(without_package_inits(graph(top_level_only=False))) == []


def test_nothing_is_found_by_name() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import_module(" not in text and "__import__(" not in text, path


def test_the_client_core_does_not_know_the_mapping() -> None:
    core = PACKAGE / "client" / "_core.py"
    assert not {
        m
        for m in imports(core, top_level_only=False)
        if m.startswith(("fhir_plao.mapping", "fhir_plao.case", "fhir_plao.outbound"))
    }


def test_a_case_is_mapped_once_on_the_way_to_a_server() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"(?<![\w.])to_fhir\(", line) and not line.lstrip().startswith(
                ("def ", "#", "``")
            ):
                calls.append(f"{path.relative_to(PACKAGE)}:{n}")
    push_path = [c for c in calls if not c.startswith(("cli/convert.py", "mapping/"))]
    assert push_path == [next(c for c in calls if c.startswith("outbound.py"))]
