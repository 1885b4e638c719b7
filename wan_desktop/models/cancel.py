"""The one cancellation token: set from any thread, checked by whoever does the work.

Transfers check it between chunks, the engine gives each job one (a download it starts gets a
child), the Wan pipeline checks it after every step, and the explainer hands children of the
job's token to its scene renders and language-model calls. Whatever notices it raises
``CancelledError`` (``models.errors``), the one exception that means "stopped on request".
"""

from __future__ import annotations

import threading
import time

from .errors import CancelledError

POLL_S = 0.05


class CancelToken:
    """Cancelled by ``cancel()`` or with its parent (a child never cancels its parent)."""

    def __init__(
        self,
        parent: CancelToken | None = None,
        *,
        message: str = "cancelled",
        fix: str | None = "start it again: a download resumes where it stopped",
    ) -> None:
        self._event = threading.Event()
        self._parent = parent
        self.message = message
        self.fix = fix

    def cancel(self) -> None:
        self._event.set()

    def child(self, *, message: str | None = None, fix: str | None = None) -> CancelToken:
        """A token cancelled with this one that can also be cancelled alone."""
        return CancelToken(
            self,
            message=self.message if message is None else message,
            fix=self.fix if fix is None else fix,
        )

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the token (or a parent) is cancelled."""
        deadline = time.monotonic() + seconds
        while not self.cancelled:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.wait(min(left, POLL_S))
        return True

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early and raising ``CancelledError`` when cancelled."""
        if self.wait(seconds):
            self.raise_if_cancelled()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise CancelledError(self.message, fix=self.fix)
