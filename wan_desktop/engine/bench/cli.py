"""``wan bench``: measure each memory strategy of a model at one size, beside the prediction.

Exit codes: 0 every strategy run finished, 1 one or more failed (each says why; the others are
still reported), 2 invalid input (an unknown model or strategy, a bad size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NAME = "bench"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure load time, s/step, VAE decode and peak memory per memory strategy",
        description="Load the model with each memory strategy the planner says could fit, run "
        "a few steps and decode, and report the measured figures beside the planner's "
        "prediction. By default the full-size random-weight variant (no download; output is "
        "noise); --tiny runs the tiny variants (any CPU). Measurements are recorded for the "
        "planner's later estimates on this machine.",
    )
    p.add_argument("--model", default="T2V-A14B", help="T2V-A14B, I2V-A14B or TI2V-5B")
    p.add_argument("--variant", help="variant to load (default: random; tiny with --tiny)")
    p.add_argument("--tiny", action="store_true", help="the tiny development variant (CPU)")
    p.add_argument("--resolution", help="WIDTHxHEIGHT (default: the variant's)")
    p.add_argument("--frames", type=int, help="frames, 4k+1 (default: the variant's)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps per strategy (4)")
    p.add_argument(
        "--strategy",
        default="all",
        help="all (each that fits), best (the planner's choice), or names separated by commas",
    )
    p.add_argument(
        "--decode-once",
        action="store_true",
        help="decode the video only after the first strategy (the VAE's time barely depends "
        "on how the transformers are placed)",
    )
    p.add_argument(
        "--prompt", default=None, help="the prompt (any: the figures do not depend on it)"
    )
    p.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="start no strategy after the first once this long has passed (the slowest come last)",
    )
    p.add_argument(
        "--attention-backend",
        metavar="NAME",
        help="set diffusers' attention backend on the transformers (auto: the fastest "
        "installed); default: diffusers' own, as plain diffusers runs",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the transformers' repeated blocks (reports the compile seconds)",
    )
    p.add_argument(
        "--no-record",
        action="store_true",
        help="do not record for the planner (runs with --attention-backend or --compile never "
        "are: the planner learns plain diffusers' speed)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--out", type=Path, help="also write the JSON document to this file")
    return p


def run(args: argparse.Namespace) -> int:
    from wan_desktop.models import ModelError, ModelStore
    from wan_desktop.models.atomic import atomic_write_json

    from ..hardware import read_profile
    from ..settings import ATTENTION_BACKENDS, EngineSettings
    from .runner import DEFAULT_PROMPT, BenchError, BenchRequest, run_bench

    if args.tiny and args.variant and args.variant != "tiny":
        return _invalid(args, f"--tiny and --variant {args.variant} disagree", "give one of them")
    backend = args.attention_backend.strip().lower() if args.attention_backend else None
    if backend is not None and backend not in ATTENTION_BACKENDS:
        return _invalid(
            args,
            f"--attention-backend {args.attention_backend!r} is not an attention backend",
            f"use one of {', '.join(ATTENTION_BACKENDS)}",
        )
    req = BenchRequest(
        model=args.model,
        variant="tiny" if args.tiny else args.variant,
        resolution=args.resolution,
        frames=args.frames,
        steps=args.steps,
        strategies=tuple(s.strip() for s in args.strategy.split(",") if s.strip()) or ("all",),
        decode_each=not args.decode_once,
        prompt=args.prompt or DEFAULT_PROMPT,
        record=not args.no_record,
        time_budget_s=args.time_budget,
        attention_backend=backend,
        compile=args.compile,
    )
    settings = EngineSettings.from_env()
    try:
        store = ModelStore()
        profile = read_profile(args.device or settings.device)
        if not args.json:
            print(f"wan bench: {profile.summary}", file=sys.stderr)
        doc = run_bench(
            req,
            store,
            profile,
            settings.data_dir,
            on_result=None if args.json else _print_result,
        )
    except BenchError as exc:
        return _invalid(args, exc.message, exc.fix)
    except ModelError as exc:
        return _invalid(args, exc.message, exc.fix or "see wan models list")
    if args.out is not None:
        atomic_write_json(args.out, doc, indent=2)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(table(doc))
    return EXIT_OK if doc["results"] and all(r["ok"] for r in doc["results"]) else EXIT_FAILED


def _invalid(args: argparse.Namespace, message: str, fix: str) -> int:
    if args.json:
        error = {"code": "INVALID_INPUT", "message": message, "fix": fix}
        print(json.dumps({"schema": "wan.error/1", "ok": False, "error": error}, indent=2))
    print(f"error [INVALID_INPUT]: {message}\n  fix: {fix}", file=sys.stderr)
    return EXIT_INVALID


def _print_result(result: dict[str, Any]) -> None:
    state = "ok" if result["ok"] else f"failed: {result['error']}"
    print(f"  {result['strategy']}: {state}", file=sys.stderr)


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(doc: dict[str, Any]) -> str:
    """The bench as a text table: measured figures with the prediction in brackets."""
    job = doc["job"]
    acc = doc.get("accelerators") or {}
    extras = [f"attention {acc['attention_backend']}"] if acc.get("attention_backend") else []
    extras += ["compiled blocks"] if acc.get("compile") else []
    lines = [
        f"{doc['model']} ({doc['variant']}: {doc['label']}) on {doc['device_name']}, "
        f"{job['width']}x{job['height']}x{job['frames']}, {job['steps']} steps"
        + (f", {', '.join(extras)}" if extras else "")
        + "; measured [predicted]",
        f"{'strategy':<20} {'load s':>7} {'s/step':>16} {'per expert':<34} {'decode s':>16} "
        f"{'VRAM GB':>15} {'RAM GB':>15}",
    ]
    for r in doc["results"]:
        p = r["predicted"]
        if not r["ok"]:
            lines.append(f"{r['strategy']:<20} failed: {r['error']}")
            continue
        m = r["measured"]
        vram = m["peak_vram_nvml_gb"] or m["peak_vram_reserved_gb"]
        experts = ", ".join(f"{e} {s:.2f}" for e, s in m["s_per_step"].items())
        lines.append(
            f"{r['strategy']:<20} {_num(m['load_s'], '{:.1f}'):>7} "
            f"{_num(m['s_per_step_mean']) + ' [' + _num(p['s_per_step']) + ']':>16} "
            f"{experts:<34} "
            f"{_num(m['vae_decode_s']) + ' [' + _num(p['vae_decode_s']) + ']':>16} "
            f"{_num(vram, '{:.1f}') + ' [' + _num(p['vram_gb'], '{:.1f}') + ']':>15} "
            f"{_num(m['peak_ram_gb'], '{:.1f}') + ' [' + _num(p['ram_gb'], '{:.1f}') + ']':>15}"
        )
        if m.get("compile_s"):
            lines.append(f"{'':<20} compiled in {m['compile_s']:.1f} s (first steps, left out)")
    for s in doc["skipped"]:
        lines.append(f"{s['strategy']:<20} skipped: {s['reason']}")
    if doc["recorded"]:
        lines.append("recorded: later estimates for these jobs on this machine use these figures")
    return "\n".join(lines)
