"""``wan explain "topic" --context … --out F.mp4``: one explainer video, made in this process.

An engine runs here on a private, temporary jobs database (so it never picks up the app's queued
jobs) and the finished files are copied next to ``--out``: the MP4, its ``.srt`` subtitles, its
``.jpg`` thumbnail and its ``.json`` metadata. Progress goes to stderr (one line per stage, or a
live line on a terminal); ``--json`` prints one ``wan.explain/1`` document on stdout.
Exit codes: 0 done, 1 the job failed, 2 bad input, 130 interrupted (the job is cancelled).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

NAME = "explain"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
QUALITIES = ("low", "medium", "high", "ultra")
STORAGE_MODES = ("local_only", "s3_only", "local_and_s3")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="make an explainer video (planned Manim scenes with subtitles)",
        description="Make a short explainer video: the topic and context become 3–7 planned "
        "Manim scenes, rendered in a sandbox and joined into one MP4 with subtitles. Uses the "
        "language model of LLM_BASE_URL/PLANNER_MODEL when set, else the offline planner.",
    )
    p.add_argument("topic", help="what the video explains (1–500 characters)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--context", help="what to say about it (1–2000 characters)")
    src.add_argument(
        "--context-file", type=Path, metavar="FILE", help="read the context from FILE (- = stdin)"
    )
    p.add_argument("--quality", choices=QUALITIES, help="render preset (default: DEFAULT_QUALITY)")
    p.add_argument("--out", type=Path, help="where to put the MP4 (default: ./<topic>.mp4)")
    p.add_argument("--scenes", type=int, metavar="N", help="number of scenes, 3–7")
    p.add_argument("--model", help="chat model name, or 'template' for the offline planner")
    p.add_argument("--rag", action=argparse.BooleanOptionalAction, help="Manim notes in prompts")
    p.add_argument("--no-subtitles", action="store_true", help="no .srt file")
    p.add_argument("--burn-subtitles", action="store_true", help="draw subtitles into the video")
    p.add_argument("--no-thumbnail", action="store_true", help="no .jpg thumbnail")
    p.add_argument("--storage", choices=STORAGE_MODES, help="also (or only) keep it in S3")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        context = _context(args)
    except OSError as exc:
        return _fail(args, "INVALID_INPUT", f"cannot read the context: {exc}", "check the path")
    params: dict[str, Any] = {"topic": args.topic, "context": context}
    for key, value in (
        ("quality", args.quality),
        ("scene_count", args.scenes),
        ("model", args.model),
        ("use_rag", args.rag),
        ("storage_mode", args.storage),
    ):
        if value is not None:
            params[key] = value
    params["enable_subtitles"] = not args.no_subtitles
    params["burn_subtitles"] = args.burn_subtitles
    params["enable_thumbnails"] = not args.no_thumbnail
    out = args.out or Path.cwd() / f"{_slug(args.topic)}.mp4"
    if out.suffix.lower() != ".mp4":
        return _fail(args, "INVALID_INPUT", f"--out {out} must end in .mp4", "name it F.mp4")
    with tempfile.TemporaryDirectory(prefix="wan-explain-") as tmp:
        return _make(args, params, out, Path(tmp))


def _context(args: argparse.Namespace) -> str:
    if args.context is not None:
        return str(args.context)
    if str(args.context_file) == "-":
        return sys.stdin.read()
    return Path(args.context_file).read_text("utf-8")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-")
    return slug or "explainer"


def _make(args: argparse.Namespace, params: dict[str, Any], out: Path, tmp: Path) -> int:
    from wan_desktop.engine import (
        Engine,
        EngineError,
        EngineSettings,
        InvalidInputError,
        JobKind,
        JobSpec,
        JobState,
        JobStateChanged,
    )

    settings = EngineSettings.from_env(data_dir=tmp, outputs_dir=tmp / "outputs", mock=False)
    try:
        # Started once we listen: a quick first stage must not run before the subscription.
        engine = Engine(settings, start=False)
    except ValueError as exc:  # a bad setting in the environment
        return _fail(args, "INVALID_SETTING", str(exc), "fix or unset that variable")
    progress = _Progress(sys.stderr)
    finished = threading.Event()
    try:
        try:
            job = engine.submit(JobSpec(kind=JobKind.explainer, params=params, client="cli"))
        except InvalidInputError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            return _fail(args, "INVALID_INPUT", details, "fix the options named", exc.errors)
        except ValueError as exc:
            return _fail(args, "INVALID_SETTING", str(exc), "fix or unset that variable")
        except EngineError as exc:
            return _fail(
                args,
                "UNAVAILABLE",
                str(exc),
                "fix the setting named, or install the explainer extra",
            )

        def on_event(event: Any) -> None:
            if getattr(event, "job_id", None) == job.id or (
                isinstance(event, JobStateChanged) and event.job.id == job.id
            ):
                progress.show(event)
                if isinstance(event, JobStateChanged) and event.job.finished:
                    finished.set()

        sub = engine.subscribe(on_event, name="wan-explain")
        engine.start()
        if job.label:
            progress.note(job.label)
        try:
            while not finished.wait(0.2):
                if engine.get(job.id).finished:
                    break
        except KeyboardInterrupt:
            engine.cancel(job.id)
            progress.note("interrupted: cancelling the job")
            while not engine.get(job.id).finished:
                finished.wait(0.2)
            return EXIT_INTERRUPTED
        finally:
            sub.close()
            progress.end()
        done = engine.get(job.id)
        if done.state is not JobState.completed or done.output is None:
            f = done.failure
            return _fail(
                args,
                (f.code or str(f.category)) if f else str(done.state),
                f.message if f else f"the job ended {done.state}",
                "; ".join(f.suggestions) if f else "",
                {"stage": f.stage if f else done.stage, "job_id": done.id},
            )
        files = _copy_out(done.output, out)
        doc = {
            "schema": "wan.explain/1",
            "ok": True,
            "job_id": done.id,
            "topic": params["topic"],
            "label": done.label,
            "files": files,
            "duration_s": done.output.duration_s,
            "width": done.output.width,
            "height": done.output.height,
            "fps": done.output.fps,
            "size_bytes": done.output.size_bytes,
            "urls": dict(done.output.urls),
            "stages_completed": list(done.stages_completed),
            "warnings": list(done.warnings),
            "seconds": round((done.finished_at or 0) - (done.started_at or 0), 2),
        }
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            print(f"{files.get('video') or done.output.video}")
            for name in ("subtitles", "thumbnail", "metadata"):
                if files.get(name):
                    print(f"  {name}: {files[name]}")
            for url in done.output.urls.values():
                print(f"  stored: {url}")
        return EXIT_OK
    finally:
        engine.shutdown()


def _copy_out(output: Any, out: Path) -> dict[str, str]:
    """Copy the local files next to ``out``; S3-only outputs have none."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, src, suffix in (
        ("video", output.video, ".mp4"),
        ("subtitles", output.subtitles, ".srt"),
        ("thumbnail", output.thumbnail, ".jpg"),
        ("metadata", output.sidecar, ".json"),
    ):
        if src and Path(src).is_file():
            dest = out.with_suffix(suffix)
            shutil.copyfile(src, dest)
            files[name] = str(dest.resolve())
    return files


