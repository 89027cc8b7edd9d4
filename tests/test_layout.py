"""The package's layout: no import cycles, every registered function found by entry point."""

import ast
import re
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spacy_refined"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Set[str]:
    """The `spacy_refined` modules a module imports, anywhere in its body (function-level imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("spacy_refined"))
    return found


def import_graph() -> Dict[str, Set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # a package's __init__ re-exports; an edge to a package is an edge to its __init__
        graph[name] = {target for target in imports_of(path) if target in modules and target != name}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    # package __init__ files import their children; ignore edges from a package to its own children
    edges = {a: {b for b in targets if not b.startswith(a + ".")} for a, targets in graph.items()}
    state: Dict[str, int] = {}
    stack = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_every_registered_function_has_an_entry_point():
    """A packaged pipeline finds what it names by entry point, without importing this package first."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    declared = {name for group in entry_points.values() for name in group}
    registered = set()
    for path in PACKAGE.rglob("*.py"):
        registered.update(re.findall(r'@registry\.\w+\("([^"]+)"\)', path.read_text(encoding="utf8")))
        registered.update(re.findall(r'@Language\.factory\(\s*"([^"]+)"', path.read_text(encoding="utf8")))
    assert registered and registered <= declared, sorted(registered - declared)
