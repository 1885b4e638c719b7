"""The sandbox generated scene code renders in: each threat is stopped with a clear error.

Generated code normally meets the static check first (tests/test_explainer_units.py). Here the
code goes straight to the sandbox, written the way a determined script would get past the check
(reaching modules through manim's own attributes), to show the runtime layers stop it alone: the
audit hook and reduced builtins inside, the OS sandbox (bubblewrap or unshare) and the resource
limits and timeout outside. This test process stays unharmed throughout.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from wan_desktop.explainer.codecheck import check_scene_code
from wan_desktop.explainer.sandbox import (
    Isolation,
    Limits,
    RenderOutcome,
    SceneSandbox,
    _bwrap_args,
    _unshare_args,
    detect_isolation,
)
from wan_desktop.explainer.settings import SandboxMode

pytestmark = pytest.mark.slow

HEADER = "from manim import *\n\n\nclass Scene01(Scene):\n    def construct(self):\n"


def scene(body: str) -> str:
    return HEADER + "".join(f"        {line}\n" for line in body.strip().splitlines())


class Listener:
    """A TCP server on loopback that counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def available(mode: SandboxMode) -> Isolation:
    """The isolation ``mode`` gives here; a skip only where it truly cannot work.

    ``scripts/setup.sh`` installs bubblewrap: where the ``bwrap`` program exists, bubblewrap not
    working is a failure of this machine's set-up or of our detection, never a skip.
    """
    try:
        return detect_isolation(mode)
    except RuntimeError as exc:
        if mode is SandboxMode.bwrap and shutil.which("bwrap"):
            pytest.fail(f"bubblewrap is installed but the sandbox cannot use it: {exc}")
        pytest.skip(f"{mode} is not available here: {exc}")


@pytest.fixture(scope="module")
def isolation() -> Isolation:
    """What the app would pick: bubblewrap wherever it is installed."""
    return available(SandboxMode.bwrap) if shutil.which("bwrap") else detect_isolation()


def sandbox(isolation: Isolation, *, timeout_s: float = 60, memory_mb: int = 2048) -> SceneSandbox:
    return SceneSandbox(isolation, Limits(timeout_s=timeout_s, memory_mb=memory_mb))


def render(box: SceneSandbox, code: str, folder: Path) -> RenderOutcome:
    return box.render(code, "Scene01", folder, quality="low_quality")


def no_children_left() -> bool:
    return not psutil.Process().children(recursive=True)


def test_network_access_is_stopped(
    isolation: Isolation, listener: Listener, tmp_path: Path
) -> None:
    code = scene(f"""
sysmod = utils.file_ops.sp.sys
net = sysmod.modules["importlib"].import_module("socket")
net.create_connection(("127.0.0.1", {listener.port}), timeout=3)
self.wait(0.2)
""")
    assert not check_scene_code(code, "Scene01").ok, "the static check alone rejects it"
    outcome = render(sandbox(isolation), code, tmp_path / "job" / "scene")
    assert not outcome.ok and outcome.kind == "blocked"
    assert outcome.error == "sandbox blocked: network access"
    assert listener.accepted == 0
    assert no_children_left()


@pytest.mark.parametrize("mode", [SandboxMode.bwrap, SandboxMode.unshare, SandboxMode.process])
def test_writing_outside_the_job_folder_is_stopped(mode: SandboxMode, tmp_path: Path) -> None:
    """Every isolation level stops it: with no OS sandbox, the in-process guard still does."""
    isolation = available(mode)
    outside = tmp_path / "outside.txt"
    code = scene(f"""
osmod = utils.file_ops.os
fd = osmod.open({str(outside)!r}, osmod.O_WRONLY | osmod.O_CREAT)
osmod.write(fd, b"pwned")
self.wait(0.2)
""")
    outcome = render(sandbox(isolation), code, tmp_path / "job" / "scene")
    assert not outcome.ok and outcome.kind == "blocked", outcome
    assert f"writing {str(outside)!r}" in outcome.error
    assert "only the scene folder is writable" in outcome.error
    assert not outside.exists()
    assert (isolation.warning is not None) == (mode is SandboxMode.process)


def test_an_endless_loop_is_killed_with_its_whole_process_group(
    isolation: Isolation, tmp_path: Path
) -> None:
    code = scene("while True:\n    pass")
    assert check_scene_code(code, "Scene01").ok, "the check cannot know it loops"
    outcome = render(sandbox(isolation, timeout_s=15), code, tmp_path / "job" / "scene")
    assert not outcome.ok and outcome.kind == "timeout"
    assert "did not finish within 15 s and was stopped" in outcome.error
    assert 15 <= outcome.seconds < 40
    assert no_children_left()


def test_a_memory_bomb_hits_the_memory_limit(isolation: Isolation, tmp_path: Path) -> None:
    code = scene("blocks = []\nwhile True:\n    blocks.append([0] * 10_000_000)")
    before = psutil.Process().memory_info().rss
    outcome = render(sandbox(isolation, memory_mb=1536), code, tmp_path / "job" / "scene")
    assert not outcome.ok and outcome.kind in ("memory", "crash"), outcome
    assert "memory" in outcome.error and "1536 MB" in outcome.error
    assert psutil.Process().memory_info().rss < before + 200 * 2**20, "the app did not grow"
    assert no_children_left()


