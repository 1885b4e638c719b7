"""A scripted OpenAI-compatible chat server on 127.0.0.1, for explainer tests.

The explainer names its task on the first line of the system message ("Task: outline",
"Task: scenario", "Task: code", "Task: fix", "Task: search_terms"). The script maps each task
to a list of replies used in order (the last one repeats); a reply is the message content, or
``Fail(status, body)`` for an HTTP error. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Fail:
    status: int
    body: str = '{"error": {"message": "scripted failure"}}'
    retry_after: str | None = None  # a Retry-After header to send with it


Reply = str | Fail | Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Request:
    task: str
    model: str
    system: str
    user: str
    authorization: str | None

    @property
    def text(self) -> str:
        return f"{self.system}\n{self.user}"


class FakeChat:
    def __init__(self, script: Mapping[str, Sequence[Reply]], *, api_key: str | None = None):
        self.script = {k: list(v) for k, v in script.items()}
        self.api_key = api_key
        self.requests: list[Request] = []
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def of(self, task: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.task == task]

    def _next(self, task: str) -> Reply:
        with self._lock:
            replies = self.script.get(task)
            if not replies:
                return Fail(500, json.dumps({"error": f"no scripted reply for task {task!r}"}))
            i = self._used.get(task, 0)
            self._used[task] = i + 1
            return replies[min(i, len(replies) - 1)]

    def handle(
        self, body: dict[str, Any], authorization: str | None
    ) -> tuple[int, str, dict[str, str]]:
        messages = body.get("messages") or []
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        user = "\n".join(m["content"] for m in messages if m.get("role") == "user")
        task = system.split("\n", 1)[0].removeprefix("Task:").strip()
        request = Request(task, str(body.get("model")), system, user, authorization)
        with self._lock:
            self.requests.append(request)
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, '{"error": {"message": "invalid api key"}}', {}
        reply = self._next(task)
        if isinstance(reply, Fail):
            headers = {} if reply.retry_after is None else {"Retry-After": reply.retry_after}
            return reply.status, reply.body, headers
        content = reply(body) if callable(reply) else reply
        answer = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
        return 200, json.dumps(answer), {}

    @contextmanager
    def running(self) -> Iterator[FakeChat]:
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers: dict[str, str] = {}
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status, text = 404, '{"error": "not found"}'
                else:
                    status, text, headers = chat.handle(body, self.headers.get("Authorization"))
                data = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def outline_reply(titles: Sequence[str], title: str = "A video") -> str:
    scenes = [{"title": t, "goal": f"show {t.lower()}"} for t in titles]
    return "Here is the plan:\n```json\n" + json.dumps({"title": title, "scenes": scenes}) + "\n```"


def scenario_reply(narration: str, seconds: float = 3.0) -> str:
    return json.dumps(
        {
            "visuals": ["a word in the middle"],
            "layout": "centred",
            "narration": narration,
            "duration_s": seconds,
        }
    )


def scene_code(class_name: str, word: str, seconds: float = 1.0, *, broken: bool = False) -> str:
    """A short Manim scene as a model would send it (fenced). ``broken`` uses a removed API."""
    create = "ShowCreation" if broken else "FadeIn"
    return f"""Sure, here is the scene.
```python
from manim import *


class {class_name}(Scene):
    def construct(self):
        word = Text({word!r}, font_size=48)
        self.play({create}(word), run_time={seconds})
```
It fades the word in."""


def code_for_request(word: str, seconds: float = 1.0) -> Callable[[dict[str, Any]], str]:
    """A reply that writes good code for whichever scene class the request asks for."""
    import re

    def reply(body: dict[str, Any]) -> str:
        text = " ".join(m["content"] for m in body["messages"])
        match = re.search(r"class (Scene\d+)\(Scene\)", text)
        return scene_code(match.group(1) if match else "Scene01", word, seconds)

    return reply
