"""``wan pool status``: the workers of a running ``wan serve`` (node, GPU, VRAM, model, job).

It asks the server (``GET /api/v1/system/workers``), the one front door of a pool, so it prints
exactly what the System page and the API show. Standard library only: no Ray needed here.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

NAME = "pool"
DEFAULT_URL = "http://127.0.0.1:8000"
SCHEMA = "wan.pool.status/1"
TIMEOUT_S = 10.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        NAME,
        help="the GPU pool of a running 'wan serve --pool'",
        description="Show the workers of a running server: node, GPU, VRAM, loaded model and "
        "current job (a server without --pool shows its one local worker).",
    )
    sub = p.add_subparsers(dest="pool_cmd", required=True, metavar="COMMAND")
    status = sub.add_parser("status", help="list the workers")
    status.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    status.add_argument(
        "--token", help="the server's access token (default: the one saved on this machine)"
    )
    status.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    from wan_desktop.access import load_token

    token = args.token or load_token()
    url = args.url.rstrip("/") + "/api/v1/system/workers"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            data: dict[str, Any] = json.load(answer)
    except urllib.error.HTTPError as exc:
        fix = (
            "pass the server's token with --token"
            if exc.code in (401, 403)
            else "update the server (it has no /api/v1/system/workers)"
        )
        return _failed(f"{url} answered {exc.code} {exc.reason}", fix, args.json)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return _failed(
            f"cannot reach {args.url}: {reason}",
            "start the server (wan serve --pool) or pass its address with --url",
            args.json,
        )
    workers = data.get("workers", [])
    if args.json:
        print(json.dumps({"schema": SCHEMA, "ok": True, "workers": workers}, indent=2))
        return 0
    print(_table(workers))
    busy = sum(1 for w in workers if w.get("current_job"))
    print(f"{len(workers)} workers, {busy} busy")
    return 0


def _table(workers: list[dict[str, Any]]) -> str:
    rows = [("WORKER", "STATE", "NODE", "GPU", "VRAM", "MODEL", "JOB", "RESTARTS")]
    for w in workers:
        vram = w.get("vram_total_mb") or 0
        rows.append(
            (
                str(w.get("name")),
                str(w.get("state")),
                str(w.get("node")),
                str(w.get("gpu_name") or w.get("device") or "-"),
                f"{vram / 1024:.0f} GiB" if vram else "-",
                str(w.get("loaded_model") or "-"),
                str(w.get("current_job") or "-"),
                str(w.get("restarts", 0)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)) for r in rows)


def _failed(message: str, fix: str, as_json: bool) -> int:
    if as_json:
        error = {"code": "POOL_UNREACHABLE", "message": message, "fix": fix}
        print(json.dumps({"schema": SCHEMA, "ok": False, "error": error}, indent=2))
    print(f"error: {message}", file=sys.stderr)
    print(f"  fix: {fix}", file=sys.stderr)
    return 1
