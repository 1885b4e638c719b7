"""A video player that paints the frames itself (QMediaPlayer → QVideoSink → QImage).

Painting the frames ourselves, instead of using QVideoWidget, keeps the look of the app and lets
``grab()`` capture what is on screen (QVideoWidget grabs blank offscreen). QtMultimedia is
imported when the first player is made, so it costs nothing at start-up.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QSlider, QVBoxLayout, QWidget

from . import format as fmt
from . import icons, theme
from .widgets import label, tool


class VideoView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.frame: QImage | None = None
        self.poster: QImage | None = None
        self.setMinimumSize(QSize(320, 180))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_frame(self, image: QImage | None) -> None:
        self.frame = image
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#07080b"))
        p.drawRoundedRect(QRectF(self.rect()), 10, 10)
        image = self.frame if self.frame is not None and not self.frame.isNull() else self.poster
        if image is not None and not image.isNull():
            size = image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            p.drawImage(QRectF(x, y, size.width(), size.height()), image)
        else:
            glyph = icons.pixmap("film", 36, theme.P.faint)
            p.drawPixmap(int(self.width() / 2 - 18), int(self.height() / 2 - 18), glyph)
        p.end()


class Player(QWidget):
    """The view, a play/pause button and a seek bar."""

    frame_shown = Signal()

    def __init__(self) -> None:
        super().__init__()
        from PySide6.QtMultimedia import QMediaPlayer, QVideoSink

        self._State = QMediaPlayer.PlaybackState
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(8)
        self.view = VideoView()
        col.addWidget(self.view, 1)
        bar = QHBoxLayout()
        bar.setSpacing(8)
        self.play_btn = tool("play", "Play / pause", size=18)
        bar.addWidget(self.play_btn)
        self.seek = QSlider(Qt.Orientation.Horizontal)
        bar.addWidget(self.seek, 1)
        self.time = label("0s / 0s", "faint")
        bar.addWidget(self.time)
        col.addLayout(bar)

        self.player = QMediaPlayer(self)
        self.sink = QVideoSink(self)
        self.player.setVideoSink(self.sink)
        self.player.setLoops(QMediaPlayer.Loops.Infinite)
        self.sink.videoFrameChanged.connect(self._on_frame)
        self.player.positionChanged.connect(self._on_position)
        self.player.durationChanged.connect(lambda d: self.seek.setRange(0, d))
        self.player.playbackStateChanged.connect(self._on_state)
        self.seek.sliderMoved.connect(self.player.setPosition)
        self.play_btn.clicked.connect(self.toggle)

    def load(self, path: str, poster: QImage | None = None) -> None:
        self.player.stop()
        self.view.poster = poster
        self.view.set_frame(None)
        self.player.setSource(QUrl.fromLocalFile(path))

    def clear(self) -> None:
        self.player.stop()
        self.player.setSource(QUrl())
        self.view.poster = None
        self.view.set_frame(None)

    def toggle(self) -> None:
        if self.player.playbackState() == self._State.PlayingState:
            self.player.pause()
        else:
            self.player.play()

    @Slot(object)
    def _on_frame(self, frame: Any) -> None:
        image = frame.toImage()
        if not image.isNull():
            self.view.set_frame(image)
            self.frame_shown.emit()

    @Slot(int)
    def _on_position(self, ms: int) -> None:
        if not self.seek.isSliderDown():
            self.seek.setValue(ms)
        self.time.setText(f"{fmt.clock(ms / 1000)} / {fmt.clock(self.player.duration() / 1000)}")

    @Slot(object)
    def _on_state(self, state: Any) -> None:
        playing = state == self._State.PlayingState
        self.play_btn.setIcon(icons.icon("pause" if playing else "play"))

    def shutdown(self) -> None:
        self.player.stop()
        self.player.setSource(QUrl())
