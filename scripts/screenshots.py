"""Render every page of the app with real data and save PNGs to docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Everything runs in temporary folders, offscreen. The data is made for real: a finished job, a
running one and a queued one go through the engine (the real Wan pipeline on the tiny
development models when it is installed, otherwise the mock pipeline, labelled as such), and a
model download from a local mirror folder is in progress while the pictures are taken.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

SIZE = (1440, 900)
HAS_WAN = importlib.util.find_spec("wan_desktop.engine.pipelines.wan") is not None


def pump(app: object, seconds: float, until: Callable[[], bool] | None = None) -> None:
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.01)
    if until is not None:
        raise TimeoutError("the screen never reached the state to capture")


def make_mirror(folder: Path, size_mb: int) -> None:
    """A local mirror folder shaped like a diffusers model (random bytes: only the transfer is
    real here; the download is cancelled before it completes)."""
    rng = os.urandom
    files = {
        "model_index.json": b'{"_class_name": "WanPipeline"}',
        "scheduler/scheduler_config.json": b"{}",
        "vae/config.json": b"{}",
        "transformer/config.json": b"{}",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    for i in range(3):
        part = folder / "transformer" / f"diffusion_pytorch_model-0000{i + 1}-of-00003.safetensors"
        with part.open("wb") as fh:
            for _ in range(size_mb // 3):
                fh.write(rng(1 << 20))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="wan-shots-"))
    os.environ["WAN_CONFIG_DIR"] = str(tmp / "config")
    mirror = tmp / "mirror"
    os.environ["WAN_LOCAL_MIRROR"] = str(mirror)

    from PySide6.QtWidgets import QApplication

    from wan_desktop.api.server import EmbeddedServer
    from wan_desktop.engine import Engine, EngineSettings, JobState, simulated_profile
    from wan_desktop.engine.hardware import read_profile
    from wan_desktop.models import sources as model_sources
    from wan_desktop.models.config import OrchestratorConfig
    from wan_desktop.models.sources.local import LocalSource
    from wan_desktop.ui.api_control import ApiController
    from wan_desktop.ui.app import make_app
    from wan_desktop.ui.config import AppSettings, SettingsStore
    from wan_desktop.ui.state import Studio
    from wan_desktop.ui.window import MainWindow

    class PacedLocal(LocalSource):
        """The local source, paced like a fast network so the download is still running."""

        def fetch(self, file, sink):  # type: ignore[no-untyped-def]
            with Path(file.ref).open("rb") as fh:
                fh.seek(sink.offset)
                while data := fh.read(1 << 20):
                    sink.write(data)
                    time.sleep(0.05)

    model_sources._FACTORIES["local"] = PacedLocal
    app = make_app()
    assert isinstance(app, QApplication)

    def shoot(
        window: MainWindow, page: str, name: str, settle: float = 0.4, toasts: bool = False
    ) -> None:
        if not toasts:
            for toast in list(window.toasts.toasts):
                toast.dismiss()
        window.show_page(page)
        pump(app, settle)
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path.relative_to(ROOT)}")

    # ---------------------------------------------------------------- first run (no models)
    first = EngineSettings.from_env(
        {},
        data_dir=tmp / "first" / "data",
        outputs_dir=tmp / "first" / "outputs",
        models=OrchestratorConfig.from_env({}, models_root=tmp / "first" / "models"),
        memory_sample_s=0.5,
    )
    engine = Engine(first, hardware=simulated_profile(0))
    studio = Studio(engine, SettingsStore(tmp / "first-config"), AppSettings())
    window = MainWindow(studio, ApiController(engine, EmbeddedServer))
    window.resize(*SIZE)
    window.show()
    pump(app, 5, until=lambda: studio.catalog_loaded)
    shoot(window, "generate", "first-run")
    window.close()
    studio.close()
    engine.shutdown()

    # ------------------------------------------------------------------------- the studio
    dev = not HAS_WAN
    settings = EngineSettings.from_env(
        {},
        data_dir=tmp / "data",
        outputs_dir=tmp / "outputs",
        models=OrchestratorConfig.from_env(
            {"WAN_LOCAL_MIRROR": str(mirror)}, models_root=tmp / "models", dev_mode=HAS_WAN
        ),
        mock=dev,
        memory_sample_s=0.5,
        preview_every=1,
    )
    engine = Engine(settings, hardware=read_profile())
    if dev:
        from wan_desktop.engine.pipelines.mock import MockPipeline

        engine._pipelines[(MockPipeline.kind, True)] = MockPipeline(
            engine.models.manifest, step_s=0.35
        )
    store = SettingsStore(tmp / "config")
    studio = Studio(engine, store, store.load_or_init())
    window = MainWindow(studio, ApiController(engine, EmbeddedServer))
    window.resize(*SIZE)
    window.show()
    gen = window.pages["generate"]

    def submit(model: str, prompt: str, steps: int, seed: int) -> str:
        gen.select_model(model)  # type: ignore[attr-defined]
        gen.prompt.setPlainText(prompt)  # type: ignore[attr-defined]
        gen.resolution.setCurrentText("854x480")  # type: ignore[attr-defined]
        gen.steps.setValue(steps)  # type: ignore[attr-defined]
        gen.frames.setValue(33)  # type: ignore[attr-defined]
        gen.seed.setText(str(seed))  # type: ignore[attr-defined]
        job = gen.submit()  # type: ignore[attr-defined]
        assert job is not None
        return job.id

    finished = [
        submit(model, prompt, 6, seed)
        for model, prompt, seed in (
            (
                "t2v-A14B@2.2.0",
                "Aerial shot over a turquoise river winding through autumn forest",
                11,
            ),
            (
                "t2v-A14B@2.2.0",
                "Macro shot of ink drops blooming in water, slow motion, black background",
                5,
            ),
            (
                "ti2v-5B@2.2.0",
                "A paper boat drifts down a rain-soaked street at dusk, neon "
                "reflections rippling, low angle, shallow depth of field",
                1234,
            ),
        )
    ]
    done = finished[-1]
    pump(app, 240, until=lambda: all(studio.jobs[j].state is JobState.completed for j in finished))
    # A download in progress: the real TI2V-5B variant from a local mirror folder.
    make_mirror(mirror / "wan22" / "ti2v-5B@2.2.0", 1500)
    engine.ensure_model("ti2v-5B@2.2.0", "bf16")
    submit(
        "t2v-A14B@2.2.0",
        "A red fox trots through fresh snow at dawn, low tracking shot, soft golden light",
        80,
        42,
    )
    submit(
        "t2v-A14B@2.2.0",
        "Timelapse of clouds rolling over a mountain ridge, wide shot, dramatic light",
        30,
        7,
    )
    pump(app, 60, until=lambda: any((j.step or 0) >= 12 for j in studio.active()))
    pump(app, 60, until=lambda: any((p.fraction or 0) > 0.12 for p in studio.downloads.values()))

    gen.prompt.setPlainText(  # type: ignore[attr-defined]
        "Waves crash against black volcanic rocks, slow motion, overcast, cinematic"
    )
    shoot(window, "generate", "generate")
    bar = gen.form_scroll.verticalScrollBar()  # type: ignore[attr-defined]
    bar.setValue(bar.maximum())
    shoot(window, "generate", "generate-settings")
    shoot(window, "queue", "queue", toasts=True)
    window.show_page("models")
    window.pages["models"].reveal(("ti2v-5B@2.2.0", "bf16"))  # type: ignore[attr-defined]
    shoot(window, "models", "models")
    for toast in list(window.toasts.toasts):
        toast.dismiss()
    window.show_page(f"gallery:{done}")
    gallery = window.pages["gallery"]
    player = gallery.ensure_player()  # type: ignore[attr-defined]
    player.player.play()
    pump(app, 10, until=lambda: player.view.frame is not None)
    pump(app, 0.6)
    player.player.pause()
    shoot(window, "gallery", "gallery")
    shoot(window, "system", "system", settle=1.5)
    shoot(window, "settings", "settings", settle=0.8)

    engine.cancel_download("ti2v-5B@2.2.0", "bf16")
    for job in studio.active() + studio.queued():
        engine.cancel(job.id)
    window.close()
    studio.close()
    engine.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
