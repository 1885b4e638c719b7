"""Pictures of jobs: thumbnails read once and cached, painted scaled only when on screen.

A preview arrives every few steps; scaling it into a pixmap for every card on every step cost the
GUI thread ~10 ms a time. ``Picture`` keeps the image and lets the paint event (which Qt runs
once per frame, and only for visible widgets) do the scaling.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPaintEvent, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from wan_desktop.engine import Job

from . import icons, theme

CACHE_SIZE = 256
_thumbs: OrderedDict[tuple[str, int], QImage] = OrderedDict()


def thumbnail(path: str | None) -> QImage | None:
    """The image at ``path`` (cached by path and modification time); None if unreadable."""
    if not path:
        return None
    try:
        key = (path, Path(path).stat().st_mtime_ns)
    except OSError:
        return None
    image = _thumbs.get(key)
    if image is None:
        image = QImage(path)
        if image.isNull():
            return None
        _thumbs[key] = image
        while len(_thumbs) > CACHE_SIZE:
            _thumbs.popitem(last=False)
    else:
        _thumbs.move_to_end(key)
    return image


def job_image(job: Job, preview: QImage | None) -> QImage | None:
    """What to show for a job: its thumbnail when finished, else its latest preview frame."""
    if job.output is not None:
        image = thumbnail(job.output.thumbnail)
        if image is not None:
            return image
    return preview


def cover_rect(image: QImage, target: QRectF) -> QRectF:
    """The part of ``image`` that fills ``target`` without distortion (cropped at the edges)."""
    iw, ih = image.width(), image.height()
    scale = max(target.width() / iw, target.height() / ih)
    w, h = target.width() / scale, target.height() / scale
    return QRectF((iw - w) / 2, (ih - h) / 2, w, h)


def paint_picture(
    p: QPainter, rect: QRectF, image: QImage | None, *, radius: float = 8.0, glyph: int = 26
) -> None:
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    path = QPainterPath()
    path.addRoundedRect(rect, radius, radius)
    p.setClipPath(path)
    p.fillRect(rect, QColor(theme.P.input))
    if image is not None and not image.isNull():
        p.drawImage(rect, image, cover_rect(image, rect))
    else:
        mark = icons.pixmap("film", glyph, theme.P.faint)
        p.drawPixmap(int(rect.center().x() - glyph / 2), int(rect.center().y() - glyph / 2), mark)
    p.setClipping(False)


class Picture(QWidget):
    """An image filling its rectangle (cropped, never stretched), or a placeholder."""

    def __init__(self, size: QSize | None = None, *, aspect: float | None = None) -> None:
        super().__init__()
        self.image: QImage | None = None
        self.aspect = aspect
        if size is not None:
            self.setFixedSize(size)
        else:
            self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_image(self, image: QImage | None) -> None:
        if image is self.image:
            return
        self.image = image
        self.update()

    def hasHeightForWidth(self) -> bool:
        return self.aspect is not None

    def heightForWidth(self, width: int) -> int:
        return int(width / self.aspect) if self.aspect else super().heightForWidth(width)

    def sizeHint(self) -> QSize:
        if self.aspect:
            return QSize(400, int(400 / self.aspect))
        return super().sizeHint()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        paint_picture(p, QRectF(self.rect()), self.image)
        p.end()


def poster(job: Job, preview: QImage | None, w: int, h: int) -> QPixmap:
    """A job's picture as a pixmap of ``w``×``h`` (for icons), at twice the pixel density."""
    canvas = QPixmap(w * 2, h * 2)
    canvas.setDevicePixelRatio(2.0)
    canvas.fill(Qt.GlobalColor.transparent)
    p = QPainter(canvas)
    paint_picture(p, QRectF(0, 0, w, h), job_image(job, preview), radius=6)
    p.end()
    return canvas
