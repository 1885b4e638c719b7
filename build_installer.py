"""Build Wan Desktop as a PyInstaller one-folder bundle, and an archive of it.

    .venv/bin/python build_installer.py [--dist dist] [--no-archive]

The bundle is the whole app: the window, the engine with torch, diffusers and transformers
(generation runs inside it), the orchestrator, the local API, the icon and resources, and
``models.toml`` at ``wan_desktop/resources/models.toml`` where the orchestrator looks in a
packaged app. Start it with ``dist/wan-desktop/wan-desktop``.

How it stays fast to build: PyInstaller's import analysis of torch, transformers and diffusers
alone takes many minutes (their hooks import every submodule). Instead, a probe process imports
what generation needs and reports every module it loaded. The third-party distributions among
them are copied into the bundle as installed (every file of their RECORD, native libraries
included) and kept out of the analysis; the standard-library modules they use are added to the
analysis by name. PyInstaller then analyses only the app and its GUI and API libraries.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NAME = "wan-desktop"
RESOURCES = ROOT / "wan_desktop" / "resources"

# What a generation imports at run time; the probe imports it and lists what got loaded.
ENGINE_PROBE = """
import sys, json
base = set(sys.modules)
import torch, diffusers, transformers, accelerate, peft, safetensors.torch
from diffusers import (WanPipeline, WanImageToVideoPipeline, AutoencoderKLWan,
                       WanTransformer3DModel, FlowMatchEulerDiscreteScheduler,
                       UniPCMultistepScheduler)
from transformers import UMT5EncoderModel, UMT5Config, AutoTokenizer
import imageio_ffmpeg, av, numpy, PIL.Image, ftfy, sentencepiece, tokenizers, pynvml, psutil
for optional in ("wan_desktop.engine.pipelines.wan", "wan_desktop.engine.planner",
                 "wan_desktop.engine.lora"):
    try:
        __import__(optional)
    except ImportError:
        pass
