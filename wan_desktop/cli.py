"""``wan``: the command line. Each command lives with its part of the package.

A command module has ``NAME``, ``add_parser(subparsers)`` and ``run(args) -> exit code``, and
imports nothing heavy at module level: ``wan --help`` and ``wan models check`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import __version__
from .models.config import ENV_DEV_MODE
from .models.env import SettingError

COMMAND_MODULES = (
    "wan_desktop.models.cli",
    "wan_desktop.engine.cli",
    "wan_desktop.engine.bench.cli",
    "wan_desktop.api.cli",
    "wan_desktop.explainer.cli",
    "wan_desktop.pool.cli",
)


def _commands() -> dict[str, ModuleType]:
    modules = (importlib.import_module(name) for name in COMMAND_MODULES)
    return {m.NAME: m for m in modules}


def build_parser(commands: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wan",
        description="Wan Desktop: run the Wan2.2 video models on your own GPU.",
    )
    parser.add_argument("--version", action="version", version=f"wan-desktop {__version__}")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="development mode: every model resolves to its tiny random-weight variant "
        f"(same as {ENV_DEV_MODE}=1); output is noise",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in (commands or _commands()).values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    commands = _commands()
    args = build_parser(commands).parse_args(argv)
    if args.dev:
        # Everything below (orchestrator, engine, API) reads the mode from the environment.
        os.environ[ENV_DEV_MODE] = "1"
    if hasattr(args, "split_engine"):  # wan generate --gpus N: the engine never imports the pool
        args.split_engine = _local_pool
    try:
        code: int = commands[args.cmd].run(args)
    except SettingError as exc:  # a bad environment variable, found wherever it is first read
        return setting_failed(exc, as_json=bool(getattr(args, "json", False)))
    return code


def _local_pool(settings: Any, gpus: int) -> Any:
    from .pool.engine import local_pool

    return local_pool(settings, gpus)


def setting_failed(exc: SettingError, *, as_json: bool) -> int:
    """Exit 2 with what is wrong and what to do (as ``wan.error/1`` JSON with ``--json``)."""
    fix = f"fix or unset {exc.name}"
    if as_json:
        error = {"code": "INVALID_SETTING", "message": str(exc), "fix": fix, "details": None}
        print(json.dumps({"schema": "wan.error/1", "ok": False, "error": error}, indent=2))
    print(f"error [INVALID_SETTING]: {exc}", file=sys.stderr)
    print(f"  fix: {fix}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
