"""The one retry loop and the one cancel token (models/retry.py, models/cancel.py)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.fake_chat import Fail, FakeChat, Reply, outline_reply
from wan_desktop.explainer.llm import ChatClient
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import CancelledError
from wan_desktop.models.retry import Backoff, parse_retry_after, with_retries


def test_backoff_is_exponential_with_equal_jitter_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    b = Backoff(tries=6, base_s=1.0, max_s=8.0)
    for retry, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)):
        delays = [b.delay(retry, rng=rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4, "jittered, not fixed"
    assert Backoff(base_s=1.0, jitter=False).delay(3) == 4.0
    assert b.delay(1, retry_after=20.0) == 20.0, "the server's Retry-After wins"
    assert b.delay(1, retry_after=10_000.0) == 32.0, "but never more than 4x the cap"


def test_transient_errors_are_retried_others_raised_at_once() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    result = with_retries(
        flaky,
        backoff=Backoff(tries=3, base_s=0.001, jitter=False),
        transient=lambda e: isinstance(e, TimeoutError),
        on_retry=lambda a, e, d: waits.append(d),
    )
    assert result == "ok" and len(calls) == 3 and waits == [0.001, 0.002]
    calls.clear()

    def broken() -> str:
        calls.append(1)
        raise KeyError("x")

    with pytest.raises(KeyError):
        with_retries(broken, backoff=Backoff(tries=3, base_s=0.001), transient=lambda e: False)
    assert len(calls) == 1, "an error that cannot pass is not retried"
    calls.clear()

    def always_slow() -> str:
        calls.append(1)
        raise TimeoutError("x")

    with pytest.raises(TimeoutError):
        with_retries(always_slow, backoff=Backoff(tries=3, base_s=0.001), transient=lambda e: True)
    assert len(calls) == 3, "gives up after `tries` calls and raises the last error"


def test_a_try_that_made_progress_starts_the_count_again() -> None:
    calls = 0

    def creeping() -> str:
        nonlocal calls
        calls += 1
        if calls < 10:
            raise ConnectionError("cut")
        return "done"

    assert (
        with_retries(
            creeping,
            backoff=Backoff(tries=2, base_s=0.0001),
            transient=lambda e: True,
            progressed=lambda: True,
        )
        == "done"
    )
    assert calls == 10


def test_cancel_stops_a_wait_at_once_with_the_one_cancelled_error() -> None:
    parent = CancelToken(message="job cancelled")
    child = parent.child()
    threading.Timer(0.2, parent.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(CancelledError, match="job cancelled"):
        with_retries(
            lambda: (_ for _ in ()).throw(ConnectionError("down")),
            backoff=Backoff(tries=5, base_s=30.0, jitter=False),
            transient=lambda e: True,
            cancel=child,
        )
    assert time.monotonic() - t0 < 10.0, "a 30 s backoff is cut short by the cancel"
    assert child.cancelled and parent.cancelled
    sibling = parent.child()
    lone = CancelToken()
    lone_child = lone.child()
    lone_child.cancel()
    assert not lone.cancelled, "a child never cancels its parent"
    assert sibling.wait(0.01) is True


def test_retry_after_header_values() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 50.0 < (parse_retry_after(in_a_minute) or 0.0) <= 61.0


def test_the_language_model_client_waits_as_long_as_a_429_asks() -> None:
    """It used to ignore Retry-After and hammer a rate-limited server at its own pace."""
    script: dict[str, list[Reply]] = {
        "outline": [Fail(429, retry_after="1"), outline_reply(["A", "B", "C"])]
    }
    waits: list[float] = []
    with FakeChat(script).running() as chat:
        client = ChatClient(chat.base_url, backoff_s=0.01)
        client.on_event = lambda level, message: waits.append(float(message.split()[-2]))
        try:
            t0 = time.monotonic()
            answer = client.complete(
                "m", [{"role": "system", "content": "Task: outline"}], task="t"
            )
            elapsed = time.monotonic() - t0
        finally:
            client.close()
    assert "Here is the plan" in answer
    assert waits[0] >= 1.0, "the delay announced is the server's"
    assert elapsed >= 1.0
    assert len(chat.requests) == 2
