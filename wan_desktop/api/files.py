"""Sending output files: one place for videos, thumbnails and subtitles of every kind of job.

Starlette's ``FileResponse`` answers ``Range`` requests (206 with ``Content-Range``, 416 past the
end, multipart for several ranges) and sends ``Accept-Ranges: bytes``, so video players can seek.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from wan_desktop.explainer.storage import CONTENT_TYPES as MEDIA_TYPES


def send_file(
    path: str | Path, *, filename: str | None = None, inline: bool = True
) -> FileResponse:
    """The file with its media type; ``inline`` plays in the browser, else it downloads."""
    p = Path(path)
    return FileResponse(
        p,
        media_type=MEDIA_TYPES.get(p.suffix.lower(), "application/octet-stream"),
        filename=filename,
        content_disposition_type="inline" if inline else "attachment",
    )
