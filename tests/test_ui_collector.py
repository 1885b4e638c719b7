"""The GUI's garbage collector: Qt objects in reference cycles are freed on the GUI thread only."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QObject

from wan_desktop.engine import heap
from wan_desktop.ui import collector as collector_module
from wan_desktop.ui.collector import GuiCollector


class _Cycle:
    """Garbage only a collection frees (it refers to itself); records where it was freed."""

    def __init__(self, freed_on: list[str]) -> None:
        self.me = self
        self.freed_on = freed_on
        self.qobject = QObject()  # a real Qt object dies with it

    def __del__(self) -> None:
        self.freed_on.append(threading.current_thread().name)


def _engine_thread_collects() -> threading.Thread:
    thread = threading.Thread(target=heap.collect, name="engine-thread")
    thread.start()
    return thread


@pytest.fixture
def running(qapp: Any) -> Iterator[GuiCollector]:
    gc.collect()
    collector = GuiCollector()
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


def test_without_the_collector_an_engine_thread_frees_the_cycle_itself(qapp: Any) -> None:
    # The hazard the collector exists for: the thread that asks is the thread that frees.
    gc.collect()
    freed_on: list[str] = []
    _Cycle(freed_on)
    _engine_thread_collects().join()
    assert freed_on == ["engine-thread"]


def test_a_collection_asked_for_by_an_engine_thread_runs_on_the_gui_thread(
    running: GuiCollector, qtbot: Any
) -> None:
    assert not gc.isenabled()
    freed_on: list[str] = []
    _Cycle(freed_on)
    thread = _engine_thread_collects()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=5000)  # the loop serves the request
    assert freed_on == [threading.main_thread().name]
    assert running.collections[2] >= 1


def test_ticks_collect_like_the_interpreter_would(running: GuiCollector, qtbot: Any) -> None:
    freed_on: list[str] = []
    for _ in range(gc.get_threshold()[0] + 10):
        _Cycle(freed_on)
    assert freed_on == []  # automatic collection is off while the app runs
    qtbot.waitUntil(lambda: len(freed_on) > 0, timeout=3000)
    assert set(freed_on) == {threading.main_thread().name}
    assert running.collections[0] >= 1


def test_a_busy_gui_thread_does_not_hang_the_asking_thread(
    running: GuiCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector_module, "REQUEST_TIMEOUT_S", 0.2)
    freed_on: list[str] = []
    _Cycle(freed_on)
    thread = _engine_thread_collects()
    thread.join(2.0)  # the GUI thread is blocked here, as when it waits for the engine
    assert not thread.is_alive() and freed_on == []
    running.stop()  # stopping serves what was asked and gives automatic collection back
    assert freed_on == [threading.main_thread().name] and gc.isenabled()


def test_a_full_pass_waits_until_the_old_generation_grew_by_a_quarter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = GuiCollector()
    full = gc.get_threshold()[2] + 1
    monkeypatch.setattr(gc, "get_count", lambda: (0, 0, full))
    collector._long_lived_total, collector._long_lived_pending = 1000, 249
    collector.tick()
    assert collector.collections == [0, 0, 0]  # as the interpreter: not worth a full pass yet
    collector._long_lived_pending = 250
    collector.tick()
    assert collector.collections == [0, 0, 1]
    assert collector._long_lived_pending == 0
    assert collector.longest_ms[2] > 0


def test_survivors_of_a_middle_pass_count_towards_the_quarter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = GuiCollector()
    keep = [[i] for i in range(1000)]  # young objects that survive
    monkeypatch.setattr(gc, "get_count", lambda: (0, gc.get_threshold()[1] + 1, 0))
    collector.tick()
    assert collector.collections == [0, 1, 0]
    assert collector._long_lived_pending >= len(keep)


def test_a_frozen_heap_is_skipped_by_collections_and_given_back_on_stop(qapp: Any) -> None:
    collector = GuiCollector()
    collector.start()
    try:
        long_lived = [{"n": i} for i in range(1000)]
        collector.freeze_long_lived()
        assert collector.frozen == gc.get_freeze_count() > len(long_lived)
        tracked = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in tracked for o in long_lived)  # no collection walks them now
        freed_on: list[str] = []
        _Cycle(freed_on)  # made after the freeze: still collected
        collector.collect_full()
        assert freed_on == [threading.main_thread().name]
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0 and collector.frozen == 0
