"""Which thread runs Python's garbage collector.

The engine collects after loading and unloading a model, on its own thread. In a process that
also runs a Qt GUI that is not safe: a collection frees whatever garbage exists, and a Qt widget
or signal connection caught in a reference cycle would then be destroyed off the GUI thread,
which crashes the process. A GUI therefore installs a collector that hands the collection to its
own thread (see ``wan_desktop.ui.collector``); a headless process (CLI, ``wan serve``) keeps the
default, a plain ``gc.collect()`` where it is asked for.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

_installed: list[Callable[[], None]] = []  # at most one


def set_collector(collector: Callable[[], None] | None) -> None:
    """Route ``collect()`` to ``collector``; ``None`` restores the plain ``gc.collect()``."""
    _installed[:] = [] if collector is None else [collector]


def collect() -> None:
    """A full collection, on whichever thread the installed collector chooses."""
    collector = _installed[0] if _installed else None
    if collector is None:
        gc.collect()
    else:
        collector()
