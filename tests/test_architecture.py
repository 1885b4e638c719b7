"""The import rules of ARCHITECTURE.md: models ← engine ← ui/api, and heavy imports stay lazy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wan_desktop"

# What each part may import from the package (besides itself).
ALLOWED = {
    "models": set(),
    "engine": {"models"},
    "explainer": {"engine", "models"},
    "api": {"engine", "explainer", "models", "pool"},
    "pool": {"engine", "models"},
    "remote": {"engine", "models"},
    "ui": {"engine", "explainer", "models", "remote"},
}
# remote is the app's client of a server's engine: the GUI uses it, the API never does.
# ui and api are two faces of one engine and never import each other: the app's entry point
# (wan_desktop/__main__.py) gives the GUI the API's server class. The explainer is a pipeline
# beside the engine: it registers itself, and the engine never imports it.
HEAVY = ("torch", "diffusers", "transformers", "PySide6", "manim", "boto3", "fastapi", "ray")


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(absolute module, line, at module level) for every import in a file of the package."""
    tree = ast.parse(path.read_text("utf-8"))
    rel_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package_parts = rel_parts[:-1]
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, node.lineno, id(node) in top_level))
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "wan_desktop" else None


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_parts_import_only_what_the_architecture_allows(part: str) -> None:
    folder = PACKAGE / part
    violations = []
    for path in folder.rglob("*.py"):
        for module, line, _ in _imports(path):
            other = _part(module)
            if other and other != part and other in ALLOWED and other not in ALLOWED[part]:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not violations, "\n".join(violations)


def test_models_and_cli_import_nothing_heavy_at_module_level() -> None:
    files = [
        *(PACKAGE / "models").rglob("*.py"),
        *PACKAGE.rglob("cli.py"),
        PACKAGE / "__init__.py",
        PACKAGE / "engine" / "__init__.py",
    ]
    violations = []
    for path in files:
        for module, line, top in _imports(path):
            if top and module.split(".")[0] in HEAVY:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not violations, "\n".join(violations)


def test_access_module_imports_only_the_orchestrator() -> None:
    """``access.py`` is shared by the app and the API, so it stands below both of them."""
    path = PACKAGE / "access.py"
    parts = {_part(module) for module, _, _ in _imports(path)} - {None}
    assert parts <= {"models"}, f"access.py imports {sorted(p for p in parts if p)}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(files: list[Path]) -> dict[str, set[str]]:
    """Module → the package's modules it imports (lazily or for type checking too)."""
    names = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        tree = ast.parse(path.read_text("utf-8"))
        for module, _, _ in _imports(path):
            if module in names and module != name:
                graph[name].add(module)
        # ``from package import submodule`` names the submodule, not only the package.
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, node.module] if node.module else pkg)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in names and sub != name:
                        graph[name].add(sub)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_no_import_cycle_inside_a_part(part: str) -> None:
    """Counting lazy and type-only imports: a cycle means two modules are really one."""
    files = [p for p in (PACKAGE / part).rglob("*.py") if p.name != "__init__.py"]
    cycles = _cycles(_import_graph(files))
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)
