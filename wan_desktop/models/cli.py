"""``wan models …``: the orchestrator's command line.

Human output by default; ``--json`` prints one JSON document on stdout whose shape is documented in
docs/cli.md (each has a ``schema`` key). Exit codes: 0 success, 1 the operation failed (the error
says why), 2 bad usage or an unknown model or variant.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .cli_commands import COMMANDS
from .cli_output import EXIT_FAILED, EXIT_USAGE, Output
from .config import OrchestratorConfig
from .errors import (
    InvalidModelIdError,
    ModelError,
    ModelNotFoundError,
    VariantNotFoundError,
)
from .paths import storage_error
from .store import ModelStore

NAME = "models"

_USAGE_ERRORS = (ModelNotFoundError, VariantNotFoundError, InvalidModelIdError)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="list, download, verify and locate models",
        description="Manage the models in models.toml: list, check, status, ensure, verify, path, "
        "delete, gc, pin, unpin, disk-usage, lock.",
    )
    p.add_argument(
        "--models-root",
        type=Path,
        help="models folder (default: $MODELS_ROOT or the user data folder)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        help="models.toml to use (default: $WAN_MODELS_MANIFEST or the bundled one)",
    )
    p.add_argument(
        "--log-json",
        action="store_true",
        help="structured logs on stderr: one JSON object a line, with a correlation id per ensure",
    )
    p.add_argument("--log-level", default="INFO", help="with --log-json (default INFO)")
    sub = p.add_subparsers(dest="models_cmd", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return c

    cmd("list", "the models of the manifest with their variants and state")
    cmd("check", "check the setup (manifest, models folder, space, packages); no network")
    c = cmd("status", "the state of one model, or of all")
    c.add_argument("model", nargs="?", help="model id, name or alias (default: all)")
    c.add_argument("--variant")
    c = cmd("ensure", "download what is missing and verify it")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--only", nargs="+", metavar="ID", help="these models")
    g.add_argument("--all", action="store_true", help="every model of the manifest")
    c.add_argument("--variant", help="variant (default: the model's default; tiny in dev mode)")
    c.add_argument("--force", action="store_true", help="re-check every file and repair")
    c = cmd("verify", "re-hash every file of a model")
    c.add_argument("model")
    c.add_argument("--variant")
    c = cmd("path", "print the folder of a model")
    c.add_argument("model")
    c.add_argument("--variant")
    c = cmd("delete", "remove a model and any partial download of it")
    c.add_argument("model")
    c.add_argument("--variant")
    c = cmd("gc", "remove least recently used and old models (never pinned or in-use ones)")
    c.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    c.add_argument("--max-size", help="keep the total under this, e.g. 200GB (default: quota)")
    c.add_argument("--max-age", help="remove models unused this long, e.g. 30d (default: setting)")
    for name, text in (("pin", "keep a model whatever gc decides"), ("unpin", "undo pin")):
        c = cmd(name, text)
        c.add_argument("model")
        c.add_argument("--variant")
    cmd("disk-usage", "what each model takes on disk, quotas, pins, last use")
    c = cmd("lock", "write sizes and sha256 of a model's files into models.toml from a source")
    c.add_argument("model")
    c.add_argument("--variant")
    c.add_argument("--source", help="source URI to read (default: the first that answers)")
    c.add_argument("--dry-run", action="store_true", help="print, do not write models.toml")
    return p


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.models_root:
        overrides["models_root"] = args.models_root
    if args.manifest:
        overrides["manifest_path"] = args.manifest
    config = replace(OrchestratorConfig.from_env(), **overrides)
    store = ModelStore(config)
    out = Output(json_mode=args.json)
    if args.log_json:
        import logging

        from .logs import LOGGER_NAME, json_handler

        logger = logging.getLogger(LOGGER_NAME)
        level = getattr(logging, str(args.log_level).upper(), logging.INFO)
        logger.addHandler(json_handler(sys.stderr, level))
        logger.setLevel(level)
    handler = COMMANDS[args.models_cmd]
    try:
        return handler(store, args, out)
    except _USAGE_ERRORS as exc:
        return out.error(exc, EXIT_USAGE)
    except ModelError as exc:
        return out.error(exc, EXIT_FAILED)
    except OSError as exc:  # the models folder cannot be read or written
        return out.error(storage_error(exc, config.models_root), EXIT_FAILED)
    except KeyboardInterrupt:
        out.err("interrupted; run the same command again to resume")
        return 130


__all__ = ["NAME", "add_parser", "run"]
