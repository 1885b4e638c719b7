"""Reading language-model answers: JSON objects and Python code, wherever they hide.

Models wrap JSON in prose or code fences, add trailing commas, use single quotes; they put code
in fences of several languages, or none. These functions take what is meant and say clearly when
nothing usable is there.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class AnswerError(ValueError):
    """The answer holds nothing usable; the message says what was expected."""


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text``."""
    candidates = [body for _, body in FENCE.findall(text)] + [text]
    for candidate in candidates:
        for start, opener in _openers(candidate):
            block = _balanced(candidate, start, opener)
            if block is None:
                continue
            for attempt in (block, TRAILING_COMMA.sub(r"\1", block)):
                try:
                    return json.loads(attempt)
                except ValueError:
                    pass
            try:  # Python-style dicts: single quotes, True/False/None
                value = ast.literal_eval(TRAILING_COMMA.sub(r"\1", block))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict | list):
                return value
    raise AnswerError("the answer has no JSON object; answer with JSON only")


def _openers(text: str) -> list[tuple[int, str]]:
    return [(i, c) for i, c in enumerate(text) if c in "{["][:20]


def _balanced(text: str, start: int, opener: str) -> str | None:
    closer = "}" if opener == "{" else "]"
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = None
            continue
        if c in "\"'":
            quote = c
        elif c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def extract_code(text: str) -> str:
    """The Python scene code in an answer: the fenced block that defines a Scene, or the text."""
    blocks = [
        body
        for lang, body in FENCE.findall(text)
        if lang.lower() in ("", "python", "py", "python3")
    ]
    scenes = [b for b in blocks if re.search(r"class\s+\w+\s*\(", b)]
    if scenes:
        return max(scenes, key=len).strip() + "\n"
    if blocks:
        return max(blocks, key=len).strip() + "\n"
    start = re.search(r"^(from|import)\s+\w+", text, re.MULTILINE)
    if start and re.search(r"class\s+\w+\s*\(", text):
        return text[start.start() :].strip() + "\n"
    raise AnswerError(
        "the answer has no Python code; answer with the whole scene in one ```python block"
    )


def as_text(value: Any, limit: int) -> str:
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    text = " ".join(str(value or "").split())
    return text[:limit]


def as_list(value: Any, limit: int, item_chars: int = 200) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[;\n]", value) if v.strip()]
    if not isinstance(value, list | tuple):
        return ()
    return tuple(as_text(v, item_chars) for v in value if as_text(v, item_chars))[:limit]
