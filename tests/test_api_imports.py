"""`wan --help` and the desktop app's start-up must not pay for FastAPI, uvicorn or torch."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_the_cli_and_the_embedded_server_module_load_nothing_heavy() -> None:
    code = (
        "import sys, wan_desktop.cli, wan_desktop.api.server, wan_desktop.access;"
        "wan_desktop.cli.build_parser();"
        "heavy = ('fastapi', 'uvicorn', 'starlette', 'torch', 'PIL');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_wan_serve_is_a_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wan_desktop.cli", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "--token" in out.stdout and "--origins" in out.stdout
