"""Render every page of the app with real data and save PNGs to docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Everything runs in temporary folders, offscreen, on this machine's real hardware profile (so
the fit verdicts are this machine's). The data is made for real: Wan jobs run the real pipeline
on the tiny development models (random weights: the videos are noise, and labelled so), an
explainer video is planned by the offline template planner and rendered with Manim in the
sandbox, and a model download from a local mirror folder is in progress while the pictures are
taken.
"""

from __future__ import annotations

import argparse
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
SMALL = (1024, 700)  # the smallest supported window: every page still fits
FINISHED = (
    ("t2v-A14B@2.2.0", "Aerial shot over a turquoise river winding through autumn forest", 11),
    (
        "t2v-A14B@2.2.0",
        "Macro shot of ink drops blooming in water, slow motion, black background",
        5,
    ),
    (
        "ti2v-5B@2.2.0",
        "A paper boat drifts down a rain-soaked street at dusk, neon reflections rippling, "
        "low angle, shallow depth of field",
        1234,
    ),
)
RUNNING = (
    ("t2v-A14B@2.2.0", "A red fox trots through fresh snow at dawn, low tracking shot", 42),
    ("t2v-A14B@2.2.0", "Timelapse of clouds rolling over a mountain ridge, dramatic light", 7),
)
EXPLAINER = {
    "topic": "Why the sky is blue",
    "context": (
        "Sunlight holds every colour. Air molecules scatter short wavelengths far more than long "
        "ones: Rayleigh scattering goes as 1/λ^4, so blue light is scattered about four times as "
        "much as red. We see that scattered blue from every direction of the sky. At sunset the "
        "light crosses more air, the blue is scattered away, and reds and oranges remain."
    ),
    "quality": "low",
    "scene_count": 4,
}


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


