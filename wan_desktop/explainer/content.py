"""Reading a topic's context: sentences, code blocks, a function to plot, an equation to show.

Nothing here executes user text. A function like ``f(x) = 2x^2 - 1`` is parsed into a small tree
of numbers, ``x`` and known functions; the plotted code is written from that tree, and the user's
spelling only ever appears as a string literal.
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

CODE_FENCE = re.compile(r"```([\w+#.-]*)[ \t]*\n(.*?)```", re.DOTALL)
FUNCTION_NAMES = frozenset({"f(x)", "g(x)", "h(x)", "y"})
MATH_TOKEN = re.compile(r"[\w()²³√π·×^*+\-/.]{1,14}")
MATH_CHARS = set("0123456789+-*/^²³√π·×()")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
CODE_LANGUAGES = {
    "py": "python", "python": "python", "js": "javascript", "javascript": "javascript",
    "ts": "typescript", "typescript": "typescript", "c": "c", "cpp": "cpp", "c++": "cpp",
    "java": "java", "rust": "rust", "rs": "rust", "go": "go", "sh": "bash", "bash": "bash",
    "sql": "sql", "ruby": "ruby", "text": "text",
}  # fmt: skip
MAX_CODE_LINES = 14
MAX_CODE_WIDTH = 64

_UNARY: dict[str, Callable[[float], float]] = {
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "exp": math.exp,
    "log": math.log,
    "ln": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "tanh": math.tanh,
}
_NUMPY = {"ln": "log", "abs": "abs"}
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str


@dataclass(frozen=True)
class FunctionSpec:
    label: str  # as shown: "f(x) = 2x² − 1"
    expr_code: str  # Python written from the parsed tree, in terms of x and np
    x_range: tuple[float, float]
    y_range: tuple[float, float]


@dataclass(frozen=True)
class Content:
    sentences: tuple[str, ...]
    code: CodeBlock | None
    function: FunctionSpec | None
    equation: str | None  # in Unicode math


def analyse(context: str) -> Content:
    code = None
    fence = CODE_FENCE.search(context)
    if fence:
        code = _code_block(fence.group(1), fence.group(2))
    prose = CODE_FENCE.sub(" ", context)
    function = find_function(prose)
    equation = None
    for sentence in SENTENCE_END.split(prose):
        candidate = find_equation(sentence)
        if candidate and (function is None or "x" not in candidate):
            equation = unicode_math(candidate)
            break
    sentences = tuple(s for s in (_clean(s) for s in SENTENCE_END.split(prose)) if s)
    return Content(sentences=sentences, code=code, function=function, equation=equation)


def _clean(sentence: str) -> str:
    return " ".join(sentence.replace("`", "").split())


def _code_block(language: str, code: str) -> CodeBlock:
    lines = code.expandtabs(4).rstrip().splitlines()[:MAX_CODE_LINES]
    lines = [line[:MAX_CODE_WIDTH] for line in lines]
    return CodeBlock(CODE_LANGUAGES.get(language.lower(), "python"), "\n".join(lines) or " ")


def find_equation(sentence: str) -> str | None:
    """The run of formula-like words around an '=' (``E = mc^2``), or None."""
    words = sentence.replace("=", " = ").split()
    if words.count("=") != 1:
        return None
    at = words.index("=")

    def mathy(word: str) -> bool:
        if not MATH_TOKEN.fullmatch(word):
            return False
        return any(ch in MATH_CHARS for ch in word) or (word.isalpha() and len(word) == 1)

    lo = at
    while lo > 0 and mathy(words[lo - 1]):
        lo -= 1
    hi = at + 1
    while hi < len(words) and mathy(words[hi].rstrip(".,;:")):
        hi += 1
    left, right = words[lo:at], [w.rstrip(".,;:") for w in words[at + 1 : hi]]
    if not left or not right:
        return None
    text = " ".join([*left, "=", *right])
    if not any(ch in MATH_CHARS for ch in text) and len(left) + len(right) < 3:
        return None
    return text if len(text) <= 80 else None


def unicode_math(text: str) -> str:
    out = " ".join(text.split())
    out = re.sub(r"\bsqrt\b", "√", out)
    out = re.sub(r"\bpi\b", "π", out)
    out = re.sub(r"\^\(?(-?\d+)\)?(?![.\d])", lambda m: m.group(1).translate(_SUPERSCRIPT), out)
    return out.replace("**", "^").replace("*", "·").replace("-", "−")


def wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True)) or " "


# ------------------------------------------------------------------------------- functions


def find_function(text: str) -> FunctionSpec | None:
    for sentence in SENTENCE_END.split(text):
        equation = find_equation(sentence)
        if equation is None:
            continue
        left, _, right = equation.partition(" = ")
        if left.replace(" ", "") in FUNCTION_NAMES:
            spec = parse_function(left.replace(" ", ""), right)
            if spec is not None:
                return spec
    return None


def parse_function(name: str, expression: str) -> FunctionSpec | None:
    """A plottable function from text like ``2x^2 - 1``; None when it is not one."""
    source = expression.strip().rstrip(".")
    if not source or len(source) > 60:
        return None
    py = source.replace("^", "**").replace("π", "pi").replace("·", "*").replace("−", "-")
    py = re.sub(r"(\d)\s*([a-z(])", r"\1*\2", py)  # 2x -> 2*x, 3(x+1) -> 3*(x+1)
    py = re.sub(r"\)\s*([a-z0-9(])", r")*\1", py)
    try:
        tree = ast.parse(py, mode="eval").body
        code = _emit(tree)
    except (SyntaxError, ValueError):
        return None
    if "x" not in code:
        return None
    fn = _evaluator(tree)
    for x_range in ((-3.0, 3.0), (0.1, 4.0)):
        ys = []
        for i in range(121):
            x = x_range[0] + (x_range[1] - x_range[0]) * i / 120
            try:
                y = fn(x)
            except (ValueError, ZeroDivisionError, OverflowError):
                break
            if not math.isfinite(y):
                break
            ys.append(y)
        else:
            lo, hi = min(ys), max(ys)
            if hi - lo > 1e6:
                continue
            pad = max(0.5, (hi - lo) * 0.1)
            return FunctionSpec(
                label=f"{name} = {unicode_math(source)}",
                expr_code=code,
                x_range=x_range,
                y_range=(_nice(lo - pad, math.floor), _nice(hi + pad, math.ceil)),
            )
    return None


def _nice(value: float, rounding: Callable[[float], int]) -> float:
    return float(rounding(value))


def _emit(node: ast.expr) -> str:
    """Python source for a validated expression tree; raises ValueError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ValueError("bool")
        return repr(float(node.value))
    if isinstance(node, ast.Name):
        if node.id == "x":
            return "x"
        if node.id in ("pi", "e"):
            return f"np.{node.id}"
        raise ValueError(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return f"({sign}{_emit(node.operand)})"
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
        op = ops.get(type(node.op))
        if op is None:
            raise ValueError("operator")
        return f"({_emit(node.left)} {op} {_emit(node.right)})"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _UNARY
        and len(node.args) == 1
        and not node.keywords
    ):
        return f"np.{_NUMPY.get(node.func.id, node.func.id)}({_emit(node.args[0])})"
    raise ValueError("unsupported")


def _evaluator(node: ast.expr) -> Callable[[float], float]:
    """Evaluate a tree accepted by ``_emit`` (no eval: the tree is walked)."""

    def ev(n: ast.expr, x: float) -> float:
        if isinstance(n, ast.Constant):
            assert isinstance(n.value, int | float)
            return float(n.value)
        if isinstance(n, ast.Name):
            return x if n.id == "x" else (math.pi if n.id == "pi" else math.e)
        if isinstance(n, ast.UnaryOp):
            v = ev(n.operand, x)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left, x), ev(n.right, x)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, ast.Div):
                return a / b
            result = a**b
            if isinstance(result, complex):
                raise ValueError("complex")
            return float(result)
        assert isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        return float(_UNARY[n.func.id](ev(n.args[0], x)))

    return lambda x: ev(node, x)