loaded = sorted(set(sys.modules) - base)
std = set(sys.stdlib_module_names)
print(json.dumps({
    "stdlib": [m for m in loaded if m.split(".")[0] in std],
    "third_party": sorted({m.split(".")[0] for m in loaded if m.split(".")[0] not in std
                           and not m.startswith(("wan_desktop", "__"))}),
}))
"""
# Loaded with importlib at run time (PyInstaller cannot see those imports): listed when present.
DYNAMIC_MODULES = (
    "wan_desktop.engine.pipelines.mock",
    "wan_desktop.engine.pipelines.wan",
    "wan_desktop.engine.planner",
    "wan_desktop.engine.lora",
    "wan_desktop.engine.lora_library",
    "wan_desktop.api.server",
    "wan_desktop.models.sources.builtin",
    "wan_desktop.models.sources.local",
    "wan_desktop.models.sources.hf",
    "wan_desktop.models.sources.s3",
    "wan_desktop.models.sources.http",
)
# Packages whose data files the app reads (not only their modules).
DATA_PACKAGES = ("fastapi_offline",)  # the API's /docs assets (Swagger UI, ReDoc)
# Never used by the app, but reachable through optional imports of its libraries.
EXCLUDES = (
    "tkinter",
    "matplotlib",
    "IPython",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "manim",
    "moderngl",
    "pyglet",
    "tensorboard",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.QtQuick",
    "PySide6.QtQml",
    "PySide6.QtPdf",
    "PySide6.QtCharts",
    "PySide6.QtDesigner",
    "PySide6.Qt3DCore",
)


def version() -> str:
    from wan_desktop import __version__

    return __version__


def probe_engine() -> dict[str, list[str]]:
    """The modules a generation loads, measured in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def distributions_for(top_modules: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that provide these top-level modules."""
    owners = metadata.packages_distributions()
    names = sorted({dist for m in top_modules for dist in owners.get(m, ())})
    return [metadata.distribution(n) for n in names]


def copy_distribution(dist: metadata.Distribution, dest: Path) -> int:
    """Copy every installed file of ``dist`` (as its RECORD lists them) under ``dest``."""
    copied = 0
    for f in dist.files or ():
        rel = Path(str(f))
        if rel.is_absolute() or ".." in rel.parts:
            continue  # scripts in bin/ are not part of the library
        src = Path(str(dist.locate_file(f)))
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        copied += src.stat().st_size
    return copied


def pyinstaller_args(dist: Path, work: Path, probe: dict[str, list[str]]) -> list[str]:
    sep = os.pathsep
    args = [
        str(ROOT / "wan_desktop" / "__main__.py"),
        "--name",
        NAME,
        "--onedir",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        "--specpath",
        str(work),
        "--icon",
        str(RESOURCES / "icon.png"),
        "--add-data",
        f"{ROOT / 'models.toml'}{sep}wan_desktop/resources",
    ]
    for path in sorted(RESOURCES.iterdir()):
        if path.is_file() and path.suffix in (".svg", ".png"):
            args += ["--add-data", f"{path}{sep}wan_desktop/resources"]
    for module in DYNAMIC_MODULES:
        if _exists(module):
            args += ["--hidden-import", module]
    for package in DATA_PACKAGES:
        if _exists(package):
            args += ["--collect-data", package]
    for module in probe["stdlib"]:
        args += ["--hidden-import", module]
    for module in (*EXCLUDES, *probe["third_party"]):
        args += ["--exclude-module", module]
    if sys.platform in ("win32", "darwin"):
        args.append("--windowed")  # no console window behind the app
    return args


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(dist: Path, *, archive: bool = True) -> dict[str, object]:
    import PyInstaller.__main__

    work = dist.parent / "build" / NAME
    started = time.perf_counter()
    probe = probe_engine()
    PyInstaller.__main__.run(pyinstaller_args(dist, work, probe))
    bundle = dist / NAME
    internal = bundle / "_internal"
    vendored = distributions_for(probe["third_party"])
    vendored_bytes = sum(copy_distribution(d, internal) for d in vendored)
    report: dict[str, object] = {
        "bundle": str(bundle),
        "executable": str(bundle / (NAME + (".exe" if sys.platform == "win32" else ""))),
        "bundle_bytes": folder_size(bundle),
        "engine_libraries_bytes": vendored_bytes,
        "engine_distributions": sorted(d.metadata["Name"] for d in vendored),
        "build_s": round(time.perf_counter() - started, 1),
    }
    if archive:
        t0 = time.perf_counter()
        path = make_archive(bundle, dist / f"{NAME}-{version()}-{sys.platform}-{_machine()}")
        report["archive"] = str(path)
        report["archive_bytes"] = path.stat().st_size
        report["archive_s"] = round(time.perf_counter() - t0, 1)
    return report


def _machine() -> str:
    return platform.machine().lower() or "unknown"


def make_archive(bundle: Path, base: Path) -> Path:
    """A .zip on Windows, else a .tar.gz (gzip level 6: level 9 takes minutes for ~1 GB more
    and saves a few percent)."""
    if sys.platform == "win32":
        return Path(
            shutil.make_archive(str(base), "zip", root_dir=bundle.parent, base_dir=bundle.name)
        )
    import tarfile

    path = base.with_name(base.name + ".tar.gz")
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=bundle.name)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--no-archive", action="store_true", help="skip the .tar.gz / .zip")
    args = parser.parse_args()
    report = build(args.dist.resolve(), archive=not args.no_archive)
    mb = 1e6
    print(
        f"bundle   {report['bundle']}: {float(str(report['bundle_bytes'])) / mb:.0f} MB "
        f"(engine libraries {float(str(report['engine_libraries_bytes'])) / mb:.0f} MB), "
        f"built in {report['build_s']} s"
    )
    if "archive" in report:
        print(
            f"archive  {report['archive']}: {float(str(report['archive_bytes'])) / mb:.0f} MB, "
            f"in {report['archive_s']} s"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
