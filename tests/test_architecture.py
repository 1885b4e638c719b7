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
    "api": {"engine", "models"},
    "ui": {"engine", "models"},
}
# ui and api are two faces of one engine and never import each other: the app's entry point
# (wan_desktop/__main__.py) gives the GUI the API's server class.
HEAVY = ("torch", "diffusers", "transformers", "PySide6", "manim", "boto3", "fastapi")


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
