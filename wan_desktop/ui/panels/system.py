"""System: a painted VRAM gauge, RAM and GPU load, the machine, and what is loaded."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Slot
from PySide6.QtGui import QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QProgressBar, QVBoxLayout, QWidget

from wan_desktop.engine import HardwareProfile, MemorySample
from wan_desktop.engine.face import THIS_COMPUTER

from .. import format as fmt
from .. import theme
from ..state import Notice, Studio
from ..widgets import Card, PageHeader, button, label, page_layout, scroll_page, set_prop

# Gauge colour bands (percent of VRAM in use). Red starts where the engine warns (90 %).
AMBER_AT = 75.0
RED_AT = 90.0


def level_color(percent: float) -> str:
    """The gauge's colour name for a fill level: success, warning or danger."""
    if percent >= RED_AT:
        return "danger"
    if percent >= AMBER_AT:
        return "warning"
    return "success"


class Gauge(QWidget):
    """A 240° arc gauge; grey and labelled when there is nothing to measure."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self.percent: float | None = None
        self.caption = ""
        self.setMinimumSize(QSize(220, 200))

    def set_value(self, percent: float | None, caption: str) -> None:
        self.percent = percent
        self.caption = caption
        self.update()

    @property
    def color_name(self) -> str:
        return "faint" if self.percent is None else level_color(self.percent)

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        side = min(self.width(), self.height() * 1.15) - 24
        rect = QRectF((self.width() - side) / 2, 14, side, side)
        thick = max(10.0, side / 14)
        start, span = 210 * 16, -240 * 16
        pen = QPen(theme.color("border"), thick, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        p.drawArc(rect, start, span)
        if self.percent is not None:
            pen.setColor(theme.color(self.color_name))
            p.setPen(pen)
            p.drawArc(rect, start, int(span * min(100.0, max(0.0, self.percent)) / 100))
        center = rect.center()
        big = QFont(self.font())
        big.setPointSizeF(max(14.0, side / 9))
        big.setWeight(QFont.Weight.Bold)
        p.setFont(big)
        p.setPen(theme.color("text") if self.percent is not None else theme.color("faint"))
        text = f"{self.percent:.0f}%" if self.percent is not None else "No GPU"
        p.drawText(
            QRectF(center.x() - side / 2, center.y() - side / 5, side, side / 3),
            int(Qt.AlignmentFlag.AlignCenter),
            text,
        )
        small = QFont(self.font())
        small.setPointSizeF(9)
        p.setFont(small)
        p.setPen(theme.color("muted"))
        p.drawText(
            QRectF(center.x() - side / 2, center.y() + side / 8, side, 20),
            int(Qt.AlignmentFlag.AlignCenter),
            self.title,
        )
        p.setPen(theme.color("faint"))
        p.drawText(
            QRectF(center.x() - side / 2, center.y() + side / 8 + 18, side, 20),
            int(Qt.AlignmentFlag.AlignCenter),
            self.caption,
        )
        p.end()


class Sparkline(QWidget):
    """The last few minutes of a few percentages, as lines (RAM, CPU, VRAM)."""

    SERIES = (("RAM", "info"), ("CPU", "success"), ("VRAM", "accent"))

    def __init__(self, points: int = 240, sample_s: float = 0.5) -> None:
        super().__init__()
        self.points = points
        self.sample_s = sample_s
        self.history: dict[str, deque[float]] = {
            name: deque(maxlen=points) for name, _ in self.SERIES
        }
        self.setMinimumHeight(110)

    def add(self, values: dict[str, float | None]) -> None:
        for name, series in self.history.items():
            value = values.get(name)
            if value is not None:
                series.append(max(0.0, min(100.0, value)))
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height() - 18
        p.setPen(QPen(theme.color("border"), 1, Qt.PenStyle.DashLine))
        for frac in (0.25, 0.5, 0.75):
            p.drawLine(0, int(h * frac), w, int(h * frac))
        step = w / max(1, self.points - 1)
        x_legend = 0
        small = QFont(self.font())
        small.setPointSizeF(8)
        p.setFont(small)
        for name, colour in self.SERIES:
            series = self.history[name]
            if not series:
                continue
            path = QPainterPath()
            start = w - step * (len(series) - 1)
            for i, value in enumerate(series):
                point = QPointF(start + i * step, h - h * value / 100)
                path.moveTo(point) if i == 0 else path.lineTo(point)
            p.setPen(QPen(theme.color(colour), 2))
            p.drawPath(path)
            p.drawText(QRectF(x_legend, h + 2, 80, 16), f"— {name} {series[-1]:.0f}%")
            x_legend += 90
        p.setPen(theme.color("faint"))
        minutes = self.points * self.sample_s / 60
        p.drawText(
            QRectF(0, h + 2, w, 16), int(Qt.AlignmentFlag.AlignRight), f"last {minutes:.0f} min"
        )
        p.end()


class Meter(QWidget):
    """A labelled bar: RAM, GPU load, CPU."""

    def __init__(self, title: str) -> None:
        super().__init__()
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        row = QHBoxLayout()
        self.title = label(title, "muted")
        row.addWidget(self.title)
        row.addStretch(1)
        self.value = label("—")
        row.addWidget(self.value)
        col.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        col.addWidget(self.bar)

    def set(self, percent: float | None, text: str) -> None:
        self.value.setText(text)
        self.bar.setValue(int(10 * (percent or 0)))
        set_prop(self.bar, "kind", level_color(percent or 0))


class SystemPanel(QWidget):
    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.profile: HardwareProfile | None = None
        outer = page_layout(self)
        self.header = PageHeader("System", "Reading the hardware…")
        outer.addWidget(self.header)
        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(0, 0, 8, 0)
        col.setSpacing(14)

        top = QHBoxLayout()
        top.setSpacing(14)
        gauge_card = Card("GPU memory")
        self.gauge = Gauge("VRAM in use")
        gauge_card.body.addWidget(self.gauge, 1)
        self.gpu_note = label("", "muted", wrap=True)
        self.gpu_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        gauge_card.body.addWidget(self.gpu_note)
        top.addWidget(gauge_card, 1)

        # Where each figure comes from: the GPU is the engine's machine's; RAM and CPU are this
        # computer's when the engine says it samples another machine (a server).
        where = studio.engine.info.location
        self.here_apart = studio.engine.this_computer_load() is not None
        engine_side = "" if where == THIS_COMPUTER else "  ·  server"
        here_side = "  ·  this computer" if self.here_apart else engine_side
        meters = Card("Load")
        self.ram = Meter("RAM" + here_side)
        self.cpu = Meter("CPU" + here_side)
        self.gpu = Meter("GPU load" + engine_side)
        for m in (self.ram, self.cpu, self.gpu):
            meters.body.addWidget(m)
        meters.body.addStretch(1)
        self.history = Sparkline(sample_s=studio.engine.info.memory_sample_s)
        meters.body.addWidget(self.history)
        top.addWidget(meters, 1)
        col.addLayout(top)

        machine = Card("This machine" if where == THIS_COMPUTER else f"The server ({where})")
        self.facts = QGridLayout()
        self.facts.setHorizontalSpacing(24)
        self.facts.setVerticalSpacing(8)
        machine.body.addLayout(self.facts)
        col.addWidget(machine)

        loaded = Card("Loaded model")
        self.loaded_text = label(
            "Nothing is loaded. A model loads when a job starts.", "muted", wrap=True
        )
        loaded.body.addWidget(self.loaded_text)
        self.unload_btn = button("Unload models", "stop")
        self.unload_btn.setToolTip("Free GPU and RAM now (after the running job)")
        self.unload_btn.clicked.connect(self._unload)
        loaded.body.addWidget(self.unload_btn, 0, Qt.AlignmentFlag.AlignLeft)
        col.addWidget(loaded)
        col.addStretch(1)
        outer.addWidget(scroll_page(body), 1)

        studio.memory_changed.connect(self.show_sample)
        self.here_timer = QTimer(self)  # this computer's load, whether or not the server's come
        self.here_timer.setInterval(max(500, int(1000 * studio.engine.info.memory_sample_s)))
        self.here_timer.timeout.connect(self._sample_here)
        if self.here_apart:
            self.here_timer.start()
        studio.loaded_changed.connect(self._update_loaded)
        studio.jobs_changed.connect(self._update_loaded)
        self.show_sample(studio.memory)
        self._update_loaded()
        studio.background.run(
            lambda: studio.engine.hardware,
            on_done=self._on_profile,
            on_error=self._on_profile_error,
        )

    def _on_profile(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self.header.subtitle.setText(profile.summary)
        facts = [
            ("Device", profile.gpu_name or "CPU only"),
            ("VRAM", f"{profile.vram_total_mb / 1024:.1f} GiB" if profile.has_gpu else "—"),
            ("RAM", f"{profile.ram_total_mb / 1024:.1f} GiB"),
            ("CPU cores", str(profile.cpu_count)),
            (
                "Compute capability",
                ".".join(map(str, profile.compute_capability))
                if profile.compute_capability
                else "—",
            ),
            ("CUDA / driver", f"{profile.cuda_version or '—'} / {profile.driver_version or '—'}"),
            ("PyTorch", profile.torch_version or "not installed"),
            (
                "bf16 / fp8",
                f"{'yes' if profile.bf16_supported else 'no'} / "
                f"{'yes' if profile.fp8_supported else 'no'}",
            ),
        ]
        self.facts.setColumnStretch(1, 1)
        self.facts.setColumnStretch(3, 1)
        self.facts.setColumnMinimumWidth(0, 150)
        self.facts.setColumnMinimumWidth(2, 150)
        for i, (k, v) in enumerate(facts):
            self.facts.addWidget(label(k, "muted"), i // 2, (i % 2) * 2)
            self.facts.addWidget(label(v), i // 2, (i % 2) * 2 + 1)
        self.show_sample(self.studio.memory)

    def _on_profile_error(self, exc: BaseException) -> None:
        self.header.subtitle.setText(f"The hardware could not be read: {exc}")

    @Slot(object)
    def show_sample(self, s: MemorySample | None) -> None:
        if s is None:
            self.gauge.set_value(None, "waiting for the first sample")
            return
        if s.has_gpu and s.vram_total_mb:
            used = s.vram_total_mb - s.vram_free_mb
            self.gauge.set_value(
                s.vram_percent, f"{used / 1024:.1f} of {s.vram_total_mb / 1024:.1f} GiB"
            )
            self.gpu_note.setText(
                f"{s.device_name}  ·  the engine holds {s.vram_reserved_mb / 1024:.1f} GiB"
            )
            self.gpu.set(
                s.gpu_percent,
                f"{s.gpu_percent:.0f}%" if s.gpu_percent is not None else "not reported",
            )
        else:
            self.gauge.set_value(None, "")
            self.gpu_note.setText(
                "No GPU found. Generation runs on the CPU: development models work, real "
                "models are far too slow to be practical."
            )
            self.gpu.set(None, "no GPU")
        if self.here_apart:
            self.history.add({"VRAM": s.vram_percent if s.has_gpu and s.vram_total_mb else None})
        else:
            self._show_load(s)

    @Slot()
    def _sample_here(self) -> None:
        here = self.studio.engine.this_computer_load()
        if here is not None:
            self._show_load(here)

    def _show_load(self, s: MemorySample) -> None:
        """RAM and CPU (and the engine's VRAM in the history when it is this machine's)."""
        ram_pct = 100 * s.ram_used_mb / s.ram_total_mb if s.ram_total_mb else 0
        self.history.add(
            {
                "RAM": ram_pct,
                "CPU": s.cpu_percent,
                "VRAM": s.vram_percent if s.has_gpu and s.vram_total_mb else None,
            }
        )
        self.ram.set(ram_pct, f"{s.ram_used_mb / 1024:.1f} / {s.ram_total_mb / 1024:.1f} GiB")
        self.cpu.set(s.cpu_percent, f"{s.cpu_percent:.0f}%" if s.cpu_percent is not None else "—")

    @Slot()
    def _update_loaded(self) -> None:
        loaded = self.studio.engine.loaded_models()
        running = self.studio.active()
        lines = [
            f"{m.model_id} ({m.variant})  ·  memory strategy: {m.strategy}  ·  "
            f"idle {fmt.ago(m.last_used)}"
            for m in loaded
        ]
        for job in running:
            plan = job.memory_plan or job.estimate or {}
            if plan.get("strategy"):
                lines.append(
                    f"Running job: strategy {plan['strategy']}"
                    + (f", ≈ {float(plan['vram_gb']):.1f} GiB" if plan.get("vram_gb") else "")
                )
        self.loaded_text.setText(
            "\n".join(lines) if lines else "Nothing is loaded. A model loads when a job starts."
        )
        self.unload_btn.setEnabled(bool(loaded))

    def _unload(self) -> None:
        self.studio.engine.unload()
        self.studio.post(Notice("info", "Unloading", "Models are freed after the running job."))