def _fail(args: argparse.Namespace, code: str, message: str, fix: str, details: Any = None) -> int:
    status = EXIT_USAGE if code in ("INVALID_INPUT", "INVALID_SETTING") else EXIT_FAILED
    if args.json:
        doc = {
            "schema": "wan.error/1",
            "ok": False,
            "error": {"code": code, "message": message, "fix": fix, "details": details},
        }
        print(json.dumps(doc, indent=2))
    print(f"error [{code}]: {message}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)
    return status


class _Progress:
    """Stage lines on stderr; one live line when stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._lock = threading.Lock()
        self._stage = ""
        self._open = False

    def show(self, event: Any) -> None:
        from wan_desktop.engine import JobLog, JobStage, JobStep, JobWarning

        with self._lock:
            if isinstance(event, JobStage):
                self._stage = event.stage
                text = f"[{event.progress * 100:3.0f}%] {event.stage}"
                self._line(f"{text}: {event.message}" if event.message else text, keep=True)
            elif isinstance(event, JobStep) and self.live:
                eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
                self._line(
                    f"[{event.progress * 100:3.0f}%] {self._stage} {event.step}/"
                    f"{event.total_steps}{eta}",
                    keep=False,
                )
            elif isinstance(event, JobWarning):
                self._line(f"warning: {event.message}", keep=True)
            elif isinstance(event, JobLog) and event.level == "error":
                self._line(event.message.splitlines()[0], keep=True)

    def note(self, text: str) -> None:
        with self._lock:
            self._line(text, keep=True)

    def _line(self, text: str, *, keep: bool) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if keep else ""))
            self._open = not keep
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        with self._lock:
            if self._open:
                self.stream.write("\n")
                self.stream.flush()
                self._open = False
