"""``wan``: the command line. Sub-commands register here; heavy imports wait until one runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .models import cli as models_cli
from .models.config import ENV_DEV_MODE


def build_parser() -> argparse.ArgumentParser:
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
    models_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dev:
        # Everything below (engine, API) reads the mode from the environment.
        os.environ[ENV_DEV_MODE] = "1"
    return _COMMANDS[args.cmd](args)


def _models(args: argparse.Namespace) -> int:
    return models_cli.run(args, dev_mode=args.dev)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"models": _models}


if __name__ == "__main__":
    sys.exit(main())
