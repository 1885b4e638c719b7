"""How numbers read in the app: sizes, durations, speeds, job states and labels."""

from __future__ import annotations

import time

from wan_desktop.engine import Job, JobKind, JobState
from wan_desktop.models.settings import format_size


def size(n: float | None) -> str:
    """Bytes the way the whole app writes them (binary units, ``1.5 GiB``): see format_size."""
    return format_size(n)


def count(n: float) -> str:
    """A large count for people: 1.2 M, 3.4 k, 950."""
    for limit, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f} {unit}"
    return f"{n:.0f}"


def speed(bps: float | None) -> str:
    """A transfer or hashing rate; nothing at all when it is 0 or unknown."""
    return f"{size(bps)}/s" if bps and bps > 0 else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


CLOCK_SLACK_MS = 20


def clock(seconds: float | None, length: float | None = None) -> str:
    """A video's length, or a position in a video of ``length``, the way a player shows it:
    0:25, 1:05; tenths for a clip under 10 s (1.0 s). Always truncated, never rounded up (a
    25.5 s video is 0:25 on its card and in the player alike). Not for waits: see duration."""
    if seconds is None:
        return "—"
    # The same video's length from its frames and from its container can differ by a few ms
    # (time bases): within CLOCK_SLACK_MS of the next unit reads as it, so both say the same.
    ms = max(0, round(seconds * 1000) + CLOCK_SLACK_MS)
    span = seconds if length is None else length
    if round(span * 1000) + CLOCK_SLACK_MS < 10_000:
        return f"{ms // 100 / 10:.1f} s"
    m, s = divmod(ms // 1000, 60)
    return f"{m}:{s:02d}"


def ago(ts: float | None) -> str:
    if ts is None:
        return ""
    d = time.time() - ts
    if d < 60:
        return "just now"
    if d < 3600:
        return f"{int(d // 60)} min ago"
    if d < 86400:
        return f"{int(d // 3600)} h ago"
    return time.strftime("%d %b %Y", time.localtime(ts))


STATE_TEXT = {
    JobState.queued: ("Queued", "info"),
    JobState.preparing: ("Preparing", "accent"),
    JobState.loading: ("Loading model", "accent"),
    JobState.running: ("Generating", "accent"),
    JobState.encoding: ("Encoding", "accent"),
    JobState.completed: ("Done", "success"),
    JobState.failed: ("Failed", "danger"),
    JobState.cancelled: ("Cancelled", "warning"),
    JobState.interrupted: ("Interrupted", "warning"),
}


def state(job: Job) -> tuple[str, str]:
    return STATE_TEXT[job.state]


def label_badge(job: Job) -> str | None:
    """The short badge for a job that is not a real generation (mock, development variant)."""
    if job.mock:
        return "MOCK"
    if job.development:
        return "DEV · NOISE"
    if job.kind is JobKind.explainer and job.label:
        return "OFFLINE PLANNER"
    return None


def model_type(job: Job) -> str:
    if job.kind is JobKind.explainer:
        return "EXPLAINER"
    model = str(job.params.get("model") or job.model_id or "")
    # Manifest names are the API names in lower case at the front: t2v-A14B → T2V-A14B.
    return model.split("@", maxsplit=1)[0].upper()


def summary(job: Job) -> str:
    p = job.params
    parts = [model_type(job)]
    if job.kind is JobKind.explainer:
        parts.append(f"{p.get('quality', '?')} quality")
        # The pipeline's count (asked for, or the planner's once known), as the stages say it.
        scenes = (job.estimate or {}).get("scenes") or p.get("scene_count")
        if scenes:
            parts.append(f"{scenes} scenes")
        if p.get("enable_subtitles"):
            parts.append("subtitles burned in" if p.get("burn_subtitles") else "subtitles")
        return "  ·  ".join(parts)
    if p.get("width") and p.get("height"):
        parts.append(f"{p['width']}×{p['height']}")
    if p.get("frames"):
        parts.append(f"{p['frames']} frames")
    if p.get("steps"):
        parts.append(f"{p['steps']} steps")
    if p.get("seed") is not None:
        parts.append(f"seed {p['seed']}")
    return "  ·  ".join(parts)
