"""``wan-desktop`` and ``python -m wan_desktop``: the desktop app.

Parses the command line without importing Qt, so ``--version`` and ``--help`` are instant.
Absolute imports: this file is also the frozen bundle's entry script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from wan_desktop import __version__
from wan_desktop.models.config import ENV_DEV_MODE

ENV_QT_PLATFORM = "QT_QPA_PLATFORM"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wan-desktop",
        description="Wan Desktop: a studio for the Wan2.2 video models on your own GPU.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the main window, paint every page, close and exit 0 (works offscreen)",
    )
    parser.add_argument(
        "--check-engine",
        action="store_true",
        help="with --self-test: also load the generation libraries (torch, diffusers, "
        "transformers) and report their versions",
    )
    parser.add_argument("--api", action="store_true", help="also serve the local API")
    parser.add_argument(
        "--dev",
        action="store_true",
        help=f"development mode: tiny random-weight models, output is noise ({ENV_DEV_MODE}=1)",
    )
    parser.add_argument(
        "--mock", action="store_true", help="run jobs with the mock pipeline (no model, labelled)"
    )
    parser.add_argument(
        "--connect",
        metavar="URL",
        help="drive the engine of a `wan serve` on another machine (http://gpu-box:8000) "
        "instead of this computer's; remembered choices live in Settings → Engine",
    )
    parser.add_argument(
        "--token",
        help="the server's access token (printed by `wan serve`; visible to other users in the "
        "process list: prefer Settings → Engine, which keeps it in the OS keyring, or "
        "WAN_API_TOKEN)",
    )
    return parser


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(
        os.environ.get(ENV_QT_PLATFORM)
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    )


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"wan-desktop {__version__}")
        return 0
    if args.dev:
        os.environ[ENV_DEV_MODE] = "1"
    if not _has_display():
        if not args.self_test:
            print(
                "wan-desktop: no display found (DISPLAY and WAYLAND_DISPLAY are unset). "
                f"Start it from a desktop session, or set {ENV_QT_PLATFORM}=offscreen to run "
                "without one.",
                file=sys.stderr,
            )
            return 2
        os.environ[ENV_QT_PLATFORM] = "offscreen"
    from wan_desktop.ui.app import run

    return run(args, started=started, api_factory=_api_factory())


def _api_factory() -> Any:
    """The local API's server class, given to the GUI (which never imports the API itself)."""
    try:
        from wan_desktop.api.server import EmbeddedServer
    except ImportError:  # an install without the API extra: the switch says so
        return None
    return EmbeddedServer


if __name__ == "__main__":
    sys.exit(main())
