"""Renders one generated Manim scene inside the sandbox. Runs as ``python -I sandbox_runner.py``.

This file is executed by path in isolated mode, so it imports only the standard library (and
manim, once its limits are in place); it must not import the rest of the package. The parent
process has already checked the code statically (``codecheck.py``); this is the second line:

1. resource limits (address space, CPU seconds, file size, open files, no core dumps);
2. an audit hook: no sockets, no processes, no writes outside the scene folder;
3. the code runs with a reduced set of builtins and an import function that only allows the
   modules of ``ALLOWED_MODULES``.

The answer is a JSON file (``result.json``) in the scene folder; the exit code says the same.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------- policy
# What generated code may import. Submodules of these are allowed unless listed as denied.
ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "manim",
        "math",
        "cmath",
        "numpy",
        "random",
        "itertools",
        "functools",
        "collections",
        "typing",
        "dataclasses",
        "colorsys",
        "fractions",
        "decimal",
        "statistics",
        "string",
        "textwrap",
        "enum",
        "abc",
        "operator",
        "copy",
        "numbers",
    }
)
DENIED_SUBMODULES = (
    "manim.cli",
    "manim.__main__",
    "manim._config",
    "manim.plugins",
    "manim.utils.file_ops",
    "manim.utils.commands",
    "manim.utils.ipython_magic",
    "manim.utils.module_ops",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "numpy.lib",
    "numpy.core",
    "numpy._core",
)
SAFE_BUILTINS = frozenset(
    {
        "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "classmethod",
        "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
        "hasattr", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len", "list",
        "map", "max", "min", "next", "object", "oct", "ord", "pow", "print", "property", "range",
        "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod", "str", "sum",
        "super", "tuple", "type", "zip", "True", "False", "None", "NotImplemented", "Ellipsis",
        "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
        "KeyError", "LookupError", "NameError", "NotImplementedError", "OverflowError",
        "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
    }
)  # fmt: skip
# Commands manim itself may start when LaTeX is installed and the code uses MathTex/Tex.
LATEX_COMMANDS = frozenset({"latex", "xelatex", "lualatex", "dvisvgm"})

EXIT_OK = 0
EXIT_SCENE_ERROR = 3  # the code raised: the message goes back to the model
EXIT_BLOCKED = 4  # the code tried something the sandbox forbids
EXIT_SETUP = 5  # the renderer itself could not start (manim missing, bad request)

BLOCKED_PREFIX = "sandbox blocked"


class SandboxViolationError(PermissionError):
    """Raised by the audit hook; never caught by generated code (it cannot name it)."""


# ------------------------------------------------------------------------------------ limits


def die_with_parent() -> None:
    """Linux: be killed when the app that started us dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call
        os._exit(EXIT_SETUP)


def set_limits(memory_mb: int, cpu_s: int, file_mb: int, nofile: int = 512) -> None:
    import resource

    def cap(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))
        except (ValueError, OSError) as exc:  # e.g. macOS refuses RLIMIT_AS
            print(f"warning: resource limit {which} not set: {exc}", file=sys.stderr)

    cap(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    cap(resource.RLIMIT_CPU, cpu_s)
    cap(resource.RLIMIT_FSIZE, file_mb * 1024 * 1024)
    cap(resource.RLIMIT_NOFILE, nofile)
    cap(resource.RLIMIT_CORE, 0)


# ------------------------------------------------------------------------------- audit hook

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALWAYS_BLOCKED = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "pty.spawn",
    "ctypes.",
    "socket.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "sys.addaudithook",
    "sys.settrace",
    "sys.setprofile",
    "code.__new__",
    "function.__new__",
    "builtins.input",
    "os.putenv",
    "os.unsetenv",
)
_PATH_EVENTS = {  # event -> indexes of the path arguments that must stay in the scene folder
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
}


def make_audit_hook(
    writable: Iterable[Path], *, allow_latex: bool
) -> Callable[[str, tuple[Any, ...]], None]:
    roots = tuple(os.path.realpath(p) for p in writable)

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor (its opening was checked)
        real = os.path.realpath(os.fsdecode(path))
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = (*args, None, None, None)[:3]
            if path is None:
                return
            writes = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else bool(isinstance(flags, int) and flags & _WRITE_FLAGS)
            )
            if writes and not inside(path):
                raise SandboxViolationError(
                    f"{BLOCKED_PREFIX}: writing {os.fsdecode(path)!r} (only the scene folder "
                    "is writable)"
                )
            return
        if event == "subprocess.Popen":
            argv = args[1] if len(args) > 1 else None
            first = Path(os.fsdecode(argv[0])).name if argv else ""
            if allow_latex and first in LATEX_COMMANDS:
                return
            raise SandboxViolationError(
                f"{BLOCKED_PREFIX}: starting a process ({first or args[0]!r})"
            )
        if event.startswith(_ALWAYS_BLOCKED):
            what = "network access" if event.startswith("socket.") else event
            raise SandboxViolationError(f"{BLOCKED_PREFIX}: {what}")
        idx = _PATH_EVENTS.get(event)
        if idx is not None:
            for i in idx:
                if i < len(args) and args[i] is not None and not inside(args[i]):
                    raise SandboxViolationError(
                        f"{BLOCKED_PREFIX}: {event} on {os.fsdecode(args[i])!r} (outside the "
                        "scene folder)"
                    )

    return hook


