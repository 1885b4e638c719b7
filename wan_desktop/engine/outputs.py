"""Where outputs go, and how frames become an MP4, a thumbnail and a sidecar.

Layout under the outputs folder: ``<job_id>.mp4``, ``<job_id>.json`` (everything needed to
reproduce the video) and ``thumbnails/<job_id>.jpg``. Files are written under a temporary name and
renamed into place, so a half-written video never appears.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wan_desktop.models.atomic import atomic_path
from wan_desktop.models.settings import format_size

from .errors import JobFailedError
from .failures import STORAGE_FULL_SUGGESTIONS
from .jobs import FailureCategory

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
THUMB_WIDTH = 320
CRF = 18  # visually lossless for generated video; sizes stay small
MB = 1024 * 1024
# What a generated video takes at CRF 18 (measured 0.1-0.2 bytes per pixel of every frame), and
# room for the thumbnail, the sidecar and the encoder's own buffers on top.
EXPECTED_BYTES_PER_PIXEL = 0.25
SPACE_MARGIN_BYTES = 4 * MB


def expected_video_bytes(width: int, height: int, frames: int) -> int:
    """About what a video of this size takes on disk (used to check free space before a job)."""
    return int(width * height * frames * EXPECTED_BYTES_PER_PIXEL)


@dataclass(frozen=True)
class OutputPaths:
    video: Path
    thumbnail: Path
    sidecar: Path
    subtitles: Path


class OutputStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self, job_id: str) -> OutputPaths:
        if not JOB_ID_RE.match(job_id):
            # Job ids come from the engine; anything else must not become a path.
            raise ValueError(f"invalid job id {job_id!r}")
        return OutputPaths(
            video=self.root / f"{job_id}.mp4",
            thumbnail=self.root / "thumbnails" / f"{job_id}.jpg",
            sidecar=self.root / f"{job_id}.json",
            subtitles=self.root / f"{job_id}.srt",
        )

    def check_space(self, need_bytes: int) -> None:
        """Fail now (storage_full) when the outputs folder cannot take a video of this size."""
        if need_bytes <= 0:
            return
        folder = self.root
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        need = need_bytes + SPACE_MARGIN_BYTES
        if free < need:
            raise JobFailedError(
                FailureCategory.storage_full,
                f"the outputs folder is full: {format_size(free)} free, and this video needs "
                f"about {format_size(need)}",
                STORAGE_FULL_SUGGESTIONS,
                detail=f"free {free} bytes, needed {need} bytes, checked before the job ran",
            )

    def delete(self, job_id: str) -> int:
        freed = 0
        p = self.paths(job_id)
        for path in (p.video, p.thumbnail, p.sidecar, p.subtitles):
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        return freed


def frames_to_uint8(frames: Any) -> Any:
    """Float frames in [0, 1] (F, H, W, C) to uint8, the way diffusers' export does it."""
    import numpy as np

    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)


class EncodeError(OSError):
    """The encoder stopped; ``errno`` is ENOSPC when the disk was full. Says no command line."""


def write_mp4(frames: Any, dest: Path, fps: float) -> None:
    """H.264, yuv420p, faststart. ``frames``: uint8 or [0, 1] floats shaped (F, H, W, 3).

    ffmpeg runs with its exit code and messages checked: a full disk or a crash raises
    EncodeError and leaves no file behind (a half-written MP4 is never renamed into place).
    """
    import imageio_ffmpeg
    import numpy as np

    video = frames_to_uint8(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be (frames, height, width, 3), got {video.shape}")
    # yuv420p needs even sides: pad by repeating the last row/column rather than rescaling.
    h, w = video.shape[1:3]
    if h % 2 or w % 2:
        video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = video.shape[1:3]
    with atomic_path(dest) as tmp:
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-vcodec",
            "rawvideo",
            "-s",
            f"{w}x{h}",
            "-pix_fmt",
            "rgb24",
            "-r",
            f"{fps:.02f}",
            "-i",
            "-",
            "-an",
            "-vcodec",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            str(CRF),
            "-movflags",
            "+faststart",
            "-preset",
            "medium",
            str(tmp),
        ]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stderr is not None
        errors: list[bytes] = []
        # Drained beside the writes, so that a chatty ffmpeg never blocks on a full pipe.
        reader = threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)
        reader.start()
        try:
            for frame in video:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped: its exit code and messages say why
        finally:
            code = proc.wait()
            reader.join()
        if code != 0:
            raise _encode_error(b"".join(errors).decode("utf-8", "replace"), code, tmp)


def _drain(stream: IO[bytes], into: list[bytes], keep: int = 64 * 1024) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(4096), b""):
        into.append(chunk)
        size += len(chunk)
        while size > keep and len(into) > 1:
            size -= len(into.pop(0))
    stream.close()


def _encode_error(stderr: str, code: int, tmp: Path) -> EncodeError:
    full = "No space left on device" in stderr or "-28" in stderr
    lines = [ln.strip() for ln in stderr.replace(str(tmp), tmp.name).splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {code}"
    last = last if len(last) <= 200 else last[:199] + "…"
    if full:
        return EncodeError(errno.ENOSPC, f"the disk is full: the encoder stopped ({last})")
    return EncodeError(errno.EIO, f"the encoder stopped with exit code {code} ({last})")


def read_mp4(path: Path) -> Any:
    """Decode every frame to uint8 RGB (F, H, W, 3)."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    return np.stack(frames)


def write_thumbnail(frame: Any, dest: Path, *, width: int = THUMB_WIDTH) -> None:
    from PIL import Image

    img = Image.fromarray(frames_to_uint8(frame))
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
    with atomic_path(dest) as tmp:
        img.save(tmp, format="JPEG", quality=88)


def write_json(data: Mapping[str, Any], dest: Path) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), "utf-8")


def jpeg_bytes(frame: Any, *, width: int = 256) -> tuple[bytes, int, int]:
    """A small JPEG of one RGB frame, for previews."""
    import io

    from PIL import Image

    img = Image.fromarray(frames_to_uint8(frame))
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue(), img.width, img.height


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in (
        "wan-desktop",
        "torch",
        "diffusers",
        "transformers",
        "accelerate",
        "peft",
        "imageio-ffmpeg",
        "numpy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out
