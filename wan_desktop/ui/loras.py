"""The LoRA picker: the engine's LoRA library (``engine/lora_library.py``) as a list of rows with
strength sliders (one per expert on the two-expert A14B models), and "Add LoRA…", which installs
a file through the library so its checks apply and their messages show here.

Every library call (listing, reading headers, copying a file of up to 500 MB) runs off the GUI
thread.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QSlider, QVBoxLayout, QWidget

from wan_desktop.engine import InvalidInputError
from wan_desktop.engine.lora_library import (
    LORA_EXTENSIONS,
    LoraFile,
    LoraInfo,
    LoraLibrary,
    inspect_file,
)

from . import format as fmt
from . import widgets
from .state import Notice, Studio
from .widgets import Card, Field, button, clear_layout, label, tool

STRENGTH_MAX = 2.0
FILE_FILTER = "LoRA files (" + " ".join(f"*{e}" for e in LORA_EXTENSIONS) + ")"


def scan_library(library: LoraLibrary) -> list[tuple[LoraFile, LoraInfo | None, str]]:
    """Each file with what its header says (or why it cannot be read). Blocking."""
    out: list[tuple[LoraFile, LoraInfo | None, str]] = []
    for f in library.list():
        try:
            out.append((f, inspect_file(f), ""))
        except (InvalidInputError, OSError) as exc:
            out.append((f, None, problem_text(exc)))
    return out


def install_copy(library: LoraLibrary, source: Path) -> LoraInfo:
    """Copy ``source`` in through the library's checks (never over an existing LoRA). Blocking."""
    library.check_extension(source.name)
    with library.incoming(source.suffix.lower()) as tmp:
        shutil.copyfile(source, tmp)
        return library.install(tmp, source.name)


def problem_text(exc: BaseException) -> str:
    """An error as the user reads it: the library's per-field messages without field names."""
    if isinstance(exc, InvalidInputError):
        return "; ".join(exc.errors.values())
    return str(exc)


def describe(info: LoraInfo | None, problem: str) -> str:
    if info is None:
        return f"cannot be read: {problem}" if problem else ""
    bits = [info.format]
    if info.rank:
        bits.append(f"rank {info.rank}")
    bits.append(f"{fmt.count(info.params)} parameters")
    bits.append(f"{len(info.modules)} module patterns")
    return "  ·  ".join(bits)


class StrengthSlider(QWidget):
    """A 0–2 slider with its value; ``moved`` when the user changes it."""

    moved = Signal()

    def __init__(self, caption: str, tip: str) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        self.caption = label(caption, "faint")
        self.caption.setFixedWidth(64)
        row.addWidget(self.caption)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(STRENGTH_MAX * 100))
        self.slider.setValue(100)
        self.slider.setToolTip(tip)
        row.addWidget(self.slider, 1)
        self.value_label = label("1.00", "muted")
        self.value_label.setFixedWidth(34)
        row.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._changed)

    def _changed(self, v: int) -> None:
        self.value_label.setText(f"{v / 100:.2f}")
        self.moved.emit()

    @property
    def value(self) -> float:
        return self.slider.value() / 100

    def set_value(self, strength: float) -> None:
        self.slider.setValue(round(max(0.0, min(STRENGTH_MAX, strength)) * 100))


class LoraRow(QWidget):
    delete_requested = Signal(object)  # LoraFile

    def __init__(self, lora: LoraFile, info: LoraInfo | None, problem: str) -> None:
        super().__init__()
        self.lora = lora
        self.info = info
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 2, 0, 2)
        col.setSpacing(4)
        top = QHBoxLayout()
        top.setSpacing(8)
        self.check = QCheckBox(lora.name)
        self.check.setToolTip(f"{lora.path}  ·  {fmt.size(lora.size_bytes)}")
        top.addWidget(self.check, 1)
        # Wraps: a long description must not make the form wider than a small window.
        self.about = label(describe(info, problem), "faint" if info else "error", wrap=True)
        self.about.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.about, 1)
        self.delete_btn = tool("delete", f"Delete {lora.filename} from the LoRA folder")
        self.delete_btn.clicked.connect(lambda: self.delete_requested.emit(self.lora))
        top.addWidget(self.delete_btn)
        col.addLayout(top)
        self.high = StrengthSlider("strength", "Strength 0–2 (0 leaves the model unchanged)")
        self.low = StrengthSlider(
            "low-noise", "Strength on the low-noise expert (A14B models run two experts)"
        )
        for s in (self.high, self.low):
            s.moved.connect(lambda: self.check.setChecked(True))
            col.addWidget(s)
        self.check.setEnabled(info is not None)
        self.set_two_experts(False)

    def set_two_experts(self, on: bool) -> None:
        self.high.caption.setText("high-noise" if on else "strength")
        self.low.setVisible(on)

    def selection(self, two_experts: bool) -> dict[str, Any] | None:
        if not self.check.isChecked():
            return None
        chosen: dict[str, Any] = {"path": str(self.lora.path), "strength": self.high.value}
        if two_experts:
            chosen["strength_2"] = self.low.value
        return chosen


