"""``wan generate``: make one video from the command line, with a progress bar.

It runs a private engine in this process (its own temporary job database, so it never takes jobs
from the app's queue), waits for the one job, and copies the MP4 and its JSON sidecar to
``--out``. Exit codes: 0 done, 1 the job failed (the error says why and what to do), 2 invalid
input (every bad field is named; also an image that turns out unreadable), 130 interrupted (the
job is cancelled first). The output place, images and size are checked before anything runs; a
video that still cannot be written to ``--out`` is kept in the outputs folder. Temporary folders
of killed runs are removed by the next run.

With ``--gpus N`` (N > 1) the job is split across N GPUs of this machine: it runs on a private
GPU pool (a local Ray instance, the pool extra) that the command's entry point hands over as
``args.split_engine``, since the engine never imports the pool.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from .params import CHOICES

NAME = "generate"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
SCHEMA = "wan.generate/1"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "generate",
        help="make one video with a Wan2.2 model (progress in the terminal)",
        description="Make one video. Runs the engine in this process; with --dev a tiny "
        "development model (random weights: the video is noise) instead of the real one.",
    )
    p.add_argument("--model", required=True, help="T2V-A14B, I2V-A14B, TI2V-5B (or a model id)")
    p.add_argument("--prompt", required=True, help="what to show (1–500 characters)")
    p.add_argument("--negative-prompt", help="what to avoid (default: the model's)")
    p.add_argument("--image", help="first frame (I2V-A14B requires one; TI2V-5B takes one)")
    p.add_argument("--end-image", help="last frame (I2V-A14B: first–last-frame video)")
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="FILE[:STRENGTH[:STRENGTH_2]]",
        help="a LoRA, strength 0–2 (default 1); STRENGTH_2 is the A14B low-noise expert's "
        "(default: the same). Repeat for several.",
    )
    p.add_argument("--seed", help="random seed (default: drawn at random and recorded)")
    p.add_argument("--steps", help="denoising steps (default: the model's)")
    p.add_argument("--frames", help="number of frames, 4k+1 (default: the model's)")
    p.add_argument("--fps", help="frames per second of the MP4 (default: the model's)")
    p.add_argument("--resolution", help="WIDTHxHEIGHT, rounded as the model needs")
    p.add_argument("--guidance-scale", help="classifier-free guidance (default: the model's)")
    p.add_argument("--flow-shift", help="the scheduler's flow shift (default: the model's)")
    p.add_argument(
        "--cache",
        metavar="LEVEL",
        help="step caching, speed against quality: "
        + ", ".join(CHOICES["cache"])
        + f" (default {CHOICES['cache'][0]}); stronger skips more transformer calls",
    )
    p.add_argument(
        "--preset",
        metavar="NAME",
        help="fast: the model's 4-step LoRAs (downloaded like a model) with the steps and "
        "guidance they were made for, over --steps and --guidance-scale (T2V-A14B, I2V-A14B)",
    )
    p.add_argument("--variant", help="model variant (default: full precision; tiny with --dev)")
    p.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument(
        "--gpus",
        help="split the job across N GPUs of this machine (Ulysses context parallelism, the "
        "pool extra); N must divide the model's attention heads and the video tokens",
    )
    p.add_argument("--out", required=True, type=Path, help="where to write the MP4 (F.mp4)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    # (settings, gpus) -> an engine whose jobs may use that many GPUs: set by ``wan``'s entry
    # point (wan_desktop/cli.py) to the pool's private local pool.
    p.set_defaults(split_engine=None)
    return p


TEMP_PREFIX = "wan-generate-"
# A run's temporary folder: wan-generate-<pid>-<random>, so a later run can tell it is stale.
_TEMP_NAME = re.compile(rf"^{TEMP_PREFIX}(\d+)-")
LEGACY_TEMP_AGE_S = 24 * 3600  # folders of older versions (no pid in the name)


def run(args: argparse.Namespace) -> int:
    out = _Output(json_mode=args.json)
    params, errors = _params(args)
    if errors:
        return out.invalid({**errors, **_validation_errors(params)})
    remove_stale_temp_dirs()
    try:
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
            return _generate(args, params, Path(tmp), out)
    except KeyboardInterrupt:  # before the job was submitted, or while the engine stopped
        out.err("interrupted")
        return EXIT_INTERRUPTED


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or a platform that cannot tell: keep it
    return True


def remove_stale_temp_dirs(root: Path | None = None) -> list[Path]:
    """Remove the temporary folders of killed ``wan generate`` runs (their pid is gone);
    returns what was removed. Folders of running processes are never touched."""
    root = Path(tempfile.gettempdir()) if root is None else root
    removed: list[Path] = []
    try:
        candidates = list(root.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    for folder in candidates:
        m = _TEMP_NAME.match(folder.name)
        try:
            if not folder.is_dir() or folder.is_symlink():
                continue
            if m:
                pid = int(m.group(1))
                if pid == os.getpid() or _pid_alive(pid):
                    continue
            elif time.time() - folder.stat().st_mtime < LEGACY_TEMP_AGE_S:
                continue
            shutil.rmtree(folder)
            removed.append(folder)
        except OSError:
            continue  # another run removing it at the same time, or not ours to remove
    return removed


def _validation_errors(params: dict[str, Any]) -> dict[str, str]:
    """What the engine would say about the rest, so one run names every bad field."""
    from wan_desktop.models import ModelError, ModelStore

    from .errors import InvalidInputError
    from .params import validate_wan_params

    try:
        store = ModelStore()
        validate_wan_params(params, store.manifest, dev_mode=store.config.dev_mode)
    except InvalidInputError as exc:
        return exc.errors
    except ModelError as exc:
        return {"model": exc.message}
    return {}


def _params(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    problem = _out_problem(args.out)
    if problem:
        errors["out"] = problem
    loras = []
    for i, text in enumerate(args.lora):
        try:
            loras.append(_lora(text))
        except ValueError as exc:
            errors[f"lora[{i}]"] = str(exc)
    params: dict[str, Any] = {
        "model": args.model,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "image": args.image,
        "end_image": args.end_image,
        "seed": args.seed,
        "steps": args.steps,
        "frames": args.frames,
        "fps": args.fps,
        "resolution": args.resolution,
        "guidance_scale": args.guidance_scale,
        "flow_shift": args.flow_shift,
        "variant": args.variant,
        "cache": args.cache,
        "preset": args.preset,
        "loras": loras,
        "gpus": args.gpus,
    }
    return {k: v for k, v in params.items() if v not in (None, [])}, errors


def _lora(text: str) -> dict[str, Any]:
    """FILE[:STRENGTH[:STRENGTH_2]]; a Windows drive letter (C:\\…) is part of the file."""
    drive = text[:2] if re.match(r"^[A-Za-z]:[\\/]", text) else ""
    path, *numbers = text[len(drive) :].split(":")
    if not path:
        raise ValueError(f"{text!r} names no file; write FILE or FILE:STRENGTH")
    try:
        strengths = [float(n) for n in numbers]
    except ValueError:
        raise ValueError(
            f"{text!r}: the strength must be a number, e.g. {drive}{path}:0.8"
        ) from None
    if len(strengths) > 2:
        raise ValueError(f"{text!r}: give at most two strengths, FILE:STRENGTH:STRENGTH_2")
    spec: dict[str, Any] = {"path": drive + path}
    if strengths:
        spec["strength"] = strengths[0]
    if len(strengths) > 1:
        spec["strength_2"] = strengths[1]
    return spec


def _generate(args: argparse.Namespace, params: dict[str, Any], tmp: Path, out: _Output) -> int:
    from .engine import Engine
    from .errors import EngineError, InvalidInputError
    from .events import Event, JobStateChanged
    from .jobs import JobKind, JobSpec, JobState
    from .settings import EngineSettings

    # The engine logs failures and skipped LoRAs for the app's log; here they reach the user
    # once, as our own messages.
    logging.getLogger("wan_desktop").addHandler(logging.NullHandler())
    overrides: dict[str, Any] = {
        "data_dir": tmp,
        "outputs_dir": tmp / "outputs",
        "mock": False,
        "idle_unload_s": 0.0,
        "memory_sample_s": 5.0,
    }
    if args.device:
        overrides["device"] = args.device
    started = time.monotonic()
    settings = EngineSettings.from_env(**overrides)
    if params.get("gpus") not in (None, "1"):
        # Every field is checked before a pool starts (that takes seconds).
        errors = _validation_errors(params)
        if errors:
            return out.invalid(errors)
    gpus = int(params.get("gpus") or 1)
    if gpus > 1 and args.split_engine is None:
        return out.failed(
            "engine_unavailable",
            f"--gpus {gpus} needs the GPU pool, which this program was started without",
            ("run it as wan generate", "use --gpus 1"),
        )
    try:
        engine = Engine(settings) if gpus <= 1 else args.split_engine(settings, gpus)
    except InvalidInputError as exc:
        return out.invalid(exc.errors)
    except EngineError as exc:
        return out.failed("engine_unavailable", str(exc), ("use --gpus 1",))
    with engine:
        done = threading.Event()
        bar = _Progress(out.stderr) if out.stderr.isatty() and not out.json_mode else None
        job_id: list[str] = []

        def on_event(event: Event) -> None:
            if bar is not None and job_id:
                bar.on_event(event, job_id[0])
            if (
                isinstance(event, JobStateChanged)
                and job_id
                and event.job.id == job_id[0]
                and event.job.finished
            ):
                done.set()

        sub = engine.subscribe(on_event, name="wan-generate")
        try:
            job = engine.submit(JobSpec(kind=JobKind.wan, params=params, client="cli"))
        except InvalidInputError as exc:
            sub.close()
            return out.invalid(exc.errors)
        except EngineError as exc:
            sub.close()
            return out.failed("engine_unavailable", str(exc), ())
        job_id.append(job.id)
        if bar is not None:
            bar.start(job)
        for w in job.warnings:  # known before it runs (it will not fit here…): said at once
            out.err(f"warning: {w}")
        out.said = set(job.warnings)
        try:
            while not done.wait(0.2):
                if engine.get(job.id).finished:  # the event may have raced the subscription
                    break
        except KeyboardInterrupt:
            engine.cancel(job.id)
            done.wait(60)
            if bar is not None:
                bar.finish()
            out.err("interrupted: the job was cancelled")
            return EXIT_INTERRUPTED
        finally:
            sub.close()
        if bar is not None:
            bar.finish()
        job = engine.get(job.id)
        if job.state is not JobState.completed or job.output is None:
            f = job.failure
            if f is None:
                return out.failed(str(job.state), f"the job ended {job.state}", ())
            return out.failed(str(f.category), f.message, f.suggestions)
        try:
            video = _copy(Path(job.output.video), args.out)
            sidecar = (
                _copy(Path(job.output.sidecar), args.out.with_suffix(".json"))
                if job.output.sidecar
                else None
            )
        except OSError as exc:
            src_sidecar = Path(job.output.sidecar) if job.output.sidecar else None
            kept = _keep(Path(job.output.video), src_sidecar)
            return out.failed(
                "storage_failed",
                f"the video was made but could not be written to {args.out} "
                f"({exc.strerror or exc}); it is kept at {kept}",
                (
                    f"copy it from {kept}",
                    "check the free space and permissions, or choose another --out",
                ),
            )
        return out.done(job, video, sidecar, time.monotonic() - started)


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _out_problem(out: Path) -> str | None:
    """Why the video could not be written to ``out``, found before anything runs (or None).

    The folder (or the nearest one that exists, where the rest will be created) is tried with a
    real file: permissions alone miss read-only and virtual filesystems (``/proc``)."""
    if out.suffix.lower() != ".mp4":
        return f"{out} must end in .mp4"
    if out.is_dir():
        return f"{out} is a folder; give a file name ending in .mp4"
    parent = _existing_parent(out)
    if not parent.is_dir():
        return f"{parent} is a file, not a folder; choose another place for the video"
    try:
        with tempfile.NamedTemporaryFile(prefix=".wan-write-check-", dir=parent):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot write to {parent} ({reason}); choose another place for the video"
    return None


def _keep(video: Path, sidecar: Path | None) -> Path:
    """Move a finished video (and its sidecar) out of the temporary folder into the outputs
    folder, or a kept temporary folder when that fails too; return where the video is now."""
    from .settings import EngineSettings

    for make in (
        lambda: EngineSettings.from_env().outputs_dir,
        lambda: Path(tempfile.mkdtemp(prefix="wan-generate-kept-")),
    ):
        try:
            folder = make()
            folder.mkdir(parents=True, exist_ok=True)
            kept = shutil.move(str(video), str(folder / video.name))
            if sidecar is not None and sidecar.exists():
                shutil.move(str(sidecar), str(folder / sidecar.name))
            return Path(kept)
        except OSError:
            continue
    return video


def _copy(src: Path, dest: Path) -> Path:
    from wan_desktop.models.atomic import atomic_path

    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


class _Output:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.stdout: TextIO = sys.stdout
        self.stderr: TextIO = sys.stderr
        self.said: set[str] = set()  # warnings already written to stderr

    def doc(self, **fields: Any) -> None:
        json.dump({"schema": SCHEMA, **fields}, self.stdout, indent=2, default=str)
        self.stdout.write("\n")

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def invalid(self, errors: dict[str, str]) -> int:
        if self.json_mode:
            self.doc(ok=False, error={"category": "invalid_input", "fields": errors})
        else:
            self.err("error [invalid_input]: " + "; ".join(errors))
            for name, message in errors.items():
                self.err(f"  {name}: {message}")
        return EXIT_INVALID

    def failed(self, category: str, message: str, suggestions: Any) -> int:
        if self.json_mode:
            self.doc(
                ok=False,
                error={"category": category, "message": message, "suggestions": list(suggestions)},
            )
        else:
            self.err(f"error [{category}]: {message}")
            for s in suggestions:
                self.err(f"  try: {s}")
        # An input the engine accepted but could not use (an unreadable image) is still the
        # caller's to fix.
        return EXIT_INVALID if category == "invalid_input" else EXIT_FAILED

    def done(self, job: Any, video: Path, sidecar: Path | None, seconds: float) -> int:
        o = job.output
        if self.json_mode:
            self.doc(
                ok=True,
                job_id=job.id,
                video=str(video),
                sidecar=str(sidecar) if sidecar else None,
                model_id=job.model_id,
                variant=job.variant,
                development=job.development,
                label=job.label,
                seed=job.params.get("seed"),
                width=o.width,
                height=o.height,
                frames=o.frames,
                fps=o.fps,
                duration_s=o.duration_s,
                seconds=round(seconds, 2),
                memory_strategy=job.memory_plan.get("strategy"),
                warnings=list(job.warnings),
            )
        else:
            self.stdout.write(
                f"wrote {video} ({o.width}x{o.height}, {o.frames} frames at {o.fps:g} fps) "
                f"in {seconds:.1f} s; seed {job.params.get('seed')}\n"
            )
            if job.development:
                self.stdout.write(f"note: {job.label}\n")
            for w in job.warnings:
                if w not in self.said:
                    self.err(f"warning: {w}")
        return EXIT_OK


class _Progress:
    """Stages on their own lines; steps as one self-rewriting bar with the ETA."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar_active = False
        self._lock = threading.Lock()

    def start(self, job: Any) -> None:
        label = f" [{job.label}]" if job.development else ""
        self._line(f"{job.model_id} ({job.variant}){label}")

    def on_event(self, event: Any, job_id: str) -> None:
        from .events import JobStage, JobStep, JobWarning, ModelDownload

        if getattr(event, "job_id", None) != job_id:
            return
        if isinstance(event, JobStage):
            message = f": {event.message}" if event.message else ""
            self._line(f"{event.stage.replace('_', ' ')}{message}")
        elif isinstance(event, JobStep):
            frac = event.step / max(1, event.total_steps)
            filled = int(frac * self.WIDTH)
            eta = "" if event.eta_s is None else f" ETA {_clock(event.eta_s)}"
            expert = f" {event.expert.replace('_', '-')}" if event.expert else ""
            self._bar(
                f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] step {event.step}/"
                f"{event.total_steps} {event.step_time_s:.2f} s/step{expert}{eta}"
            )
        elif isinstance(event, ModelDownload):
            p = event.progress
            pct = "" if p.fraction is None else f" {p.fraction:.0%}"
            self._bar(f"downloading {p.model_id}{pct}")
        elif isinstance(event, JobWarning):
            self._line(f"warning: {event.message}")

    def _line(self, text: str) -> None:
        with self._lock:
            if self.bar_active:
                self.stream.write("\n")
                self.bar_active = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def _bar(self, text: str) -> None:
        cols = shutil.get_terminal_size((100, 20)).columns
        with self._lock:
            self.stream.write("\r" + text[: cols - 1].ljust(cols - 1))
            self.stream.flush()
            self.bar_active = True

    def finish(self) -> None:
        with self._lock:
            if self.bar_active:
                self.stream.write("\n")
                self.stream.flush()
                self.bar_active = False


def _clock(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


__all__ = ["NAME", "add_parser", "run"]
