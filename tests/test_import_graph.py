"""The package layers as the code states them: no import cycle (also through in-function imports), the lower
layers never import labctl, and no renaming import (`from x import y as z`) in the product code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("labcore", "infra", "lab", "sandbox", "labctl")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Our modules `path` imports anywhere (also in functions), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_anywhere():
    graph = {name: _imports(path, name) for name, path in MODULES.items()}
    assert _cycles(graph) == []


def test_the_lower_layers_never_import_labctl():
    upward = {
        name: sorted(m for m in _imports(path, name) if m.startswith("labctl"))
        for name, path in MODULES.items()
        if not name.startswith("labctl")
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_no_renaming_import_in_the_product_code():
    renamed = []
    for path in [*MODULES.values(), REPO / "fabfile.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                renamed += [
                    f"{path.relative_to(REPO)}: {a.name} as {a.asname}" for a in node.names if a.asname
                ]
    assert renamed == []
