"""Every page fits the window at the smallest supported size and at full HD: no widget sticks
out of its parent, overlaps a sibling or is squashed below what its text needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import lora_bytes
from tests.engine_helpers import mock_engine, wan_spec
from tests.ui_helpers import layout_problems, make_window, private_config, studio_for, wait_until
from wan_desktop.engine import JobState
from wan_desktop.ui import theme
from wan_desktop.ui.config import AppSettings
from wan_desktop.ui.panels.gallery import GalleryPanel
from wan_desktop.ui.state import Notice
from wan_desktop.ui.window import PAGE_NAMES

SIZES = [(1024, 700), (1920, 1080)]


@pytest.mark.parametrize("dev", [False, True], ids=["mock", "development mode"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_page_fits_without_clipping_or_overlap(
    qtbot: Any, tmp_path: Path, size: tuple[int, int], dev: bool
) -> None:
    engine = private_config(mock_engine(tmp_path, step_s=0.02), tmp_path / "config")
    # A first start (the welcome card shows), finished videos, a running job with its timeline,
    # a waiting one, and notifications.
    with studio_for(engine, tmp_path / "config", AppSettings(welcomed=False)) as studio:
        window = make_window(qtbot, studio)
        window.setFont(theme.ui_font())  # the app's font and style, to this window only
        window.setStyleSheet(theme.stylesheet())
        window.resize(*size)
        if dev:  # the development variants' tiles and labels are longer
            studio.set_dev_mode(True)
        lora = tmp_path / "watercolor_style.safetensors"  # a LoRA row with its description
        lora.write_bytes(lora_bytes(rank=8))
        generate = window.pages["generate"]
        generate.loras.install(lora)  # type: ignore[attr-defined]
        wait_until(qtbot, lambda: bool(generate.loras.rows))  # type: ignore[attr-defined]
        prompt = "a red fox running through fresh snow at dawn, low tracking shot, golden light"
        done = [studio.submit(wan_spec(prompt=f"{prompt} {i}").params).id for i in range(4)]
        wait_until(qtbot, lambda: all(studio.jobs[i].state is JobState.completed for i in done))
        running = studio.submit(wan_spec(prompt=prompt, steps=100).params).id
        studio.submit(wan_spec(prompt="waiting").params)
        wait_until(qtbot, lambda: (studio.jobs[running].step or 0) >= 1)
        studio.post(Notice("error", "Download failed", "the disk is full", sticky=True))
        assert window.size().toTuple() == size, "the window takes the size asked for"
        for name in PAGE_NAMES:
            window.show_page(name)
            page = window.pages[name]
            if isinstance(page, GalleryPanel):  # a video open in the detail panel
                wait_until(qtbot, lambda p=page: p.grid.count() == 4)  # type: ignore[misc]
                page.grid.setCurrentRow(0)
                wait_until(qtbot, lambda p=page: p.current is not None)  # type: ignore[misc]
            qtbot.wait(50)
            assert layout_problems(window) == [], name
        studio.engine.cancel(running)
