"""The installer: build the one-folder bundle and start what was built, offscreen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.ui_helpers import app_env
from wan_desktop import __version__
from wan_desktop.ui.window import PAGE_NAMES


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_built_bundle_starts_paints_its_window_and_loads_torch(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_installer.py"),
            "--dist",
            str(tmp_path / "dist"),
            "--no-archive",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    exe = Path(report["executable"])
    assert exe.is_file() and os.access(exe, os.X_OK)
    bundle = Path(report["bundle"])
    manifest = bundle / "_internal" / "wan_desktop" / "resources" / "models.toml"
    assert manifest.read_text("utf-8") == (ROOT / "models.toml").read_text("utf-8")
    assert (bundle / "_internal" / "wan_desktop" / "resources" / "icon.svg").is_file()
    assert {"torch", "diffusers", "transformers"} <= {
        n.lower() for n in report["engine_distributions"]
    }

    # The bundle must not see the source tree or this interpreter's paths.
    env = {k: v for k, v in app_env(tmp_path).items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    version = subprocess.run(
        [str(exe), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert version.stdout.strip() == f"wan-desktop {__version__}"
    run = subprocess.run(
        [str(exe), "--self-test", "--check-engine", "--mock"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["self_test"] == "ok" and result["pages"] == list(PAGE_NAMES)
    assert result["libraries"]["torch"].startswith("2.")
    assert (tmp_path / "data" / "jobs.sqlite3").is_file(), "the bundled engine ran"
