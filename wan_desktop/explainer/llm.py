"""A small client for OpenAI-compatible chat endpoints (Ollama, llama.cpp, vLLM, LM Studio…).

``POST {base_url}/chat/completions`` with ``model`` and ``messages``; the answer's
``choices[0].message.content`` is returned. Connection errors, timeouts, 429 and 5xx are retried
with backoff; other answers fail at once with what to check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.retry import Backoff, parse_retry_after, with_retries

ATTEMPTS = 3
RECOVERABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ChatError(Exception):
    def __init__(
        self,
        message: str,
        *,
        recoverable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.recoverable = recoverable
        self.status = status
        self.retry_after = retry_after  # seconds the server asked for (429, 503)


@dataclass(frozen=True)
class ChatCall:
    """One finished call, for the job log and the sidecar."""

    model: str
    task: str
    seconds: float
    prompt_chars: int
    answer_chars: int
    attempts: int


class ChatClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        cancel: CancelToken | None = None,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0), headers=headers)
        self.backoff_s = backoff_s
        self.cancel = cancel
        self.on_event = on_event  # (level, message) for the job log
        self.calls: list[ChatCall] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def complete(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        *,
        task: str,
        temperature: float = 0.2,
    ) -> str:
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "temperature": temperature,
            "stream": False,
        }
        attempts = 0

        def once() -> str:
            nonlocal attempts
            attempts += 1
            return self._post(body)

        def on_retry(attempt: int, exc: Exception, delay: float) -> None:
            if self.on_event is not None:
                self.on_event(
                    "warning",
                    f"language model {model} ({task}): attempt {attempt}/{ATTEMPTS} failed: "
                    f"{exc}; retrying in {delay:.1f} s",
                )

        t0 = time.monotonic()
        answer = with_retries(
            once,
            backoff=Backoff(tries=ATTEMPTS, base_s=self.backoff_s),
            transient=lambda e: isinstance(e, ChatError) and e.recoverable,
            retry_after=lambda e: e.retry_after if isinstance(e, ChatError) else None,
            on_retry=on_retry,
            cancel=self.cancel,
        )
        call = ChatCall(
            model=model,
            task=task,
            seconds=round(time.monotonic() - t0, 3),
            prompt_chars=sum(len(m["content"]) for m in messages),
            answer_chars=len(answer),
            attempts=attempts,
        )
        with self._lock:
            self.calls.append(call)
        if self.on_event is not None:
            self.on_event(
                "info",
                f"language model {model} ({task}): {call.answer_chars} characters in "
                f"{call.seconds:.1f} s",
            )
        return answer

    def _post(self, body: dict[str, Any]) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        try:
            response = self._http.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise ChatError(f"{url} did not answer in time ({exc})", recoverable=True) from exc
        except httpx.HTTPError as exc:
            raise ChatError(f"cannot reach {url}: {exc}", recoverable=True) from exc
        status = response.status_code
        if status in (401, 403):
            raise ChatError(
                f"{url} refused the key (HTTP {status}): check LLM_API_KEY",
                recoverable=False,
                status=status,
            )
        if status == 404:
            raise ChatError(
                f"{url} answered 404: check LLM_BASE_URL (it usually ends in /v1) and that the "
                f"model {body['model']!r} exists there",
                recoverable=False,
                status=status,
            )
        if status >= 400:
            raise ChatError(
                f"{url} answered HTTP {status}: {response.text[:300]}",
                recoverable=status in RECOVERABLE_STATUS,
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatError(
                f"{url} sent an answer that is not a chat completion: {response.text[:200]}",
                recoverable=True,
            ) from exc
        if not isinstance(content, str) or not content.strip():
            raise ChatError(f"{url} sent an empty answer", recoverable=True)
        return content
