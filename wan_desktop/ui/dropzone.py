"""An image input: drop a file or click to choose one; shows a preview and a clear button."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent, QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QVBoxLayout

from . import icons, theme
from .widgets import label, set_prop, tool

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class DropZone(QFrame):
    changed = Signal(str)  # the path, "" when cleared

    def __init__(self, title: str, hint: str) -> None:
        super().__init__()
        self.setObjectName("DropZone")
        self.setAcceptDrops(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMinimumHeight(112)
        self.path = ""
        self.problem: str | None = None  # why the chosen file cannot be used, if it cannot
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 12, 12, 12)
        row.setSpacing(12)
        self.preview = QLabel()
        self.preview.setFixedSize(QSize(128, 88))
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        row.addWidget(self.preview)
        col = QVBoxLayout()
        col.setSpacing(3)
        self.title = label(title)
        col.addWidget(self.title)
        self.hint = label(hint, "faint", wrap=True)
        col.addWidget(self.hint)
        col.addStretch(1)
        row.addLayout(col, 1)
        self.clear_btn = tool("close", "Remove the image")
        self.clear_btn.clicked.connect(lambda: self.set_path(""))
        row.addWidget(self.clear_btn, 0, Qt.AlignmentFlag.AlignTop)
        self._default_hint = hint
        self.set_path("")

    def set_path(self, path: str) -> None:
        self.path = path
        self.problem = None
        if path:
            image = QImage(path)
            if image.isNull():
                self.problem = (
                    f"{Path(path).name} cannot be read as an image: choose a PNG, JPEG or WebP file"
                )
            pix = QPixmap.fromImage(image).scaled(
                self.preview.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            self.preview.setPixmap(pix)
            self.hint.setText(
                f"{Path(path).name}  ·  {image.width()}×{image.height()}"
                if not image.isNull()
                else f"{Path(path).name} (cannot be read as an image)"
            )
        else:
            self.preview.setPixmap(icons.pixmap("image", 30, theme.P.faint))
            self.hint.setText(self._default_hint)
        self.clear_btn.setVisible(bool(path))
        self.changed.emit(path)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            path, _ = QFileDialog.getOpenFileName(
                self, "Choose an image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
            )
            if path:
                self.set_path(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if (
            urls
            and urls[0].isLocalFile()
            and urls[0].toLocalFile().lower().endswith(IMAGE_SUFFIXES)
        ):
            event.acceptProposedAction()
            set_prop(self, "hover", True)

    def dragLeaveEvent(self, _event: QDragLeaveEvent) -> None:
        set_prop(self, "hover", False)

    def dropEvent(self, event: QDropEvent) -> None:
        set_prop(self, "hover", False)
        urls = event.mimeData().urls()  # any file: one that is not an image is said so
        if urls and urls[0].isLocalFile():
            self.set_path(urls[0].toLocalFile())
            event.acceptProposedAction()