class LoraPicker(Card):
    """The Generate panel's LoRA card."""

    def __init__(self, studio: Studio) -> None:
        super().__init__("LoRA")
        self.studio = studio
        self.library = studio.loras
        self.rows: list[LoraRow] = []
        self.two_experts = False
        self._pending: Sequence[Mapping[str, Any]] | None = None
        self.add_btn = button("Add LoRA…", "upload", variant="ghost")
        self.add_btn.setToolTip("Check a LoRA file and copy it into the LoRA folder")
        self.add_btn.clicked.connect(self.choose_file)
        refresh = tool("refresh", "Look for new LoRA files")
        refresh.clicked.connect(self.refresh)
        folder = tool("folder", "Open the LoRA folder")
        folder.clicked.connect(self._open_folder)
        if self.header is not None:
            self.header.addWidget(self.add_btn)
            self.header.addWidget(refresh)
            self.header.addWidget(folder)
        self.list = QVBoxLayout()
        self.list.setSpacing(8)
        self.field = Field("", self.list)
        self.field.title.setVisible(False)
        self.body.addWidget(self.field)
        self.busy = False
        self.scanned = False  # the first listing arrived
        self.refresh()

    # ------------------------------------------------------------------------------ rows

    def refresh(self) -> None:
        self.studio.background.run(
            scan_library,
            self.library,
            on_done=self._show,
            on_error=self._failed("Could not read the LoRA folder"),
        )

    def _show(self, found: list[tuple[LoraFile, LoraInfo | None, str]]) -> None:
        self.scanned = True
        chosen = {r.lora.path: r.selection(True) for r in self.rows}
        clear_layout(self.list)
        self.rows = []
        for f, info, problem in found:
            row = LoraRow(f, info, problem)
            row.set_two_experts(self.two_experts)
            row.delete_requested.connect(self.delete)
            keep = chosen.get(f.path)
            if keep is not None:
                row.check.setChecked(True)
                row.high.set_value(float(keep["strength"]))
                row.low.set_value(float(keep.get("strength_2", keep["strength"])))
            self.rows.append(row)
            self.list.addWidget(row)
            row.show()  # now, not on a later turn of the loop (Qt's default for a new child)
        if not self.rows:
            self.list.addWidget(
                label(
                    "No LoRAs yet. Add a .safetensors LoRA trained for Wan2.x with “Add LoRA…”.",
                    "faint",
                    wrap=True,
                )
            )
        if self._pending is not None:
            self.select(self._pending)

    def set_two_experts(self, on: bool) -> None:
        self.two_experts = on
        for row in self.rows:
            row.set_two_experts(on)

    def selection(self) -> list[dict[str, Any]]:
        return [s for r in self.rows if (s := r.selection(self.two_experts)) is not None]

    def select(self, loras: Sequence[Mapping[str, Any]]) -> None:
        """Tick and set the LoRAs of a job's parameters ("use these settings again")."""
        wanted = {str(Path(str(lo["path"])).resolve()): lo for lo in loras}
        self._pending = None
        for row in self.rows:
            lo = wanted.pop(str(row.lora.path.resolve()), None)
            row.check.setChecked(lo is not None)
            if lo is not None:
                strength = float(lo.get("strength", 1.0))
                row.high.set_value(strength)
                second = lo.get("strength_2")
                row.low.set_value(strength if second is None else float(second))
        if wanted:
            names = ", ".join(Path(p).name for p in wanted)
            self.field.set_error(f"not in the LoRA folder any more: {names}")

    # --------------------------------------------------------------------------- install

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a LoRA", str(Path.home()), FILE_FILTER)
        if path:
            self.install(Path(path))

    def install(self, source: Path) -> None:
        self.field.set_error(None)
        self.busy = True
        self.add_btn.setEnabled(False)
        self.add_btn.setText("Checking…")
        self.studio.background.run(
            install_copy,
            self.library,
            source,
            on_done=self._installed,
            on_error=self._install_failed,
        )

    def _installed(self, info: LoraInfo) -> None:
        self._idle()
        self.studio.post(
            Notice("success", "LoRA added", f"{info.file.name}  ·  {describe(info, '')}")
        )
        self._pending = [{"path": str(info.file.path), "strength": 1.0}]
        self.refresh()

    def _install_failed(self, exc: BaseException) -> None:
        self._idle()
        self.field.set_error(f"Not added: {problem_text(exc)}")

    def _idle(self) -> None:
        self.busy = False
        self.add_btn.setEnabled(True)
        self.add_btn.setText("Add LoRA…")

    # ---------------------------------------------------------------------------- delete

    def delete(self, lora: LoraFile) -> None:
        if not widgets.confirm(
            self,
            "Delete LoRA",
            f"Delete {lora.filename} ({fmt.size(lora.size_bytes)}) from the LoRA folder?",
            "Delete",
        ):
            return
        self.studio.background.run(
            self.library.delete,
            lora.filename,
            on_done=lambda _f: self.refresh(),
            on_error=self._failed(f"Could not delete {lora.filename}"),
        )

    def _failed(self, title: str) -> Any:
        def on_error(exc: BaseException) -> None:
            self.studio.post(Notice("error", title, str(exc)))

        return on_error

    def _open_folder(self) -> None:
        self.library.root.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.library.root)))
