"""``wan serve``: the engine and the local API, headless (for a GPU server).

Nothing heavy at module level: ``wan --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from wan_desktop.access import ENV_TOKEN

from .settings import DEFAULT_HOST, DEFAULT_ORIGINS, DEFAULT_PORT, ApiConfigError, is_loopback

if TYPE_CHECKING:
    from wan_desktop.engine import Engine, EngineSettings

NAME = "serve"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        NAME,
        help="run the engine and the local HTTP + WebSocket API",
        description="Serve the local API (React frontend, scripts) over one engine. Binds "
        f"{DEFAULT_HOST} by default; any other address needs an access token, sent by clients as "
        "'Authorization: Bearer <token>'.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = free)"
    )
    given = p.add_mutually_exclusive_group()
    given.add_argument(
        "--token",
        help="access token to require (visible to other users in the process list: prefer "
        f"--token-file or {ENV_TOKEN}); on a non-loopback address the saved token is used when "
        "none is given (generated on first start)",
    )
    given.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"read the access token from this file (or set {ENV_TOKEN})",
    )
    p.add_argument(
        "--origins",
        default=",".join(DEFAULT_ORIGINS),
        help="comma-separated browser origins allowed (CORS); default: the React dev servers",
    )
    p.add_argument("--mock", action="store_true", help="run jobs with the mock pipeline (no model)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    pool = p.add_argument_group(
        "GPU pool",
        "run jobs on Ray workers, one per GPU, on this machine and the machines that joined its "
        "Ray cluster (ray start --head here, ray start --address HOST:6379 there); needs "
        "the pool extra: pip install 'wan-desktop[pool]'",
    )
    pool.add_argument("--pool", action="store_true", help="run jobs on a pool of Ray workers")
    pool.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="pool workers (default: one per GPU Ray sees; one CPU worker where it sees none)",
    )
    pool.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster (HOST:PORT, or 'auto' for the one started on this machine); "
        "default: start one for this server",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import os
    from pathlib import Path

    from wan_desktop.access import load_or_create_token, read_token_file, token_path
    from wan_desktop.engine.errors import JobStoreError

    token = args.token
    if args.token_file:
        try:
            token = read_token_file(Path(args.token_file))
        except ValueError as exc:
            print(f"wan serve: {exc}", file=sys.stderr)
            return 2
    if token is None:
        token = os.environ.get(ENV_TOKEN, "").strip() or None
    if token is None and not is_loopback(args.host):
        token = load_or_create_token()
        print(f"access token (saved in {token_path()}): {token}", file=sys.stderr)
    origins = tuple(o.strip() for o in args.origins.split(",") if o.strip())
    try:
        return asyncio.run(_serve(args, token, origins))
    except ApiConfigError as exc:
        print(f"wan serve: {exc}", file=sys.stderr)
        return 2
    except JobStoreError as exc:  # a job store that cannot be opened or recovered
        print(f"wan serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signals
        print("wan serve: stopped", file=sys.stderr)
        return 130


def _engine(args: argparse.Namespace, settings: EngineSettings) -> Engine:
    """The pool engine: its jobs run on Ray actors (``wan_desktop.pool``)."""
    if args.workers is not None and args.workers < 1:
        raise ApiConfigError(f"--workers must be 1 or more, not {args.workers}")
    from wan_desktop.engine import EngineError
    from wan_desktop.pool import PoolEngine

    try:
        return PoolEngine(
            settings,
            workers=args.workers,
            address=args.ray_address,
            plugins=("wan_desktop.explainer",),
        )
    except EngineError as exc:
        raise ApiConfigError(str(exc)) from exc


async def _serve(args: argparse.Namespace, token: str | None, origins: tuple[str, ...]) -> int:
    from wan_desktop.engine import Engine, EngineSettings

    from .app import create_app
    from .server import bind_socket, make_server
    from .settings import ApiSettings

    settings = ApiSettings(host=args.host, port=args.port, token=token, origins=origins)
    settings.check()
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    engine_settings = EngineSettings.from_env()
    if args.mock:
        engine_settings = EngineSettings.from_env(mock=True)
    engine = _engine(args, engine_settings) if args.pool else Engine(engine_settings)
    try:
        app = create_app(
            engine, ApiSettings(host=args.host, port=port, token=token, origins=origins)
        )
        server = make_server(app, capture_signals=True, log_level=args.log_level)
        mode = (
            " (development mode: tiny models, output is noise)" if engine.settings.dev_mode else ""
        )
        mode += " (mock mode: no model runs)" if engine.settings.mock else ""
        if args.pool:
            mode += f" (pool of {len(engine.workers())} Ray workers)"
        print(
            f"Wan Desktop API at {settings.url.rsplit(':', 1)[0]}:{port}{mode}; docs at /docs",
            file=sys.stderr,
        )
        await server.serve(sockets=[sock])
    finally:
        engine.shutdown()
    if server.stopped_by is not None:
        print("wan serve: stopped", file=sys.stderr)
        return 128 + int(server.stopped_by)  # the shell's code: 130 for Ctrl-C, 143 for TERM
    return 0
