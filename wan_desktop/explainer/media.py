"""Joining scene videos (PyAV, no system ffmpeg), subtitles (SRT, optional burn-in), thumbnails.

Scenes rendered with one quality preset share codec, size and frame rate, so joining them is a
remux: packets are copied, nothing is re-encoded. Burning subtitles in decodes, draws and encodes
once (libx264, or NVENC when GPU acceleration is on and the encoder works).
"""

from __future__ import annotations

import io
import logging
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from wan_desktop.engine.outputs import write_thumbnail
from wan_desktop.models.atomic import atomic_path

log = logging.getLogger("wan_desktop.explainer.media")

CUE_CHARS = 84  # two lines of 42
LINE_CHARS = 42
MIN_CUE_S = 1.0
CRF = "20"


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    frames: int
    fps: float
    width: int
    height: int
    size_bytes: int
    encoder: str  # "copy" (remux) or the encoder used


# ------------------------------------------------------------------------------- subtitles


def cues_for(narrations: Sequence[str], durations: Sequence[float]) -> list[Cue]:
    """Each scene's narration spread over its time, in chunks a viewer can read."""
    cues: list[Cue] = []
    t = 0.0
    for text, length in zip(narrations, durations, strict=True):
        chunks = _chunks(text, max(1, int(length // MIN_CUE_S)))
        total = sum(len(c) for c in chunks) or 1
        start = t
        for i, chunk in enumerate(chunks):
            end = t + length if i == len(chunks) - 1 else start + length * len(chunk) / total
            cues.append(Cue(round(start, 3), round(end, 3), chunk))
            start = end
        t += length
    return cues


def _chunks(text: str, most: int) -> list[str]:
    """Whole sentences, at most two subtitle lines a piece, at most ``most`` pieces.

    A cue ends where a sentence ends; only a sentence too long for one cue is cut, at a clause
    boundary (a comma, semicolon, colon or dash), and only a clause too long for one cue between
    two words. Never inside a word. Short sentences share a cue while they fit in it.
    """
    words = " ".join(text.split())
    if not words:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(words):
        pieces += _fit(sentence, _CLAUSE_END) if len(sentence) > CUE_CHARS else [sentence]
    cues = _pack(pieces, CUE_CHARS, joinable=lambda a: a.endswith(_STOPS))
    while len(cues) > most:  # too many to read in the time: join the shortest neighbours
        i = min(range(len(cues) - 1), key=lambda k: len(cues[k]) + len(cues[k + 1]))
        cues[i : i + 2] = [f"{cues[i]} {cues[i + 1]}"]
    return cues


_STOPS = (".", "!", "?", "…", '."', '?"', '!"')
_SENTENCE_END = re.compile(r"""(?:(?<=[.!?…])|(?<=[.!?…]["')\]]))\s+""")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|\s+(?=[—–-]\s)")


def _fit(sentence: str, boundary: re.Pattern[str]) -> list[str]:
    """A long sentence in pieces of at most CUE_CHARS: at clauses, else between words."""
    clauses = boundary.split(sentence)
    out: list[str] = []
    for clause in _pack(clauses, CUE_CHARS):
        if len(clause) <= CUE_CHARS:
            out.append(clause)
        else:
            out += textwrap.wrap(clause, CUE_CHARS, break_long_words=False) or [clause]
    return out


def _pack(
    pieces: list[str], width: int, joinable: Callable[[str], bool] | None = None
) -> list[str]:
    """Neighbouring pieces joined while they fit in ``width`` (and ``joinable`` allows)."""
    out: list[str] = []
    for piece in pieces:
        fits = out and len(out[-1]) + 1 + len(piece) <= width
        if fits and (joinable is None or joinable(out[-1])):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def srt_text(cues: Sequence[Cue]) -> str:
    blocks = []
    for i, cue in enumerate(cues, 1):
        lines = "\n".join(textwrap.wrap(cue.text, LINE_CHARS)) or cue.text
        blocks.append(f"{i}\n{_stamp(cue.start_s)} --> {_stamp(cue.end_s)}\n{lines}\n")
    return "\n".join(blocks)


def _stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(cues: Sequence[Cue], dest: Path) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(srt_text(cues), "utf-8")


_TIMING = re.compile(
    r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{3})"
)


def parse_subtitles(text: str) -> list[Cue]:
    """The cues of an SRT or WebVTT text, in time order; blocks without a timing are skipped."""
    cues: list[Cue] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        at = next((i for i, line in enumerate(lines) if _TIMING.search(line)), None)
        if at is None:
            continue  # the WEBVTT header, a NOTE or STYLE block, a damaged block
        m = _TIMING.search(lines[at])
        assert m is not None
        g = [int(v) if v else 0 for v in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        body = " ".join(line.strip() for line in lines[at + 1 :] if line.strip())
        body = re.sub(r"<[^>]+>", "", body)  # WebVTT voice and style tags
        if body and end > start:
            cues.append(Cue(round(start, 3), round(end, 3), body))
    return sorted(cues, key=lambda c: c.start_s)


def cue_at(cues: Sequence[Cue], t: float) -> Cue | None:
    return next((c for c in cues if c.start_s <= t < c.end_s), None)


# -------------------------------------------------------------------------------- joining


def _concat_input(files: Sequence[Path]) -> Any:
    import av

    manifest = "".join(f"file 'file:{p.resolve().as_posix()}'\n" for p in files)
    return av.open(io.BytesIO(manifest.encode()), format="concat", options={"safe": "0", "an": "1"})


def combine(
    scenes: Sequence[Path],
    dest: Path,
    *,
    burn_in: Sequence[Cue] = (),
    gpu: bool = False,
) -> VideoInfo:
    """Join scene videos into ``dest`` (atomically); burn ``burn_in`` cues into the picture."""
    import av

    if not scenes:
        raise ValueError("no scenes to combine")
    with atomic_path(dest) as tmp:
        src = _concat_input(scenes)
        try:
            stream = src.streams.video[0]
            out = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
            try:
                if burn_in:
                    encoder = _encode_with_cues(src, stream, out, burn_in, gpu)
                else:
                    encoder = "copy"
                    ostream = out.add_stream_from_template(template=stream)
                    for packet in src.demux(stream):
                        if packet.dts is None:
                            continue
                        packet.dts = None  # consecutive files restart their clocks
                        packet.stream = ostream
                        out.mux(packet)
            finally:
                out.close()
        finally:
            src.close()
    info = probe(dest)
    return VideoInfo(
        info.duration_s, info.frames, info.fps, info.width, info.height, info.size_bytes, encoder
    )


def _encode_with_cues(src: Any, stream: Any, out: Any, cues: Sequence[Cue], gpu: bool) -> str:
    import av

    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    encoder = pick_encoder(gpu)
    ostream = out.add_stream(encoder, rate=rate)
    ostream.width = stream.codec_context.width
    ostream.height = stream.codec_context.height
    ostream.pix_fmt = "yuv420p"
    if encoder == "libx264":
        ostream.options = {"crf": CRF, "preset": "veryfast"}
    drawer = _CueDrawer(cues, ostream.width, ostream.height)
    for n, frame in enumerate(src.decode(stream)):
        t = n / float(rate)
        image = drawer.draw(frame.to_image(), t)
        new = av.VideoFrame.from_image(image).reformat(format="yuv420p")
        new.pts = n
        new.time_base = Fraction(1) / rate
        for packet in ostream.encode(new):
            out.mux(packet)
    for packet in ostream.encode():
        out.mux(packet)
    return str(encoder)


def pick_encoder(gpu: bool) -> str:
    """NVENC when asked for and usable here, else libx264."""
    if gpu:
        import av

        try:
            av.codec.Codec("h264_nvenc", "w")
            ctx = av.codec.CodecContext.create("h264_nvenc", "w")
            ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
            ctx.time_base = Fraction(1, 30)
            ctx.open()
            return "h264_nvenc"
        except Exception as exc:  # no encoder built in, or no NVIDIA GPU/driver
            log.info("NVENC not usable (%s); encoding on the CPU", exc)
    return "libx264"


class _CueDrawer:
    def __init__(self, cues: Sequence[Cue], width: int, height: int) -> None:
        from PIL import ImageFont

        self.cues = list(cues)
        self.size = max(12, height // 22)
        try:
            self.font: Any = ImageFont.truetype("DejaVuSans.ttf", self.size)
        except OSError:
            self.font = ImageFont.load_default(self.size)
        self.width, self.height = width, height

    def draw(self, image: Any, t: float) -> Any:
        from PIL import ImageDraw

        cue = cue_at(self.cues, t)
        if cue is None:
            return image
        text = "\n".join(textwrap.wrap(cue.text, LINE_CHARS))
        draw = ImageDraw.Draw(image)
        box = draw.multiline_textbbox((0, 0), text, font=self.font, align="center")
        w, h = box[2] - box[0], box[3] - box[1]
        x, y = (self.width - w) // 2, self.height - h - self.size
        pad = self.size // 3
        draw.rectangle((x - pad, y - pad, x + w + pad, y + h + pad), fill=(0, 0, 0))
        draw.multiline_text((x, y - box[1]), text, font=self.font, fill=(255, 255, 255),
                            align="center")  # fmt: skip
        return image


# ------------------------------------------------------------------------- probing, frames


def probe(path: Path) -> VideoInfo:
    """Size, frame rate and exact frame count (packets are counted, nothing is decoded)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or Fraction(30)
        frames = sum(1 for p in c.demux(s) if p.size)
        return VideoInfo(
            duration_s=frames / float(rate),
            frames=frames,
            fps=float(rate),
            width=s.codec_context.width,
            height=s.codec_context.height,
            size_bytes=path.stat().st_size,
            encoder="",
        )


def last_frame(path: Path) -> Any:
    """The last frame of a video as an RGB array (for the thumbnail)."""
    import av

    frame = None
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):  # noqa: B007 - we want the last one
            pass
    if frame is None:
        raise ValueError(f"{path.name} has no frames")
    return frame.to_ndarray(format="rgb24")


def save_thumbnail(video: Path, dest: Path) -> None:
    write_thumbnail(last_frame(video), dest)
