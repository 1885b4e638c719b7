"""A video player that paints the frames itself (QMediaPlayer → QVideoSink → QImage).

Painting the frames ourselves, instead of using QVideoWidget, keeps the look of the app and lets
``grab()`` capture what is on screen (QVideoWidget grabs blank offscreen). QtMultimedia is
imported when the first player is made, so it costs nothing at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QSlider, QVBoxLayout, QWidget

from wan_desktop.explainer.media import Cue, cue_at

from . import format as fmt
from . import icons, theme
from .widgets import label, tool


class VideoView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.frame: QImage | None = None
        self.poster: QImage | None = None
        self.caption = ""  # the subtitle cue shown now, drawn over the bottom of the picture
        self.setMinimumSize(QSize(320, 180))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_frame(self, image: QImage | None) -> None:
        self.frame = image
        self.update()

    def set_caption(self, text: str) -> None:
        if text != self.caption:
            self.caption = text
            self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#07080b"))
        p.drawRoundedRect(QRectF(self.rect()), 10, 10)
        image = self.frame if self.frame is not None and not self.frame.isNull() else self.poster
        picture = QRectF(self.rect())
        if image is not None and not image.isNull():
            size = image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            picture = QRectF(x, y, size.width(), size.height())
            p.drawImage(picture, image)
        else:
            glyph = icons.pixmap("film", 36, theme.P.faint)
            p.drawPixmap(int(self.width() / 2 - 18), int(self.height() / 2 - 18), glyph)
        if self.caption:
            self._draw_caption(p, picture)
        p.end()

    def _draw_caption(self, p: QPainter, picture: QRectF) -> None:
        """The cue over the bottom of the picture: white on a dark box, wrapped, centred."""
        font = QFont(self.font())
        font.setPixelSize(max(11, round(picture.height() / 18)))
        font.setWeight(QFont.Weight.DemiBold)
        p.setFont(font)
        pad = font.pixelSize() / 2
        room = QRectF(picture.left() + 2 * pad, 0, picture.width() - 4 * pad, picture.height())
        flags = Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap
        text = QFontMetricsF(font).boundingRect(room, int(flags), self.caption)
        box = text.adjusted(-pad, -pad / 2, pad, pad / 2)
        box.moveBottom(picture.bottom() - pad)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 190))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor("#ffffff"))
        p.drawText(box.adjusted(pad, pad / 2, -pad, -pad / 2), int(flags), self.caption)


class Player(QWidget):
    """The view, a play/pause button, a seek bar, the time, and subtitles when it has them."""

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
        self.time = label("", "faint")  # position / length once the video is loaded
        bar.addWidget(self.time)
        col.addLayout(bar)

        self.player = QMediaPlayer(self)
        self.sink = QVideoSink(self)
        self.player.setVideoSink(self.sink)
        self.player.setLoops(QMediaPlayer.Loops.Infinite)
        self.sink.videoFrameChanged.connect(self._on_frame)
        self.player.positionChanged.connect(self._on_position)
        self.player.durationChanged.connect(self._on_duration)
        self.cues: list[Cue] = []
        self.player.playbackStateChanged.connect(self._on_state)
        self.seek.sliderMoved.connect(self.player.setPosition)
        self.play_btn.clicked.connect(self.toggle)

    def load(self, path: str, poster: QImage | None = None) -> None:
        self.player.stop()
        self.view.poster = poster
        self.view.set_frame(None)
        self.set_cues(())
        self.time.setText("")
        self.player.setSource(QUrl.fromLocalFile(path))

    def set_cues(self, cues: Sequence[Cue]) -> None:
        """Subtitles to show under the picture while it plays (and where a seek lands)."""
        self.cues = list(cues)
        self._show_cue(self.player.position())

    def clear(self) -> None:
        self.player.stop()
        self.player.setSource(QUrl())
        self.view.poster = None
        self.view.set_frame(None)
        self.set_cues(())
        self.time.setText("")

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
        self._show_time(ms, self.player.duration())
        self._show_cue(ms)

    @Slot(int)
    def _on_duration(self, ms: int) -> None:
        self.seek.setRange(0, ms)
        self._show_time(self.player.position(), ms)

    def _show_time(self, position_ms: int, duration_ms: int) -> None:
        if duration_ms <= 0:
            self.time.setText("")
            return
        length = duration_ms / 1000
        self.time.setText(f"{fmt.clock(position_ms / 1000, length)} / {fmt.clock(length)}")

    def _show_cue(self, ms: int) -> None:
        cue = cue_at(self.cues, ms / 1000)
        self.view.set_caption(cue.text if cue is not None else "")

    @Slot(object)
    def _on_state(self, state: Any) -> None:
        playing = state == self._State.PlayingState
        self.play_btn.setIcon(icons.icon("pause" if playing else "play"))

    def shutdown(self) -> None:
        self.player.stop()
        self.player.setSource(QUrl())
