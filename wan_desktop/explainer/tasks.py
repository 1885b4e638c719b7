"""Running a stage's work on helper threads while the job's own thread reports and watches.

The job context is only touched on the engine's worker thread, so helper threads put their log
lines in a ``Sink``; the worker drains it while it waits, checks for cancellation, and reports
each finished item (for progress and ETA).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, TypeVar

from wan_desktop.models.cancel import CancelToken

if TYPE_CHECKING:
    from wan_desktop.engine.context import JobContext

T = TypeVar("T")
R = TypeVar("R")
POLL_S = 0.2
STOP_GRACE_S = 10.0


class Sink:
    """Thread-safe (level, message) lines for the job log."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[tuple[str, str, str | None]] = queue.SimpleQueue()

    def __call__(self, level: str, message: str) -> None:
        self._q.put((level, message, None))

    def warn(self, message: str, code: str | None = None) -> None:
        self._q.put(("warning!", message, code))

    def drain(self, ctx: JobContext) -> None:
        while True:
            try:
                level, message, code = self._q.get_nowait()
            except queue.Empty:
                return
            if level == "warning!":
                ctx.warn(message, code=code)
            else:
                ctx.log(level, message)


def run_tasks(
    ctx: JobContext,
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    workers: int,
    sink: Sink,
    cancel: CancelToken,
    on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``fn`` over ``items`` on up to ``workers`` threads; results in order.

    The first error stops the rest (their sandboxes are killed through ``cancel``, a child of the
    job's token) and is raised here; a cancelled job raises CancelledError.
    """
    results: dict[int, R] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wan-explainer")
    futures: dict[Future[R], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            sink.drain(ctx)
            ctx.check_cancelled()  # ``cancel`` is cancelled with the job
            for future in sorted(done, key=lambda f: futures[f]):
                exc = future.exception()
                if exc is not None:
                    cancel.cancel()  # stop the others; their errors would only repeat this one
                    raise exc
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(futures[future], future.result())
    finally:
        pool.shutdown(wait=not cancel.cancelled, cancel_futures=True)
        if cancel.cancelled:
            # Renders notice `cancel` within a poll and kill their process group: wait for
            # that. A language-model call in flight is left to end on its own.
            wait([f for f in futures if not f.done()], timeout=STOP_GRACE_S)
        sink.drain(ctx)
    return [results[i] for i in range(len(items))]