def make_lora(path: Path, rank: int = 4, width: int = 24, blocks: int = 2) -> None:
    """A LoRA shaped for the tiny models (attention q/k/v, diffusers key names), random."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    tensors = {}
    for block in range(blocks):
        for proj in ("to_q", "to_k", "to_v"):
            key = f"transformer.blocks.{block}.attn1.{proj}"
            tensors[f"{key}.lora_A.weight"] = rng.standard_normal((rank, width), np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.standard_normal((width, rank), np.float32) * 0.1
    save_file(tensors, str(path), metadata={"ss_network_alpha": str(rank)})


def remote(app: object, out: Path, tmp: Path) -> None:
    """The app driving a `wan serve` (a real subprocess on loopback, with a token): the Queue
    with a job running on the server, the status bar naming the server and the link."""
    from tests.api_helpers import WanServe
    from wan_desktop.remote import RemoteEngine
    from wan_desktop.ui.api_control import ApiController
    from wan_desktop.ui.config import AppSettings, SettingsStore
    from wan_desktop.ui.state import Studio
    from wan_desktop.ui.window import MainWindow

    token = "screenshot-token-0123456789"
    with WanServe(tmp / "server", env={"WAN_API_TOKEN": token}) as server:
        engine = RemoteEngine(server.url, token, data_dir=tmp / "client", start=False)
        settings = AppSettings(welcomed=True, engine_url=server.url)
        studio = Studio(engine, SettingsStore(tmp / "client-config"), settings)
        window = MainWindow(studio, ApiController(None, None))
        window.resize(*SIZE)
        window.show()
        engine.start()
        pump(app, 30, until=lambda: studio.link is not None and studio.link.state == "up")
        prompts = [p for _m, p, _s in FINISHED] + [p for _m, p, _s in RUNNING]
        jobs = []
        for i, prompt in enumerate(prompts):
            params = {"model": "T2V-A14B", "prompt": prompt, "seed": i}
            params |= {"steps": 6 if i < 3 else 100, "frames": 17, "resolution": "832x480"}
            jobs.append(studio.submit(params))
        pump(
            app,
            60,
            until=lambda: sum(j.state.value == "completed" for j in studio.jobs.values()) >= 3,
        )
        pump(app, 30, until=lambda: any((j.step or 0) >= 8 for j in studio.active()))
        for toast in list(window.toasts.toasts):
            toast.dismiss()
        window.show_page("queue")
        pump(app, 0.6)
        path = out / "remote.png"
        window.grab().save(str(path))
        print(f"wrote {path}")
        for job in studio.active() + studio.queued():
            engine.cancel(job.id)
        window.close()
        studio.close()
        engine.shutdown()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--only", choices=("all", "remote"), default="all", help="remote: the server picture only"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="wan-shots-"))
    os.environ["WAN_CONFIG_DIR"] = str(tmp / "config")
    mirror = tmp / "mirror"
    os.environ["WAN_LOCAL_MIRROR"] = str(mirror)

    from PySide6.QtWidgets import QApplication

    from tests.mirror import make_mirror, pace_local_source
    from wan_desktop.api.server import EmbeddedServer
    from wan_desktop.engine import Engine, EngineSettings, JobKind, JobState
    from wan_desktop.engine.hardware import HardwareProfile, read_profile
    from wan_desktop.models.config import OrchestratorConfig
    from wan_desktop.ui import quota
    from wan_desktop.ui.api_control import ApiController
    from wan_desktop.ui.app import make_app
    from wan_desktop.ui.config import AppSettings, SettingsStore
    from wan_desktop.ui.state import Studio
    from wan_desktop.ui.window import MainWindow

    pace_local_source(0.08)  # like a network, so the download is still running
    app = make_app()
    assert isinstance(app, QApplication)
    remote(app, args.out, tmp / "remote")
    if args.only == "remote":
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    hardware = read_profile()

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
        print(f"wrote {path}")

    def settings_in(folder: Path, *, dev: bool) -> EngineSettings:
        return EngineSettings.from_env(
            {},
            data_dir=folder / "data",
            outputs_dir=folder / "outputs",
            models=OrchestratorConfig.from_env(
                {"WAN_LOCAL_MIRROR": str(mirror), "WAN_CONFIG_DIR": str(folder / "config")},
                models_root=folder / "models",
                dev_mode=dev,
            ),
            memory_sample_s=0.5,
            preview_every=1,
        )

    # ------------------------------------------ first run (no models): this machine's verdicts
    def first_run(name: str, folder: Path, machine: HardwareProfile, model: str) -> None:
        engine = Engine(settings_in(folder, dev=False), hardware=machine)
        studio = Studio(engine, SettingsStore(folder / "config"), AppSettings())
        window = MainWindow(studio, ApiController(engine, EmbeddedServer))
        window.resize(*SIZE)
        window.show()
        gen = window.pages["generate"]
        gen.select_model(model)  # type: ignore[attr-defined]
        gen.resolution.setCurrentText("854x480")  # type: ignore[attr-defined]
        gen.frames.setValue(49)  # type: ignore[attr-defined]
        pump(app, 20, until=lambda: studio.catalog_loaded and len(gen.fits) == 3)  # type: ignore[attr-defined]
        pump(app, 0.5)
        shoot(window, "generate", name)
        window.close()
        studio.close()
        engine.shutdown()

    first_run("first-run", tmp / "first", hardware, "t2v-A14B@2.2.0")
    # The same page on a machine with a 24 GB GPU, as WAN_HARDWARE_PROFILE describes one (the
    # planner's way to answer for other machines; the page says the profile is simulated).
    gpu = HardwareProfile.from_dict(
        {
            "device": "cuda:0",
            "gpu_name": "NVIDIA GeForce RTX 4090",
            "vram_total_mb": 24564,
            "ram_total_mb": 64 * 1024,
            "cpu_count": 16,
            "compute_capability": [8, 9],
        }
    )
    first_run("fit", tmp / "fit", gpu, "ti2v-5B@2.2.0")

    # ---------------------------------------------- the studio: development mode, real jobs
    engine = Engine(settings_in(tmp, dev=True), hardware=hardware)
    store = SettingsStore(tmp / "config")
    studio = Studio(engine, store, store.load_or_init())
    window = MainWindow(studio, ApiController(engine, EmbeddedServer))
    window.resize(*SIZE)
    window.show()
    gen = window.pages["generate"]

    def submit(model: str, prompt: str, steps: int, seed: int, frames: int) -> str:
        gen.select_model(model)  # type: ignore[attr-defined]
        gen.prompt.setPlainText(prompt)  # type: ignore[attr-defined]
        gen.resolution.setCurrentText("854x480")  # type: ignore[attr-defined]
        gen.steps.setValue(steps)  # type: ignore[attr-defined]
        gen.frames.setValue(frames)  # type: ignore[attr-defined]
        gen.seed.setText(str(seed))  # type: ignore[attr-defined]
        job = gen.submit()  # type: ignore[attr-defined]
        assert job is not None, gen.general_error.text()  # type: ignore[attr-defined]
        return job.id

    explain = window.pages["explain"]

    def explainer(**overrides: object) -> str:
        params = {**EXPLAINER, **overrides}
        explain.load_params(params)  # type: ignore[attr-defined]
        job = explain.submit()  # type: ignore[attr-defined]
        assert job is not None, explain.general_error.text()  # type: ignore[attr-defined]
        return job.id

    # A LoRA added the way "Add LoRA…" adds one: through the library's checks.
    make_lora(tmp / "watercolor_style.safetensors")
    gen.loras.install(tmp / "watercolor_style.safetensors")  # type: ignore[attr-defined]
    pump(app, 20, until=lambda: bool(gen.loras.rows))  # type: ignore[attr-defined]
    explained = explainer()
    finished = [submit(m, p, 8, seed, 17) for m, p, seed in FINISHED]

    def all_done() -> bool:
        return all(studio.jobs[j].finished for j in (explained, *finished))

    pump(app, 600, until=all_done)
    for j in (explained, *finished):
        job = studio.jobs[j]
        assert job.state is JobState.completed, (job.id, job.failure)
    window.show_page("explain")
    player = explain.latest.player  # type: ignore[attr-defined]
    pump(app, 10, until=lambda: "-->" in explain.latest.subtitles.toPlainText())  # type: ignore[attr-defined]
    player.player.setPosition(5200)
    player.player.play()
    pump(app, 10, until=lambda: player.view.frame is not None)
    pump(app, 1.2)
    player.player.pause()
    explain.topic.setText("How a rainbow forms")  # type: ignore[attr-defined]
    explain.context.setPlainText(  # type: ignore[attr-defined]
        "Sunlight enters a raindrop, bends, reflects off the back and bends again on the way "
        "out. Each colour bends by a different angle, so the colours fan out: red at 42°, "
        "violet at 40° from the point opposite the sun."
    )
    shoot(window, "explain", "explainer", settle=0.6)

    # A download in progress: the real TI2V-5B weights from a local mirror folder. Development
    # mode resolves every model to its tiny variant, so the download starts with it off (as a
    # user would); the jobs below run the tiny variants with it on again.
    make_mirror(mirror / "wan22" / "ti2v-5B@2.2.0", 1500)
    studio.set_dev_mode(False)
    engine.ensure_model("ti2v-5B@2.2.0", "bf16")
    studio.set_dev_mode(True)
    running = [submit(m, p, 100, seed, 81) for m, p, seed in RUNNING]
    explainer(topic="How a rainbow forms", scene_count=3)
    pump(app, 120, until=lambda: any((j.step or 0) >= 6 for j in studio.active()))
    pump(app, 60, until=lambda: any((p.fraction or 0) > 0.1 for p in studio.downloads.values()))

    gen.prompt.setPlainText(  # type: ignore[attr-defined]
        "Waves crash against black volcanic rocks, slow motion, overcast, cinematic"
    )
    shoot(window, "generate", "generate")
    bar = gen.form_scroll.verticalScrollBar()  # type: ignore[attr-defined]
    bar.setValue(bar.maximum())
    shoot(window, "generate", "generate-settings")
    shoot(window, "queue", "queue", toasts=True)
    for toast in list(window.toasts.toasts):
        toast.dismiss()
    window.show_page(f"gallery:{finished[-1]}")
    gallery = window.pages["gallery"]
    player = gallery.ensure_player()  # type: ignore[attr-defined]
    player.player.play()
    pump(app, 10, until=lambda: player.view.frame is not None)
    pump(app, 0.6)
    player.player.pause()
    shoot(window, "gallery", "gallery")
    shoot(window, "system", "system", settle=1.5)
    shoot(window, "settings", "settings", settle=0.8)
    # Models with development mode off: every variant, the tiny ones built, the real one coming,
    # a quota and a pinned model.
    engine.models_view.set_quota(100 * quota.GIB)
    engine.models.pin("t2v-A14B@2.2.0", "tiny")
    studio.set_dev_mode(False)
    models = window.pages["models"]
    variants = sum(len(spec.variants) for spec in engine.models.manifest)
    pump(app, 10, until=lambda: len(studio.catalog) == variants)
    window.show_page("models")
    models.scroller.verticalScrollBar().setValue(0)  # type: ignore[attr-defined]
    shoot(window, "models", "models-disk", settle=0.8)
    models.reveal(("ti2v-5B@2.2.0", "bf16"))  # type: ignore[attr-defined]
    shoot(window, "models", "models", settle=0.8)
    window.resize(*SMALL)
    for page in ("generate", "queue", "gallery", "explain"):
        shoot(window, page, f"{page}-1024x700", settle=0.8)
    assert any(studio.jobs[j].state.active for j in running), "a job was running throughout"
    assert any(j.kind is JobKind.explainer for j in studio.queued() + studio.active())

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
