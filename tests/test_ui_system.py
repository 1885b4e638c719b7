"""The System panel: the VRAM gauge's colours, and a plain answer when there is no GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QColor, QImage

from tests.ui_helpers import make_window, mock_studio, wait_until
from wan_desktop.engine import MemorySample
from wan_desktop.ui import theme
from wan_desktop.ui.panels.system import Gauge, SystemPanel, level_color
from wan_desktop.ui.state import Studio


def sample(used_pct: float, *, gpu: bool = True) -> MemorySample:
    total = 24576.0 if gpu else 0.0
    return MemorySample(
        device_name="simulated 24 GB GPU" if gpu else "CPU",
        has_gpu=gpu,
        vram_allocated_mb=total * used_pct / 100,
        vram_reserved_mb=total * used_pct / 100,
        vram_free_mb=total * (1 - used_pct / 100),
        vram_total_mb=total,
        gpu_percent=63.0 if gpu else None,
        ram_used_mb=8192.0,
        ram_total_mb=32768.0,
        cpu_percent=12.0,
    )


def count_near(image: QImage, want: QColor, tol: int = 40) -> int:
    n = 0
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            c = image.pixelColor(x, y)
            if (
                abs(c.red() - want.red())
                + abs(c.green() - want.green())
                + abs(c.blue() - want.blue())
            ) < tol:
                n += 1
    return n


@pytest.mark.parametrize(
    ("used", "colour"), [(40.0, "success"), (82.0, "warning"), (96.0, "danger")]
)
def test_the_gauge_is_green_amber_or_red_by_fill(qtbot: Any, used: float, colour: str) -> None:
    assert level_color(used) == colour
    gauge = Gauge("VRAM in use")
    qtbot.addWidget(gauge)
    gauge.resize(260, 230)
    gauge.set_value(used, "")
    assert gauge.color_name == colour
    image = gauge.grab().toImage()
    painted = {
        name: count_near(image, theme.color(name)) for name in ("success", "warning", "danger")
    }
    assert painted[colour] > 50, painted
    assert all(v < 5 for k, v in painted.items() if k != colour), painted


def test_the_sample_reaches_the_gauge_through_the_panel(qtbot: Any, tmp_path: Path) -> None:
    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        system = window.pages["system"]
        assert isinstance(system, SystemPanel)
        studio._on_memory(sample(92.0))
        assert system.gauge.percent == pytest.approx(92.0)
        assert system.gauge.color_name == "danger"
        assert "22.1 of 24.0 GiB" in system.gauge.caption
        assert system.gpu.value.text() == "63%"
        assert system.ram.value.text() == "8.0 / 32.0 GiB"
        assert "VRAM 92%" in window.memory_status.text()
        assert list(system.history.history["VRAM"]) == [pytest.approx(92.0)]
        assert list(system.history.history["RAM"]) == [25.0]


@pytest.fixture
def studio(qtbot: Any, tmp_path: Path) -> Iterator[Studio]:
    with mock_studio(tmp_path, memory_sample_s=0.2) as s:
        yield s


def test_with_no_gpu_it_says_so_plainly(qtbot: Any, studio: Studio) -> None:
    window = make_window(qtbot, studio)
    system = window.pages["system"]
    assert isinstance(system, SystemPanel)
    wait_until(qtbot, lambda: studio.memory is not None)  # a real sample from the engine
    wait_until(qtbot, lambda: system.profile is not None)
    assert system.gauge.percent is None and system.gauge.color_name == "faint"
    assert "No GPU found" in system.gpu_note.text()
    assert system.header.subtitle.text().startswith("no GPU")
    assert system.gpu.value.text() == "no GPU"
    assert "No GPU" in window.memory_status.text()