def guarded_import(real: Callable[..., Any]) -> Callable[..., Any]:
    def _import(
        name: str,
        globals: Any = None,  # the signature of __import__
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level != 0:
            raise SandboxViolationError(f"{BLOCKED_PREFIX}: relative import")
        if not module_allowed(name):
            raise SandboxViolationError(f"{BLOCKED_PREFIX}: import of {name!r} ({_ALLOWED_HINT})")
        for sub in fromlist or ():
            if not module_allowed(f"{name}.{sub}") and _is_module(f"{name}.{sub}"):
                raise SandboxViolationError(f"{BLOCKED_PREFIX}: import of {name}.{sub}")
        return real(name, globals, locals, fromlist, level)

    return _import


_ALLOWED_HINT = "a scene may import manim, numpy, math, random and small standard helpers"


def module_allowed(name: str) -> bool:
    if name.split(".", 1)[0] not in ALLOWED_MODULES:
        return False
    return not any(name == d or name.startswith(d + ".") for d in DENIED_SUBMODULES)


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------ LaTeX stand-in

_TEX_SYMBOLS = {
    r"\alpha": "α", r"\beta": "β", r"\gamma": "γ", r"\delta": "δ", r"\epsilon": "ε",
    r"\theta": "θ", r"\lambda": "λ", r"\mu": "μ", r"\pi": "π", r"\sigma": "σ", r"\phi": "φ",
    r"\omega": "ω", r"\Delta": "Δ", r"\Sigma": "Σ", r"\Omega": "Ω", r"\infty": "∞",
    r"\int": "∫", r"\sum": "∑", r"\prod": "∏", r"\partial": "∂", r"\nabla": "∇",
    r"\cdot": "·", r"\times": "×", r"\div": "÷", r"\pm": "±", r"\leq": "≤", r"\geq": "≥",
    r"\neq": "≠", r"\approx": "≈", r"\to": "→", r"\rightarrow": "→", r"\Rightarrow": "⇒",
    r"\leftarrow": "←", r"\in": "∈", r"\sqrt": "√", r"\ldots": "…", r"\cdots": "⋯",
}  # fmt: skip
_SUPERSCRIPTS = str.maketrans("0123456789+-=()nix", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱˣ")
_SUBSCRIPTS = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")


def tex_to_unicode(tex: str) -> str:
    """A readable plain-text form of simple TeX, for machines without LaTeX."""
    import re

    text = tex.replace("\\\\", " ").replace("$", "")
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\(?:text|mathrm|mathbf|operatorname)\{([^{}]*)\}", r"\1", text)
    for name in sorted(_TEX_SYMBOLS, key=len, reverse=True):
        text = text.replace(name, _TEX_SYMBOLS[name])

    def script(match: re.Match[str], table: dict[int, int]) -> str:
        body = match.group(1) or match.group(2)
        mapped = body.translate(table)
        return mapped if all(ord(c) > 127 or c == " " for c in mapped) else f"^({body})"

    text = re.sub(r"\^\{([^{}]*)\}|\^(\w)", lambda m: script(m, _SUPERSCRIPTS), text)
    text = re.sub(r"_\{([^{}]*)\}|_(\w)", lambda m: script(m, _SUBSCRIPTS), text)
    text = re.sub(r"\\[a-zA-Z]+", "", text).replace("{", "").replace("}", "")
    return " ".join(text.split()) or " "


def latex_stand_ins(manim: Any) -> dict[str, Any]:
    """MathTex/Tex drawn with Pango text: same call shape, parts addressable by index."""

    class MathTex(manim.VGroup):
        def __init__(self, *tex_strings: str, **kwargs: Any) -> None:
            font_size = kwargs.pop("font_size", 48)
            color = kwargs.pop("color", None)
            for key in list(kwargs):
                if key not in ("stroke_width", "fill_opacity"):
                    kwargs.pop(key)
            self.tex_strings = [str(s) for s in tex_strings] or [" "]
            parts = [
                manim.Text(tex_to_unicode(s), font_size=font_size * 0.9) for s in self.tex_strings
            ]
            super().__init__(*parts, **kwargs)
            self.arrange(manim.RIGHT, buff=0.08)
            if color is not None:
                self.set_color(color)

        def get_part_by_tex(self, tex: str) -> Any:
            for s, part in zip(self.tex_strings, self.submobjects, strict=False):
                if tex in s:
                    return part
            return None

        def set_color_by_tex(self, tex: str, color: Any, **_: Any) -> MathTex:
            for s, part in zip(self.tex_strings, self.submobjects, strict=False):
                if tex in s:
                    part.set_color(color)
            return self

    return {"MathTex": MathTex, "Tex": MathTex, "SingleStringMathTex": MathTex}


def latex_available() -> bool:
    import shutil

    return bool(shutil.which("latex") and shutil.which("dvisvgm"))


# ------------------------------------------------------------------------------------ render


def render(request: dict[str, Any]) -> dict[str, Any]:
    scene_dir = Path(request["scene_dir"])
    code = Path(request["code_path"]).read_text("utf-8")
    class_name = str(request["class_name"])
    import builtins

    import manim

    latex = bool(request.get("allow_latex", True)) and latex_available()
    cfg = manim.config
    cfg.media_dir = str(scene_dir / "media")
    cfg.video_dir = str(scene_dir / "media" / "video")
    cfg.quality = request["quality"]
    cfg.disable_caching = True
    cfg.verbosity = "ERROR"
    cfg.progress_bar = "none"
    cfg.write_to_movie = True
    cfg.format = "mp4"
    cfg.output_file = class_name
    cfg.preview = False
    cfg.log_to_file = False

    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS if hasattr(builtins, name)}
    safe["__build_class__"] = builtins.__build_class__
    safe["__import__"] = guarded_import(builtins.__import__)
    namespace: dict[str, Any] = {"__builtins__": safe, "__name__": "scene"}

    stand_ins = {} if latex else latex_stand_ins(manim)
    for name, cls in stand_ins.items():
        setattr(manim, name, cls)  # so that `from manim import *` picks them up
    sys.addaudithook(make_audit_hook([scene_dir], allow_latex=latex))
    compiled = compile(code, "scene.py", "exec")
    exec(compiled, namespace)
    namespace.update(stand_ins)
    cls = namespace.get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, manim.Scene)):
        found = [
            k
            for k, v in namespace.items()
            if isinstance(v, type) and issubclass(v, manim.Scene) and v.__module__ == "scene"
        ]
        if len(found) != 1:
            raise NameError(f"the code must define one Scene subclass named {class_name}")
        cls = namespace[found[0]]
    t0 = time.monotonic()
    scene = cls()
    scene.render()
    path = Path(scene.renderer.file_writer.movie_file_path)
    if not path.is_file():
        raise RuntimeError("the scene has no animation: add self.play(...) or self.wait(...)")
    return {
        "ok": True,
        "video": str(path),
        "render_s": round(time.monotonic() - t0, 3),
        "latex": latex,
        "duration_s": float(scene.renderer.time),
    }