def test_a_forbidden_import_is_stopped(isolation: Isolation, tmp_path: Path) -> None:
    code = scene("import subprocess\nsubprocess.run(['touch', 'x'])")
    check = check_scene_code(code, "Scene01")
    assert "import of 'subprocess' is not allowed" in check.message
    outcome = render(sandbox(isolation), code, tmp_path / "job" / "scene")
    assert not outcome.ok and outcome.kind == "blocked"
    assert outcome.error.startswith("sandbox blocked: import of 'subprocess'")
    assert "manim, numpy, math" in outcome.error


def test_a_good_scene_still_renders_after_all_that(isolation: Isolation, tmp_path: Path) -> None:
    outcome = render(
        sandbox(isolation), scene("self.play(FadeIn(Text('still fine')), run_time=0.4)"), tmp_path
    )
    assert outcome.ok and outcome.video is not None and outcome.video.is_file()
    assert outcome.video.is_relative_to(tmp_path.resolve())
    assert outcome.duration_s == pytest.approx(0.4, abs=0.07)
    assert no_children_left()


def test_the_apps_data_and_home_are_out_of_sight(isolation: Isolation, tmp_path: Path) -> None:
    if isolation.mode is not SandboxMode.bwrap:
        available(SandboxMode.bwrap)  # fails where bubblewrap is installed
        pytest.skip("only bubblewrap hides folders (reads are not guarded in-process)")
    data = tmp_path / "data"
    secret = data / "jobs.sqlite3"
    secret.parent.mkdir()
    secret.write_text("private")
    code = scene(f"""
osmod = utils.file_ops.os
fd = osmod.open({str(secret)!r}, osmod.O_RDONLY)
self.wait(0.2)
""")
    box = SceneSandbox(isolation, Limits(timeout_s=60, memory_mb=2048), hidden=(data,))
    outcome = render(box, code, data / "explainer" / "work" / "job" / "scene")
    assert not outcome.ok and "FileNotFoundError" in outcome.error, outcome
    assert (data / "explainer" / "work" / "job" / "scene" / "result.json").is_file()


APP = """
import sys
from pathlib import Path
from wan_desktop.explainer.sandbox import Limits, SceneSandbox, detect_isolation
from wan_desktop.explainer.settings import SandboxMode
box = SceneSandbox(detect_isolation(SandboxMode(sys.argv[3])), Limits(600, 2048))
box.render(sys.argv[1], "Scene01", Path(sys.argv[2]), quality="low_quality")
"""


@pytest.mark.parametrize("mode", [SandboxMode.bwrap, SandboxMode.unshare, SandboxMode.process])
def test_a_render_dies_with_the_app_that_started_it(mode: SandboxMode, tmp_path: Path) -> None:
    """An app killed outright (SIGKILL: no cleanup runs) leaves no render behind."""
    available(mode)
    folder = tmp_path / "scene"
    loop = scene("while True:\n    pass")
    app = subprocess.Popen([sys.executable, "-c", APP, loop, str(folder), str(mode)])

    def renders() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(folder) in part for part in proc.info["cmdline"] or ()):
                    found.append(proc)
        return found

    def runner_started() -> bool:
        for proc in renders():
            with contextlib.suppress(psutil.Error):
                cmd = proc.cmdline()
                if cmd[0] == sys.executable and any("sandbox_runner" in c for c in cmd):
                    return True
        return False

    deadline = time.monotonic() + 60
    while not runner_started():
        assert time.monotonic() < deadline, "the render never started"
        time.sleep(0.1)
    time.sleep(1.0)  # let it get into the scene's loop
    app.kill()
    app.wait(10)
    deadline = time.monotonic() + 15
    while renders():
        assert time.monotonic() < deadline, f"left behind: {renders()}"
        time.sleep(0.1)


# ------------------------------------------------------------------ the OS layer on its own

PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(3)
print("connect", s.connect_ex(("127.0.0.1", int(sys.argv[1]))))
for path in sys.argv[2:]:
    try:
        open(path, "w").write("x")
        print("write ok", path)
    except OSError as exc:
        print("write", exc.errno, path)
"""


@pytest.mark.parametrize("mode", [SandboxMode.bwrap, SandboxMode.unshare])
def test_the_os_sandbox_alone_has_no_network(
    mode: SandboxMode, listener: Listener, tmp_path: Path
) -> None:
    """Plain Python (no audit hook) under the OS layer: no route to the host's loopback."""
    available(mode)
    folder = tmp_path / "scene"
    folder.mkdir()
    in_tmp = tmp_path / "outside.txt"
    in_venv = Path(sys.prefix) / f"sandbox-probe-{tmp_path.name}.txt"
    prefix = _bwrap_args(folder, ()) if mode is SandboxMode.bwrap else _unshare_args()
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", PROBE, str(listener.port), str(in_tmp),
             str(in_venv)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )  # fmt: skip
        assert "connect 0" not in done.stdout and listener.accepted == 0, done.stdout
        if mode is SandboxMode.bwrap:
            # The filesystem is read-only outside the scene folder, and /tmp is a private
            # tmpfs: a write there lands in the sandbox's own memory and vanishes.
            assert f"write 30 {in_venv}" in done.stdout, done.stdout
            assert not in_venv.exists() and not in_tmp.exists()
    finally:
        in_venv.unlink(missing_ok=True)
