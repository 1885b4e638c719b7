"""The app's icons: small stroke drawings on a 24-unit grid, rendered in any colour at any size.

Drawn here rather than shipped as files, so one set scales crisply on every screen and follows the
theme. Each entry is the inside of an SVG element (paths, circles, rects).
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from . import theme

SHAPES: dict[str, str] = {
    "generate": '<path d="M12 3l1.9 5.1L19 10l-5.1 1.9L12 17l-1.9-5.1L5 10l5.1-1.9z"/>'
    '<path d="M19 15l.8 2.2L22 18l-2.2.8L19 21l-.8-2.2L16 18l2.2-.8z"/>',
    "explain": '<rect x="3" y="4" width="18" height="12" rx="2"/><path d="M12 16v4M8 20h8"/>'
    '<path d="M7 12l3-3 2 2 4-4"/>',
    "queue": '<path d="M9 6h12M9 12h12M9 18h12"/><circle cx="4" cy="6" r="1.2"/>'
    '<circle cx="4" cy="12" r="1.2"/><circle cx="4" cy="18" r="1.2"/>',
    "models": '<path d="M12 2.8l8 4.6v9.2l-8 4.6-8-4.6V7.4z"/><path d="M4 7.4l8 4.6 8-4.6"/>'
    '<path d="M12 12v9.2"/>',
    "gallery": '<rect x="3" y="4" width="18" height="16" rx="2.5"/>'
    '<circle cx="8.5" cy="9.5" r="1.6"/><path d="M21 16l-5-5-9 9"/>',
    "system": '<path d="M3 12h4l3-7 4 14 3-7h4"/>',
    "settings": '<path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0"/>'
    '<circle cx="16" cy="6" r="2"/><circle cx="10" cy="12" r="2"/><circle cx="18" cy="18" r="2"/>',
    "play": '<path d="M7 4.5v15l12.5-7.5z"/>',
    "pause": '<path d="M8 5v14M16 5v14"/>',
    "cancel": '<path d="M6 6l12 12M18 6L6 18"/>',
    "retry": '<path d="M20 12a8 8 0 1 1-2.4-5.7"/><path d="M20 4v5h-5"/>',
    "delete": '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
    "folder": '<path d="M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5'
    'a2 2 0 0 1-2-2z"/>',
    "dice": '<rect x="4" y="4" width="16" height="16" rx="3"/><circle cx="9" cy="9" r="1"/>'
    '<circle cx="15" cy="15" r="1"/><circle cx="15" cy="9" r="1"/><circle cx="9" cy="15" r="1"/>'
    '<circle cx="12" cy="12" r="1"/>',
    "download": '<path d="M12 4v11M7 10l5 5 5-5M5 20h14"/>',
    "check": '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
    "pin": '<path d="M9 3h6l-1 6 4 4H6l4-4zM12 13v8"/>',
    "verify": '<path d="M12 3l7 3v6c0 4.5-3 7.7-7 9-4-1.3-7-4.5-7-9V6z"/>'
    '<path d="M8.8 12.2l2.2 2.2 4.3-4.4"/>',
    "image": '<rect x="3" y="5" width="18" height="14" rx="2"/><circle cx="9" cy="10" r="1.6"/>'
    '<path d="M21 15l-4-4-6 6"/><path d="M13 15l-2-2-5 5"/>',
    "upload": '<path d="M12 16V5M7 10l5-5 5 5M5 20h14"/>',
    "copy": '<rect x="8" y="8" width="12" height="12" rx="2"/>'
    '<path d="M16 8V6a2 2 0 0 0-2-2H6a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h2"/>',
    "info": '<circle cx="12" cy="12" r="9"/><path d="M12 11v6M12 7.5v.5"/>',
    "alert": '<path d="M12 3.5l9.5 16.5h-19z"/><path d="M12 10v4.5M12 17.5v.3"/>',
    "grip": '<circle cx="9" cy="6" r="1"/><circle cx="15" cy="6" r="1"/>'
    '<circle cx="9" cy="12" r="1"/>'
    '<circle cx="15" cy="12" r="1"/><circle cx="9" cy="18" r="1"/><circle cx="15" cy="18" r="1"/>',
    "chip": '<rect x="6" y="6" width="12" height="12" rx="2"/><path d="M9 2v4M15 2v4M9 18v4M15 18v4'
    'M2 9h4M2 15h4M18 9h4M18 15h4"/>',
    "refresh": '<path d="M4 12a8 8 0 0 1 13.7-5.6L20 9"/><path d="M20 4v5h-5"/>'
    '<path d="M20 12a8 8 0 0 1-13.7 5.6L4 15"/><path d="M4 20v-5h5"/>',
    "stop": '<rect x="6" y="6" width="12" height="12" rx="2"/>',
    "key": '<circle cx="8" cy="15" r="4"/><path d="M11 12l9-9M16 7l3 3M14 9l2 2"/>',
    "globe": '<circle cx="12" cy="12" r="9"/><path d="M3 12h18M12 3c3 3.2 3 14.8 0 18'
    'M12 3c-3 3.2-3 14.8 0 18"/>',
    "film": '<rect x="3" y="4" width="18" height="16" rx="2"/><path d="M7 4v16M17 4v16M3 9h4M3 15h4'
    'M17 9h4M17 15h4"/>',
    "close": '<path d="M7 7l10 10M17 7L7 17"/>',
    "bolt": '<path d="M13 2L4 14h7l-1 8 9-12h-7z"/>',
}
FILLED = frozenset({"play", "pin"})


def svg(name: str, color: str) -> bytes:
    fill = color if name in FILLED else "none"
    body = SHAPES[name]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" '
        f'fill="{fill}" stroke="{color}" stroke-width="1.8" stroke-linecap="round" '
        f'stroke-linejoin="round">{body}</svg>'
    ).encode()


@cache
def pixmap(name: str, size: int = 18, color: str | None = None, *, dpr: float = 2.0) -> QPixmap:
    """The icon drawn once per name, size and colour (SVG rendering is not cheap)."""
    renderer = QSvgRenderer(QByteArray(svg(name, color or theme.P.muted)))
    px = int(size * dpr)
    image = QImage(px, px, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, px, px))
    painter.end()
    out = QPixmap.fromImage(image)
    out.setDevicePixelRatio(dpr)
    return out


@cache
def icon(name: str, color: str | None = None, active: str | None = None) -> QIcon:
    """An icon in ``color`` (muted by default); ``active`` for the checked/selected state."""
    ic = QIcon()
    normal = pixmap(name, 24, color or theme.P.muted)
    ic.addPixmap(normal, QIcon.Mode.Normal, QIcon.State.Off)
    ic.addPixmap(pixmap(name, 24, active or theme.P.text), QIcon.Mode.Active, QIcon.State.Off)
    ic.addPixmap(pixmap(name, 24, active or theme.P.text), QIcon.Mode.Normal, QIcon.State.On)
    ic.addPixmap(pixmap(name, 24, theme.P.faint), QIcon.Mode.Disabled, QIcon.State.Off)
    return ic


def app_icon() -> QIcon:
    from .resources import resource_path

    ic = QIcon()
    for name in ("icon.svg", "icon.png"):
        path = resource_path(name)
        if path.is_file():
            ic.addFile(str(path))
    return ic
