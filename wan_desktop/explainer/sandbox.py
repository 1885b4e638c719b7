"""Render generated scene code in a separate, locked-down process.

Layers, from outside in:
- the code is checked statically before anything runs (``codecheck.py``);
- an OS sandbox: bubblewrap (no network, the whole filesystem read-only except the scene folder,
  home and data folders hidden) or ``unshare -rn`` (no network); with neither, a plain child
  process and a visible warning;
- a minimal environment, its own folder as home and temp, a new session (process group) that is
  killed as a whole on timeout or cancel;
- inside: resource limits, an audit hook and reduced builtins (``sandbox_runner.py``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from wan_desktop.models.cancel import CancelToken

from . import sandbox_runner
from .settings import SandboxMode

log = logging.getLogger("wan_desktop.explainer.sandbox")

RUNNER = Path(sandbox_runner.__file__).resolve()
LOG_TAIL_CHARS = 4000
POLL_S = 0.1
FILE_LIMIT_MB = 4096
CPU_MARGIN = 2.0  # CPU seconds per wall second on top of the timeout: rlimits are a backstop
PROCESS_WARNING = (
    "generated code runs without an OS sandbox (neither bubblewrap nor unshare works here): only "
    "the in-process guards stand between it and your files and network. Install bubblewrap "
    "(apt-get install bubblewrap) and allow user namespaces"
)


_BWRAP_DESCRIPTION = "bubblewrap: no network, read-only filesystem except the scene folder"
_UNSHARE_DESCRIPTION = "unshare: no network; file writes are guarded in-process"


@dataclass(frozen=True)
class Isolation:
    mode: SandboxMode
    description: str
    warning: str | None = None


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int
    file_mb: int = FILE_LIMIT_MB


@dataclass(frozen=True)
class RenderOutcome:
    ok: bool
    kind: str  # ok, exception, blocked, memory, timeout, crash, setup, cancelled
    error: str = ""
    traceback: str = ""
    video: Path | None = None
    duration_s: float | None = None
    seconds: float = 0.0  # wall time of the process
    log_tail: str = ""
    isolation: SandboxMode = SandboxMode.process

    @property
    def feedback(self) -> str:
        """What a model needs to fix its code."""
        parts = [self.error]
        if self.traceback and self.traceback not in self.error:
            parts.append(self.traceback)
        return "\n".join(p for p in parts if p).strip()


# ------------------------------------------------------------------------------- isolation


def _bwrap_args(scene_dir: Path, hidden: tuple[Path, ...]) -> list[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    keep = _python_paths()
    # /tmp is always replaced by an empty one; an app installed under it still needs its Python.
    for path in (Path("/tmp"), *hidden):
        if path.is_dir():
            args += ["--tmpfs", str(path)]
            # Put back (read-only) what Python needs from under a hidden folder.
            for needed in keep:
                if needed.is_relative_to(path) and needed != path:
                    args += ["--ro-bind", str(needed), str(needed)]
    args += ["--bind", str(scene_dir), str(scene_dir)]
    args += ["--unshare-all", "--die-with-parent", "--new-session", "--chdir", str(scene_dir)]
    return [*args, "--"]


def _unshare_args() -> list[str]:
    unshare = shutil.which("unshare")
    assert unshare is not None
    return [unshare, "--net", "--map-root-user", "--"]


@functools.cache
def _python_paths() -> tuple[Path, ...]:
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), RUNNER.parent}
    paths |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return tuple(sorted(p.resolve() for p in paths))


def _probe(prefix: list[str]) -> str | None:
    """None if a trivial command runs under this prefix; else why not."""
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", "pass"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


@functools.cache
def detect_isolation(requested: SandboxMode = SandboxMode.auto) -> Isolation:
    """The strongest isolation that works on this machine (probed once per process)."""
    reasons: list[str] = []
    candidates = (
        (SandboxMode.bwrap, "bwrap", "bubblewrap", _BWRAP_DESCRIPTION),
        (SandboxMode.unshare, "unshare", "unshare -rn (util-linux)", _UNSHARE_DESCRIPTION),
    )
    for mode, command, name, description in candidates:
        if requested not in (SandboxMode.auto, mode):
            continue
        if shutil.which(command) is None:
            reasons.append(f"{name} is not installed")
        else:
            with tempfile.TemporaryDirectory(prefix="wan-probe-") as tmp:
                prefix = _bwrap_args(Path(tmp), ()) if mode is SandboxMode.bwrap else None
                why = _probe(prefix or _unshare_args())
            if why is None:
                return Isolation(mode, description)
            reasons.append(f"{name} does not work here ({why})")
        if requested is mode:
            raise RuntimeError(f"EXPLAINER_SANDBOX={mode} but {reasons[-1]}; use auto")
    why = "; ".join(reasons)
    return Isolation(
        SandboxMode.process,
        "a plain child process with in-process guards",
        warning=PROCESS_WARNING + (f" ({why})" if why and requested is SandboxMode.auto else ""),
    )


def minimal_env(scene_dir: Path) -> dict[str, str]:
    tmp = scene_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scene_dir),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "XDG_CACHE_HOME": str(scene_dir / "cache"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # One thread each: renders run side by side, and threads reserve address space.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# ------------------------------------------------------------------------------------ render


class SceneSandbox:
    """Runs the renderer for one scene at a time per call; calls may run in parallel threads."""

    def __init__(
        self,
        isolation: Isolation,
        limits: Limits,
        *,
        hidden: tuple[Path, ...] = (),
        python: str = sys.executable,
    ) -> None:
        self.isolation = isolation
        self.limits = limits
        self.hidden = hidden  # folders the code must not see (home, the app's data)
        self.python = python

    def render(
        self,
        code: str,
        class_name: str,
        scene_dir: Path,
        *,
        quality: str,
        cancel: CancelToken | None = None,
    ) -> RenderOutcome:
        """Run ``code`` (already checked) and render ``class_name`` into ``scene_dir``."""
        if cancel is not None and cancel.cancelled:
            return RenderOutcome(False, "cancelled", "cancelled", isolation=self.isolation.mode)
        scene_dir = scene_dir.resolve()
        scene_dir.mkdir(parents=True, exist_ok=True)
        code_path = scene_dir / "scene.py"
        code_path.write_text(code, "utf-8")
        result_path = scene_dir / "result.json"
        result_path.unlink(missing_ok=True)
        request = {
            "scene_dir": str(scene_dir),
            "code_path": str(code_path),
            "class_name": class_name,
            "quality": quality,
            "result_path": str(result_path),
            "limits": {
                "memory_mb": self.limits.memory_mb,
                "cpu_s": int(self.limits.timeout_s * CPU_MARGIN) + 5,
                "file_mb": self.limits.file_mb,
            },
        }
        request_path = scene_dir / "request.json"
        request_path.write_text(json.dumps(request), "utf-8")
        argv = [*self._prefix(scene_dir), self.python, "-I", str(RUNNER), str(request_path)]
        log_path = scene_dir / "render.log"
        t0 = time.monotonic()
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=scene_dir,
                env=minimal_env(scene_dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
            stopped = self._wait(proc, t0, cancel)
        seconds = time.monotonic() - t0
        tail = _tail(log_path)
        mode = self.isolation.mode
        if stopped == "timeout":
            return RenderOutcome(
                False,
                "timeout",
                f"the scene did not finish within {self.limits.timeout_s:.0f} s and was stopped; "
                "make it shorter or simpler (no endless loops)",
                seconds=seconds,
                log_tail=tail,
                isolation=mode,
            )
        if stopped == "cancelled":
            return RenderOutcome(
                False, "cancelled", "cancelled", seconds=seconds, log_tail=tail, isolation=mode
            )
        try:
            result = json.loads(result_path.read_text("utf-8"))
        except (OSError, ValueError):
            return RenderOutcome(
                False,
                "crash",
                _crash_message(proc.returncode, self.limits),
                seconds=seconds,
                log_tail=tail,
                isolation=mode,
            )
        if result.get("ok"):
            return RenderOutcome(
                True,
                "ok",
                video=Path(result["video"]),
                duration_s=float(result.get("duration_s") or 0.0),
                seconds=seconds,
                log_tail=tail,
                isolation=mode,
            )
        return RenderOutcome(
            False,
            str(result.get("kind") or "exception"),
            str(result.get("error") or "the scene failed"),
            traceback=str(result.get("traceback") or ""),
            seconds=seconds,
            log_tail=tail,
            isolation=mode,
        )

    def _prefix(self, scene_dir: Path) -> list[str]:
        if self.isolation.mode is SandboxMode.bwrap:
            return _bwrap_args(scene_dir, self.hidden)
        if self.isolation.mode is SandboxMode.unshare:
            return _unshare_args()
        return []

    def _wait(self, proc: subprocess.Popen[bytes], t0: float, cancel: CancelToken | None) -> str:
        deadline = t0 + self.limits.timeout_s
        while True:
            try:
                proc.wait(timeout=POLL_S)
                return "exited"
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.cancelled:
                _kill_group(proc)
                return "cancelled"
            if time.monotonic() > deadline:
                _kill_group(proc)
                return "timeout"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _crash_message(returncode: int | None, limits: Limits) -> str:
    if returncode is not None and returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGXCPU:
            return "the scene used too much CPU time and was stopped; make it simpler"
        if sig == signal.SIGXFSZ:
            return f"the scene wrote a file larger than {limits.file_mb} MB and was stopped"
        if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGKILL):
            return (
                f"the render process died ({name}); this usually means it ran out of memory "
                f"(limit {limits.memory_mb} MB): make the scene lighter"
            )
        return f"the render process died ({name})"
    return f"the render process stopped (exit {returncode}) without a result; see the render log"


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL_CHARS:].decode("utf-8", "replace")