def _scene_traceback(exc: BaseException, limit: int = 12) -> str:
    """The frames of the scene's own code and the last few frames below them."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [i for i, f in enumerate(frames) if f.filename == "scene.py"]
    start = own[0] if own else max(0, len(frames) - limit)
    kept = frames[start:][-limit:]
    lines = traceback.format_list(kept)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: sandbox_runner.py REQUEST.json", file=sys.stderr)
        return EXIT_SETUP
    request = json.loads(Path(argv[1]).read_text("utf-8"))
    result_path = Path(request["result_path"])
    limits = request.get("limits") or {}
    die_with_parent()
    set_limits(
        int(limits.get("memory_mb", 4096)),
        int(limits.get("cpu_s", 600)),
        int(limits.get("file_mb", 2048)),
    )
    try:
        result = render(request)
        code = EXIT_OK
    except SandboxViolationError as exc:
        result = {"ok": False, "kind": "blocked", "error": str(exc)}
        code = EXIT_BLOCKED
    except MemoryError:
        result = {
            "ok": False,
            "kind": "memory",
            "error": f"the scene ran out of memory (limit {limits.get('memory_mb')} MB)",
        }
        code = EXIT_SCENE_ERROR
    except ModuleNotFoundError as exc:
        if exc.name == "manim":
            result = {"ok": False, "kind": "setup", "error": f"manim is not installed: {exc}"}
            code = EXIT_SETUP
        else:
            result = _error_result(exc)
            code = EXIT_SCENE_ERROR
    except BaseException as exc:
        result = _error_result(exc)
        code = EXIT_BLOCKED if result["kind"] == "blocked" else EXIT_SCENE_ERROR
    result_path.write_text(json.dumps(result), "utf-8")
    sys.stdout.flush()
    return code


def _error_result(exc: BaseException) -> dict[str, Any]:
    # A violation may surface wrapped in another exception raised by library code.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SandboxViolationError) or str(seen).startswith(BLOCKED_PREFIX):
            return {"ok": False, "kind": "blocked", "error": str(seen)}
        seen = seen.__cause__ or seen.__context__
    return {
        "ok": False,
        "kind": "exception",
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": _scene_traceback(exc),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv))
