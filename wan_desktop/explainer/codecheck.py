"""The static check of generated scene code, before anything runs.

It is the first of several layers (see ``sandbox.py``), so it can afford to be strict and simple:
imports from an allow-list, no dangerous builtins or names, no private or dunder attributes, no
file/process/network attribute names, no changes to manim's output settings. Its messages go back
to the language model, so each says what to do instead.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .sandbox_runner import module_allowed

MAX_CODE_CHARS = 100_000
FORBIDDEN_NAMES = frozenset(
    {
        "open", "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr",
        "setattr", "delattr", "input", "breakpoint", "exit", "quit", "help", "memoryview",
        "os", "sys", "subprocess", "shutil", "socket", "pathlib", "Path", "importlib", "ctypes",
        "builtins", "io", "tempfile", "pickle", "marshal", "signal", "threading",
        "multiprocessing", "urllib", "http", "requests", "httpx", "asyncio", "resource", "gc",
        "inspect", "console", "tempconfig", "file_ops", "plugins",
    }
)  # fmt: skip
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "os", "sys", "subprocess", "shutil", "socket", "builtins", "importlib", "ctypes",
        "ctypeslib", "f2py", "distutils", "testing", "file_ops", "commands", "cli", "plugins",
        "system", "popen", "spawnv", "execv", "execve", "fork", "remove", "unlink", "rmdir",
        "removedirs", "rmtree", "rename", "chmod", "chown", "load", "loadtxt", "save", "savez",
        "savez_compressed", "savetxt", "fromfile", "tofile", "memmap", "genfromtxt", "open",
        "write_text", "write_bytes", "mkdir", "touch", "Path", "pathlib", "tempfile", "pickle",
        "marshal", "gc", "inspect", "save_text", "save_html", "save_svg", "f_globals",
        "f_locals", "f_back", "gi_frame", "cr_frame", "tb_frame", "lib", "core",
    }
)  # fmt: skip
ALLOWED_DUNDERS = frozenset({"__init__", "__name__"})
# Output settings belong to the renderer; a scene may only change how it looks.
CONFIG_WRITABLE = frozenset({"background_color"})
# What draws with LaTeX inside manim (beyond MathTex/Tex, which have a text stand-in).
LATEX_ONLY_NAMES = frozenset(
    {
        "DecimalNumber", "Integer", "Variable", "BulletedList", "Title", "Matrix",
        "IntegerMatrix", "DecimalMatrix", "MobjectMatrix", "BraceLabel", "BraceText",
    }
)  # fmt: skip
LATEX_ONLY_METHODS = frozenset({"add_coordinates", "get_tex"})


@dataclass(frozen=True)
class CheckResult:
    errors: tuple[str, ...]
    class_name: str | None  # the Scene subclass to render

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def message(self) -> str:
        return "the code was rejected before running:\n" + "\n".join(f"- {e}" for e in self.errors)


def check_scene_code(code: str, class_name: str, *, latex: bool = False) -> CheckResult:
    """Errors (line: what to change) and the scene class to render."""
    if len(code) > MAX_CODE_CHARS:
        return CheckResult((f"the code is {len(code)} characters; keep it under 100 000",), None)
    try:
        tree = ast.parse(code, filename="scene.py")
    except SyntaxError as exc:
        return CheckResult((f"line {exc.lineno}: syntax error: {exc.msg}",), None)
    visitor = _Checker(latex=latex)
    visitor.visit(tree)
    errors = list(dict.fromkeys(visitor.errors))
    scenes = [
        n.name
        for n in tree.body
        if isinstance(n, ast.ClassDef) and any(_base_name(b).endswith("Scene") for b in n.bases)
    ]
    chosen: str | None = class_name if class_name in scenes else None
    if chosen is None and len(scenes) == 1:
        chosen = scenes[0]
    if chosen is None:
        errors.append(
            f"define exactly one class {class_name}(Scene) with a construct(self) method"
            + (f" (found {', '.join(scenes)})" if scenes else "")
        )
    return CheckResult(tuple(errors), chosen)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _Checker(ast.NodeVisitor):
    def __init__(self, *, latex: bool) -> None:
        self.errors: list[str] = []
        self.latex = latex

    def _err(self, node: ast.AST, message: str) -> None:
        self.errors.append(f"line {getattr(node, 'lineno', '?')}: {message}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not module_allowed(alias.name):
                self._err(node, f"import of {alias.name!r} is not allowed; {_IMPORT_HINT}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self._err(node, "relative imports are not allowed")
        elif not module_allowed(module):
            self._err(node, f"import from {module!r} is not allowed; {_IMPORT_HINT}")
        else:
            for alias in node.names:
                if alias.name in FORBIDDEN_NAMES:
                    self._err(node, f"importing {alias.name!r} is not allowed")
                elif alias.name != "*" and not module_allowed(f"{module}.{alias.name}"):
                    self._err(node, f"import of {module}.{alias.name} is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self._err(node, f"{node.id!r} is not available in a scene (no files, processes, "
                      "network or dynamic code)")  # fmt: skip
        elif node.id.startswith("__") and node.id not in ALLOWED_DUNDERS:
            self._err(node, f"{node.id!r} is not available in a scene")
        elif not self.latex and node.id in LATEX_ONLY_NAMES:
            self._err(node, f"{node.id} needs LaTeX, which is not installed: {_LATEX_HINT}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("_") and attr not in ALLOWED_DUNDERS:
            self._err(node, f"attribute {attr!r}: names starting with _ are not allowed")
        elif attr in FORBIDDEN_ATTRIBUTES:
            self._err(node, f"attribute {attr!r} is not allowed in a scene (no files, "
                      "processes or network)")  # fmt: skip
        elif not self.latex and attr in LATEX_ONLY_METHODS:
            self._err(node, f".{attr}() needs LaTeX, which is not installed: {_LATEX_HINT}")
        if (
            isinstance(node.ctx, ast.Store | ast.Del)
            and _is_config(node.value)
            and attr not in CONFIG_WRITABLE
        ):
            self._err(node, f"config.{attr} is set by the renderer; do not change it")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del) and _is_config(node.value):
            self._err(node, "config is set by the renderer; do not change it")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if not self.latex:
            for kw in node.keywords:
                if kw.arg == "include_numbers" and _is_true(kw.value):
                    self._err(node, f"include_numbers=True needs LaTeX: {_LATEX_HINT}")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        if not self.latex:
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "include_numbers"
                    and _is_true(value)
                ):
                    self._err(node, f"include_numbers: True needs LaTeX: {_LATEX_HINT}")
        self.generic_visit(node)


def _is_config(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "config"


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


_IMPORT_HINT = "use `from manim import *`, numpy (as np), math or random"
_LATEX_HINT = "use Text(...) with Unicode (e.g. Text('x² + 1')) and label axes with Text"
