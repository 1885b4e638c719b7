"""Uploads: body size capped while it streams, images checked by decoding, names sanitised.

The multipart parser spools files to disk past a small size, so memory stays bounded; the receive
wrapper below stops reading as soon as the body passes its limit, so an oversized upload is
refused without being read to the end.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from wan_desktop.engine.params import SIDE_MAX
from wan_desktop.models.atomic import atomic_path
from wan_desktop.models.settings import format_size

from .edge import encodes, not_utf8, unencodable
from .errors import detail_list

MB = 1024 * 1024
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
# Larger pictures are refused before decoding (decompression bombs).
# No Wan job uses more pixels than its largest frame (the engine's SIDE_MAX square): an image
# over that is refused before it is decoded. A JPEG is decoded at a reduced scale (its draft mode).
MAX_IMAGE_PIXELS = SIDE_MAX * SIDE_MAX
# Decoding is the memory-hungry part: at most this many uploads decode at once.
_DECODING = threading.BoundedSemaphore(2)
MULTIPART_SLACK = 1 * MB  # form fields and part headers beside the files
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class BodyTooLargeError(Exception):
    pass


def too_large(field: str, limit: int) -> HTTPException:
    # "Connection: close" makes the server drop the connection after answering, instead of
    # reading (and discarding) the rest of the oversized body.
    return HTTPException(
        422,
        detail=detail_list(
            {field: f"the upload is over {format_size(limit)}; send a smaller file"}
        ),
        headers={"Connection": "close"},
    )


async def read_form(request: Request, *, max_body: int, field: str) -> FormData:
    """The multipart form, refusing (422) a body over ``max_body`` without reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPException(400, detail="Content-Length is not a number") from None
        if declared > max_body:
            raise too_large(field, max_body - MULTIPART_SLACK)
    seen = 0
    receive = request.receive

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body:
                raise BodyTooLargeError
        return message

    limited_request = Request(request.scope, limited)
    try:
        form = await limited_request.form(max_files=4, max_fields=64)
    except BodyTooLargeError:
        raise too_large(field, max_body - MULTIPART_SLACK) from None
    except HTTPException:
        raise
    except Exception as exc:  # malformed multipart: the parser's own message says what
        raise HTTPException(
            422, detail=detail_list({"body": f"the form data could not be read ({exc})"})
        ) from None
    # A declared charset (unicode_escape, say) can decode to text no file or database can hold.
    for key, value in form.multi_items():
        text = value if isinstance(value, str) else getattr(value, "filename", None) or ""
        if unencodable([key, text]) is not None:
            raise HTTPException(422, detail=not_utf8(key if encodes(key) else "body").detail)
    return form


def file_size(upload: UploadFile) -> int:
    f = upload.file
    pos = f.tell()
    f.seek(0, 2)
    size = f.tell()
    f.seek(pos)
    return size


def sanitize_stem(name: str, default: str = "upload") -> str:
    stem = _SAFE.sub("_", Path(name).stem).strip("._-")[:60]
    return stem or default


def save_image(upload: Any, folder: Path, *, field: str, max_bytes: int) -> Path:
    """Check an uploaded image by decoding it; save it under ``folder`` with a fresh name."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(upload, UploadFile):
        raise HTTPException(422, detail=detail_list({field: "send the image as a file part"}))
    size = file_size(upload)
    if size == 0:
        raise HTTPException(422, detail=detail_list({field: "the image is empty"}))
    if size > max_bytes:
        raise HTTPException(
            422,
            detail=detail_list(
                {field: f"the image is {format_size(size)}; the limit is {format_size(max_bytes)}"}
            ),
        )
    bad = HTTPException(
        422,
        detail=detail_list(
            {field: "this is not a JPEG, PNG or WebP image that can be decoded; send one of those"}
        ),
    )
    try:
        upload.file.seek(0)
        with Image.open(upload.file) as img:
            fmt = img.format
            if fmt not in IMAGE_FORMATS:
                raise bad
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise HTTPException(
                    422,
                    detail=detail_list(
                        {
                            field: f"the image is {w}x{h}; a video frame is at most "
                            f"{SIDE_MAX}x{SIDE_MAX}: scale it down first"
                        }
                    ),
                )
            if fmt == "JPEG":
                img.draft("RGB", (w // 8 or 1, h // 8 or 1))  # 1/8 scale: every block still read
            with _DECODING:
                img.load()  # decode every pixel: a truncated or forged file fails here
    except HTTPException:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise bad from None
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{uuid.uuid4().hex}_{sanitize_stem(upload.filename or '')}{IMAGE_FORMATS[fmt]}"
    upload.file.seek(0)
    with atomic_path(dest) as tmp, tmp.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)
    return dest
