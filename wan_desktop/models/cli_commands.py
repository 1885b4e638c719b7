"""The ``wan models`` subcommands: one function each, taking the store, the parsed arguments and
the output, and returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cli_output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, ProgressBar
from .errors import ModelError
from .manifest import ModelSpec
from .settings import format_size
from .store import ModelStore
from .types import DownloadProgress, ModelStatus


def _cmd_list(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    models: list[dict[str, Any]] = []
    for spec in store.manifest:
        resolved = store.resolve(spec.id)[1].name
        variants: list[dict[str, Any]] = []
        for var in spec.variants.values():
            st = store.status(spec.id, var.name)
            variants.append(
                {
                    "name": var.name,
                    "dtype": var.dtype,
                    "default": var.name == spec.default_variant,
                    "selected": var.name == resolved,
                    "development": var.development,
                    "label": var.label,
                    "approx_size_bytes": var.approx_size_bytes,
                    "sources": list(var.sources),
                    "state": str(st.state),
                }
            )
        models.append(
            {
                "id": spec.id,
                "title": spec.title,
                "aliases": list(spec.aliases),
                "task": spec.task,
                "default_variant": spec.default_variant,
                "selected_variant": resolved,
                "variants": variants,
            }
        )
    if out.json_mode:
        out.doc("wan.models.list/1", dev_mode=store.config.dev_mode, models=models)
        return EXIT_OK
    if store.config.dev_mode:
        out.line("development mode: every model resolves to its tiny variant (random weights)")
    for m in models:
        out.line(f"{m['id']}  {m['title']}  ({', '.join(m['aliases'])}; {m['task']})")
        for v in m["variants"]:
            mark = "*" if v["selected"] else " "
            size = format_size(v["approx_size_bytes"])
            out.line(
                f"  {mark} {v['name']:<6} {v['dtype']:<9} {size:>10}  {v['state']:<11} {v['label']}"
            )
    return EXIT_OK


def _cmd_check(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, message: str, fix: str | None = None) -> None:
        checks.append({"name": name, "ok": ok, "message": message, "fix": None if ok else fix})

    cfg = store.config
    statuses: list[ModelStatus] = []
    try:
        manifest = store.manifest
        check("manifest", True, f"{cfg.manifest_path}: {len(manifest)} models")
        statuses = store.list_status()
    except ModelError as exc:
        check("manifest", False, f"{cfg.manifest_path}: {exc.message}", exc.fix)
    root = cfg.models_root
    writable = _writable(root)
    check(
        "models_root",
        writable,
        f"{root}" + ("" if writable else " is not writable"),
        "set MODELS_ROOT to a folder you can write, or fix its permissions",
    )
    existing = _existing_parent(root)
    free = shutil.disk_usage(existing).free
    check(
        "free_space",
        free > cfg.free_space_reserve_bytes,
        f"{format_size(free)} free on {existing}",
        "free some space or set MODELS_ROOT to a larger disk",
    )
    engine = all(
        importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers")
    )
    check(
        "engine_packages",
        engine,
        "torch, diffusers and transformers are installed"
        if engine
        else "the engine packages are not installed (development models cannot be built)",
        "run scripts/setup.sh, or pip install -e '.[engine]' after torch",
    )
    ok = all(c["ok"] for c in checks)
    if out.json_mode:
        out.doc(
            "wan.models.check/1",
            ok=ok,
            dev_mode=cfg.dev_mode,
            models_root=str(root),
            manifest=str(cfg.manifest_path),
            free_bytes=free,
            checks=checks,
            models=[s.to_dict() for s in statuses],
        )
        return EXIT_OK if ok else EXIT_FAILED
    out.line(f"models folder : {root}")
    out.line(f"manifest      : {cfg.manifest_path}")
    out.line(f"mode          : {'development (tiny variants)' if cfg.dev_mode else 'production'}")
    for c in checks:
        out.line(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['message']}")
        if not c["ok"] and c["fix"]:
            out.line(f"         fix: {c['fix']}")
    for s in statuses:
        out.line(f"  {s.model_id} ({s.variant}): {s.state} — {s.reason}")
    return EXIT_OK if ok else EXIT_FAILED


def _cmd_status(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    statuses = [store.status(args.model, args.variant)] if args.model else store.list_status()
    if out.json_mode:
        out.doc(
            "wan.models.status/1",
            dev_mode=store.config.dev_mode,
            models=[s.to_dict() for s in statuses],
        )
        return EXIT_OK
    for s in statuses:
        out.line(_status_line(s))
    return EXIT_OK


def _status_line(s: ModelStatus) -> str:
    size = format_size(s.bytes_total if s.bytes_total is not None else s.approx_size_bytes)
    extra = f"  [{s.label}]" if s.development else ""
    return f"{s.model_id:<16} {s.variant:<6} {s.state:<11} {size:>10}  {s.reason}{extra}"


def _cmd_ensure(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    ids: Sequence[str] = [m.id for m in store.manifest] if args.all else args.only
    specs: list[ModelSpec] = [store.resolve(i, args.variant)[0] for i in ids]  # fail fast on typos
    results = []
    failed = False
    for spec in specs:
        var = store.resolve(spec.id, args.variant)[1]
        bar = ProgressBar(out.stderr) if (not out.json_mode and out.stderr.isatty()) else None
        t0 = time.monotonic()
        transferred = 0

        def on_progress(p: DownloadProgress, bar: ProgressBar | None = bar) -> None:
            nonlocal transferred
            transferred = p.bytes_transferred
            if bar is not None:
                bar.update(p)

        try:
            path = store.ensure(spec.id, var.name, force=args.force, progress=on_progress)
        except ModelError as exc:
            if bar is not None:
                bar.finish()
            failed = True
            results.append(
                {"model_id": spec.id, "variant": var.name, "ok": False, "error": exc.to_dict()}
            )
            if not out.json_mode:
                out.err(f"{spec.id} ({var.name}): error [{exc.code}]: {exc.message}")
                if exc.fix:
                    out.err(f"  fix: {exc.fix}")
            continue
        if bar is not None:
            bar.finish()
        st = store.status(spec.id, var.name)
        results.append(
            {
                "model_id": spec.id,
                "variant": var.name,
                "ok": True,
                "path": str(path),
                "state": str(st.state),
                "bytes_total": st.bytes_total,
                "bytes_transferred": transferred,
                "development": var.development,
                "label": var.label,
                "seconds": round(time.monotonic() - t0, 3),
            }
        )
        note = f"  [{var.label}]" if var.development else ""
        out.line(f"{spec.id} ({var.name}): {st.state} at {path}{note}")
    if out.json_mode:
        out.doc(
            "wan.models.ensure/1", ok=not failed, dev_mode=store.config.dev_mode, results=results
        )
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_verify(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    report = store.verify(args.model, args.variant)
    if out.json_mode:
        out.doc("wan.models.verify/1", **report.to_dict())
    else:
        verdict = "OK" if report.ok else "CORRUPT"
        out.line(
            f"{report.model_id} ({report.variant}): {verdict} — {len(report.checked)} files, "
            f"{format_size(report.bytes_hashed)} hashed in {report.seconds:.2f} s"
        )
        for m in report.mismatches:
            out.line(
                f"  damaged: {m.path} (sha256 {m.actual_sha256}, expected {m.expected_sha256})"
            )
        for p in report.missing:
            out.line(f"  missing: {p}")
        if not report.ok:
            out.line(f"  repair with: wan models ensure --force --only {report.model_id}")
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_path(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    st = store.status(args.model, args.variant)
    if out.json_mode:
        out.doc(
            "wan.models.path/1",
            model_id=st.model_id,
            variant=st.variant,
            path=str(st.path),
            state=str(st.state),
            complete=st.complete,
        )
    else:
        out.stdout.write(f"{st.path}\n")
        if not st.complete:
            out.err(
                f"{st.model_id} ({st.variant}) is {st.state}: run 'wan models ensure --only "
                f"{st.model_id}'"
            )
    return EXIT_OK if st.complete else EXIT_FAILED


def _cmd_delete(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    spec, var = store.resolve(args.model, args.variant)
    freed = store.delete(spec.id, var.name)
    if out.json_mode:
        out.doc("wan.models.delete/1", model_id=spec.id, variant=var.name, bytes_freed=freed)
    else:
        out.line(f"{spec.id} ({var.name}): deleted, {format_size(freed)} freed")
    return EXIT_OK


def _cmd_gc(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    from .settings import parse_duration, parse_size

    try:
        max_size = parse_size(args.max_size) if args.max_size else None
        max_age = parse_duration(args.max_age) if args.max_age else None
    except ValueError as exc:
        out.err(f"error: {exc}")
        return EXIT_USAGE
    report = store.gc(max_size=max_size, max_age_s=max_age, dry_run=args.dry_run)
    if out.json_mode:
        out.doc("wan.models.gc/1", **report.to_dict())
        return EXIT_OK
    verb = "would remove" if report.dry_run else "removed"
    if report.max_size_bytes is None and report.max_age_s is None:
        out.line(
            "no limit given (--max-size, --max-age, or a quota in the settings): nothing to do"
        )
    for d in report.removed:
        out.line(f"  {verb}: {d.dir_name} ({format_size(d.bytes)}): {d.reason}")
    for d in report.kept:
        out.line(f"  kept: {d.dir_name} ({format_size(d.bytes)}): {d.reason}")
    out.line(
        f"{verb} {len(report.removed)} model(s), {format_size(report.reclaimed_bytes)}; "
        f"{format_size(report.total_after)} in use by models now"
    )
    return EXIT_OK


def _cmd_pin(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    pinned = args.models_cmd == "pin"
    spec, var = store.resolve(args.model, args.variant)
    changed = store.pin(spec.id, var.name, pinned=pinned)
    if out.json_mode:
        out.doc(
            f"wan.models.{args.models_cmd}/1",
            model_id=spec.id,
            variant=var.name,
            pinned=pinned,
            changed=changed,
        )
    else:
        state = "pinned" if pinned else "not pinned"
        out.line(f"{spec.id} ({var.name}): {state}{'' if changed else ' (already)'}")
    return EXIT_OK


def _cmd_disk_usage(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    usage = store.disk_usage()
    if out.json_mode:
        out.doc("wan.models.disk_usage/1", **usage.to_dict())
        return EXIT_OK
    quota = format_size(usage.quota_bytes) if usage.quota_bytes is not None else "none"
    out.line(
        f"{usage.models_root}: {format_size(usage.total_bytes)} in models, "
        f"{format_size(usage.free_bytes)} free, quota {quota}"
    )
    if usage.manifest_error:
        out.line(
            f"no folder is matched to a model: the manifest cannot be read: {usage.manifest_error}"
        )
    for m in usage.models:
        flags = [
            f
            for f, on in (
                ("pinned", m.pinned),
                ("in use", m.in_use),
                ("partial", not m.complete),
                ("not in manifest", not m.known),
            )
            if on
        ]
        last = m.to_dict()["last_used"] or "never"
        out.line(
            f"  {m.dir_name:<32} {format_size(m.bytes):>10}  last used {last}"
            + (f"  [{', '.join(flags)}]" if flags else "")
        )
    return EXIT_OK


def _cmd_lock(store: ModelStore, args: argparse.Namespace, out: Output) -> int:
    from .manifest_lock import lock_model

    def on_file(path: str) -> None:
        if not out.json_mode:
            out.err(f"  {path}")

    result = lock_model(
        store,
        args.model,
        args.variant,
        source_uri=args.source,
        dry_run=args.dry_run,
        on_file=on_file,
    )
    if out.json_mode:
        out.doc("wan.models.lock/1", **result.to_dict())
        return EXIT_OK
    verb = "would write" if args.dry_run else "wrote"
    out.line(
        f"{result.model_id} ({result.variant}): {verb} {len(result.files)} files from "
        f"{result.source} into {result.manifest}"
    )
    if result.signature_stale:
        out.line("  the manifest's signature no longer matches: sign it again")
    return EXIT_OK


COMMANDS: dict[str, Callable[[ModelStore, argparse.Namespace, Output], int]] = {
    "list": _cmd_list,
    "check": _cmd_check,
    "status": _cmd_status,
    "ensure": _cmd_ensure,
    "verify": _cmd_verify,
    "path": _cmd_path,
    "delete": _cmd_delete,
    "gc": _cmd_gc,
    "pin": _cmd_pin,
    "unpin": _cmd_pin,
    "disk-usage": _cmd_disk_usage,
    "lock": _cmd_lock,
}


def _writable(root: Path) -> bool:
    target = _existing_parent(root)
    return target.is_dir() and os.access(target, os.W_OK)  # not a file where a folder must be


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
